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
        for p in (ROOT / pkg).glob("*.py"):
            mods[pkg if p.stem == "__init__" else f"{pkg}.{p.stem}"] = p
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
    assert "models.genotype" in g and "models.proxyless_nas" in g  # the check ran over the real modules


def test_dependencies_point_one_way():
    g = graph()
    for name, deps in g.items():
        if name.startswith("models"):
            assert all(d.startswith("models") for d in deps), (name, deps)
        if name.startswith("utils"):  # genotypes.py (named architectures) sits beside models/
            assert all(d.startswith(("models", "utils", "genotypes")) for d in deps), (name, deps)
    assert all(d.startswith("models") for d in g["genotypes"])
    assert g["models.genotype"] <= {"models.space"}


def test_library_messages_do_not_name_flags():
    """Library errors speak of data, not flags; the scripts (and utils/run.py, which defines the shared
    flags, and the CLI part of utils/latency.py) translate."""
    flag = re.compile(r"""(?:Error|Warning)\([^)]*["'][^"']*--[a-z]""")
    for pkg in ("models", "utils"):
        for p in (ROOT / pkg).glob("*.py"):
            if p.name in ("run.py", "latency.py"):
                continue
            text = p.read_text()
            assert not flag.search(text), f"{p.name}: {flag.search(text).group(0)}"
