"""Post-training quantization: static int8 for onnxruntime on CPUs, fp16/bf16 weights for GPUs.

int8 is QDQ with per-channel weights and unsigned activations (the fast path of onnxruntime's
VNNI/AMX kernels). Which layers stay in float matters most: measured on the Lite0 teacher
(BENCHMARKS.md "Compression"), the stem and the first block (32 channels at 112x112, 3% of the
MACs) carry most of the int8 error; keeping them in float lifts the mean cosine to fp32 from 0.971
to 0.990 at almost no cost in speed. With them in float, MinMax calibration was as faithful as
percentile or entropy calibration and several times quicker to run.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quant_pre_process,
    quantize_static,
)

from embeddings.errors import InputError
from embeddings.names import QUANTIZE_PRECISIONS
from embeddings.onnx_runtime import INPUT_NAME

log = logging.getLogger(__name__)

CALIBRATION_METHODS = {
    "minmax": CalibrationMethod.MinMax,
    "percentile": CalibrationMethod.Percentile,
    "entropy": CalibrationMethod.Entropy,
}
DEFAULT_KEEP_FLOAT = ("/conv_stem/", "/blocks.0/")  # timm EfficientNet/MobileNet module names
PRECISIONS = QUANTIZE_PRECISIONS


class _Batches(CalibrationDataReader):
    def __init__(self, batches: Iterable[np.ndarray]) -> None:
        self._batches = iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {INPUT_NAME: np.ascontiguousarray(batch, np.float32)}


def nodes_matching(onnx_path: Path, patterns: Sequence[str]) -> list[str]:
    """Names of the Conv/Gemm/MatMul nodes whose name contains any of `patterns`."""
    graph = onnx.load(str(onnx_path)).graph
    return [node.name for node in graph.node
            if node.op_type in ("Conv", "Gemm", "MatMul") and any(p in node.name for p in patterns)]


def quantize_int8(
    fp32_onnx: Path,
    out_path: Path,
    calibration: Iterable[np.ndarray],
    *,
    method: str = "minmax",
    percentile: float = 99.999,
    keep_float: Sequence[str] = DEFAULT_KEEP_FLOAT,
    per_channel: bool = True,
    options: dict[str, Any] | None = None,
) -> Path:
    """Static int8 (QDQ) copy of `fp32_onnx`, calibrated on preprocessed float32 batches."""
    if method not in CALIBRATION_METHODS:
        raise InputError(f"calibration method {method!r}: expected one of {', '.join(CALIBRATION_METHODS)}")
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_path.parent) as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32_onnx), str(prepared), skip_symbolic_shape=True)
        excluded = nodes_matching(prepared, keep_float)
        extra = {"CalibPercentile": percentile} if method == "percentile" else {}
        root = logging.getLogger()
        level = root.level
        root.setLevel(max(level, logging.WARNING))  # the quantizer logs one INFO line per rescaled bias
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # its calibrator prints its progress
                quantize_static(
                    str(prepared),
                    str(out_path),
                    _Batches(calibration),
                    quant_format=QuantFormat.QDQ,
                    per_channel=per_channel,
                    # 7-bit weights: on CPUs without VNNI (AVX2 only) onnxruntime's u8s8 kernel
                    # sums pairs of products in int16 and saturates; measured on such a machine,
                    # mean cosine to fp32 0.978 -> 0.984 on real photos. Costs nothing measurable.
                    reduce_range=True,
                    activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8,
                    calibrate_method=CALIBRATION_METHODS[method],
                    nodes_to_exclude=excluded,
                    extra_options={**extra, **(options or {})},
                )
        finally:
            root.setLevel(level)
    log.info("int8 model %s: %d nodes kept in float (%s)", out_path, len(excluded), ", ".join(excluded))
    return out_path


def cast_weights(model: torch.nn.Module, precision: str) -> torch.nn.Module:
    """fp16 or bf16 weights for GPUs (the torch runtime autocasts there); fp32 for `none`."""
    dtypes = {"fp16": torch.float16, "bf16": torch.bfloat16, "none": torch.float32}
    if precision not in dtypes:
        raise InputError(f"--quantize {precision!r}: expected one of {', '.join(PRECISIONS)}")
    return model.to(dtypes[precision])
