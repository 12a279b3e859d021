"""The README is a front door that stays true: short, its links and the docs' links lead somewhere, and the
commands in its ```bash blocks (and the docs') parse with the scripts as they are now.

No job runs: a `python X.py ARGS` line is checked by importing X and calling its get_args_parser().parse_args(ARGS),
so a renamed or removed flag, a wrong subcommand or a missing script fails here with the line that names it."""
import ast
import importlib
import re
import shlex
import sys
import unicodedata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README] + DOCS
MAX_README_LINES = 250

FENCE = re.compile(r"^\s*(```|~~~)")


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def split_fences(text: str):
    """(prose lines with fenced blocks blanked, [(info string, first line number, [lines])] of the fences)."""
    prose, blocks, block = [], [], None
    for i, line in enumerate(text.splitlines(), 1):
        m = FENCE.match(line)
        if block is None and m:
            block = (line.strip()[3:].strip(), i + 1, [])
            prose.append("")
        elif block is not None and m:
            blocks.append(block)
            block = None
            prose.append("")
        elif block is not None:
            block[2].append(line)
            prose.append("")
        else:
            prose.append(line)
    assert block is None, "an unclosed ``` fence"
    return prose, blocks


def slug(heading: str) -> str:
    """GitHub's anchor of a heading (github-slugger): lowercase, markup and punctuation dropped (letters, digits,
    `_`, `-` and spaces kept), spaces -> `-`."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)   # a link's text only
    text = text.strip().lower()
    out = []
    for ch in text:
        cat = unicodedata.category(ch)
        if ch in "-_" or ch == " " or cat[0] in "LNM":
            out.append(ch)
    return "".join(out).replace(" ", "-")


def anchors(path: Path) -> set:
    prose, _ = split_fences(path.read_text(encoding="utf-8"))
    seen, out = {}, set()
    for line in prose:
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        s = slug(m.group(1))
        n = seen.get(s, 0)
        seen[s] = n + 1
        out.add(s if n == 0 else f"{s}-{n}")
    return out


def links(path: Path):
    """(line number, target) of every markdown link and image outside code (fences and `code spans`)."""
    prose, _ = split_fences(path.read_text(encoding="utf-8"))
    for i, line in enumerate(prose, 1):
        line = re.sub(r"`[^`]*`", "", line)
        for m in re.finditer(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)", line):
            yield i, m.group(1)


def test_readme_is_short():
    n = len(README.read_text(encoding="utf-8").splitlines())
    assert n <= MAX_README_LINES, f"README.md has {n} lines (at most {MAX_README_LINES}): move details to docs/"


@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_links_lead_somewhere(page):
    bad = []
    for line, target in links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):   # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        dest = page if not path else (page.parent / path).resolve()
        if not dest.exists():
            bad.append(f"{rel(page)}:{line}: {target}: no such file")
            continue
        if anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            bad.append(f"{rel(page)}:{line}: {target}: no heading of {dest.name} has the anchor #{anchor}")
    assert not bad, "\n".join(bad)


def bash_commands(path: Path):
    """(line number, command) of every command in the page's ```bash blocks: comments and blank lines skipped,
    trailing comments stripped, backslash continuations joined."""
    _, blocks = split_fences(path.read_text(encoding="utf-8"))
    for info, first, lines in blocks:
        if info.split()[:1] not in (["bash"], ["sh"], ["shell"], ["console"]):
            continue
        pending, start = "", None
        for k, line in enumerate(lines):
            if not pending and (not line.strip() or line.lstrip().startswith("#")):
                continue
            if start is None:
                start = first + k
            if line.rstrip().endswith("\\"):
                pending += line.rstrip()[:-1] + " "
                continue
            yield start, pending + line
            pending, start = "", None
        assert not pending, f"{rel(path)}:{start}: a continuation that never ends"


COMMANDS = [pytest.param(page, line, cmd, id=f"{rel(page)}:{line}")
            for page in PAGES for line, cmd in bash_commands(page)]

_PARSERS = {}


def parser_of(module: str):
    if module not in _PARSERS:
        if str(ROOT) not in sys.path:
            sys.path.insert(0, str(ROOT))
        mod = importlib.import_module(module)
        assert hasattr(mod, "get_args_parser"), f"{module} has no get_args_parser()"
        _PARSERS[module] = mod.get_args_parser()
    return _PARSERS[module]


def check_args(module: str, argv, where: str):
    try:
        parser_of(module).parse_args(argv)
    except SystemExit as e:
        pytest.fail(f"{where}: {module} refuses the arguments {argv} (argparse exit {e.code})")


def script_module(script: str, where: str) -> str:
    assert script.endswith(".py"), f"{where}: {script} is not a .py script"
    assert (ROOT / script).is_file(), f"{where}: {script} does not exist"
    return script[:-3].replace("/", ".")


def check_python_c(code: str, where: str):
    tree = compile(code, "<python -c>", "exec", ast.PyCF_ONLY_AST)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [(a.name, None) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [(node.module, a.name) for a in node.names]
        else:
            continue
        for module, attr in names:
            if str(ROOT) not in sys.path:
                sys.path.insert(0, str(ROOT))
            mod = importlib.import_module(module)
            assert attr is None or hasattr(mod, attr), f"{where}: {module} has no {attr}"


@pytest.mark.parametrize("page,line,cmd", COMMANDS)
def test_commands_parse(page, line, cmd):
    where = f"{rel(page)}:{line}: {cmd.strip()}"
    words = shlex.split(cmd, comments=True)
    while words and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0]):   # VAR=value before the command
        words.pop(0)
    if words and words[-1] == "...":   # "... further flags as above": the written ones must still parse
        words.pop()
    assert words, f"{where}: no command"
    if words[:3] == ["pip", "install", "-r"]:
        assert len(words) == 4 and (ROOT / words[3]).is_file(), f"{where}: no such requirements file"
        return
    if words[0] == "torchrun":   # torchrun [its --flags] script.py args
        rest = [w for w in words[1:]]
        while rest and rest[0].startswith("--"):
            rest.pop(0)
        assert rest, f"{where}: torchrun without a script"
        check_args(script_module(rest[0], where), rest[1:], where)
        return
    assert words[0] == "python", f"{where}: a command this test does not know how to check (teach it, don't skip)"
    if words[1:3] == ["-m", "pytest"]:
        return
    if words[1] == "-m":
        module = words[2]
        assert (ROOT / (module.replace(".", "/") + ".py")).is_file(), f"{where}: no module {module} here"
        check_args(module, words[3:], where)
    elif words[1] == "-c":
        assert len(words) == 3, f"{where}: python -c takes one quoted program"
        check_python_c(words[2], where)
    else:
        check_args(script_module(words[1], where), words[2:], where)


def test_the_readme_has_commands():
    """The checks above only mean something while the README's commands are in ```bash blocks."""
    cmds = [c for _, c in bash_commands(README)]
    assert "pip install -r requirements.txt" in cmds and "python -m pytest" in cmds
    assert any(c.startswith("python search_cifar.py") for c in cmds)
