"""Files a run writes and reads back: one atomic writer (checkpoints, JSON, genotypes, latency tables),
checkpoint loading with a kind check, state-dict loading that names what does not fit, and the
weights of a searched network taken from a search checkpoint."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, IO

import torch

from models.search_space import SearchSpace
from models.common import SpaceError
from models.spaces import get_space
from models.supernet import SuperNet

from utils.data import DatasetInfo
from utils.errors import UserError
from utils.faults import replacing, write_to


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


def save_genotype(genotype, path: str | os.PathLike) -> Path:
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


def search_space_of(saved: dict, where: str) -> tuple[SearchSpace, dict, list[str]]:
    """(space, macro, candidates) of a search checkpoint, from the flags it was made with."""
    args = saved.get("args")
    if not isinstance(args, dict) or "candidates" not in args:
        raise CheckpointError(f"{where}: its 'args' lack the search space's settings")
    try:
        space = get_space(args.get("space") or "tree")  # checkpoints from before spaces: the tree space's
        macro = space.macro({k: args.get(k) for k in space.macro_defaults})
        candidates = list(space.check_candidates(args["candidates"]))
    except SpaceError as e:
        raise CheckpointError(f"{where}: {e}") from None
    return space, macro, candidates


def load_supernet(path: str | os.PathLike) -> tuple[SuperNet, dict]:
    """The supernet of a search checkpoint with its weights and alpha, and the checkpoint dict."""
    saved = load_checkpoint(path, kind="search")
    space, macro, candidates = search_space_of(saved, str(path))
    data = DatasetInfo.from_dict(saved.get("dataset"))
    with torch.random.fork_rng(devices=[]):  # building the supernet must not move the run's RNG
        supernet = SuperNet(space, macro, candidates, data.num_classes, data.image_size,
                            saved["args"].get("supernet_bn") or "standard")
    load_fitting(supernet, saved["model"], f"search checkpoint {path}",
                 hint="search checkpoints from before the one-tensor alpha cannot be read")
    return supernet, saved


def load_search_weights(net: torch.nn.Module, genotype, path: str | os.PathLike) -> None:
    """Copy the supernet weights of the ops the genotype chose (and all fixed layers) from a search
    checkpoint into ``net`` (the derived network of ``genotype``)."""
    supernet, saved = load_supernet(path)
    data = DatasetInfo.from_dict(saved.get("dataset"))
    if (data.num_classes, data.image_size) != (net.num_classes, net.image_size):
        raise CheckpointError(f"{path}: the search ran on {data.name} ({data.num_classes} classes, {data.image_size}x"
                              f"{data.image_size} images); this network is for {net.num_classes} classes and "
                              f"{net.image_size}x{net.image_size} images")
    if getattr(net, "macro", supernet.macro) != supernet.macro:
        raise CheckpointError(f"{path}: the supernet is {supernet.space.describe_macro(supernet.macro)} but the "
                              f"network being trained is {supernet.space.describe_macro(net.macro)}")
    try:
        state = supernet.derived_state_dict(genotype)
    except SpaceError as e:
        raise CheckpointError(f"{path}: {e}") from None
    if supernet.bn == "plain":  # the supernet had no BN scale, shift or running statistics: keep the net's own
        state = {**{k: v for k, v in net.state_dict().items() if _is_batchnorm_state(net, k)}, **state}
    load_fitting(net, state, f"search checkpoint {path}")


def _is_batchnorm_state(net: torch.nn.Module, key: str) -> bool:
    owner = net.get_submodule(key.rpartition(".")[0]) if "." in key else net
    return isinstance(owner, torch.nn.modules.batchnorm._BatchNorm)


def load_search_alphas(path: str | os.PathLike) -> tuple[torch.Tensor, list[str], SearchSpace, dict, DatasetInfo]:
    """(probs (decisions x candidates, softmax of alpha), candidates, space, macro, data set) of a search
    checkpoint, read without building the supernet."""
    where = str(path)
    saved = load_checkpoint(path, kind="search")  # written by search_cifar.py to RUN_DIR/checkpoint.pth
    space, macro, candidates = search_space_of(saved, where)
    alpha = saved.get("model", {}).get("alpha") if isinstance(saved.get("model"), dict) else None
    want = (len(space.decision_names(macro)), len(candidates))
    if not isinstance(alpha, torch.Tensor) or tuple(alpha.shape) != want:
        found = "none" if not isinstance(alpha, torch.Tensor) else f"shape {tuple(alpha.shape)}"
        raise CheckpointError(f"{where}: expected an alpha of shape {want} (decisions x candidates {candidates}), "
                              f"found {found} (search checkpoints from before the one-tensor alpha cannot be read)")
    info = DatasetInfo.from_dict(saved.get("dataset"))
    mask = torch.zeros(want, dtype=torch.bool)  # the candidates the space allows per decision (SuperNet.mask)
    for d, ok in enumerate(space.allowed(macro, candidates, info.image_size)):
        mask[d, list(ok)] = True
    probs = torch.softmax(alpha.detach().float().masked_fill(~mask, float("-inf")), 1)
    return probs, candidates, space, macro, info
