"""How long does `python export_onnx.py` take, and where does the time go?  The whole command, per exporter.

    python bench/export_time.py                           # the released network (proxyless_cifar, B=18 F=400)
    python bench/export_time.py --busy 1                  # the same beside one busy process (a spinning loop)
    python bench/export_time.py --exporters torchscript dynamo --genotype my_search.json

Each exporter's command (``python export_onnx.py --genotype G --exporter E``, random weights, BN
calibrated, the script's defaults otherwise: ``--threads auto``, latency timed within ``--latency-seconds``)
runs as a subprocess and is timed from start to exit: what a user waits for.  The script prints the
seconds of its own stages (build, BN calibration, export, check, latency); start-up (interpreter, imports)
is the rest.  ``--busy N`` starts N processes that spin on a core beside each command (a shared machine).

Ends with name=value lines: command_s (the default exporter's whole command; target <= 60 s for the
released network), command_s_<exporter>, stage_<stage>_s (the default exporter's stages, start-up
included), ort_ms_<exporter> (onnxruntime batch-1 median as the command measured it) and
command_<exporter>_over_torchscript.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):  # run as a file (python bench/export_time.py): make the repo importable
    sys.path.insert(0, str(ROOT))

from bench._common import print_figures  # noqa: E402
from utils.errors import UserError, run_cli  # noqa: E402

EXPORTERS = ("torchscript", "dynamo")  # export_onnx.py's --exporter choices
DEFAULT = "torchscript"  # export_onnx.py's default
TARGETS = {"command_s": 60.0}  # the released network, the whole default command


def _spin(stop) -> None:
    while not stop.is_set():
        pass


def run_command(argv: list[str], busy: int) -> tuple[float, str]:
    """Wall seconds and stdout of ``python export_onnx.py argv`` with ``busy`` spinning processes beside it."""
    stop = mp.Event()
    spinners = [mp.Process(target=_spin, args=(stop,), daemon=True) for _ in range(busy)]
    for s in spinners:
        s.start()
    try:
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, str(ROOT / "export_onnx.py"), *argv], cwd=ROOT,
                              capture_output=True, text=True)
        wall = time.perf_counter() - t0
    finally:
        stop.set()
        for s in spinners:
            s.join()
    if proc.returncode != 0:
        raise UserError(f"export_onnx.py {' '.join(argv)} failed: {(proc.stderr or proc.stdout).strip()[-500:]}")
    return wall, proc.stdout


def parse_output(stdout: str) -> tuple[dict[str, float], float | None, str]:
    """(stages, onnxruntime ms or None, threads) from export_onnx.py's output."""
    m = re.search(r"^stages \(s\): (.*)$", stdout, re.M)
    if m is None:
        raise UserError("export_onnx.py printed no 'stages (s):' line")
    stages = {k: float(v) for k, v in (kv.split("=") for kv in m.group(1).split())}
    lat = re.search(r"onnxruntime ([0-9.]+) ms", stdout)
    thr = re.search(r"; (\S+) threads", stdout)
    return stages, float(lat.group(1)) if lat else None, thr.group(1) if thr else "?"


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--genotype", default="proxyless_cifar", help="named genotype, NAS-Bench-201 string or JSON file")
    p.add_argument("--exporters", nargs="+", choices=EXPORTERS, default=[DEFAULT], help="exporters to time")
    p.add_argument("--busy", type=int, default=0, help="spinning processes beside each command (a busy machine)")
    p.add_argument("--export-flags", nargs=argparse.REMAINDER, default=[],
                   help="more export_onnx.py flags for every command, e.g. --export-flags --threads 1 (last)")
    return p


def main(args: argparse.Namespace) -> dict[str, float]:
    if args.busy < 0:
        raise UserError("--busy must be >= 0")
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.exporters:
            argv = ["--genotype", args.genotype, "--exporter", name, "--output", str(Path(tmp) / f"{name}.onnx"),
                    *args.export_flags]
            wall, stdout = run_command(argv, args.busy)
            stages, ort_ms, threads = parse_output(stdout)
            stages = {"start_up": wall - sum(stages.values()), **stages}
            rows[name] = {"wall": wall, "stages": stages, "ort_ms": ort_ms, "threads": threads}
            print(f"{name}: {wall:.1f} s ({threads} threads, {args.busy} busy) -- "
                  + ", ".join(f"{k} {v:.1f}" for k, v in stages.items()), flush=True)
    figures = {}
    for name, r in rows.items():
        figures[f"command_s_{name}"] = r["wall"]
        if r["ort_ms"] is not None:
            figures[f"ort_ms_{name}"] = r["ort_ms"]
    if DEFAULT in rows:
        figures["command_s"] = rows[DEFAULT]["wall"]
        figures.update({f"stage_{k}_s": v for k, v in rows[DEFAULT]["stages"].items()})
        for name, r in rows.items():
            if name != DEFAULT:
                figures[f"command_{name}_over_{DEFAULT}"] = r["wall"] / rows[DEFAULT]["wall"]
    released = args.genotype == "proxyless_cifar" and not args.export_flags
    print_figures(figures, TARGETS if released and "command_s" in figures else None)
    return figures


if __name__ == "__main__":
    run_cli(main, get_args_parser())
