"""Search for the devices people ship to, judged on measured latencies: phones, a Raspberry Pi, an FPGA, an ASIC,
desktop CPUs and GPUs (the latency of every NAS-Bench-201 cell on each, HW-NAS-Bench and HELP; MIT).

A file of this layout (``index``, ``arch``, one column of milliseconds per device; the project ships
nb201_table/device_latency.csv.gz) and the accuracy table are an exact judge of a hardware-aware search on
devices no one here owns: a found cell's measured latency and accuracy are looked up, not estimated.

a. Predictor (``--part predictor``): per device and K in ``--samples``, a table fit from K measured cells
   (python -m utils.latency fit; ``--draws`` random draws), Spearman and MAPE (cells >= 0.5 ms) over the cells
   not used in the fit; FLOPs' Spearman and HELP's Table 3 beside them; ``--all-cells`` devices also fit to
   every cell.
b. Constrained search (``--part search``): for every ``--constraints`` pair DEVICE:MS (or DEVICE:pP, the P-th
   percentile of the device's measured latencies), a table fit from ``--fit-samples`` measured cells (one
   fixed draw), a search of the bench's proxy supernet (bench/nb201_search.py's flags) with that table and
   the constraint as --target-latency (less the table's margin, utils/latency_fit.py); reported per pair: the
   found cell, its measured latency and ratio to the constraint, CIFAR-10 / CIFAR-100 table accuracy, the best
   cell within the constraint (oracle), the regret, the mean accuracy of the cells within +-5 % of its measured
   latency, and HELP's figure.
c. Specialization (``--part specialize``): one cell searched for each of ``--specialize`` devices at that
   device's ``--specialize-pct`` percentile; the table of every found cell's measured latency on every one
   of those devices, and on which devices each cell is the best of them within the device's constraint.

The warm-up of the supernet does not depend on the target: each seed warms up once (``OUTPUT/warmup_sS``,
the search stopped at the end of its warm-up) and every search starts from it (search_cifar.py
--from-warmup).  Every stage is skipped when its result exists, so an interrupted bench continues.

    python bench/nb201_devices.py --data ../data --part predictor
    python bench/nb201_devices.py --data ../data --output runs/nb201_devices --epochs 8

Ends with name=value lines: spearman_k<K>_<device>, mape_k<K>_<device>, spearman_flops_<device>,
spearman_k<K>_mean (over HELP's six test devices), spearman_all_<device>, help_beaten_k10 (of those six),
violations, regret_mean (the 15 HELP pairs), regret_mean_all, specialized_best (cells best on their own device).
"""
from __future__ import annotations

import argparse
import io
import json
import math
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):  # run as a file: make the repo importable
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402

from bench import nb201_search  # noqa: E402
from models.nb201.arch import PRIMITIVES, CellGenotype  # noqa: E402
from models.nb201.space import NB201  # noqa: E402
from utils.checkpoint import save_json  # noqa: E402
from utils.errors import UserError, run_cli  # noqa: E402
from utils.latency_fit import Measurements, fit_table, scores  # noqa: E402
from utils.latency_table import LatencyTable, group_costs  # noqa: E402
from models.nb201.table import NB201Table, read_text  # noqa: E402

MEASUREMENTS = ROOT / "nb201_table" / "device_latency.csv.gz"
BAND = 0.05  # "equal latency": within +-5 % of the found cell's measured latency
# HELP (Lee et al., NeurIPS 2021), Table 3: Spearman of predicted vs measured latency from 10 cells of the device
HELP_T3 = {"titan_rtx_256": 0.987, "gold_6226": 0.989, "pixel2": 0.802, "raspi4": 0.890, "eyeriss": 0.940, "fpga": 0.985}
FLOPS_T3 = {"titan_rtx_256": 0.950, "gold_6226": 0.826, "pixel2": 0.765, "raspi4": 0.846, "eyeriss": 0.437, "fpga": 0.900}
# HELP, Table 4: (device, constraint ms) -> (found cell's measured latency, its CIFAR-100 accuracy)
HELP_T4 = {("titan_rtx_256", 18): (17.8, 69.7), ("titan_rtx_256", 21): (18.9, 71.5), ("titan_rtx_256", 25): (24.2, 71.8),
           ("gold_6226", 8): (8.0, 67.3), ("gold_6226", 11): (10.7, 70.2), ("gold_6226", 14): (14.3, 72.1),
           ("pixel2", 14): (13.0, 69.7), ("pixel2", 18): (19.0, 71.8), ("pixel2", 22): (25.0, 73.2),
           ("eyeriss", 5): (3.9, 71.5), ("eyeriss", 7): (5.1, 71.8), ("eyeriss", 9): (9.1, 73.5),
           ("fpga", 4): (3.8, 70.2), ("fpga", 5): (4.7, 71.8), ("fpga", 6): (7.4, 73.5)}
DEFAULT_CONSTRAINTS = [f"{d}:{c}" for d, c in HELP_T4] + ["pixel3:p25", "pixel3:p50", "raspi4:p25", "raspi4:p50"]


def get_args_parser() -> argparse.ArgumentParser:
    p = nb201_search.get_args_parser()
    p.description = __doc__.split("\n\n")[0]
    p.set_defaults(output="runs/nb201_devices", seeds=[0])
    g = p.add_argument_group("devices")
    g.add_argument("--measurements", default=str(MEASUREMENTS),
                   help="CSV (.csv or .csv.gz): arch, then one column of measured latency (ms) per device")
    g.add_argument("--part", nargs="+", choices=("predictor", "search", "specialize"),
                   default=["predictor", "search", "specialize"], help="which parts to run")
    g.add_argument("--devices", nargs="+", default=None,
                   help="predictor: the device columns (default: every column of --measurements)")
    g.add_argument("--samples", type=int, nargs="+", default=[10, 20, 50, 100, 200],
                   help="predictor: K, the measured cells a table is fit from")
    g.add_argument("--draws", type=int, default=5, help="predictor: random draws per device and K (mean reported)")
    g.add_argument("--all-cells", nargs="*", default=["pixel3"],
                   help="predictor: devices also fit to every cell (Spearman over all)")
    g.add_argument("--constraints", nargs="+", default=DEFAULT_CONSTRAINTS, metavar="DEVICE:MS",
                   help="search: DEVICE:MS, or DEVICE:pP for the P-th percentile of the device's measured latencies")
    g.add_argument("--fit-samples", type=int, default=100, help="search: measured cells the device's table is fit from")
    g.add_argument("--fit-seed", type=int, default=0, help="search: the draw of those cells")
    g.add_argument("--specialize", nargs="+", default=["pixel3", "gold_6226", "titan_rtx_256", "fpga"],
                   help="specialize: the devices, one search each")
    g.add_argument("--specialize-pct", type=float, default=30.0, help="specialize: each device's constraint percentile")
    g.add_argument("--latency-loss", choices=("add", "mul", "hinge"), default="hinge", help="the search's latency loss")
    g.add_argument("--latency-lambda", type=float, default=0.1, help="lambda of the add / hinge loss")
    g.add_argument("--plot", default=None, help="the picture (default: OUTPUT/nb201_devices.png)")
    return p


# ------------------------------------------------------------------ data
def read_devices(path: str | Path) -> tuple[list[CellGenotype], dict[str, np.ndarray]]:
    """Every row's cell and each device column (ms).  Any file of this layout: arch, then numeric columns."""
    import csv

    path = Path(path)
    try:
        raw = read_text(path)
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read --measurements {path}: {getattr(e, 'strerror', None) or e}") from None
    reader = csv.DictReader(io.StringIO(raw))
    if not reader.fieldnames or "arch" not in reader.fieldnames:
        raise UserError(f"--measurements {path} needs an 'arch' column and one column per device")
    devices = [c for c in reader.fieldnames if c not in ("index", "arch")]
    cells, cols = [], {d: [] for d in devices}
    for n, row in enumerate(reader, start=2):
        try:
            cells.append(CellGenotype.from_string(row["arch"]))
            for d in devices:
                cols[d].append(float(row[d]))
        except (ValueError, TypeError) as e:
            raise UserError(f"--measurements {path} line {n}: {e}") from None
    if not cells or not devices:
        raise UserError(f"--measurements {path} has no rows or no device columns")
    return cells, {d: np.array(v) for d, v in cols.items()}


def indices(cells: list[CellGenotype]) -> np.ndarray:
    return np.array([[PRIMITIVES.index(op) for op in c.ops] for c in cells], dtype=np.int64)


def predict_all(table: LatencyTable, idx: np.ndarray) -> np.ndarray:
    import torch
    return group_costs(table, NB201, table.macro, PRIMITIVES).predict(torch.from_numpy(idx)).numpy()


def fit_rows(cells, ms: np.ndarray, pick: np.ndarray, device: str) -> LatencyTable:
    m = Measurements([cells[i] for i in pick], ms[pick], [int(i) + 2 for i in pick], device, device)
    return fit_table(m, NB201, NB201.macro(), device_name=device)


def flops(cells: list[CellGenotype]) -> np.ndarray:
    """Multiply-adds of each cell's network (C=16, N=5, 32 px), counted once per distinct op multiset."""
    from models import multiply_adds

    cache, out = {}, []
    for c in cells:
        key = tuple(sorted(c.ops))
        if key not in cache:
            cache[key] = multiply_adds(c, macro=NB201.macro())
        out.append(cache[key])
    return np.array(out, dtype=np.float64)


# ------------------------------------------------------------------ a. predictor
def predictor(args, cells, lat) -> dict[str, float]:
    idx, figures, rows = indices(cells), {}, []
    devices = args.devices or list(lat)
    unknown = [d for d in devices + list(args.all_cells) if d not in lat]
    if unknown:
        raise UserError(f"--devices / --all-cells: no column {unknown[0]!r} in --measurements (its columns: "
                        f"{', '.join(lat)})")
    fl = flops(cells)
    for d in devices:
        y = lat[d]
        figures[f"spearman_flops_{d}"] = float(stats.spearmanr(fl, y)[0])
        for k in args.samples:
            rhos, mapes = [], []
            for draw in range(args.draws):
                pick = np.random.default_rng(draw).choice(len(y), size=k, replace=False)
                pred = predict_all(fit_rows(cells, y, pick, d), idx)
                rest = np.setdiff1d(np.arange(len(y)), pick)
                s = scores(pred[rest], y[rest])
                rhos.append(s["spearman"])
                mapes.append(s["mape"])
            figures[f"spearman_k{k}_{d}"], figures[f"mape_k{k}_{d}"] = statistics.mean(rhos), statistics.mean(mapes)
            rows.append({"device": d, "k": k, "spearman": rhos, "mape": mapes})
            print(f"{d} K={k}: Spearman {figures[f'spearman_k{k}_{d}']:.4f} MAPE {figures[f'mape_k{k}_{d}']:.2f} % "
                  f"(FLOPs {figures[f'spearman_flops_{d}']:.3f}"
                  + (f", HELP K=10 {HELP_T3[d]:.3f}" if d in HELP_T3 else "") + ")", flush=True)
    for k in args.samples:
        if all(f"spearman_k{k}_{d}" in figures for d in HELP_T3):
            figures[f"spearman_k{k}_mean"] = statistics.mean(figures[f"spearman_k{k}_{d}"] for d in HELP_T3)
    if all(f"spearman_k10_{d}" in figures for d in HELP_T3):
        figures["help_beaten_k10"] = float(sum(figures[f"spearman_k10_{d}"] >= HELP_T3[d] for d in HELP_T3))
    for d in args.all_cells:
        table = fit_rows(cells, lat[d], np.arange(len(cells)), d)
        figures[f"spearman_all_{d}"] = float(stats.spearmanr(predict_all(table, idx), lat[d])[0])
        print(f"{d} every cell as data: Spearman {figures[f'spearman_all_{d}']:.4f} "
              f"({table.meta['fit']['level_name']})", flush=True)
    return figures, rows


# ------------------------------------------------------------------ b, c. searches
def parse_constraint(text: str, lat: dict[str, np.ndarray]) -> tuple[str, str, float]:
    """'DEVICE:MS' or 'DEVICE:pP' -> (device, label, ms)."""
    device, _, value = text.partition(":")
    if device not in lat or not value:
        raise UserError(f"--constraints {text!r}: expected DEVICE:MS or DEVICE:pP with a device of --measurements "
                        f"({', '.join(lat)})")
    try:
        if value.startswith("p"):
            pct = float(value[1:])
            if not 0 < pct < 100:
                raise ValueError
            return device, value, float(np.percentile(lat[device], pct))
        ms = float(value)
        if not ms > 0:
            raise ValueError
        return device, f"{ms:g}", ms
    except ValueError:
        raise UserError(f"--constraints {text!r}: the constraint must be a positive number of ms or p1..p99") from None


def device_table(args, cells, lat, device: str, out: Path) -> Path:
    """The device's table fit from --fit-samples measured cells (one fixed draw), cached."""
    path = out / "tables" / f"{device}_k{args.fit_samples}_s{args.fit_seed}.json"
    if not path.is_file():
        y = lat[device]
        pick = np.random.default_rng(args.fit_seed).choice(len(y), size=args.fit_samples, replace=False)
        path.parent.mkdir(parents=True, exist_ok=True)
        fit_rows(cells, y, pick, device).save(path)
    return path


def warmup(args, seed: int, out: Path) -> Path:
    """The seed's warm-up (the search stopped at its end), run or found done; its checkpoint."""
    import search_cifar
    from utils.checkpoint import load_checkpoint

    stage = out / f"warmup_s{seed}"
    ckpt = stage / "checkpoint.pth"
    if not (ckpt.is_file() and load_checkpoint(ckpt)["epoch"] >= args.warmup_epochs):
        argv = nb201_search.search_argv(args, seed, stage) + ["--stop-after", str(args.warmup_epochs)]
        search_cifar.main(search_cifar.get_args_parser().parse_args(argv + (["--resume"] if ckpt.is_file() else [])))
    return ckpt


def search(args, seed: int, stage: Path, table: Path, target: float, warm: Path) -> CellGenotype:
    """One constrained search from the warm-up (resumed or found done); the found cell."""
    saved = list(args.search_flags)
    args.search_flags = saved + ["--from-warmup", str(warm), "--latency-table", str(table), "--target-latency",
                                 f"{target:.6f}", "--latency-loss", args.latency_loss, "--latency-lambda",
                                 str(args.latency_lambda)]
    try:
        nb201_search.run_search(args, seed, stage)
    finally:
        args.search_flags = saved
    return CellGenotype.from_dict(json.loads((stage / "genotype_final.json").read_text()))


def judge(cell: CellGenotype, device: str, ms: float, lat, acc, acc100, cells, where: dict[str, int]) -> dict:
    i = where[cell.to_string()]
    y = lat[device]
    within = y <= ms
    near = np.abs(y / y[i] - 1) <= BAND
    best = int(np.argmax(np.where(within, acc, -np.inf)))
    return {"arch": cell.to_string(), "measured_ms": float(y[i]), "ratio": float(y[i] / ms), "within": bool(y[i] <= ms),
            "cifar10": float(acc[i]), "cifar100": float(acc100[i]), "oracle_cifar10": float(acc[best]),
            "oracle_cifar100": float(acc100[best]), "oracle_arch": cells[best].to_string(),
            "regret": float(acc[best] - acc[i]), "equal_latency_cifar10": float(acc[near].mean())}


def run_searches(args, cells, lat, acc, acc100, out: Path) -> tuple[dict[str, float], list[dict]]:
    where = {c.to_string(): i for i, c in enumerate(cells)}
    pairs = [parse_constraint(t, lat) for t in args.constraints]
    rows = []
    for seed in args.seeds:
        warm = warmup(args, seed, out)
        for device, label, ms in pairs:
            table = device_table(args, cells, lat, device, out)
            cell = search(args, seed, out / f"search_{device}_{label}_s{seed}", table, ms, warm)
            r = {"device": device, "constraint": label, "constraint_ms": ms, "seed": seed,
                 **judge(cell, device, ms, lat, acc, acc100, cells, where)}
            t = LatencyTable.load(table).meta["fit"]
            r["table_cv_mape"], r["help"] = t["cv"]["mape"], HELP_T4.get((device, float(label)) if label[0] != "p" else None)
            rows.append(r)
            print(f"{device} <= {ms:.3f} ms (seed {seed}): {r['arch']} measured {r['measured_ms']:.3f} ms "
                  f"({r['ratio']:.3f} x), CIFAR-10 {r['cifar10']:.2f} / CIFAR-100 {r['cifar100']:.2f}, oracle "
                  f"{r['oracle_cifar10']:.2f} / {r['oracle_cifar100']:.2f}, regret {r['regret']:.2f}, equal latency "
                  f"{r['equal_latency_cifar10']:.2f}" + (f"; HELP {r['help'][0]} ms, CIFAR-100 {r['help'][1]}" if r["help"] else ""),
                  flush=True)
    helps = [r for r in rows if r["help"]]
    figures = {"violations": float(sum(not r["within"] for r in rows)), "searches": float(len(rows)),
               "regret_mean_all": statistics.mean(r["regret"] for r in rows)}
    if helps:
        figures["regret_mean"] = statistics.mean(r["regret"] for r in helps)
        figures["help_violations"] = float(sum(r["help"][0] > r["constraint_ms"] for r in helps))
        figures["cifar100_mean"] = statistics.mean(r["cifar100"] for r in helps)
        figures["help_cifar100_mean"] = statistics.mean(r["help"][1] for r in helps)
    return figures, rows


def specialize(args, cells, lat, acc, acc100, out: Path) -> tuple[dict[str, float], list[dict]]:
    where = {c.to_string(): i for i, c in enumerate(cells)}
    devices = args.specialize
    for d in devices:
        if d not in lat:
            raise UserError(f"--specialize: no column {d!r} in --measurements ({', '.join(lat)})")
    limit = {d: float(np.percentile(lat[d], args.specialize_pct)) for d in devices}
    seed = args.seeds[0]
    warm = warmup(args, seed, out)
    rows = []
    for d in devices:
        table = device_table(args, cells, lat, d, out)
        cell = search(args, seed, out / f"specialize_{d}_p{args.specialize_pct:g}_s{seed}", table, limit[d], warm)
        i = where[cell.to_string()]
        rows.append({"searched_for": d, "arch": cell.to_string(), "cifar10": float(acc[i]), "cifar100": float(acc100[i]),
                     "measured_ms": {e: float(lat[e][i]) for e in devices}, "constraint_ms": limit})
    best_on = {}
    for e in devices:  # the best (CIFAR-10) of the four cells among those within e's constraint
        ok = [r for r in rows if r["measured_ms"][e] <= limit[e]]
        best_on[e] = max(ok, key=lambda r: r["cifar10"])["searched_for"] if ok else None
    for r in rows:
        r["best_on"] = [e for e in devices if best_on[e] == r["searched_for"]]
    figures = {"specialized_best": float(sum(r["searched_for"] in r["best_on"] for r in rows)),
               "specialized_within_own": float(sum(r["measured_ms"][r["searched_for"]] <= limit[r["searched_for"]]
                                                   for r in rows))}
    return figures, rows


# ------------------------------------------------------------------ report
def report(out: Path, pred_rows, search_rows, spec_rows, figures, args) -> str:
    lines = []
    if pred_rows:
        ks = sorted({r["k"] for r in pred_rows})
        devs = list(dict.fromkeys(r["device"] for r in pred_rows))
        lines += ["| device | " + " | ".join(f"K={k}" for k in ks) + " | FLOPs | HELP (K=10) |",
                  "|---|" + "---|" * (len(ks) + 2)]
        for d in devs:
            lines.append(f"| {d} | " + " | ".join(f"{figures[f'spearman_k{k}_{d}']:.3f} ({figures[f'mape_k{k}_{d}']:.1f} %)"
                                                  for k in ks)
                         + f" | {figures[f'spearman_flops_{d}']:.3f} | {HELP_T3.get(d, '')} |")
        lines.append("")
    if search_rows:
        lines += ["| device | constraint ms | found cell | measured ms (ratio) | C-10 / C-100 | oracle C-10 / C-100 | "
                  "regret | equal latency C-10 | HELP ms / C-100 |", "|---|---|---|---|---|---|---|---|---|"]
        for r in search_rows:
            h = f"{r['help'][0]} / {r['help'][1]}" if r["help"] else ""
            lines.append(f"| {r['device']} | {r['constraint_ms']:.2f} ({r['constraint']}) | `{r['arch']}` | "
                         f"{r['measured_ms']:.2f} ({r['ratio']:.3f}) | {r['cifar10']:.2f} / {r['cifar100']:.2f} | "
                         f"{r['oracle_cifar10']:.2f} / {r['oracle_cifar100']:.2f} | {r['regret']:.2f} | "
                         f"{r['equal_latency_cifar10']:.2f} | {h} |")
        lines.append("")
    if spec_rows:
        devs = list(spec_rows[0]["measured_ms"])
        lim = spec_rows[0]["constraint_ms"]
        lines += ["| searched for | cell | C-10 | " + " | ".join(f"{d} (<= {lim[d]:.2f})" for d in devs) + " | best of the four on |",
                  "|---|---|---|" + "---|" * (len(devs) + 1)]
        for r in spec_rows:
            lines.append(f"| {r['searched_for']} | `{r['arch']}` | {r['cifar10']:.2f} | "
                         + " | ".join(f"{r['measured_ms'][d]:.2f}{'' if r['measured_ms'][d] <= lim[d] else ' (over)'}"
                                      for d in devs) + f" | {', '.join(r['best_on']) or '-'} |")
        lines.append("")
    lines += [f"{k}={v:.4f}" for k, v in figures.items()]
    text = "\n".join(lines) + "\n"
    (out / "results.md").write_text(text)
    return text


def plot(path: Path, cells, lat, acc, search_rows, spec_rows) -> None:
    """Per device: every cell's measured latency vs CIFAR-10 accuracy (grey), the oracle front, the found cells."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker  # noqa: F401 (matplotlib.ticker below)

    devices = list(dict.fromkeys([r["device"] for r in search_rows] + [r["searched_for"] for r in spec_rows]))
    if not devices:
        return
    where = {c.to_string(): i for i, c in enumerate(cells)}
    cols = min(3, len(devices))
    fig, axes = plt.subplots(math.ceil(len(devices) / cols), cols, figsize=(4.2 * cols, 3.4 * math.ceil(len(devices) / cols)),
                             squeeze=False)
    for ax, d in zip(axes.flat, devices):
        y = lat[d]
        ax.scatter(y, acc, s=1, c="0.8", rasterized=True, label="every cell (measured)")
        order = np.argsort(y)
        front = np.maximum.accumulate(acc[order])
        ax.step(y[order], front, where="post", c="k", lw=0.8, label="oracle front")
        for r in (r for r in search_rows if r["device"] == d):
            i = where[r["arch"]]
            ax.axvline(r["constraint_ms"], c="tab:blue" if r["within"] else "tab:red", lw=0.6, ls="--")
            ax.scatter([y[i]], [acc[i]], s=28, marker="o", c="tab:blue" if r["within"] else "tab:red", zorder=3)
        for r in (r for r in spec_rows if r["searched_for"] == d):
            i = where[r["arch"]]
            ax.scatter([y[i]], [acc[i]], s=40, marker="*", c="tab:orange", zorder=3, label="specialized search")
        ax.set_xscale("log")  # from the 2nd percentile: the cells a device's compiler removes whole sit near 0
        ax.set_xlim(float(np.percentile(y, 2)) * 0.9, float(y.max()) * 1.05)
        ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.set_ylim(max(80.0, float(np.percentile(acc, 5))), float(acc.max()) + 0.5)
        ax.set_title(d, fontsize=9)
        ax.set_xlabel("measured latency (ms)", fontsize=8)
        ax.set_ylabel("CIFAR-10 test acc. (%)", fontsize=8)
    for ax in list(axes.flat)[len(devices):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=6, loc="lower right")
    fig.suptitle("Searches for measured devices (dots: found cells, blue within the constraint (dashed), red over)",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(args: argparse.Namespace) -> dict[str, float]:
    if len(set(args.seeds)) != len(args.seeds):
        raise UserError(f"--seeds has repeats: {args.seeds}")
    if args.draws < 1 or any(k < 2 for k in args.samples) or args.fit_samples < 2:
        raise UserError("--draws must be >= 1, --samples and --fit-samples >= 2")
    if args.threads is not None:
        import torch
        torch.set_num_threads(args.threads)
    cells, lat = read_devices(args.measurements)
    if any(k > len(cells) for k in args.samples + [args.fit_samples]):
        raise UserError(f"--samples / --fit-samples larger than the {len(cells)} rows of --measurements")
    need = ("cifar10_test_200", "cifar100_test_200")
    table = NB201Table.load(args.table, need=need)
    acc, acc100 = (np.array([table.lookup(c, col) for c in cells]) for col in need)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    figures, pred_rows, search_rows, spec_rows = {}, [], [], []
    if "predictor" in args.part:
        f, pred_rows = predictor(args, cells, lat)
        figures.update(f)
    if "search" in args.part:
        f, search_rows = run_searches(args, cells, lat, acc, acc100, out)
        figures.update(f)
    if "specialize" in args.part:
        f, spec_rows = specialize(args, cells, lat, acc, acc100, out)
        figures.update(f)
    save_json({"settings": vars(args), "predictor": pred_rows, "searches": search_rows, "specialization": spec_rows,
               "summary": figures}, out / "results.json")
    print(report(out, pred_rows, search_rows, spec_rows, figures, args), end="")
    if search_rows or spec_rows:
        plot(Path(args.plot) if args.plot else out / "nb201_devices.png", cells, lat, acc, search_rows, spec_rows)
    return figures


if __name__ == "__main__":
    run_cli(main, get_args_parser())
