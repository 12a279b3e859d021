"""The project's ONNX exporter (export_onnx.py's default, and the networks ``python -m utils.latency sample``
writes for timing on a device): the TorchScript-based exporter, and BN statistics for a network with
random weights.  export_onnx.py adds the checks (onnx.checker, onnxruntime vs PyTorch) and the CLI."""
from __future__ import annotations

import warnings
from pathlib import Path

import torch
import torch.nn as nn

from utils.train import recalibrate_bn

INPUT_NAME, OUTPUT_NAME = "input", "logits"


@torch.no_grad()
def calibrate_bn(model: nn.Module, batches: int = 1, batch_size: int = 16) -> None:
    """Give a randomly initialised network BN statistics measured on random inputs.  With the default
    statistics (mean 0, var 1) nothing normalizes in eval mode and the logits of a deep random network
    reach ~1e16, where an absolute comparison with onnxruntime would mean nothing.  One batch of 16 is
    enough for that (each channel's statistics over >= 16 x 8 x 8 values) and cheap: for the released
    network 4 batches took 11 s of a 39 s export (bench/export_time.py)."""
    recalibrate_bn(model, (torch.randn(batch_size, 3, model.image_size, model.image_size) for _ in range(batches)))


def example_input(model: nn.Module) -> torch.Tensor:
    # batch 2: torch.export specializes dimensions whose example size is 0 or 1
    return torch.randn(2, 3, model.image_size, model.image_size)


def export_torchscript(model: nn.Module, path: Path, opset: int | None, batch: int | None = None) -> None:
    """``batch`` None: the batch axis symbolic; a number: a static input of that batch (a device's converter or
    benchmark tool may want every shape fixed: python -m utils.latency sample)."""
    with warnings.catch_warnings():
        # chosen knowingly (export_onnx.py: EXPORTER_HELP); torch's notice on every export would only repeat it
        warnings.filterwarnings("ignore", message="You are using the legacy TorchScript-based ONNX export",
                                category=DeprecationWarning)
        # F.pad's pad list reversed (a Slice with step -1, for the zero-padded shortcut): the exporter
        # notes that it does not fold it; onnxruntime folds such constants when it loads the graph
        warnings.filterwarnings("ignore", message="Constant folding - Only steps=1", category=UserWarning)
        example = example_input(model) if batch is None else torch.randn(batch, 3, model.image_size, model.image_size)
        torch.onnx.export(model, (example,), str(path), dynamo=False, input_names=[INPUT_NAME],
                          output_names=[OUTPUT_NAME], opset_version=opset,
                          dynamic_axes=None if batch is not None else {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}})
