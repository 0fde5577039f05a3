"""Export a backbone to ONNX and run it with onnxruntime on the CPU.

The export uses a fixed spatial size: TF "same" padding (timm's `Conv2dSame`, used by the `tf_`
models) is computed for that size once and folded into each Conv's own `pads`. A dynamic-shape
export leaves 200+ small Shape/Ceil/Pad ops around the stride-2 convolutions, which makes int8
three times slower (NOTES.md). Only the batch axis stays dynamic.
"""

from __future__ import annotations

import copy
import logging
import os
import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from PIL import Image
from timm.layers import Conv2dSame
from timm.layers.padding import get_same_padding

from embeddings.embedder import l2_normalize
from embeddings.errors import InputError
from embeddings.preprocess import build_transform

log = logging.getLogger(__name__)

INPUT_NAME = "pixels"
OUTPUT_NAME = "features"
OPSET = 17


def available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


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


def export_onnx(backbone: Any, path: Path, *, batch_dynamic: bool = True) -> Path:
    """Export a `Backbone` (its `.model` at its data config's input size) to an ONNX file."""
    input_size = backbone.data_config["input_size"]
    return export_module(backbone.model, input_size, path, batch_dynamic=batch_dynamic)


def make_session(onnx_path: Path, threads: int | None = None) -> ort.InferenceSession:
    """A CPU session with all graph optimisations and intra-op threads sized to the cores."""
    if not Path(onnx_path).is_file():
        raise InputError(f"{onnx_path}: ONNX model file not found")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or available_cores()
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])


class OnnxEmbedder:
    """The `embeddings.embedder.Embedder` surface over an onnxruntime session.

    `projection` (dim_in, dim_out) and `mean`, when given, map the unit vectors to fewer dimensions
    (PCA fit on unit vectors), which are normalised again.
    """

    def __init__(self, onnx_path: Path, data_config: dict[str, Any], dim: int, threads: int | None = None,
                 *, projection: np.ndarray | None = None, mean: np.ndarray | None = None) -> None:
        self.onnx_path = Path(onnx_path)
        self.session = make_session(self.onnx_path, threads)
        self.transform = build_transform(data_config)
        self.data_config = data_config
        self.projection = projection
        self.mean = mean
        self._dim = dim

    @property
    def dim(self) -> int:
        return self._dim

    def features(self, batch: np.ndarray) -> np.ndarray:
        """Raw pooled features (not normalised) of a preprocessed float32 (n, 3, H, W) batch."""
        return self.session.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(batch, np.float32)})[0]

    def embed_tensors(self, batch: torch.Tensor | np.ndarray) -> np.ndarray:
        """A (n, 3, H, W) batch, already preprocessed, to (n, dim) unit vectors."""
        array = batch.numpy() if isinstance(batch, torch.Tensor) else batch
        if len(array) == 0:
            return np.zeros((0, self.dim), np.float32)
        vectors = l2_normalize(self.features(array))
        if self.projection is not None:
            vectors = l2_normalize((vectors - self.mean) @ self.projection)
        return vectors

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """RGB PIL images to (n, dim) unit vectors, with the model's own preprocessing."""
        if not images:
            return np.zeros((0, self.dim), np.float32)
        return self.embed_tensors(torch.stack([self.transform(image) for image in images]))
