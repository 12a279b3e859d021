"""test_run.py --synthetic with tiny sizes: the whole pipeline in seconds."""
import json

import pytest

import genotypes
import test_run


@pytest.mark.parametrize("space", ["tree", "nb201"])
def test_pipeline_end_to_end(tmp_path, space):
    args = test_run.get_args_parser().parse_args([
        "--synthetic", "--train-images", "80", "--arch-split", "16", "--test-images", "32",
        "--warmup-epochs", "1", "--search-epochs", "1", "--train-epochs", "1", "--batch-size", "16", "--arch-every", "1",
        "--output", str(tmp_path / "run"), "--no-progress", "--device", "cpu", "--space", space])
    res = test_run.main(args)
    run = tmp_path / "run"
    g = genotypes.get(str(run / "search" / "genotype_final.json"))
    assert res["genotype"] == g
    results = json.loads((run / "train" / "results.json").read_text())
    assert results["params"] == res["train"]["params"] > 0 and results["epochs"] == 1
    assert (run / "model.onnx").stat().st_size > 0
    assert max(res["export"]["max_abs_diff"].values()) <= 1e-4
    assert any(str(p).endswith("_cell.gv") for p in res["pictures"])
    assert set(res["times"]) == {"data", "search", "retrain", "visualize", "export"}
    assert g.space == {"tree": "proxyless_cifar_tree", "nb201": "nb201"}[space]
    learned = res["learning"]
    assert learned["entropy_end"] < learned["entropy_start"]  # alpha left uniform (the summary's figures)
    assert learned["prob_end"] > learned["prob_start"]
    if space == "nb201":  # the shipped table judged the final cell
        from models.nb201.table import NB201Table
        assert learned["table_acc"] == NB201Table.load(test_run.NB201_TABLE).lookup(g)
        assert learned["table_acc"] != learned["random_mean"]
