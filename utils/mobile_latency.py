"""The ProxylessNAS authors' mobile latency lookup table (``mobile_trim.yaml``, Google Pixel 1, ms).

The file is a flat YAML mapping, one entry per layer shape, each holding ``count`` (timed runs), ``mean``
(ms) and ``var``::

    Conv-input:224x224x3-output:112x112x32:
      count: 982
      mean: 4.083755600814664
      var: 0.2502372872758427

It is read here without PyYAML by a strict parser of exactly that layout (``read_mobile_table``).
This module holds no copy of the table: the user points at the file (gzip-compressed or not).

How a network is keyed -- the same sum as the official estimator (mit-han-lab/proxylessnas,
``search/models/super_nets/super_proxyless.py`` ``SuperProxylessNASNets.expected_latency`` and
``search/run_manager.py`` ``RunManager.net_latency``, keys built by ``search/utils/latency_estimator.py``
``LatencyEstimator.predict``):

* shapes are written ``HxWxC`` (the official ``repr_shape``), fields joined by ``-``;
* first conv: ``Conv-input:224x224x3-output:112x112x<stem_ch>`` (``conv_key``);
* every block, the first expand-1 block included, is one
  ``expanded_conv-input:SxSx<in>-output:TxTx<out>-expand:E-kernel:K-stride:s-idskip:I`` entry
  (``block_key``), with T = S // s and I = 1 exactly when the block has an identity shortcut.  The
  supernet gives a block that shortcut when stride == 1 and in == out channels, except the first block
  (``MobileInvertedResidualBlock(first_block_conv, None)``), which therefore always has idskip 0.
  The first block is the single candidate ``3x3_MBConv1`` (expand 1, kernel 3, stride 1);
* a ``zero`` block (only offered where stride == 1 and in == out) costs 0 -- it has no entry and is
  skipped;
* feature mix (the 1x1 conv before pooling): ``Conv_1-input:7x7x<in>-output:7x7x<head_ch>``
  (``feature_mix_key``);
* classifier (pooling + linear): ``Logits-input:7x7x<head_ch>-output:<classes>`` (``logits_key``);
* latency = Conv + Conv_1 + Logits + sum over blocks; a searched block contributes
  sum_i p_i * LUT(op_i) (``expected_block_ms``), zero ops adding 0.

The official code writes the sizes 224, 112 (first conv output, where the blocks start) and 7 (feature
mix) as constants; here they are derived from ``image_size`` (first conv output ``image_size // 2``, each
block ``size // stride`` as in the official code).  At 224 px the keys are identical; at other sizes
the table (measured at 224 px only) has no entries and the lookup fails with ``MobileTableError``.
"""
from __future__ import annotations

import difflib
import gzip
import math
import re
from pathlib import Path
from typing import Iterable, Mapping, Sequence

__all__ = [
    "MobileTableError", "read_mobile_table", "conv_key", "feature_mix_key", "logits_key", "block_key",
    "parse_key", "MobileTable", "SEARCH_OPS", "FIRST_OPS", "ZERO",
]

ZERO = "zero"
# op name -> (kernel, expand); the six searchable MBConv candidates of the ProxylessNAS ImageNet space
SEARCH_OPS = {
    "3x3_MBConv3": (3, 3), "3x3_MBConv6": (3, 6),
    "5x5_MBConv3": (5, 3), "5x5_MBConv6": (5, 6),
    "7x7_MBConv3": (7, 3), "7x7_MBConv6": (7, 6),
}
# the first block's op (the official space uses 3x3_MBConv1 only; the table also has kernels 5 and 7)
FIRST_OPS = {"3x3_MBConv1": (3, 1), "5x5_MBConv1": (5, 1), "7x7_MBConv1": (7, 1)}
FIELDS = ("count", "mean", "var")
GZIP_MAGIC = b"\x1f\x8b"


class MobileTableError(ValueError):
    """The mobile latency table is malformed, unreadable, or lacks an entry that a network needs."""

    def __init__(self, message: str, *, key: str | None = None, missing: Sequence[str] = ()):
        super().__init__(message)
        self.key = key  # the (first) key that was looked up and not found
        self.missing = list(missing)  # every key of the network that was not found


# ---------------------------------------------------------------------------------------------- reading

# a key: layer type, then -name:value fields whose values are shapes (HxWxC) or integers
_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:-[A-Za-z]+:[0-9]+(?:x[0-9]+)*)+")
_TOP_RE = re.compile(r"(\S+):")  # an entry line: the key at column 0, then the final ':'
_CHILD_RE = re.compile(r"( +)([a-z]+): (\S+)")
_INT_RE = re.compile(r"[0-9]+")
_FLOAT_RE = re.compile(r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")


def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise MobileTableError(f"cannot read the mobile latency table {path}: {e.strerror or e}") from e
    compressed = raw[:2] == GZIP_MAGIC
    if compressed:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise MobileTableError(f"{path}: not a readable gzip file ({e})") from e
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        where = "of the decompressed file" if compressed else "of the file"
        raise MobileTableError(f"{path}: not UTF-8 text (byte {e.start} {where})") from e


def read_mobile_table(path) -> dict[str, dict]:
    """Parse the authors' ``mobile_trim.yaml`` (plain or gzip-compressed, detected by its first bytes).

    Returns ``{key: {"count": int, "mean": float, "var": float}}`` in file order.  Accepted layout, and
    nothing else: entry lines ``<key>:`` at column 0 (a key as in the authors' file, e.g.
    ``Conv_1-input:7x7x320-output:7x7x1280``), each followed by exactly the three lines ``count: <int>``,
    ``mean: <float>``, ``var: <float>`` (any order) indented by one and the same number of spaces
    throughout the file; empty lines; LF or CRLF line ends.  Anything else (comments, tabs, quotes, flow
    style, a duplicate key or field, a negative or non-finite number, an empty file) raises
    ``MobileTableError`` naming the file and line.
    """
    path = Path(path)
    text = _read_text(path)
    entries: dict[str, dict] = {}
    key = None
    key_line = 0
    indent = None

    def fail(lineno: int, why: str, line: str | None = None):
        shown = f": {line!r}" if line is not None else ""
        raise MobileTableError(f"{path}, line {lineno}: {why}{shown}")

    def close(lineno: int):
        if key is not None:
            lacking = [f for f in FIELDS if f not in entries[key]]
            if lacking:
                fail(key_line, f"entry {key!r} lacks {', '.join(lacking)} (each entry needs count, mean and var)")

    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the final newline
    for lineno, line in enumerate(lines, 1):
        if line.endswith("\r"):
            line = line[:-1]
        if line.strip() == "":
            if line:
                fail(lineno, "a blank line holds spaces or tabs", line)
            continue
        if "\t" in line:
            fail(lineno, "tab character (this table is indented with spaces only)", line)
        if not line[0].isspace():  # an entry line
            m = _TOP_RE.fullmatch(line)
            if not m:
                fail(lineno, "expected an entry line '<key>:' (a key at column 0 and a final ':')", line)
            new_key = m.group(1)
            if not _KEY_RE.fullmatch(new_key):
                fail(lineno, "not a latency-table key (expected e.g. "
                             "'expanded_conv-input:56x56x24-output:28x28x40-expand:3-kernel:3-stride:2-idskip:0')",
                     line)
            close(lineno)
            if new_key in entries:
                fail(lineno, f"duplicate key {new_key!r}")
            key, key_line = new_key, lineno
            entries[key] = {}
            continue
        m = _CHILD_RE.fullmatch(line)
        if not m:
            fail(lineno, "expected '  <count|mean|var>: <number>'", line)
        if key is None:
            fail(lineno, "an indented field before the first entry line", line)
        if indent is None:
            indent = len(m.group(1))
        elif len(m.group(1)) != indent:
            fail(lineno, f"indented by {len(m.group(1))} spaces, the file's fields by {indent}", line)
        name, value = m.group(2), m.group(3)
        if name not in FIELDS:
            fail(lineno, f"unknown field {name!r} (expected count, mean or var)", line)
        if name in entries[key]:
            fail(lineno, f"field {name!r} given twice for {key!r}", line)
        if name == "count":
            if not _INT_RE.fullmatch(value) or int(value) < 1:
                fail(lineno, "count must be a positive integer", line)
            entries[key][name] = int(value)
        else:
            if not _FLOAT_RE.fullmatch(value):
                fail(lineno, f"{name} must be a number", line)
            number = float(value)
            if not math.isfinite(number) or number < 0:
                fail(lineno, f"{name} must be a finite number >= 0", line)
            entries[key][name] = number
    close(len(lines))
    if not entries:
        raise MobileTableError(f"{path}: no entries (an empty mobile latency table)")
    return entries


# ---------------------------------------------------------------------------------------------- keys

def _shape(*dims: int) -> str:
    for d in dims:
        if isinstance(d, bool) or not isinstance(d, int) or d < 1:
            raise ValueError(f"shape dimensions must be positive integers, got {dims}")
    return "x".join(str(d) for d in dims)


def conv_key(in_size: int, in_ch: int, out_size: int, out_ch: int) -> str:
    """The first conv (3x3, stride 2): ``Conv-input:224x224x3-output:112x112x32``."""
    return f"Conv-input:{_shape(in_size, in_size, in_ch)}-output:{_shape(out_size, out_size, out_ch)}"


def feature_mix_key(size: int, in_ch: int, out_ch: int) -> str:
    """The 1x1 feature-mix conv before pooling: ``Conv_1-input:7x7x320-output:7x7x1280``."""
    return f"Conv_1-input:{_shape(size, size, in_ch)}-output:{_shape(size, size, out_ch)}"


def logits_key(size: int, in_features: int, num_classes: int) -> str:
    """Everything after the feature mix (pooling, linear): ``Logits-input:7x7x1280-output:1000``."""
    return f"Logits-input:{_shape(size, size, in_features)}-output:{_shape(num_classes)}"


def block_key(in_size: int, in_ch: int, out_size: int, out_ch: int, expand: int, kernel: int, stride: int,
              idskip: int) -> str:
    """An MBConv block: ``expanded_conv-input:112x112x16-output:56x56x24-expand:3-kernel:5-stride:2-idskip:0``
    (idskip 1: the block has an identity shortcut)."""
    if idskip not in (0, 1):
        raise ValueError(f"idskip must be 0 or 1, got {idskip!r}")
    for name, v in (("expand", expand), ("kernel", kernel), ("stride", stride)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    return (f"expanded_conv-input:{_shape(in_size, in_size, in_ch)}-output:{_shape(out_size, out_size, out_ch)}"
            f"-expand:{expand}-kernel:{kernel}-stride:{stride}-idskip:{int(idskip)}")


def parse_key(key: str) -> dict:
    """Split a key into its layer type and fields: ``{"type": "expanded_conv", "input": (112, 112, 16),
    "output": (56, 56, 24), "expand": 3, "kernel": 5, "stride": 2, "idskip": 0}`` (shapes as tuples,
    other values as ints).  Raises ``MobileTableError`` on a string that is not a key."""
    if not isinstance(key, str) or not _KEY_RE.fullmatch(key):
        raise MobileTableError(f"not a mobile latency table key: {key!r}", key=key if isinstance(key, str) else None)
    ltype, *fields = key.split("-")
    out: dict = {"type": ltype}
    for f in fields:
        name, value = f.split(":")
        if name in out:
            raise MobileTableError(f"field {name!r} twice in key {key!r}", key=key)
        out[name] = tuple(int(v) for v in value.split("x")) if name in ("input", "output") else int(value)
    return out


# ---------------------------------------------------------------------------------------------- table

class MobileTable:
    """The entries of a mobile latency table, and network latencies summed from them as the official
    estimator does (see the module docstring for how each layer is keyed)."""

    def __init__(self, entries: Mapping[str, Mapping], source: str | None = None):
        self.entries = {k: dict(v) for k, v in entries.items()}
        self.source = source or "the mobile latency table"
        for k, v in self.entries.items():
            if "mean" not in v:
                raise MobileTableError(f"{self.source}: entry {k!r} has no mean", key=k)

    @classmethod
    def from_file(cls, path) -> "MobileTable":
        return cls(read_mobile_table(path), source=str(path))

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, key) -> bool:
        return key in self.entries

    def keys(self) -> list[str]:
        return list(self.entries)

    def to_entries(self) -> list[tuple[str, float]]:
        """(key, mean ms) for every entry, in file order -- what a converter to another table format needs;
        ``parse_key`` splits a key into its shapes and fields."""
        return [(k, float(v["mean"])) for k, v in self.entries.items()]

    # -- lookups

    def closest_keys(self, key: str, limit: int = 6) -> list[str]:
        """Keys present with the same layer type and the same input and output shape as ``key`` (for a block:
        other kernel / expand / stride / idskip); when there are none, those of that type sharing the input
        or the output shape; when the key does not parse, the most similar strings."""
        try:
            want = parse_key(key)
        except MobileTableError:
            return difflib.get_close_matches(str(key), self.entries, n=limit, cutoff=0.6)
        same, near = [], []
        for k in self.entries:
            try:
                have = parse_key(k)
            except MobileTableError:
                continue
            if have["type"] != want["type"]:
                continue
            if have.get("input") == want.get("input") and have.get("output") == want.get("output"):
                same.append(k)
            elif have.get("input") == want.get("input") or have.get("output") == want.get("output"):
                near.append(k)
        chosen = same or near
        return difflib.get_close_matches(key, chosen, n=limit, cutoff=0.0) if len(chosen) > limit else chosen

    def _missing_message(self, key: str) -> str:
        close = self.closest_keys(key)
        if close:
            try:
                want = parse_key(key)
                same = all((parse_key(c).get("input"), parse_key(c).get("output"))
                           == (want.get("input"), want.get("output")) for c in close)
            except MobileTableError:
                same = False
            what = "with the same input/output shape" if same else "closest present (no entry has its input and output shape)"
            hint = f"; entries {what}: " + ", ".join(close)
        else:
            try:
                parse_key(key)
                hint = "; no entry of that layer type shares its input or output shape"
            except MobileTableError:
                hint = "; it is not a key of the table's form (e.g. 'Conv-input:224x224x3-output:112x112x32')"
        return f"no entry {key!r} in {self.source} ({len(self)} entries){hint}"

    def ms(self, key: str) -> float:
        """The mean latency (ms) of ``key``; a key not in the table raises ``MobileTableError`` (never 0)."""
        try:
            return float(self.entries[key]["mean"])
        except KeyError:
            raise MobileTableError(self._missing_message(key), key=key, missing=[key]) from None

    # -- blocks and networks

    @staticmethod
    def block_key_for(in_ch: int, out_ch: int, stride: int, in_size: int, op: str, *,
                      idskip: int | None = None) -> str | None:
        """The key of one block (None for ``zero``).  ``op``: one of ``SEARCH_OPS`` or ``FIRST_OPS``.
        ``idskip`` defaults to the supernet's rule: 1 when stride == 1 and in_ch == out_ch (the block has an
        identity shortcut), else 0; the first block of the official network passes 0 (no shortcut)."""
        if op == ZERO:
            if stride != 1 or in_ch != out_ch:
                raise ValueError(f"a zero block needs stride 1 and in == out channels (got stride {stride}, "
                                 f"{in_ch} -> {out_ch}); the official space offers Zero only there")
            return None
        if op in SEARCH_OPS:
            kernel, expand = SEARCH_OPS[op]
        elif op in FIRST_OPS:
            kernel, expand = FIRST_OPS[op]
        else:
            raise ValueError(f"unknown op {op!r}; expected one of {', '.join([*SEARCH_OPS, *FIRST_OPS, ZERO])}")
        if idskip is None:
            idskip = int(stride == 1 and in_ch == out_ch)
        return block_key(in_size, in_ch, in_size // stride, out_ch, expand, kernel, stride, idskip)

    def block_ms(self, in_ch: int, out_ch: int, stride: int, in_size: int, op: str, *,
                 idskip: int | None = None) -> float:
        """One block's latency (ms): its entry's mean, 0 for ``zero``."""
        key = self.block_key_for(in_ch, out_ch, stride, in_size, op, idskip=idskip)
        return 0.0 if key is None else self.ms(key)

    def expected_block_ms(self, in_ch: int, out_ch: int, stride: int, in_size: int, probs):
        """sum_i p_i * LUT(op_i) over a searched block's candidates, ``probs`` a mapping op -> probability
        (floats or 0-d torch tensors; the result is then a tensor that carries the gradient).  ``zero``
        adds 0, as in the official ``expected_latency``."""
        total = 0.0
        for op, p in probs.items():
            total = total + p * self.block_ms(in_ch, out_ch, stride, in_size, op)
        return total

    def network_layers(self, stem_ch: int, first_ch: int, blocks: Iterable[Sequence], head_ch: int,
                       num_classes: int, image_size: int = 224, *, first_op: str = "3x3_MBConv1"
                       ) -> list[tuple[str, str | None]]:
        """(layer name, key) for every layer the official estimator sums, in network order: ``conv``,
        ``block0`` (the first expand-1 block, no shortcut), ``block1`` .. (``blocks``: (in_ch, out_ch, stride,
        in_size, op) each; key None for ``zero``), ``feature_mix``, ``logits``.  Checks that each block reads
        the channels and size the previous layer writes."""
        if first_op not in FIRST_OPS:
            raise ValueError(f"first_op must be one of {', '.join(FIRST_OPS)}, got {first_op!r}")
        size = image_size // 2  # the first conv: 3x3, stride 2 (the official code: 224 -> 112)
        layers: list[tuple[str, str | None]] = [("conv", conv_key(image_size, 3, size, stem_ch))]
        layers.append(("block0", self.block_key_for(stem_ch, first_ch, 1, size, first_op, idskip=0)))
        ch = first_ch
        for i, block in enumerate(blocks, 1):
            try:
                in_ch, out_ch, stride, in_size, op = block
            except (TypeError, ValueError):
                raise ValueError(f"block {i}: expected (in_ch, out_ch, stride, in_size, op), got {block!r}") from None
            if in_ch != ch or in_size != size:
                raise ValueError(f"block {i} reads {in_size}x{in_size}x{in_ch} but the layer before it writes "
                                 f"{size}x{size}x{ch}")
            if stride not in (1, 2):
                raise ValueError(f"block {i}: stride must be 1 or 2, got {stride!r}")
            layers.append((f"block{i}", self.block_key_for(in_ch, out_ch, stride, in_size, op)))
            ch, size = out_ch, in_size // stride
        layers.append(("feature_mix", feature_mix_key(size, ch, head_ch)))
        layers.append(("logits", logits_key(size, head_ch, num_classes)))
        return layers

    def network_ms(self, stem_ch: int, first_ch: int, blocks: Iterable[Sequence], head_ch: int,
                   num_classes: int, image_size: int = 224, *, first_op: str = "3x3_MBConv1") -> float:
        """The latency (ms) of a network of the ProxylessNAS ImageNet space: first conv + first block + blocks
        + feature mix + logits, ``zero`` blocks adding 0 (the official ``net_latency`` / ``expected_latency``
        sum for a network whose blocks are chosen).  ``blocks``: (in_ch, out_ch, stride, in_size, op) for
        every block after the first, ``op`` one of ``SEARCH_OPS`` or ``zero``.  Layers without an entry raise
        one ``MobileTableError`` that names all of them (``.missing``) and the entries closest to the first."""
        layers = self.network_layers(stem_ch, first_ch, blocks, head_ch, num_classes, image_size,
                                     first_op=first_op)
        missing = [(name, key) for name, key in layers if key is not None and key not in self.entries]
        if missing:
            listed = ", ".join(f"{name} {key!r}" for name, key in missing)
            raise MobileTableError(
                f"{len(missing)} layer(s) of this network have no entry in {self.source}: {listed}. "
                f"For the first: {self._missing_message(missing[0][1])}",
                key=missing[0][1], missing=[key for _, key in missing])
        return sum(self.ms(key) for _, key in layers if key is not None)


# ------------------------------------------------------------------ into the project's table format
def to_latency_table(mobile: "MobileTable", macro: dict | None = None, num_classes: int = 1000,
                     image_size: int = 224):
    """The authors' table as a ``utils.latency_table.LatencyTable`` of the MBConv space's network of ``macro``
    (None: the paper's search space), so that the search's expected latency, its gradient, ``--derive
    within-target`` and ``python -m utils.latency predict`` read it as any table:

    * fixed = first conv + first block + feature mix + logits + each block's baseline (``zero`` where it may
      sit: 0; a stage's first block: its 3x3 MBConv3 entry) -- the table's baseline network;
    * a block's group entry for op o = LUT(o) - LUT(baseline) at that block's shape.
    So fixed + sum over blocks (entry(op) - entry(baseline)) is the authors' sum for that network exactly
    (tests/test_mobile_table.py).  A layer the table lacks is one ``MobileTableError`` naming every such key."""
    from models.mbconv.space import MBCONV  # (the reader above needs no torch; the conversion builds keys)
    from utils.latency_table import LatencyTable, fixed_key, group_shapes

    space = MBCONV
    macro = space.macro(macro)
    plan = space.latency_edges(macro, image_size)
    baseline = [(s.in_channels, s.out_channels, s.stride, s.in_size, space.baseline_for(s))
                for s in (e.shape for e in plan)]
    layers = mobile.network_layers(macro["stem"], macro["first"], baseline, macro["head"], num_classes, image_size)
    want = [key for _, key in layers if key is not None]
    for _, shape in group_shapes(space, macro, image_size):
        want += [k for op in space.primitives if space.allows(op, shape)
                 for k in [mobile.block_key_for(shape.in_channels, shape.out_channels, shape.stride, shape.in_size, op)]
                 if k is not None]
    missing = list(dict.fromkeys(k for k in want if k not in mobile.entries))
    if missing:
        raise MobileTableError(f"{len(missing)} entries the MBConv network {space.describe_macro(macro)} at "
                               f"{image_size} px needs are not in {mobile.source}: {', '.join(missing[:4])}"
                               f"{' ...' if len(missing) > 4 else ''}. For the first: "
                               f"{mobile._missing_message(missing[0])}", key=missing[0], missing=missing)
    entries = {fixed_key(space, macro, num_classes, image_size): {
        "median_ms": sum(mobile.ms(key) for _, key in layers if key is not None), "from": "authors' mobile table"}}
    for _, shape in group_shapes(space, macro, image_size):
        args = (shape.in_channels, shape.out_channels, shape.stride, shape.in_size)
        base = mobile.block_ms(*args, space.baseline_for(shape))
        for op in (op for op in space.primitives if space.allows(op, shape)):
            entries[space.group_key((op,), shape)] = {"median_ms": mobile.block_ms(*args, op) - base,
                                                      "from": mobile.block_key_for(*args, op) or "zero: 0 ms"}
    meta = {"backend": "authors-mobile", "device": "mobile", "device_name": "Google Pixel 1 (the ProxylessNAS "
            "authors' mobile_trim.yaml)", "source": str(mobile.source), "batch_size": 1, "space": space.name,
            "macro": {k: list(v) if isinstance(v, tuple) else v for k, v in macro.items()},
            "candidates": list(space.primitives), "num_classes": num_classes, "image_size": image_size}
    return LatencyTable(entries=entries, meta=meta)
