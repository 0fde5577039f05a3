"""`embed`: the one entry point of an embed job, on either engine.

An engine runs the whole job: `local` (decoding workers and one model on this machine,
`embeddings.runner`) or `ray` (Ray Data, on a local instance or a cluster, `embeddings.ray_engine`;
ray is imported only then). Both write the same embedding set, resume the same way and return the
same report. The runtime that runs the model (torch or onnxruntime) is chosen here for both.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from embeddings.backbone import Backbone
from embeddings.backbones import load_backbone
from embeddings.errors import InputError
from embeddings.names import ENGINES
from embeddings.runner import EmbedOptions, embed_catalog
from embeddings.runtimes import with_runtime


def embed(
    catalog: pd.DataFrame,
    out_dir: Path,
    backbone: Backbone | str,
    options: EmbedOptions | None = None,
    *,
    engine: str = "local",
    runtime: str = "auto",
    source: str = "",
    ray_address: str | None = None,
    ray_actors: int | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Embed every catalogue item into `out_dir` and return the run report.

    `backbone` is a `Backbone` or a model SPEC; `runtime` is auto, torch or onnx (auto: onnxruntime
    on the CPU, torch on a GPU; an ONNX artifact always runs on onnxruntime). Raises
    `embeddings.runner.EmbedFailed` (with the report) when too many items failed.
    """
    if engine not in ENGINES:
        raise InputError(f"--engine {engine!r}: expected one of {', '.join(ENGINES)}")
    options = options or EmbedOptions()
    if not isinstance(backbone, Backbone):
        backbone = load_backbone(str(backbone))
    if engine == "ray":
        from embeddings.ray_engine import embed_with_ray

        return embed_with_ray(catalog, out_dir, backbone, options, runtime=runtime, address=ray_address,
                              actors=ray_actors, source=source, on_progress=on_progress)
    backbone = with_runtime(backbone, runtime, options.device)
    return embed_catalog(catalog, out_dir, backbone, options, source=source, on_progress=on_progress)
