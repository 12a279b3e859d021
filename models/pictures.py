"""What every space's pictures share: Graphviz defaults, HTML escaping, the probability colour scale and its
legend, the title + grid + legend figure of the heat maps.  Each space draws its own (models/<space>/pictures.py);
writing them (utils/pictures.py) and the command (visualize_cifar.py) are not a space's."""
from __future__ import annotations

import html
import math

import graphviz


FONT = "Helvetica"
# ColorBrewer "Blues" (9 classes): probability 0 -> white, 1 -> dark blue.
PROB_SCALE = ["#F7FBFF", "#DEEBF7", "#C6DBEF", "#9ECAE1", "#6BAED6", "#4292C6", "#2171B5", "#08519C", "#08306B"]


def esc(text) -> str:
    return html.escape(str(text), quote=True)


def digraph(name: str, rankdir: str = "LR") -> graphviz.Digraph:
    g = graphviz.Digraph(name)
    g.attr(rankdir=rankdir, fontname=FONT, fontsize="14", nodesep="0.25", ranksep="0.35", pad="0.2")
    g.attr("node", fontname=FONT, fontsize="12")
    g.attr("edge", fontname=FONT, fontsize="11", arrowsize="0.6")
    return g


def prob_color(p: float) -> str:
    """Linear interpolation of PROB_SCALE at p in [0, 1]."""
    x = min(max(p, 0.0), 1.0) * (len(PROB_SCALE) - 1)
    i = min(int(x), len(PROB_SCALE) - 2)
    t = x - i
    a, b = PROB_SCALE[i], PROB_SCALE[i + 1]
    rgb = [round(int(a[k:k + 2], 16) * (1 - t) + int(b[k:k + 2], 16) * t) for k in (1, 3, 5)]
    return "#" + "".join(f"{c:02X}" for c in rgb)



def table_figure(name: str, head: str, grid_rows: list[str], legend: str) -> graphviz.Digraph:
    """Title (graph label), the grid node and the legend node right under it.  Three separate pieces:
    dot stretches a table's columns to the widest row, so a shared table would spread a narrow grid."""
    g = digraph(name, rankdir="TB")
    g.attr(ranksep="0.05", labelloc="t", label=f'<<FONT POINT-SIZE="13"><B>{head}</B></FONT>>')
    g.node("grid", f'<<TABLE BORDER="0" CELLSPACING="1" CELLPADDING="0">{"".join(grid_rows)}</TABLE>>',
           shape="plaintext", margin="0")
    g.node("legend", f"<{legend}>", shape="plaintext", margin="0")
    g.edge("grid", "legend", style="invis")
    return g



def prob_range(values: list[float]) -> tuple[float, float]:
    """The colour scale vmin..vmax: the smallest / largest probability, rounded out to 0.1.  Early in a
    search, when every p is near 1/N, a fixed 0..1 scale would paint the whole map one colour."""
    vmin = max(0.0, math.floor(min(values) * 10 + 1e-9) / 10)
    return vmin, min(1.0, max(vmin + 0.1, math.ceil(max(values) * 10 - 1e-9) / 10))


def prob_legend(vmin: float, vmax: float) -> str:
    """The colour bar of a probability heat map (HTML table), ● marking the argmax."""
    ticks = [k / 10 for k in range(11)]
    bar = "".join(f'<TD BGCOLOR="{prob_color(t)}" WIDTH="22" HEIGHT="12" FIXEDSIZE="TRUE"></TD>' for t in ticks)
    labels = "".join(f'<TD><FONT POINT-SIZE="8">{vmin + t * (vmax - vmin):.2g}</FONT></TD>' for t in ticks)
    return (f'<TABLE BORDER="0" CELLSPACING="0" CELLPADDING="1"><TR><TD ROWSPAN="2"><FONT POINT-SIZE="10">'
            f'p(op)  </FONT></TD>{bar}<TD ROWSPAN="2"><FONT POINT-SIZE="10">     ● = argmax (the derived op)'
            f'</FONT></TD></TR><TR>{labels}</TR></TABLE>')


def heat_cell(p: float, top: bool, vmin: float, vmax: float, tip: str, width: int = 11, height: int = 9) -> str:
    """One probability cell of a heat map: its colour, ● when it is the argmax, and a tooltip."""
    mark = f'<FONT POINT-SIZE="7" COLOR="{"white" if p > (vmin + vmax) / 2 else "black"}">●</FONT>' if top else ""
    return (f'<TD BGCOLOR="{prob_color((p - vmin) / (vmax - vmin))}" WIDTH="{width}" HEIGHT="{height}" '
            f'FIXEDSIZE="TRUE" TITLE="{esc(tip)}">{mark}</TD>')
