"""The authors' mobile latency lookup table (utils/mobile_latency.py): the strict reader, the keys, and network
latencies summed as the official estimator does.  The real table is read only when PNAS_REFERENCE is set."""
import gzip
import json

import pytest

from utils.mobile_latency import (FIRST_OPS, SEARCH_OPS, MobileTable, MobileTableError, block_key, conv_key,
                                  feature_mix_key, logits_key, parse_key, read_mobile_table)

# a few entries in the authors' layout (values from the released table)
GOOD = """\
Conv-input:224x224x3-output:112x112x32:
  count: 982
  mean: 4.083755600814664
  var: 0.2502372872758427
Conv_1-input:7x7x320-output:7x7x1280:
  count: 982
  mean: 3.088623217922607
  var: 0.19174675835259503
Logits-input:7x7x1280-output:1000:
  count: 982
  mean: 0.3096415478615071
  var: 0.05583766681628091
expanded_conv-input:112x112x16-output:56x56x24-expand:3-kernel:5-stride:2-idskip:0:
  count: 159
  mean: 7.519106918238994
  var: 0.09288016159302682
expanded_conv-input:112x112x16-output:56x56x24-expand:6-kernel:3-stride:2-idskip:0:
  count: 173
  mean: 16.766225433526014
  var: 0.5075419297470916
expanded_conv-input:112x112x32-output:112x112x16-expand:1-kernel:3-stride:1-idskip:0:
  count: 318
  mean: 3.8821352201257864
  var: 0.08233688249297659
expanded_conv-input:56x56x24-output:56x56x24-expand:3-kernel:3-stride:1-idskip:1:
  count: 100
  mean: 2.5
  var: 0.01
"""

STAGES = [24, 40, 80, 96, 192, 320]
DEPTHS = [4, 4, 4, 4, 4, 1]
STRIDES = [2, 2, 2, 1, 2, 1]


def write(tmp_path, text, name="table.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def default_blocks(op_of):
    """The default space's blocks after the first: (in_ch, out_ch, stride, in_size, op); op_of(i) picks the op of
    the i-th block of a stage."""
    blocks, ch, size = [], 16, 112
    for width, depth, s in zip(STAGES, DEPTHS, STRIDES):
        for i in range(depth):
            stride = s if i == 0 else 1
            blocks.append((ch, width, stride, size, op_of(i)))
            ch, size = width, size // stride
    return blocks


# ---------------------------------------------------------------------------------------------- reader

def test_reads_the_authors_layout(tmp_path):
    entries = read_mobile_table(write(tmp_path, GOOD))
    assert len(entries) == 7
    assert list(entries)[0] == "Conv-input:224x224x3-output:112x112x32"
    assert entries["Logits-input:7x7x1280-output:1000"] == {
        "count": 982, "mean": 0.3096415478615071, "var": 0.05583766681628091}
    assert isinstance(entries["Conv-input:224x224x3-output:112x112x32"]["count"], int)


def test_reads_gzip_and_crlf(tmp_path):
    plain = read_mobile_table(write(tmp_path, GOOD))
    gz = tmp_path / "table.yaml.gz"
    gz.write_bytes(gzip.compress(GOOD.encode()))
    assert read_mobile_table(gz) == plain
    odd = tmp_path / "no_suffix"  # detected by the first bytes, not the name
    odd.write_bytes(gzip.compress(GOOD.replace("\n", "\r\n").encode()))
    assert read_mobile_table(odd) == plain


@pytest.mark.parametrize("line, bad, why", [
    (6, "  counts: 982\n", "unknown field"),
    (3, "  mean: fast\n", "must be a number"),
    (4, "\tvar: 0.25\n", "tab"),
    (2, "  count: -3\n", "positive integer"),
    (5, "Conv_1-input:7x7x320-output:7x7x1280: {count: 1}\n", "entry line"),
    (7, "# a comment\n", "entry line"),
    (3, "    mean: 4.0\n", "indented by 4"),
    (1, "'Conv-input:224x224x3-output:112x112x32':\n", "not a latency-table key"),
    (9, "Logits input:7x7x1280-output:1000:\n", "entry line"),
])
def test_malformed_line_names_its_number(tmp_path, line, bad, why):
    lines = GOOD.splitlines(keepends=True)
    lines[line - 1] = bad
    p = write(tmp_path, "".join(lines))
    with pytest.raises(MobileTableError) as e:
        read_mobile_table(p)
    assert f"line {line}:" in str(e.value) and why in str(e.value)
    assert isinstance(e.value, ValueError)


def test_structural_errors(tmp_path):
    head = "Conv-input:224x224x3-output:112x112x32:\n"
    cases = {
        "duplicate key": GOOD + head + "  count: 1\n  mean: 1.0\n  var: 0.0\n",
        "lacks var": head + "  count: 1\n  mean: 1.0\n" + "Logits-input:7x7x1280-output:1000:\n  count: 1\n",
        "given twice": head + "  count: 1\n  count: 2\n",
        "before the first entry": "  count: 1\n",
        "not a latency-table key": "Conv-input:a:\n  count: 1\n  mean: 1.0\n  var: 0.0\n",
        "no entries": "\n\n",
        "finite number": head + "  count: 1\n  mean: 1e999\n  var: 0.0\n",
    }
    for why, text in cases.items():
        with pytest.raises(MobileTableError, match=why) as e:
            read_mobile_table(write(tmp_path, text))
        assert why == "no entries" or "line " in str(e.value)
    gz = tmp_path / "broken.gz"
    gz.write_bytes(gzip.compress(GOOD.encode())[:40])
    with pytest.raises(MobileTableError, match="gzip"):
        read_mobile_table(gz)
    with pytest.raises(MobileTableError, match="cannot read"):
        read_mobile_table(tmp_path / "absent.yaml")


# ---------------------------------------------------------------------------------------------- keys

def test_key_builders_match_the_authors_keys(tmp_path):
    entries = read_mobile_table(write(tmp_path, GOOD))
    assert conv_key(224, 3, 112, 32) in entries
    assert feature_mix_key(7, 320, 1280) in entries
    assert logits_key(7, 1280, 1000) in entries
    assert block_key(112, 16, 56, 24, 3, 5, 2, 0) in entries
    assert block_key(112, 32, 112, 16, 1, 3, 1, 0) in entries
    for k in entries:
        p = parse_key(k)
        if p["type"] == "expanded_conv":
            assert block_key(p["input"][0], p["input"][2], p["output"][0], p["output"][2], p["expand"], p["kernel"],
                             p["stride"], p["idskip"]) == k
    table = MobileTable(entries)
    # the supernet's rule: an identity shortcut (idskip 1) exactly when stride 1 and in == out
    assert table.block_key_for(24, 24, 1, 56, "3x3_MBConv3").endswith("idskip:1")
    assert table.block_key_for(16, 24, 2, 112, "5x5_MBConv3").endswith("idskip:0")
    assert table.block_key_for(24, 24, 1, 56, "zero") is None
    with pytest.raises(ValueError, match="zero block"):
        table.block_key_for(16, 24, 2, 112, "zero")
    with pytest.raises(ValueError, match="unknown op"):
        table.block_key_for(16, 24, 2, 112, "3x3_MBConv4")


def test_missing_key_is_one_clear_error(tmp_path):
    table = MobileTable.from_file(write(tmp_path, GOOD))
    assert table.ms(conv_key(224, 3, 112, 32)) == pytest.approx(4.083755600814664)
    missing = block_key(112, 16, 56, 24, 3, 7, 2, 0)
    with pytest.raises(MobileTableError) as e:
        table.ms(missing)
    msg = str(e.value)
    assert e.value.key == missing and repr(missing) in msg and "table.yaml" in msg
    # the entries present with its input/output shape (other kernels / expansions) are named
    assert "same input/output shape" in msg
    assert block_key(112, 16, 56, 24, 3, 5, 2, 0) in msg and block_key(112, 16, 56, 24, 6, 3, 2, 0) in msg
    with pytest.raises(MobileTableError, match="not a key"):
        table.ms("bogus")
    assert table.block_ms(24, 24, 1, 56, "zero") == 0.0


def test_expected_block_and_network_sum(tmp_path):
    table = MobileTable.from_file(write(tmp_path, GOOD))
    probs = {"3x3_MBConv3": 0.25, "zero": 0.75}
    assert table.expected_block_ms(24, 24, 1, 56, probs) == pytest.approx(0.25 * 2.5)
    torch = pytest.importorskip("torch")
    p = torch.tensor([0.3, 0.7], requires_grad=True)
    e = table.expected_block_ms(16, 24, 2, 112, {"5x5_MBConv3": p[0], "3x3_MBConv6": p[1]})
    e.backward()
    assert p.grad.tolist() == pytest.approx([7.519106918238994, 16.766225433526014])
    # a tiny network: first conv, first block, one stride-2 block, one identity block, one zero block
    blocks = [(16, 24, 2, 112, "5x5_MBConv3"), (24, 24, 1, 56, "3x3_MBConv3"), (24, 24, 1, 56, "zero")]
    layers = table.network_layers(32, 16, blocks, 1280, 1000, 224)
    assert [name for name, _ in layers] == ["conv", "block0", "block1", "block2", "block3", "feature_mix", "logits"]
    assert layers[-2][1] == "Conv_1-input:56x56x24-output:56x56x1280"  # not in the small table
    with pytest.raises(MobileTableError) as err:
        table.network_ms(32, 16, blocks, 1280, 1000, 224)
    assert err.value.missing == ["Conv_1-input:56x56x24-output:56x56x1280",
                                 "Logits-input:56x56x1280-output:1000"]
    with pytest.raises(ValueError, match="reads"):
        table.network_ms(32, 16, [(16, 24, 2, 56, "5x5_MBConv3")], 1280, 1000, 224)


def test_to_entries(tmp_path):
    table = MobileTable.from_file(write(tmp_path, GOOD))
    entries = table.to_entries()
    assert len(entries) == 7 and entries[2] == ("Logits-input:7x7x1280-output:1000", 0.3096415478615071)


# ---------------------------------------------------------------------------------------------- the real table

def test_real_table_parses(reference_dir):
    entries = read_mobile_table(reference_dir / "mobile_trim.yaml")
    assert len(entries) == 72
    for key, value in entries.items():
        p = parse_key(key)
        assert p["type"] in ("Conv", "Conv_1", "Logits", "expanded_conv")
        assert value["count"] >= 1 and value["mean"] > 0 and value["var"] >= 0
        if p["type"] == "expanded_conv":
            kernel_expand = (p["kernel"], p["expand"])
            assert kernel_expand in SEARCH_OPS.values() or kernel_expand in FIRST_OPS.values()
            # idskip 1 exactly where the supernet puts an identity shortcut (never on the first block)
            assert p["idskip"] == int(p["stride"] == 1 and p["input"] == p["output"])


def test_released_mobile_network_lacks_its_32_channel_stage(reference_dir):
    config = json.loads((reference_dir / "proxyless_mobile.config").read_text())
    first, *rest = config["blocks"]
    stem_ch = config["first_conv"]["out_channels"]
    first_conv = first["mobile_inverted_conv"]
    assert (first_conv["kernel_size"], first_conv["expand_ratio"], first["shortcut"]) == (3, 1, None)
    names = {v: k for k, v in SEARCH_OPS.items()}
    blocks, ch, size = [], first_conv["out_channels"], 112
    for b in rest:
        conv = b["mobile_inverted_conv"]
        if conv["name"] == "ZeroLayer":
            blocks.append((ch, ch, conv["stride"], size, "zero"))
            continue
        assert (b["shortcut"] is not None) == (conv["stride"] == 1 and conv["in_channels"] == conv["out_channels"])
        op = names[(conv["kernel_size"], conv["expand_ratio"])]
        blocks.append((conv["in_channels"], conv["out_channels"], conv["stride"], size, op))
        ch, size = conv["out_channels"], size // conv["stride"]
    table = MobileTable.from_file(reference_dir / "mobile_trim.yaml")
    with pytest.raises(MobileTableError) as e:
        table.network_ms(stem_ch, first_conv["out_channels"], blocks, config["feature_mix_layer"]["out_channels"],
                         config["classifier"]["out_features"], 224)
    missing = e.value.missing
    assert len(missing) == 3
    assert all(parse_key(k)["input"][2] == 32 or parse_key(k)["output"][2] == 32 for k in missing)
    assert missing[0] in str(e.value)
    assert e.value.key == "expanded_conv-input:112x112x16-output:56x56x32-expand:3-kernel:5-stride:2-idskip:0"


def test_default_network_equals_hand_sum(reference_dir):
    raw = read_mobile_table(reference_dir / "mobile_trim.yaml")
    table = MobileTable(raw)
    # summed here from the raw dict with keys written out by hand
    total = raw["Conv-input:224x224x3-output:112x112x32"]["mean"]
    total += raw["expanded_conv-input:112x112x32-output:112x112x16-expand:1-kernel:3-stride:1-idskip:0"]["mean"]
    ch, size, n = 16, 112, 0
    for width, depth, s in zip(STAGES, DEPTHS, STRIDES):
        for i in range(depth):
            stride = s if i == 0 else 1
            out = size // stride
            skip = 1 if (stride == 1 and ch == width) else 0
            total += raw[f"expanded_conv-input:{size}x{size}x{ch}-output:{out}x{out}x{width}"
                         f"-expand:3-kernel:3-stride:{stride}-idskip:{skip}"]["mean"]
            ch, size, n = width, out, n + 1
    total += raw["Conv_1-input:7x7x320-output:7x7x1280"]["mean"]
    total += raw["Logits-input:7x7x1280-output:1000"]["mean"]
    assert n == 21
    got = table.network_ms(32, 16, default_blocks(lambda i: "3x3_MBConv3"), 1280, 1000, 224)
    assert got == pytest.approx(total, rel=1e-12)
    # wider expansion costs more; skipping every block a stage may skip costs less
    bigger = table.network_ms(32, 16, default_blocks(lambda i: "3x3_MBConv6"), 1280, 1000, 224)
    smallest = table.network_ms(32, 16, default_blocks(lambda i: "3x3_MBConv3" if i == 0 else "zero"),
                                1280, 1000, 224)
    assert smallest < got < bigger
