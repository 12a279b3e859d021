"""Does the search find top cells?  ProxylessNAS on NAS-Bench-201, judged by the benchmark's own table.

One search per ``--seeds`` (search_cifar.main, ``--space nb201``) on a proxy (``--C``, ``--N``,
``--train-subset``, epochs, ...); the benchmark's table gives the found cell's accuracy after its 200-epoch
recipe on CIFAR-10, CIFAR-100 and ImageNet16-120 (no retraining), and the argmax cell's CIFAR-10 accuracy
after every search epoch (the search logs it with ``--nb201-table``).

    python bench/nb201_search.py --data ../data                          # the NB201 search defaults
    python bench/nb201_search.py --data ../data --seeds 0 1 2 --output runs/nb201_bench --arch-mode full

Each seed's search is a stage: skipped when its genotype_final.json exists, resumed from its checkpoint
when it was cut short (the wall time of every invocation is added up in the stage's bench_time.json).
Writes results.json, results.md and nb201_search.png (the argmax cell's table accuracy after every epoch,
per seed, with the optimum, GDAS's published 93.61, the random mean and DARTS's 54.30 collapse) into
``--output`` and ends with name=value lines: nb201_mean, nb201_min, nb201_std (CIFAR-10 test accuracy of
the final cells, over seeds), random_mean (the table's exact mean over all cells), optimum,
search_minutes_mean.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):  # run as a file (python bench/nb201_search.py): make the repo importable
    sys.path.insert(0, str(ROOT))

import search_cifar  # noqa: E402
from bench import nb201_ranking  # noqa: E402
from models.nb201.arch import CellGenotype  # noqa: E402
from utils.checkpoint import save_json  # noqa: E402
from utils.errors import UserError, run_cli  # noqa: E402
from models.nb201.table import NB201Table  # noqa: E402

TABLE = ROOT / "nb201_table" / "accuracy.csv.gz"
COLUMNS = {"cifar10": "cifar10_test_200", "cifar100": "cifar100_test_200", "imagenet16": "imagenet16_test_200"}
# published references on this space (CIFAR-10 test, the NAS-Bench-201 paper; GPU searches)
GDAS, DARTS_COLLAPSE = 93.61, 54.30


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", default="./data", help="CIFAR-10 folder (cifar-10-batches-py)")
    p.add_argument("--table", default=str(TABLE), help="NAS-Bench-201 table (arch + accuracy columns; .csv or .csv.gz)")
    p.add_argument("--output", default="runs/nb201_search", help="bench folder (every seed's search inside)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="one search per seed")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    g = p.add_argument_group("the search (search_cifar.py flags; see its --help)")
    g.add_argument("--C", type=int, default=8, help="stem channels of the supernet")
    g.add_argument("--N", type=int, default=1, help="cells per stage of the supernet")
    g.add_argument("--train-subset", type=int, default=15000, help="training images (weights + alpha)")
    g.add_argument("--arch-split", default="5000", help="images of the subset that train alpha")
    g.add_argument("--eval-images", type=int, default=None,
                   help="the search's per-epoch evaluation on this many images of the alpha split (default: all)")
    g.add_argument("--warmup-epochs", type=int, default=10, help="weights-only epochs with uniform paths")
    g.add_argument("--epochs", type=int, default=15, help="search epochs after warm-up")
    g.add_argument("--batch-size", type=int, default=64, help="weight-step batch")
    g.add_argument("--arch-batch-size", type=int, default=64, help="architecture-step batch")
    g.add_argument("--arch-every", type=int, default=1, help="one architecture step every K weight steps")
    g.add_argument("--algo", choices=("gradient", "reinforce"), default="gradient", help="Proxyless-G or -R")
    g.add_argument("--arch-mode", choices=("two", "full"), default="two", help="gradient: sampled pair or all paths")
    g.add_argument("--arch-lr", type=float, default=None, help="Adam lr of alpha (default: the search's)")
    g.add_argument("--lr", type=float, default=0.05, help="weights' peak SGD lr")
    p.add_argument("--ranking-cells", type=int, default=0,
                   help="Kendall tau of the supernet's ranking of this many uniformly drawn cells against the table, "
                        "at the end of warm-up and of the search (bench/nb201_ranking.py; 0: off)")
    g.add_argument("--search-flags", nargs=argparse.REMAINDER, default=[],
                   help="more search_cifar.py flags, e.g. --search-flags --latency-table T.json --target-latency 5 "
                        "(last on the line)")
    return p


def search_argv(args, seed: int, out: Path) -> list[str]:
    argv = ["--space", "nb201", "--data", args.data, "--no-download", "--output", str(out), "--no-progress",
            "--no-tensorboard", "--nb201-table", args.table, "--seed", str(seed), "--C", str(args.C), "--N", str(args.N),
            "--train-subset", str(args.train_subset), "--arch-split", args.arch_split,
            "--warmup-epochs", str(args.warmup_epochs), "--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
            "--arch-batch-size", str(args.arch_batch_size), "--arch-every", str(args.arch_every), "--algo", args.algo,
            "--arch-mode", args.arch_mode, "--lr", str(args.lr)]
    if args.arch_lr is not None:
        argv += ["--arch-lr", str(args.arch_lr)]
    if args.eval_images is not None:
        argv += ["--eval-images", str(args.eval_images)]
    return argv + list(args.search_flags)


def run_search(args, seed: int, out: Path) -> float:
    """The seed's search (run, resumed or found done); returns its wall time in minutes, all invocations.
    With --ranking-cells, the search stops once at the end of warm-up to keep that checkpoint (warmup.pth),
    then resumes: a resumed search continues bit for bit, so the split changes nothing but the time."""
    ledger = out / "bench_time.json"
    spent = json.loads(ledger.read_text())["seconds"] if ledger.is_file() else 0.0
    while not (out / "genotype_final.json").is_file():
        resume = ["--resume"] if (out / "checkpoint.pth").is_file() else []
        split = args.ranking_cells > 0 and not resume and args.warmup_epochs > 0
        t0 = time.perf_counter()
        search_cifar.main(search_cifar.get_args_parser().parse_args(
            search_argv(args, seed, out) + resume + (["--stop-after", str(args.warmup_epochs)] if split else [])))
        spent += time.perf_counter() - t0
        save_json({"seconds": spent}, ledger)
        if not split:
            break
        shutil.copyfile(out / "checkpoint.pth", out / "warmup.pth")
    if not (out / "genotype_final.json").is_file():  # e.g. --search-flags --stop-after
        raise UserError(f"the search in {out} stopped before its last epoch; run the bench again to continue it")
    return spent / 60


def ranking(args, table: NB201Table, out: Path) -> dict[str, float]:
    """Kendall tau of the warm-up and the final supernet (cached in the stage's ranking.json)."""
    cache = out / "ranking.json"
    if not cache.is_file():
        opts = argparse.Namespace(data=args.data, cells=args.ranking_cells, seed=0, eval_images=1000, calib_batches=5)
        datasets: dict = {}
        result = {}
        for name, path in (("warmup", out / "warmup.pth"), ("final", out / "checkpoint.pth")):
            r = nb201_ranking.rank_checkpoint(path, table, opts, datasets)
            result.update({f"kendall_tau_{name}": r["kendall_tau"], f"top_cell_{name}": r["top_cell_table_acc"]})
        save_json(result, cache)
    return json.loads(cache.read_text())


def seed_row(table: NB201Table, out: Path, minutes: float, seed: int) -> dict:
    cell = CellGenotype.from_dict(json.loads((out / "genotype_final.json").read_text()))
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    row = {"seed": seed, "arch": cell.to_string(), "search_minutes": minutes,
           "per_epoch": [r["nb201_cifar10_test"] for r in records]}
    for name, column in COLUMNS.items():
        if column in table.columns:
            acc = table.lookup(cell, column)
            row[name], row[f"{name}_percentile"] = acc, table.percentile(acc, column)
    return row


def summary(table: NB201Table, rows: list[dict]) -> dict[str, float]:
    accs = [r["cifar10"] for r in rows]
    values = table.values("cifar10_test_200")
    out = {"nb201_mean": statistics.mean(accs), "nb201_min": min(accs),
           "nb201_std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
           "random_mean": statistics.mean(values), "optimum": max(values),
           "search_minutes_mean": statistics.mean(r["search_minutes"] for r in rows)}
    for key in ("kendall_tau_warmup", "kendall_tau_final"):
        if all(key in r for r in rows):
            out[f"{key}_mean"] = statistics.mean(r[key] for r in rows)
    return out


def write_report(out: Path, args, rows: list[dict], figures: dict[str, float]) -> None:
    save_json({"settings": {k: v for k, v in vars(args).items()}, "seeds": rows, "summary": figures},
              out / "results.json")
    cols = [c for c in COLUMNS if c in rows[0]]
    taus = [t for t in ("kendall_tau_warmup", "kendall_tau_final") if all(t in r for r in rows)]
    lines = ["| seed | cell | " + " | ".join(f"{c} (pct)" for c in cols) + " | minutes |"
             + "".join(f" {t.replace('kendall_', '')} |" for t in taus),
             "|---|---|" + "---|" * (len(cols) + 1 + len(taus))]
    for r in rows:
        lines.append(f"| {r['seed']} | `{r['arch']}` | "
                     + " | ".join(f"{r[c]:.2f} ({r[c + '_percentile']:.1f})" for c in cols)
                     + f" | {r['search_minutes']:.1f} |" + "".join(f" {r[t]:.3f} |" for t in taus))
    lines += [""] + [f"{k}={v:.4f}" for k, v in figures.items()]
    (out / "results.md").write_text("\n".join(lines) + "\n")
    plot(out / "nb201_search.png", rows, figures, args.warmup_epochs)


def plot(path: Path, rows: list[dict], figures: dict[str, float], warmup: int = 0) -> None:
    """Left: every reference line (down to DARTS's collapse); right: the same curves zoomed on the search.
    Warm-up epochs are left out of the curves: alpha is uniform then, and its argmax is no choice."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    refs = ((figures["optimum"], "optimum", "-"), (GDAS, "GDAS (published, GPU)", "--"),
            (figures["random_mean"], "random cell (mean)", ":"), (DARTS_COLLAPSE, "DARTS collapse (all skip)", "-."))
    curves = [(list(range(warmup + 1, len(r["per_epoch"]) + 1)), r["per_epoch"][warmup:], r["seed"]) for r in rows]
    searched = [v for _, ys, _ in curves for v in ys] or [figures["random_mean"]]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), gridspec_kw={"width_ratios": [1, 1.4]})
    ranges = ((min(DARTS_COLLAPSE, min(searched)) - 3, figures["optimum"] + 2),
              (min(min(searched), figures["random_mean"]) - 0.5, figures["optimum"] + 0.5))
    for ax, (lo, hi) in zip(axes, ranges):
        for xs, ys, seed in curves:
            ax.plot(xs, ys, marker="o", ms=3, label=f"seed {seed}")
        for y, text, style in refs:
            if lo <= y <= hi:
                ax.axhline(y, color="grey", ls=style, lw=1, label=f"{text} {y:.2f}")
        if warmup:
            ax.axvspan(0.5, warmup + 0.5, color="0.93", lw=0)
            ax.text(1, lo + 0.02 * (hi - lo), "warm-up\n(alpha uniform)", fontsize=7, color="dimgrey")
        ax.set_ylim(lo, hi)
        ax.set_xlim(0.5, max(len(r["per_epoch"]) for r in rows) + 0.5)
        ax.set_xlabel("epoch (warm-up included)")
    axes[0].set_ylabel("argmax cell: CIFAR-10 test acc. (%, the table)")
    axes[0].legend(loc="center right", fontsize=7)  # every line (the zoom leaves DARTS out)
    axes[1].set_title("zoomed", fontsize=8)
    fig.suptitle("ProxylessNAS on NAS-Bench-201: the argmax cell after every epoch, judged by the benchmark's table",
                 fontsize=9)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def main(args: argparse.Namespace) -> dict[str, float]:
    if len(set(args.seeds)) != len(args.seeds):
        raise UserError(f"--seeds has repeats: {args.seeds}")
    if args.threads is not None:
        if args.threads < 1:
            raise UserError("--threads must be >= 1")
        import torch
        torch.set_num_threads(args.threads)
    table = NB201Table.load(args.table)  # a bad table: one error line before any search
    out = Path(args.output)
    rows = []
    for seed in args.seeds:
        stage = out / f"search_s{seed}"
        minutes = run_search(args, seed, stage)
        rows.append(seed_row(table, stage, minutes, seed))
        if args.ranking_cells:
            rows[-1].update(ranking(args, table, stage))
        print(f"seed {seed}: {rows[-1]['arch']} cifar10={rows[-1]['cifar10']:.2f} "
              f"({rows[-1]['cifar10_percentile']:.1f} pct) in {minutes:.1f} min", flush=True)
    figures = summary(table, rows)
    write_report(out, args, rows, figures)
    for k, v in figures.items():
        print(f"{k}={v:.4f}")
    return figures


if __name__ == "__main__":
    run_cli(main, get_args_parser())
