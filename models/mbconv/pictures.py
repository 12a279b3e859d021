"""Pictures of an MBConv network (visualize_cifar.py): the chain of blocks, each coloured by kernel and
shaded by expansion (a skipped block dotted), and the blocks x candidates heat map of a search's alpha
(a candidate the space does not allow on a block is left blank).  Drawn from models/mbconv/arch.py."""
from __future__ import annotations

import graphviz

from ..common import IMAGE_SIZE, NUM_CLASSES
from ..pictures import digraph, esc, heat_cell, prob_legend, prob_range, table_figure
from .arch import OP_CODES, PRIMITIVES, MBConvGenotype, block_plan, expand_of, kernel_of, stage_strides

# Okabe-Ito hues per kernel (colour-blind safe), light for expansion 3 and full for 6
KERNEL_COLOR = {3: ("#BFE0F2", "#0072B2"), 5: ("#F6D9B8", "#E69F00"), 7: ("#F3C6B0", "#D55E00")}
assert set(OP_CODES) == set(PRIMITIVES)


def _fill(op: str) -> tuple[str, str]:
    """(fill colour, text colour) of a block running ``op``."""
    if op == "zero":
        return "white", "#777777"
    light, dark = KERNEL_COLOR[kernel_of(op)]
    return (light, "black") if expand_of(op) == 3 else (dark, "white")


def network_graph(genotype: MBConvGenotype, title: str = "", image_size: int = IMAGE_SIZE,
                  num_classes: int = NUM_CLASSES) -> graphviz.Digraph:
    """stem -> first block -> one cluster per stage with its blocks -> head -> logits; each edge carries the
    tensor shape, each block its op (e.g. "5×5 MBConv6")."""
    g = digraph("network", rankdir="TB")
    g.attr("node", shape="box", style="rounded,filled", fillcolor="#F2F2F2", color="#555555", margin="0.1,0.04",
           fontsize="10")
    stem_stride, _ = stage_strides(image_size)
    plan = block_plan(genotype.stem, genotype.first, genotype.widths, genotype.depths, image_size)
    size = image_size // stem_stride
    g.node("input", f"image\n3 × {image_size} × {image_size}", fillcolor="white")
    g.node("stem", f"conv 3×3, stride {stem_stride}, 3 → {genotype.stem}\nBN, ReLU6")
    g.node("first", f"MBConv1 3×3, {genotype.stem} → {genotype.first}")
    g.edge("input", "stem")
    g.edge("stem", "first", label=f"{genotype.stem} × {size} × {size}", fontsize="9")
    prev, shape = "first", f"{genotype.first} × {size} × {size}"
    for stage in range(len(genotype.depths)):
        with g.subgraph(name=f"cluster_stage{stage}") as c:
            c.attr(label=f"stage {stage}: {genotype.widths[stage]} channels", style="rounded", color="#AAAAAA",
                   fontsize="10")
            for b in (b for b in plan if b.stage == stage):
                op, s = genotype.ops[b.index], b.shape
                fill, ink = _fill(op)
                label = "skipped (zero)" if op == "zero" else op.replace("_", " ").replace("x", "×", 1)
                c.node(f"b{b.index}", f"{label}\n{s.in_channels} → {s.out_channels}"
                                      f"{', stride 2' if s.stride == 2 else ''}", fillcolor=fill, fontcolor=ink,
                       style="rounded,filled,dotted" if op == "zero" else "rounded,filled",
                       tooltip=f"block {b.index} (stage {stage}, position {b.position}): {op}")
                g.edge(prev, f"b{b.index}", label=shape, fontsize="9", fontcolor="#555555")
                prev, shape = f"b{b.index}", f"{s.out_channels} × {s.out_size} × {s.out_size}"
    g.node("head", f"conv 1×1, {genotype.widths[-1]} → {genotype.head}, BN, ReLU6\nglobal avg pool\n"
                   f"FC {genotype.head} → {num_classes}")
    g.edge(prev, "head", label=shape, fontsize="9", fontcolor="#555555")
    g.node("logits", f"{num_classes} logits", fillcolor="white")
    g.edge("head", "logits")
    head = (f"{esc(title)}: " if title else "") + f"MBConv network, {len(plan)} searchable blocks " \
                                                  f"({esc(genotype.describe_counts())})"
    g.attr(labelloc="t", label=f"<<B>{head}</B>>")
    return g


def alpha_graph(probs: list[list[float]], candidates: list[str], allowed: list[tuple[int, ...]],
                title: str = "") -> graphviz.Digraph:
    """probs[block][i]: a row per block, a column per candidate, ● marks each block's argmax; a candidate not in
    ``allowed[block]`` is an empty cell."""
    vmin, vmax = prob_range([p for row, ok in zip(probs, allowed) for i, p in enumerate(row) if i in ok])
    rows = ['<TR><TD></TD>' + "".join(f'<TD><FONT POINT-SIZE="9">{esc(OP_CODES[c])} </FONT></TD>' for c in candidates)
            + '</TR>']
    for k, (row, ok) in enumerate(zip(probs, allowed)):
        best = max(ok, key=row.__getitem__)
        cells = "".join(heat_cell(p, i == best, vmin, vmax, f"block {k}: {c} p={p:.3f}{' (argmax)' if i == best else ''}",
                                  width=40, height=14) if i in ok else '<TD></TD>'
                        for i, (c, p) in enumerate(zip(candidates, row)))
        rows.append(f'<TR><TD ALIGN="RIGHT"><FONT FACE="Courier" POINT-SIZE="9">block {k} </FONT></TD>{cells}</TR>')
    head = (f"{esc(title)}: " if title else "") + "architecture probabilities softmax(α), one row per block"
    return table_figure("alpha", head, rows, prob_legend(vmin, vmax))
