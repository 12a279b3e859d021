"""Files a run writes and reads back: one atomic writer (checkpoints, JSON, genotypes, latency tables),
checkpoint loading with a kind check, state-dict loading that names what does not fit, and the
weights of a searched network taken from a search checkpoint."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Callable, IO

import torch

from models.genotype import Genotype
from models.proxyless_nas import build_supernet
from models.space import EDGES_PER_CELL, NUM_STAGES, PRIMITIVES

from .data import DatasetInfo
from .errors import UserError
from .faults import replacing, write_to


class CheckpointError(UserError):
    pass


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> Path:
    """``write(f)`` into a temporary file in the same folder, flushed to disk, then renamed over ``path``:
    a run killed mid-write, or a full disk, leaves the previous file intact (rename within a folder is
    atomic).  A write the OS refuses raises WriteError naming ``path`` (utils/faults.py)."""
    with replacing(path) as tmp, open(tmp, "wb") as f:
        write_to(f, write)
        f.flush()
        os.fsync(f.fileno())
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda f: f.write(text.encode()))


def save_json(obj: Any, path: str | os.PathLike) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, default=str) + "\n")


def save_genotype(genotype: Genotype, path: str | os.PathLike) -> Path:
    return atomic_write_text(path, genotype.to_json())


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    return atomic_write(path, lambda f: torch.save(state, f))


def load_checkpoint(path: str | os.PathLike, map_location="cpu", kind: str | None = None) -> dict[str, Any]:
    """A checkpoint dict (a folder means its checkpoint.pth); with ``kind``, one of that kind
    ("search" or "train"), else a CheckpointError that says what it is."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.pth"
    if not path.is_file():
        raise CheckpointError(f"no checkpoint file at {path}")
    try:
        # our checkpoints hold RNG states, configs and numpy arrays: not weights-only
        saved = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:  # torch raises several types for a truncated or foreign file
        raise CheckpointError(f"cannot read checkpoint {path}: {type(e).__name__}: {e}") from None
    if kind is not None:
        found = saved.get("kind") if isinstance(saved, dict) else type(saved).__name__
        if found != kind:
            raise CheckpointError(f"{path} is not a {kind} checkpoint (kind={found!r})")
    return saved


def load_fitting(model: torch.nn.Module, state: dict[str, torch.Tensor], where: str, hint: str = "") -> None:
    """load_state_dict, or a CheckpointError naming the first few missing, unexpected and wrong-shape keys."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k} {tuple(state[k].shape)} (network: {tuple(v.shape)})" for k, v in expected.items()
              if k in state and state[k].shape != v.shape]
    problems = []
    for what, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", shapes)):
        if keys:
            more = f" and {len(keys) - 3} more" if len(keys) > 3 else ""
            problems.append(f"{what}: {', '.join(keys[:3])}{more}")
    if problems:
        raise CheckpointError(f"{where} does not fit the network ({'; '.join(problems)})" + (f"; {hint}" if hint else ""))
    model.load_state_dict(state)


def load_search_weights(net: torch.nn.Module, genotype: Genotype, path: str | os.PathLike) -> None:
    """Copy the supernet weights of the ops the genotype chose (and all fixed layers) from a search
    checkpoint into ``net`` (a DerivedNet of ``genotype``)."""
    saved = load_checkpoint(path, kind="search")
    a = saved["args"]
    if (a["B"], a["F"]) != (genotype.B, genotype.F):
        raise CheckpointError(f"{path}: the supernet has B={a['B']} F={a['F']} but the genotype being "
                              f"trained has B={genotype.B} F={genotype.F}")
    missing = sorted(genotype.ops_used() - set(a["candidates"]))
    if missing:
        raise CheckpointError(f"{path}: the genotype uses op(s) {', '.join(missing)} that the supernet "
                              f"lacks (its candidates: {', '.join(a['candidates'])})")
    data = DatasetInfo.from_dict(saved.get("dataset"))
    if (data.num_classes, data.image_size) != (net.num_classes, net.image_size):
        raise CheckpointError(f"{path}: the search ran on {data.name} ({data.num_classes} classes, {data.image_size}x"
                              f"{data.image_size} images); this network is for {net.num_classes} classes and "
                              f"{net.image_size}x{net.image_size} images")
    with torch.random.fork_rng(devices=[]):  # building the supernet must not move the run's RNG
        supernet = build_supernet(a["B"], a["F"], a["candidates"], data.num_classes, data.image_size)
    load_fitting(supernet, saved["model"], f"search checkpoint {path}")
    load_fitting(net, supernet.derived_state_dict(genotype), f"search checkpoint {path}")


_ALPHA_KEY = re.compile(r"^blocks\.(\d+)\.cell\.edges\.(\d+)\.alpha$")


def load_search_alphas(path: str | os.PathLike) -> tuple[list[list[list[float]]], list[str], int, int, DatasetInfo]:
    """(probs[block][edge][i], candidates, B, F, data set) from a search checkpoint (softmax of the alphas)."""
    where = str(path)
    ckpt = load_checkpoint(path, kind="search")  # written by search_cifar.py to RUN_DIR/checkpoint.pth
    args = ckpt["args"]
    missing = [k for k in ("B", "F", "candidates") if k not in args] if isinstance(args, dict) else ["(not a dict)"]
    if missing:
        raise CheckpointError(f"{where}: its 'args' lack {', '.join(missing)}")
    B, F, candidates = int(args["B"]), int(args["F"]), list(args["candidates"])
    unknown = [c for c in candidates if c not in PRIMITIVES]
    if unknown:
        raise CheckpointError(f"{where}: unknown candidate op(s) {', '.join(map(str, unknown))} in its 'args'")
    n_blocks = NUM_STAGES * B
    alphas: dict[tuple[int, int], torch.Tensor] = {}
    for key, value in ckpt["model"].items():
        m = _ALPHA_KEY.match(key)
        if m:
            alphas[int(m.group(1)), int(m.group(2))] = value
    want = [(k, e) for k in range(n_blocks) for e in range(EDGES_PER_CELL)]
    lacking = [f"blocks.{k}.cell.edges.{e}.alpha" for k, e in want if (k, e) not in alphas]
    if lacking or len(alphas) != len(want):
        raise CheckpointError(f"{where}: expected {len(want)} alpha tensors for B={B}; "
                        f"missing e.g. {', '.join(lacking[:3]) or '(none)'}, found {len(alphas)}")
    probs = []
    for k in range(n_blocks):
        row = []
        for e in range(EDGES_PER_CELL):
            a = alphas[k, e]
            if a.shape != (len(candidates),):
                raise CheckpointError(f"{where}: blocks.{k}.cell.edges.{e}.alpha has shape {tuple(a.shape)}, "
                                f"expected ({len(candidates)},) for candidates {candidates}")
            row.append(torch.softmax(a.detach().float(), 0).tolist())
        probs.append(row)
    return probs, candidates, B, F, DatasetInfo.from_dict(ckpt.get("dataset"))
