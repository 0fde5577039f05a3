"""Export a torch backbone to an ONNX file that onnxruntime runs fast on the CPU.

The export uses a fixed spatial size: TF "same" padding (timm's `Conv2dSame`, used by the `tf_`
models) is computed for that size once and folded into each Conv's own `pads`. A dynamic-shape
export leaves 200+ small Shape/Ceil/Pad ops around the stride-2 convolutions, which makes int8
three times slower (NOTES.md). Only the batch axis stays dynamic.
"""

from __future__ import annotations

import copy
import logging
import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import onnx
import onnxruntime as ort
import torch
from timm.layers import Conv2dSame
from timm.layers.padding import get_same_padding

from embeddings.backbone import Backbone
from embeddings.onnx_runtime import INPUT_NAME, OUTPUT_NAME

log = logging.getLogger(__name__)

OPSET = 17


def with_static_padding(model: torch.nn.Module, input_size: Sequence[int]) -> torch.nn.Module:
    """A copy of `model` whose `Conv2dSame` layers pad by constants computed for `input_size`.

    Each becomes ZeroPad2d + Conv2d; `optimize_offline` later merges the pair into one Conv.
    """
    model = copy.deepcopy(model).eval()
    seen: dict[str, tuple[int, int]] = {}
    hooks = []
    for name, module in model.named_modules():
        if isinstance(module, Conv2dSame):
            hooks.append(module.register_forward_pre_hook(
                lambda _m, inputs, name=name: seen.__setitem__(name, tuple(inputs[0].shape[-2:]))))
    with torch.no_grad():
        model(torch.zeros(1, *input_size))
    for hook in hooks:
        hook.remove()
    for name, (height, width) in seen.items():
        conv: Conv2dSame = model.get_submodule(name)
        pad_h = get_same_padding(height, conv.kernel_size[0], conv.stride[0], conv.dilation[0])
        pad_w = get_same_padding(width, conv.kernel_size[1], conv.stride[1], conv.dilation[1])
        plain = torch.nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, 0,
                                conv.dilation, conv.groups, conv.bias is not None)
        plain.load_state_dict(conv.state_dict())
        pads = (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2)
        replacement = torch.nn.Sequential(torch.nn.ZeroPad2d(pads), plain) if any(pads) else plain
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, replacement)
    return model


def optimize_offline(path: Path) -> dict[str, int]:
    """Rewrite `path` with onnxruntime's basic (standard-ops-only) graph optimisations.

    Constant folding turns the exported pad arithmetic into constants and PadFusion merges each
    zero Pad into the Conv after it. Returns the op counts of the result.
    """
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(path)
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return dict(Counter(node.op_type for node in onnx.load(str(path)).graph.node))


def export_module(model: torch.nn.Module, input_size: Sequence[int], path: Path, *,
                  batch_dynamic: bool = True) -> Path:
    """Export a features-only module (pooled pre-logits out) to `path` at a static spatial size."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    static = with_static_padding(model.float().cpu(), input_size)
    dummy = torch.randn(2, *input_size)
    axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if batch_dynamic else None
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's constant-folding chatter about Slice steps
        torch.onnx.export(static, (dummy,), str(path), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                          dynamic_axes=axes, opset_version=OPSET, do_constant_folding=True, dynamo=False)
    ops = optimize_offline(path)
    if ops.get("Pad"):
        log.warning("%s: %d Pad nodes were not folded into convolutions", path, ops["Pad"])
    log.debug("exported %s: ops %s", path, ops)
    return path


def export_onnx(backbone: Backbone, path: Path, *, batch_dynamic: bool = True) -> Path:
    """Export a `Backbone` (its torch model at its data config's input size) to an ONNX file."""
    input_size = backbone.data_config["input_size"]
    return export_module(backbone.torch_model(), input_size, path, batch_dynamic=batch_dynamic)
