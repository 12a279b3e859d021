"""Does the search find better networks than chance?  Searched genotypes vs genotypes drawn uniformly
from the same space, each retrained with identical settings (the sanity check of Li & Talwalkar 2019
and Yu et al. 2020).

    python bench/search_quality.py --data ../data                  # CPU defaults: B=1 F=64, 10k images
    python bench/search_quality.py --data ../data --latency-table lat_cpu_b1.json   # at equal latency

Stages, each skipped when its result exists (so an interrupted bench continues where it stopped; a
stage cut short resumes from its own checkpoint): one search per ``--seeds`` (search_cifar.main), then
``--random`` genotypes drawn uniformly over the candidates on every edge (seeded; with
``--latency-table`` redrawn until the predicted latency is within +-5 % of the first searched
genotype's), then one retraining per genotype and ``--train-seeds`` value (train_cifar.main, the same
flags and seeds for all; a genotype's accuracy is the mean over its seeds).
Writes results.json, results.md and accuracy_vs_params.png into ``--output`` and ends with
name=value lines: searched_mean, random_mean, random_std, gap_in_std (searched_mean - random_mean in
random standard deviations) and, with several --train-seeds, seed_std (the retraining noise: the
standard deviation between seeds of one genotype, pooled over genotypes).
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):  # run as a file (python bench/search_quality.py): make the repo importable
    sys.path.insert(0, str(ROOT))

import search_cifar  # noqa: E402
import train_cifar  # noqa: E402
from models import PRIMITIVES, Genotype  # noqa: E402
from models.tree.arch import EDGES_PER_CELL, NUM_STAGES  # noqa: E402
from utils.checkpoint import save_genotype, save_json  # noqa: E402
from utils.errors import UserError, run_cli  # noqa: E402

LATENCY_BAND = 0.05  # equal latency: within +-5 % of the searched genotype's prediction


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", default="./data", help="CIFAR-10 folder (cifar-10-batches-py)")
    p.add_argument("--output", default="runs/search_quality", help="bench folder (every stage's run inside)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="one search per seed")
    p.add_argument("--random", type=int, default=3, help="genotypes drawn uniformly from the space")
    p.add_argument("--random-seed", type=int, default=100, help="seed of the random draws")
    p.add_argument("--B", type=int, default=1, help="blocks per stage")
    p.add_argument("--F", type=int, default=64, help="final width")
    p.add_argument("--train-subset", type=int, default=10000, help="training images for search and retraining")
    p.add_argument("--arch-split", default="2000", help="images of the subset that train alpha")
    p.add_argument("--warmup-epochs", type=int, default=12,
                   help="search warm-up epochs (most of a short search: young weights rank ops wrongly)")
    p.add_argument("--search-epochs", type=int, default=3, help="search epochs after warm-up")
    p.add_argument("--arch-every", type=int, default=1, help="search: one architecture step every K weight steps")
    p.add_argument("--arch-lr", type=float, default=0.05, help="search: Adam lr of alpha")
    p.add_argument("--train-epochs", type=int, default=8, help="retraining epochs")
    p.add_argument("--train-seeds", type=int, nargs="+", default=[0],
                   help="retrain every genotype once per seed; its accuracy is the mean (8-epoch retrainings on "
                        "10k images differ by about 1 point between seeds, docs/results.md)")
    p.add_argument("--latency-table", default=None, help="draw random genotypes at the searched one's latency")
    p.add_argument("--search-flags", nargs=argparse.REMAINDER, default=[],
                   help="more search_cifar.py flags, e.g. --search-flags --algo reinforce (last on the line)")
    return p


def uniform_genotype(B: int, F: int, candidates, rng: random.Random) -> Genotype:
    return Genotype(B, F, [[rng.choice(candidates) for _ in range(EDGES_PER_CELL)] for _ in range(NUM_STAGES * B)])


def random_genotypes(args, reference: Genotype | None, candidates=PRIMITIVES) -> list[Genotype]:
    """``args.random`` uniform draws; with a latency table, only draws within LATENCY_BAND of ``reference``."""
    rng = random.Random(args.random_seed)
    if args.latency_table is None:
        return [uniform_genotype(args.B, args.F, candidates, rng) for _ in range(args.random)]
    from utils.latency_table import LatencyTable, predict_genotype
    table = LatencyTable.load(args.latency_table)
    target = predict_genotype(table, reference)
    out, tries = [], 0
    while len(out) < args.random:
        tries += 1
        if tries > 200_000:
            raise UserError(f"no uniform draw came within {LATENCY_BAND:.0%} of {target:.3f} ms in 200,000 tries")
        g = uniform_genotype(args.B, args.F, candidates, rng)
        if abs(predict_genotype(table, g) / target - 1) <= LATENCY_BAND:
            out.append(g)
    return out


def common(args, out: Path) -> list[str]:
    return ["--data", args.data, "--no-download", "--train-subset", str(args.train_subset), "--output", str(out),
            "--no-progress", "--no-tensorboard"]


def run_search(args, seed: int, out: Path) -> Genotype:
    final = out / "genotype_final.json"
    if not final.is_file():
        resume = ["--resume"] if (out / "checkpoint.pth").is_file() else []
        search_cifar.main(search_cifar.get_args_parser().parse_args([
            *common(args, out), "--B", str(args.B), "--F", str(args.F), "--arch-split", args.arch_split,
            "--warmup-epochs", str(args.warmup_epochs), "--epochs", str(args.search_epochs), "--seed", str(seed),
            "--arch-every", str(args.arch_every), "--arch-lr", str(args.arch_lr),
            *resume, *args.search_flags]))
    return Genotype.load(final)


def train_dir(out: Path, name: str, seed: int) -> Path:
    """Seed 0 keeps the plain folder name, so a bench run with one seed is part of a run with more."""
    return out / (f"train_{name}" if seed == 0 else f"train_{name}_seed{seed}")


def run_train(args, genotype_file: Path, out: Path, seed: int = 0) -> dict:
    results = out / "results.json"
    if not results.is_file():
        resume = ["--resume"] if (out / "last.pth").is_file() else []
        train_cifar.main(train_cifar.get_args_parser().parse_args([
            *common(args, out), "--genotype", str(genotype_file), "--epochs", str(args.train_epochs),
            "--seed", str(seed), *resume]))
    return json.loads(results.read_text())


def measure(args, name: str, gfile: Path, out: Path) -> dict:
    """One report row: the genotype retrained once per --train-seeds value, its mean accuracy."""
    runs = [run_train(args, gfile, train_dir(out, name, s), s) for s in args.train_seeds]
    accs = [r["final_test_acc"] for r in runs]
    row = {"name": name, "kind": "searched" if name.startswith("searched") else "random", "params": runs[0]["params"],
           "multiply_adds": runs[0]["multiply_adds"], "test_acc": statistics.mean(accs), "test_accs": accs,
           "latency_ms": None}
    if args.latency_table:
        from utils.latency_table import LatencyTable, predict_genotype
        row["latency_ms"] = predict_genotype(LatencyTable.load(args.latency_table), Genotype.load(gfile))
    return row


def summary(rows: list[dict]) -> dict[str, float]:
    searched = [r["test_acc"] for r in rows if r["kind"] == "searched"]
    rand = [r["test_acc"] for r in rows if r["kind"] == "random"]
    r_std = statistics.stdev(rand) if len(rand) > 1 else float("nan")
    mean_s, mean_r = statistics.mean(searched), statistics.mean(rand)
    figures = {"searched_mean": mean_s, "random_mean": mean_r, "random_std": r_std,
               "gap_in_std": (mean_s - mean_r) / r_std if r_std > 0 else float("nan")}
    if all(len(r["test_accs"]) > 1 for r in rows):  # the retraining noise: pooled std between seeds
        figures["seed_std"] = statistics.mean(statistics.variance(r["test_accs"]) for r in rows) ** 0.5
    return figures


def write_report(rows: list[dict], figures: dict[str, float], out: Path) -> None:
    save_json({"rows": rows, **figures}, out / "results.json")
    lines = ["| genotype | kind | params | mult-adds | latency (ms) | test acc | per seed |", "|" + "---|" * 7]
    for r in rows:
        lat = f"{r['latency_ms']:.3f}" if r.get("latency_ms") is not None else "-"
        seeds = " / ".join(f"{a:.2f}" for a in r["test_accs"])
        lines.append(f"| {r['name']} | {r['kind']} | {r['params']:,} | {r['multiply_adds'] / 1e6:.2f} M | {lat} | "
                     f"{r['test_acc']:.2f} % | {seeds} |")
    lines += ["", *(f"{k}={v:.4f}" for k, v in figures.items())]
    (out / "results.md").write_text("\n".join(lines) + "\n")
    import matplotlib
    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5, 3.5))
    x_key = "latency_ms" if all(r.get("latency_ms") is not None for r in rows) else "params"
    for kind, marker in (("searched", "o"), ("random", "x")):
        pts = [(r[x_key], r["test_acc"]) for r in rows if r["kind"] == kind]
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], marker=marker, label=kind)
    ax.set_xlabel("predicted latency (ms)" if x_key == "latency_ms" else "parameters")
    ax.set_ylabel("test accuracy (%)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / f"accuracy_vs_{'latency' if x_key == 'latency_ms' else 'params'}.png", dpi=120)
    plt.close(fig)


def main(args: argparse.Namespace) -> dict[str, float]:
    if not args.seeds or args.random < 2:
        raise UserError("need at least one --seeds value and --random >= 2 (a standard deviation)")
    if len(set(args.train_seeds)) != len(args.train_seeds):
        raise UserError(f"--train-seeds has a repeated seed: {' '.join(map(str, args.train_seeds))}")
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    searched = {f"searched_s{s}": run_search(args, s, out / f"search_s{s}") for s in args.seeds}
    rand_dir = out / "random"
    rand_files = sorted(rand_dir.glob("random_*.json"))
    if len(rand_files) < args.random:  # drawn once: a resumed bench retrains the same genotypes
        for k, g in enumerate(random_genotypes(args, next(iter(searched.values())))):
            save_genotype(g, rand_dir / f"random_{k}.json")
        rand_files = sorted(rand_dir.glob("random_*.json"))
    genotype_files = {f"searched_s{s}": out / f"search_s{s}" / "genotype_final.json" for s in args.seeds}
    genotype_files.update({p.stem: p for p in rand_files[:args.random]})
    rows = [measure(args, name, gfile, out) for name, gfile in genotype_files.items()]
    figures = summary(rows)
    write_report(rows, figures, out)
    print((out / "results.md").read_text())
    for k, v in figures.items():
        print(f"{k}={v:.4f}")
    return figures


if __name__ == "__main__":
    run_cli(main, get_args_parser())
