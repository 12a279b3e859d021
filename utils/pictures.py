"""Writing a picture: its .gv source, rendered with ``dot`` when Graphviz is installed.  The drawings are
each space's (models/<space>/pictures.py) over the helpers of models/pictures.py."""
from __future__ import annotations

from pathlib import Path

import graphviz

from utils.checkpoint import atomic_write, atomic_write_text

INSTALL_HINT = ("install Graphviz to render the pictures: apt-get install graphviz (Debian/Ubuntu), "
                "brew install graphviz (macOS), conda install -c conda-forge graphviz (conda); "
                "the .gv sources were written and can be rendered later with dot -Tpng FILE.gv -o FILE.png")
def write(graph: graphviz.Digraph, stem: Path, fmt: str, dpi: int, render: bool) -> list[Path]:
    """Save ``stem``.gv, and render ``stem``.fmt with dot when ``render``.  dot renders into memory
    (``pipe``) and we write the bytes, atomically: dot itself reports a full disk only as "gvwrite_no_z
    problem" and leaves half a picture behind."""
    if fmt == "png":
        graph.attr(dpi=str(dpi))
    gv = atomic_write_text(stem.with_name(stem.name + ".gv"), graph.source)
    if not render:
        return [gv]
    picture = graph.pipe(format=fmt, quiet=True)
    return [gv, atomic_write(stem.with_name(f"{stem.name}.{fmt}"), lambda f: f.write(picture))]
