"""The shape of the code (docs/design.md): imports point one way, scripts -> utils -> models (and the
named architectures of genotypes.py), with no
cycle; the Genotype type needs only the space description; library code does not name CLI flags."""
import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("models", "utils", "bench")


def _modules() -> dict[str, Path]:
    mods = {p.stem: p for p in ROOT.glob("*.py") if p.stem not in ("conftest",)}
    for pkg in PACKAGES:
        for p in (ROOT / pkg).rglob("*.py"):
            parts = p.relative_to(ROOT).with_suffix("").parts
            mods[".".join(parts[:-1] if p.stem == "__init__" else parts)] = p
    return mods


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Project modules imported anywhere in the file (function-level imports included)."""
    pkg = name if path.stem == "__init__" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(pkg.split(".")[: len(pkg.split(".")) - node.level + 1] + ([base] if base else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        found |= {t for t in targets if t in known and t != name}
    return found


def graph() -> dict[str, set[str]]:
    mods = _modules()
    return {name: _imports(name, path, set(mods)) for name, path in mods.items()}


def test_import_graph_has_no_cycle():
    g = graph()
    state: dict[str, int] = {}

    def visit(n, stack):
        state[n] = 1
        for m in g[n]:
            if state.get(m) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack + [n, m]))
            if m not in state:
                visit(m, stack + [n])
        state[n] = 2

    for n in g:
        if n not in state:
            visit(n, [])
    assert "models.tree.genotype" in g and "models.mbconv.net" in g  # the check ran over the real modules


def test_dependencies_point_one_way():
    g = graph()
    for name, deps in g.items():
        if name.startswith("models"):
            assert all(d.startswith("models") for d in deps), (name, deps)
        if name.startswith("utils"):  # genotypes.py (named architectures) sits beside models/
            assert all(d.startswith(("models", "utils", "genotypes")) for d in deps), (name, deps)
    assert all(d.startswith("models") for d in g["genotypes"])
    assert g["models.tree.genotype"] <= {"models.tree.arch", "models.common"}


SPACE_PACKAGES = ("models.tree", "models.nb201", "models.mbconv")


def test_one_folder_per_space():
    """Each space's modules sit in its own package and reach no other space's; the generic pieces (interface,
    supernet, MixedOp, registry) import no space but through the registry (models.spaces)."""
    g = graph()
    for name, deps in g.items():
        own = next((p for p in SPACE_PACKAGES if name == p or name.startswith(p + ".")), None)
        if own:
            others = [d for d in deps if d.startswith(SPACE_PACKAGES) and not d.startswith(own)]
            assert not others, (name, others)
    for generic in ("models.common", "models.search_space", "models.mixed_op", "models.supernet", "models.pictures"):
        assert not [d for d in g[generic] if d.startswith(SPACE_PACKAGES)], (generic, g[generic])
    old = ["space", "genotype", "operations", "cells", "proxyless_nas", "tree_space", "nb201_net", "nb201_space"]
    assert not [m for m in old if (ROOT / "models" / f"{m}.py").exists()]
    assert not [m for m in ("pictures_tree", "pictures_nb201", "nb201_table") if (ROOT / "utils" / f"{m}.py").exists()]


def test_library_messages_do_not_name_flags():
    """Library errors speak of data, not flags; the scripts (and utils/run.py, which defines the shared
    flags, and the CLI part of utils/latency.py) translate."""
    flag = re.compile(r"""(?:Error|Warning)\([^)]*["'][^"']*--[a-z]""")
    for pkg in ("models", "utils"):
        for p in (ROOT / pkg).rglob("*.py"):
            if p.name in ("run.py", "space_args.py", "latency.py"):  # (the modules that define flags)
                continue
            text = p.read_text()
            assert not flag.search(text), f"{p.name}: {flag.search(text).group(0)}"
