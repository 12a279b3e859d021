"""The search-space flags every script shares: ``--space`` and each space's network-size flags (the tree
space's --B/--F, NAS-Bench-201's --C/--N), and the one rule that resolves them.

Rules: a genotype (or a checkpoint) names its space, so ``--space`` may be left out; given, it must agree.
A size flag of another space is an error, not silently ignored.  A tree genotype carries B and F, so
--B/--F may only repeat them; a NAS-Bench-201 genotype is a cell, and --C/--N size the network around it
(default: the benchmark's C=16, N=5).
"""
from __future__ import annotations

import argparse

from models.search_space import SearchSpace
from models.spaces import DEFAULT_SPACE, SPACES, get_space, space_of

from utils.errors import UserError

MACRO_FLAGS = {k: name for name, space in SPACES.items() for k in space.macro_defaults}  # "B" -> "tree", ...


def add_space_flags(parser: argparse.ArgumentParser, macro: bool = True, title: str = "search space") -> None:
    g = parser.add_argument_group(title)
    g.add_argument("--space", choices=tuple(SPACES), default=None,
                   help=f"tree: the paper's CIFAR-10 tree cells; nb201: the NAS-Bench-201 cell space; mbconv: the "
                        f"paper's ImageNet MBConv chain (default: the genotype's or checkpoint's space, else "
                        f"{DEFAULT_SPACE})")
    if not macro:
        return
    for flag, name in MACRO_FLAGS.items():
        space = SPACES[name]
        default = space.macro_defaults[flag]
        per_stage = isinstance(default, tuple)  # the space's data says whether a size is one integer or one per stage
        g.add_argument(f"--{flag}", type=int_list if per_stage else int, default=None,
                       metavar="N,N,..." if per_stage else flag.upper(),
                       help=f"{name} space: {space.macro_help[flag]} (default "
                            f"{','.join(map(str, default)) if per_stage else default})")


def int_list(text: str) -> tuple[int, ...]:
    """argparse type: comma-separated integers, e.g. 24,40,80,96,192,320."""
    try:
        out = tuple(int(t) for t in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    return out


def chosen_space(args: argparse.Namespace, genotype=None, saved_space: str | None = None) -> SearchSpace:
    """The space of --space, a genotype and a checkpoint (which must agree), else the default space."""
    asked = getattr(args, "space", None)
    names = [n for n in (asked, space_of(genotype).name if genotype is not None else None, saved_space) if n]
    if len(set(names)) > 1:
        what = [f"--space {asked}"] if asked else []
        what += [f"the genotype is of the {space_of(genotype).name} space"] if genotype is not None else []
        what += [f"the checkpoint is of the {saved_space} space"] if saved_space else []
        raise UserError("the search space does not agree: " + ", ".join(what))
    return get_space(names[0] if names else DEFAULT_SPACE)


def resolve_space(args: argparse.Namespace, genotype=None, saved_space: str | None = None,
                  saved_macro: dict | None = None) -> tuple[SearchSpace, dict[str, int]]:
    """(space, full macro) from --space, the size flags, a genotype and a checkpoint's space and macro;
    writes the resolved values back into ``args`` (so configs and resume checks see them).  A script that falls
    back on the space's default genotype picks it with ``chosen_space`` first and passes it here: its sizes
    (a released network's widths) are then the network's, not the space's defaults."""
    space = chosen_space(args, genotype, saved_space)
    given = {k: getattr(args, k, None) for k in MACRO_FLAGS}
    foreign = [k for k, v in given.items() if v is not None and k not in space.macro_defaults]
    if foreign:
        owner = MACRO_FLAGS[foreign[0]]
        raise UserError(f"--{foreign[0]} sizes the {owner} space's network; this run is in the {space.name} space "
                        f"(its flags: {', '.join('--' + k for k in space.macro_defaults)})")
    flags = {k: v for k, v in given.items() if v is not None}
    carried = space.genotype_macro(genotype) if genotype is not None else {}
    saved = {k: v for k, v in (saved_macro or {}).items() if k in space.macro_defaults}
    for (a_name, a), (b_name, b) in ((("--{k} {v}", flags), ("the genotype has {k}={v}", carried)),
                                     (("--{k} {v}", flags), ("the checkpoint has {k}={v}", saved)),
                                     (("the genotype has {k}={v}", carried), ("the checkpoint has {k}={v}", saved))):
        clash = sorted(k for k in set(a) & set(b) if a[k] != b[k])
        if clash:
            k = clash[0]
            raise UserError(f"{a_name.format(k=k, v=a[k])} but {b_name.format(k=k, v=b[k])}")
    try:
        macro = space.macro({**saved, **carried, **flags})
    except ValueError as e:
        raise UserError(f"{'/'.join('--' + k for k in space.macro_defaults)}: {e}") from None
    if getattr(args, "image_size", None) is not None:
        try:
            space.check_image_size(args.image_size)
        except ValueError as e:
            raise UserError(f"--image-size: {e}") from None
    args.space = space.name
    for k in MACRO_FLAGS:
        if hasattr(args, k):
            setattr(args, k, macro.get(k))
    return space, macro
