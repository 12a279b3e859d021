"""Export a derived CIFAR-10 network to ONNX and check it against PyTorch with onnxruntime.

The network is built from a genotype (and the weights of a train checkpoint when given), put in
eval mode and exported with a dynamic batch axis; the file is checked with ``onnx.checker``, run in
onnxruntime (CPU) at several batch sizes and compared with PyTorch on the same random inputs.

    python export_onnx.py --checkpoint runs/train/best.pth --output proxyless_cifar.onnx
    python export_onnx.py --genotype my_search.json --output random_init.onnx   # random weights
    python export_onnx.py --space nb201 --C 16 --N 5 --genotype '|nor_conv_3x3~0|+|...' --output cell.onnx
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn as nn

import genotypes
from models.spaces import DEFAULT_GENOTYPES
from models import build_net, count_parameters, genotype_from_dict
from models.tree.genotype import Genotype
from models.tree.arch import EDGE_NAMES
from utils.errors import UserError, run_cli
from utils.checkpoint import load_checkpoint, load_fitting
from utils.data import CIFAR10, DatasetInfo
from utils.faults import WriteError, check_writable, replacing
from utils.latency import ort_options
from utils.device import idle_cores, seed_everything
from utils.space_args import add_space_flags, chosen_space, resolve_space
from utils.onnx_export import INPUT_NAME, OUTPUT_NAME, calibrate_bn, export_torchscript
from utils.onnx_export import example_input as _example
from utils.run import auto_or

_PREFIXES = ("module.", "_orig_mod.")  # DDP / torch.compile wrappers, in a bare state_dict


# ------------------------------------------------------------------ checkpoint -> network
def _genotype_diff(a, b) -> str:
    if a == b:
        return ""
    if not (isinstance(a, Genotype) and isinstance(b, Genotype)):
        return f"{a.describe()} vs {b.describe()}"
    if (a.B, a.F) != (b.B, b.F):
        return f"B={a.B} F={a.F} vs B={b.B} F={b.F}"
    for k, (ra, rb) in enumerate(zip(a.ops, b.ops)):
        for e, (x, y) in enumerate(zip(ra, rb)):
            if x != y:
                return f"block {k} edge {EDGE_NAMES[e]}: {x} vs {y}"
    return ""


def read_checkpoint(path: str) -> tuple[dict[str, torch.Tensor], object, DatasetInfo, str | None, dict | None]:
    """(state_dict, the genotype stored with it or None, its data set, space name, network size) from a train
    checkpoint or a bare state_dict (CIFAR-sized images; the classes counted from the classifier's weight)."""
    ckpt = load_checkpoint(path)
    if not isinstance(ckpt, dict):
        raise UserError(f"--checkpoint {path}: expected a train checkpoint or a state_dict, got {type(ckpt).__name__}")
    if ckpt.get("kind") == "search":
        raise UserError(f"--checkpoint {path} is a search checkpoint (a supernet); export takes a derived network: "
                        f"a train checkpoint (train_cifar.py RUN_DIR/best.pth or last.pth)")
    space, macro = ckpt.get("space"), ckpt.get("macro")
    if "model" in ckpt:
        state, stored, data = ckpt["model"], ckpt.get("genotype"), DatasetInfo.from_dict(ckpt.get("dataset"))
        stored = genotype_from_dict(stored) if stored is not None else None
    else:
        state, stored, data = ckpt, None, CIFAR10
    if not state or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise UserError(f"--checkpoint {path}: its weights are not a state_dict (name -> tensor)")
    for prefix in _PREFIXES:
        if all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    if "model" not in ckpt and isinstance(state.get("classifier.weight"), torch.Tensor):
        data = dataclasses.replace(data, name="unknown", num_classes=int(state["classifier.weight"].shape[0]))
    return state, stored, data, space, macro




def load_network(genotype_arg: str | None, checkpoint: str | None,
                 space_flags: argparse.Namespace | None = None, stages: dict | None = None) -> nn.Module:
    """The derived network in eval mode: the checkpoint's weights, or random ones (BN calibrated).
    space_flags: --space and the size flags (None: none given); stages: gets the BN calibration's seconds."""
    state, stored, data, space, macro = read_checkpoint(checkpoint) if checkpoint else (None, None, CIFAR10, None, None)
    genotype = genotypes.get(genotype_arg) if genotype_arg is not None else stored
    if genotype_arg is not None and stored is not None:
        diff = _genotype_diff(genotype, stored)
        if diff:
            raise UserError(f"--checkpoint {checkpoint} was trained with another genotype than --genotype "
                            f"{genotype_arg} (first difference: {diff}); leave out --genotype to use its own")
    flags = space_flags or argparse.Namespace()
    if genotype is None:
        genotype = genotypes.get(DEFAULT_GENOTYPES[chosen_space(flags, None, space).name])
    space, macro = resolve_space(flags, genotype, space, macro)
    if checkpoint is None:  # random weights: the data the space's networks are meant for
        data = dataclasses.replace(data, name="unknown", image_size=space.data_size[0], num_classes=space.data_size[1])
    model = build_net(genotype, data.num_classes, image_size=data.image_size, macro=macro)
    if state is None:
        t = time.perf_counter()
        calibrate_bn(model)
        if stages is not None:
            stages["bn_calibration"] = time.perf_counter() - t
    else:
        load_fitting(model, state, f"--checkpoint {checkpoint}", hint="pass the --genotype it was trained with")
    return model.eval()


# ------------------------------------------------------------------ export and check
EXPORTERS = ("torchscript", "dynamo")
EXPORTER_HELP = (
    "torchscript (default): torch.onnx.export(dynamo=False), traced, with the batch axis declared dynamic; export "
    "and check of the released network (B=18 F=400) took 9-21 s on our 2-core CPU. dynamo: the torch.export-based "
    "exporter with its graph optimizer, torch's supported path (the TorchScript exporter is deprecated) that proves "
    "the batch axis dynamic, but 7-11x slower there (105-154 s) for a file that onnxruntime ran at most 5 %% faster "
    "(docs/export.md, bench/export_time.py). Either file passes the same checks: onnx.checker, a symbolic batch axis, and "
    "onnxruntime within --atol at every --batch-sizes")


def export(model: nn.Module, path: Path, opset: int | None, exporter: str = "torchscript") -> None:
    """Write ``model`` as ONNX with a symbolic batch axis (see EXPORTER_HELP for the choice).

    A traced graph could bake the example's batch size into a shape: main() runs onnxruntime at
    several batch sizes (default 1 and 8, the example is 2), which would catch it."""
    if exporter == "dynamo":
        export_dynamo(model, path, opset, optimize=True)
    elif exporter == "torchscript":
        export_torchscript(model, path, opset)
    else:
        raise UserError(f"unknown exporter {exporter!r}; valid: {', '.join(EXPORTERS)}")


def export_dynamo(model: nn.Module, path: Path, opset: int | None, optimize: bool = True) -> None:
    """torch.export proves the batch axis dynamic: a model that bakes the batch size into a shape fails
    with a constraint error.  optimize=True (onnxscript's graph optimizer) takes ~40 % of the export time
    and cuts the released network's ~8,600 nodes to ~2,700; onnxruntime fuses the rest itself at load."""
    batch = torch.export.Dim("batch", min=1, max=4096)
    torch.onnx.export(model, (_example(model),), str(path), dynamo=True, input_names=[INPUT_NAME],
                      output_names=[OUTPUT_NAME], dynamic_shapes={"x": {0: batch}}, opset_version=opset,
                      external_data=False, optimize=optimize)


def check_onnx(model: nn.Module, out: Path, batch_sizes: list[int], atol: float, threads: int, seed: int
               ) -> tuple[ort.InferenceSession, dict]:
    """onnx.checker (full), a symbolic batch axis, and onnxruntime against PyTorch at each batch size
    (max |difference| of the logits <= atol, else a UserError).  Returns the session and the figures
    (path, bytes, opset, max_abs_diff per batch size)."""
    onnx.checker.check_model(str(out), full_check=True)
    proto = onnx.load(str(out), load_external_data=False)
    opset = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    size = out.stat().st_size
    print(f"wrote {out} ({size / 2**20:.1f} MiB, opset {opset}); onnx.checker: ok")

    session = ort_session(out, threads)
    batch_dim = session.get_inputs()[0].shape[0]
    if not isinstance(batch_dim, str):
        raise UserError(f"the exported input has a fixed batch size {batch_dim}, expected a dynamic axis")
    gen = torch.Generator().manual_seed(seed)
    diffs = {}
    with torch.inference_mode():
        for bs in batch_sizes:
            x = torch.randn(bs, 3, model.image_size, model.image_size, generator=gen)
            ref = model(x).numpy()
            got = session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})[0]
            if got.shape != ref.shape:
                raise UserError(f"batch {bs}: onnxruntime gave shape {got.shape}, PyTorch {ref.shape}")
            diffs[bs] = float(np.abs(got - ref).max())
            print(f"batch {bs}: max |onnxruntime - torch| = {diffs[bs]:.2e} (logits up to {np.abs(ref).max():.2f})")
    bad = {bs: d for bs, d in diffs.items() if not d <= atol}  # `not <=` also catches NaN
    if bad:
        raise UserError(f"onnxruntime differs from PyTorch by more than --atol {atol:g}: "
                        + ", ".join(f"batch {bs}: {d:.2e}" for bs, d in bad.items()))
    return session, {"path": str(out), "bytes": size, "opset": opset, "max_abs_diff": diffs}


def ort_session(path: Path, threads: int) -> ort.InferenceSession:
    """The session of a deployment: the options the latency tables time with (utils.latency.ort_options)."""
    return ort.InferenceSession(str(path), ort_options(threads), providers=["CPUExecutionProvider"])


def median_ms(fn, runs: int, seconds: float, warmup: int = 2) -> tuple[float, int]:
    """(median ms, runs made): ``runs`` timed calls after ``warmup``, or fewer (at least 3) when they would
    take longer than ``seconds`` (the warm-up counted): a slow network on a busy machine still ends."""
    start = time.perf_counter()
    for _ in range(warmup):
        fn()
    times = []
    while len(times) < runs and (len(times) < 3 or time.perf_counter() - start < seconds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3, len(times)


def latency_ms(session: ort.InferenceSession, model: nn.Module, runs: int, seconds: float, seed: int
               ) -> tuple[tuple[float, int], tuple[float, int]]:
    """Median wall-clock ms of one batch-1 forward and the runs timed: (onnxruntime, torch eager), each
    within ``seconds``."""
    x = torch.randn(1, 3, model.image_size, model.image_size, generator=torch.Generator().manual_seed(seed + 1))
    feed = {INPUT_NAME: x.numpy()}
    ort_ms = median_ms(lambda: session.run([OUTPUT_NAME], feed), runs, seconds)
    with torch.inference_mode():
        return ort_ms, median_ms(lambda: model(x), runs, seconds)


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--genotype", default=None,
                   help="named genotype (proxyless_cifar, nb201_best_cifar10), NAS-Bench-201 string or genotype JSON "
                        "file; default: the genotype stored in --checkpoint, else the space's "
                        + ", ".join(f"{k}: {v}" for k, v in DEFAULT_GENOTYPES.items()))
    p.add_argument("--checkpoint", default=None,
                   help="train checkpoint (train_cifar.py RUN_DIR/best.pth; its 'model' weights) or a bare "
                        "state_dict; without it the network is randomly initialized (BN statistics calibrated "
                        "on random inputs)")
    p.add_argument("--output", default="model.onnx", help="ONNX file to write")
    p.add_argument("--exporter", choices=EXPORTERS, default="torchscript", help=EXPORTER_HELP)
    p.add_argument("--opset", type=int, default=None, help="ONNX opset version (None: the exporter's own)")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8],
                   help="batch sizes at which onnxruntime is compared with PyTorch")
    p.add_argument("--atol", type=float, default=1e-4, help="largest max-abs difference of the logits accepted")
    p.add_argument("--latency-runs", type=int, default=50,
                   help="timed runs at batch 1 for the latency (median); 0 skips timing")
    p.add_argument("--latency-seconds", type=float, default=5.0,
                   help="time budget of each latency (onnxruntime, torch): fewer runs (at least 3) when "
                        "--latency-runs would take longer; the runs made are printed")
    p.add_argument("--threads", type=auto_or(int, "a count >= 0"), default="auto",
                   help="intra-op threads for onnxruntime and torch: auto = the cores idle now (measured over "
                        "0.25 s, at least 1: a thread pool on a core another process holds runs many times "
                        "slower), 0 = each library's default (one per core), or a count")
    p.add_argument("--seed", type=int, default=0, help="seed for the random weights and the test inputs")
    add_space_flags(p, title="search space (read from the genotype or checkpoint when left out)")
    return p


def main(args: argparse.Namespace) -> dict:
    if min(args.batch_sizes) < 1 or args.latency_runs < 0 or not args.latency_seconds > 0:
        raise UserError("--batch-sizes must be >= 1, --latency-runs >= 0, --latency-seconds > 0")
    threads = idle_cores() if args.threads == "auto" else args.threads
    seed_everything(args.seed)
    if threads > 0:
        torch.set_num_threads(threads)
    stages = {}  # seconds of each stage: where the command's time goes (bench/export_time.py reads them)
    t = time.perf_counter()
    model = load_network(args.genotype, args.checkpoint, args, stages)
    stages["build"] = time.perf_counter() - t - stages.get("bn_calibration", 0.0)
    print(f"network: {model.space.name} space {model.space.describe_macro(model.macro)}"
          f"{'' if model.genotype.describe() in model.space.describe_macro(model.macro) else ' ' + model.genotype.describe()}, "
          f"{count_parameters(model):,} parameters, input 3x{model.image_size}"
          f"x{model.image_size}, {model.num_classes} classes, "
          f"{'weights from ' + args.checkpoint if args.checkpoint else 'random weights'}; "
          f"{threads or 'default'} threads" + (" (auto: the idle cores)" if args.threads == "auto" else ""))

    out = Path(args.output)
    t0 = time.perf_counter()
    try:
        check_writable(out.parent)  # before the export's work: a folder that cannot be made or written
        with replacing(out) as tmp:  # a full disk mid-export leaves no half-written model behind
            export(model, tmp, args.opset, args.exporter)
    except WriteError as e:
        raise UserError(f"--output: {e.line('or choose another --output')}") from None
    stages["export"] = time.perf_counter() - t0
    session, result = check_onnx(model, out, args.batch_sizes, args.atol, threads, args.seed)
    result["seconds"] = time.perf_counter() - t0  # export and check
    stages["check"] = result["seconds"] - stages["export"]
    print(f"export ({args.exporter}) and check: {result['seconds']:.0f} s")
    if args.latency_runs:
        t = time.perf_counter()
        (result["ort_ms"], n_ort), (result["torch_ms"], n_torch) = latency_ms(
            session, model, args.latency_runs, args.latency_seconds, args.seed)
        stages["latency"] = time.perf_counter() - t
        print(f"latency at batch 1 (median, CPU, {threads or 'default'} threads): onnxruntime {result['ort_ms']:.2f} ms "
              f"({n_ort} runs), torch eager {result['torch_ms']:.2f} ms ({n_torch} runs)")
    result["threads"], result["stages"] = threads, stages
    print("stages (s): " + " ".join(f"{k}={v:.2f}" for k, v in stages.items()))
    return result


if __name__ == "__main__":
    run_cli(main, get_args_parser())
