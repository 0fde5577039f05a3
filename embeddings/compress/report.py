"""Fidelity and cost of compressed variants against the teacher: metrics, report.json, report.png.

Fidelity is measured where it matters for recommendations: mean cosine of each held-out item's
vector to the teacher's, the overlap of each item's 10 nearest neighbours with the teacher's, and
near-duplicate recall on real photos (an augmented copy finds its siblings).
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from embeddings.embedding_set import read_embedding_set

if TYPE_CHECKING:
    import torch

    from embeddings.backbone import Backbone
    from embeddings.onnx_runtime import OnnxEmbedder
    from embeddings.torch_runtime import TorchEmbedder


def mean_cosine(reference: np.ndarray, candidate: np.ndarray) -> tuple[float, float]:
    """Mean and minimum cosine between aligned rows of two sets of unit vectors."""
    cosines = (reference * candidate).sum(axis=1)
    return float(cosines.mean()), float(cosines.min())


def top_k(vectors: np.ndarray, k: int) -> np.ndarray:
    """Each row's k nearest other rows by inner product (exact)."""
    scores = vectors @ vectors.T
    np.fill_diagonal(scores, -np.inf)
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def neighbour_overlap(reference: np.ndarray, candidate: np.ndarray, k: int = 10) -> float:
    """Mean fraction of each item's k nearest neighbours under `reference` that `candidate` keeps."""
    k = min(k, len(reference) - 1)
    ref, cand = top_k(reference, k), top_k(candidate, k)
    return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(ref, cand)]))


def near_duplicate_recall(vectors: np.ndarray, labels: np.ndarray, queries: np.ndarray) -> float:
    """For each query row, the share of its same-label siblings found among its top-N (N siblings)."""
    labels = np.asarray(labels)
    scores = vectors @ vectors.T
    np.fill_diagonal(scores, -np.inf)
    recalls = []
    for row in np.flatnonzero(queries):
        siblings = int((labels == labels[row]).sum()) - 1
        top = np.argsort(-scores[row])[:siblings]
        recalls.append(float((labels[top] == labels[row]).sum()) / siblings)
    return float(np.mean(recalls))


def model_throughput(embedder: TorchEmbedder | OnnxEmbedder, batch: torch.Tensor | np.ndarray,
                     min_images: int = 96) -> float:
    """Images per second of the model alone on a preprocessed batch (after one warm-up call)."""
    embedder.embed_tensors(batch[:2])
    done, started = 0, time.perf_counter()
    while done < min_images:
        embedder.embed_tensors(batch)
        done += len(batch)
    return done / (time.perf_counter() - started)


def end_to_end(catalog: pd.DataFrame, backbone: Backbone, batch_size: int = 32,
               workers: int | None = None) -> tuple[np.ndarray, list[str], float]:
    """Run the real embed job on `catalog`; returns its vectors, item ids and images per second."""
    from embeddings.runner import EmbedOptions, embed_catalog

    with tempfile.TemporaryDirectory(prefix="compress-e2e-") as tmp:
        started = time.perf_counter()
        embed_catalog(catalog, Path(tmp) / "set", backbone,
                      EmbedOptions(batch_size=batch_size, workers=workers, device="cpu", progress=False))
        seconds = time.perf_counter() - started
        result = read_embedding_set(Path(tmp) / "set")
    return result.vectors, result.item_ids.tolist(), len(catalog) / seconds


def directory_size(path: Path) -> int:
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.name.startswith("report"))


COLUMNS = [
    ("name", "variant", "{}"),
    ("runtime", "runtime", "{}"),
    ("precision", "precision", "{}"),
    ("input", "input px", "{}"),
    ("dim", "dim", "{}"),
    ("params_m", "params (M)", "{:.2f}"),
    ("gmacs", "GMACs", "{:.3f}"),
    ("size_mb", "file MB", "{:.1f}"),
    ("model_ips", "img/s model", "{:.1f}"),
    ("e2e_ips", "img/s end to end", "{:.1f}"),
    ("speedup_e2e", "e2e speed-up", "{:.2f}x"),
    ("cosine_mean", "cosine to teacher", "{:.4f}"),
    ("cosine_min", "min cosine", "{:.3f}"),
    ("overlap10", "overlap@10", "{:.3f}"),
    ("near_dup_recall", "near-dup recall", "{:.3f}"),
]


def markdown_table(variants: list[dict[str, Any]]) -> str:
    header = "| " + " | ".join(title for _, title, _ in COLUMNS) + " |"
    rule = "|" + "|".join("---" for _ in COLUMNS) + "|"
    rows = []
    for variant in variants:
        cells = []
        for key, _, fmt in COLUMNS:
            value = variant.get(key)
            cells.append("–" if value is None else fmt.format(value))
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join([header, rule, *rows])


def plot_report(variants: list[dict[str, Any]], path: Path) -> Path:
    """Speed (end to end) against fidelity (overlap@10), one point per variant."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    names = [v["name"] for v in variants]
    left.barh(names, [v.get("e2e_ips") or 0 for v in variants], color="tab:blue")
    left.set_xlabel("images/s, end to end (this machine)")
    left.invert_yaxis()
    for v in variants:
        if v.get("overlap10") is not None:
            right.scatter(v.get("gmacs") or 0, v["overlap10"], s=40)
            right.annotate(v["name"], (v.get("gmacs") or 0, v["overlap10"]), fontsize=8,
                           xytext=(4, 2), textcoords="offset points")
    right.set_xlabel("GMACs per image")
    right.set_ylabel("neighbour overlap@10 with the teacher")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def write_report(report: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    out_dir = Path(out_dir)
    json_path = out_dir / "report.json"
    json_path.write_text(json.dumps(report, indent=2, default=float))
    return json_path, plot_report(report["variants"], out_dir / "report.png")
