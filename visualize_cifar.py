"""Pictures of a network of any search space, drawn from the space description and a genotype.

Tree space: the cell of one block, the network overview, the op chosen at every (block, edge), and (from a
search checkpoint) the alpha probabilities of every edge.  NAS-Bench-201: the 4-node cell as a DAG with
labelled edges, the network overview, and (from a search checkpoint) the 6 x 5 alpha heat map.  MBConv: the
chain of blocks by stage (kernel as colour, expansion as shade, skipped blocks dotted) and the blocks x
candidates heat map.  No torch model is built.  The Graphviz source (.gv) is always written; it is rendered
with ``dot`` when Graphviz is installed.  Each space draws its own (SearchSpace.pictures:
models/tree/pictures.py, models/nb201/pictures.py, models/mbconv/pictures.py).

    python visualize_cifar.py proxylessnas_architecture            # the released network
    python visualize_cifar.py run1 --checkpoint runs/search/checkpoint.pth --format pdf
    python visualize_cifar.py mobile --genotype proxyless_mobile                 # the authors' ImageNet network
    python visualize_cifar.py best --genotype '|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|'
"""
from __future__ import annotations

import argparse
import dataclasses
import shutil
from pathlib import Path

import graphviz

import genotypes
from models.common import SpaceError
from models.spaces import DEFAULT_GENOTYPES
from utils.checkpoint import CheckpointError, load_search_alphas
from utils.data import CIFAR10
from utils.errors import UserError, run_cli
from utils.faults import WriteError, check_writable
from utils.pictures import INSTALL_HINT, write
from utils.space_args import add_space_flags, chosen_space, resolve_space



def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("output_name", nargs="?", default="proxylessnas_architecture",
                   help="path prefix of the outputs: NAME_cell, NAME_network, NAME_ops (tree space) and NAME_alpha "
                        "(with --checkpoint), each a .gv source and a picture")
    p.add_argument("--genotype", default=None,
                   help="a named genotype (proxyless_cifar, nb201_best_cifar10), a NAS-Bench-201 string or a genotype "
                        "JSON file; default: the checkpoint's argmax with --checkpoint, else the space's "
                        + ", ".join(f"{k}: {v}" for k, v in DEFAULT_GENOTYPES.items()))
    p.add_argument("--checkpoint", default=None,
                   help="a search checkpoint (search_cifar.py RUN_DIR/checkpoint.pth): also draws its alpha "
                        "probabilities")
    p.add_argument("--block", type=int, default=0, help="tree space: which block's cell to draw (0-based)")
    p.add_argument("--format", choices=("png", "svg", "pdf"), default="png", help="picture format rendered by dot")
    p.add_argument("--dpi", type=int, default=150, help="resolution of PNG pictures")
    add_space_flags(p, title="search space (read from the genotype or checkpoint when left out)")
    return p


def graphs_for(args: argparse.Namespace) -> dict[str, graphviz.Digraph]:
    """Every picture asked for, by kind."""
    genotype, title, data, alpha = None, "", CIFAR10, None
    if args.genotype is not None:
        genotype = genotypes.get(args.genotype)
        title = Path(args.genotype).stem if Path(args.genotype).suffix == ".json" else args.genotype
    saved_space = saved_macro = None
    if args.checkpoint is not None:
        try:
            probs, candidates, space, saved_macro, data = load_search_alphas(args.checkpoint)
        except CheckpointError as e:
            raise UserError(f"--checkpoint: {e}") from None
        saved_space = space.name
        argmax = space.genotype_from_ops([candidates[i] for i in probs.argmax(1).tolist()], saved_macro)
        alpha = (probs, candidates, space, saved_macro)
        if genotype is None:
            genotype, title = argmax, "argmax of the search"
    if genotype is None:
        title = DEFAULT_GENOTYPES[chosen_space(args, None, saved_space).name]
        genotype = genotypes.get(title)
    space, macro = resolve_space(args, genotype, saved_space, saved_macro)
    if args.checkpoint is None:  # the data the space's networks are meant for (tree, NAS-Bench-201: CIFAR's)
        data = dataclasses.replace(data, image_size=space.data_size[0], num_classes=space.data_size[1])
    probs, candidates = (alpha[0], alpha[1]) if alpha is not None else (None, ())
    try:
        return space.pictures(genotype, macro, title, data.image_size, data.num_classes, probs, candidates, args.block)
    except SpaceError as e:
        raise UserError(str(e)) from None


def main(args: argparse.Namespace) -> list[Path]:
    stem = Path(args.output_name)
    if stem.suffix in (".gv", ".png", ".svg", ".pdf"):
        stem = stem.with_suffix("")
    graphs = graphs_for(args)
    render = shutil.which("dot") is not None
    written = []
    try:
        check_writable(stem.parent)
        for kind, graph in graphs.items():
            written += write(graph, stem.with_name(f"{stem.name}_{kind}"), args.format, args.dpi, render)
    except WriteError as e:
        raise UserError(e.line("or choose another output_name")) from None
    for path in written:
        print(f"wrote {path}")
    if not render:
        print(INSTALL_HINT)
    return written


if __name__ == "__main__":
    run_cli(main, get_args_parser())
