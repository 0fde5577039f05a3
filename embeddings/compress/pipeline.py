"""The compression chain: teacher -> [student] -> [prune] -> [distil] -> [quantize] -> [project].

Every variant the chain produces is written as a model artifact under `out/variants/NAME`, reloaded
from disk and measured against the teacher on held-out catalogue images with the real embed job;
the last one is also written to `out/` itself (the artifact to use), with its measured fidelity.
"""

from __future__ import annotations

import copy
import logging
import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import timm
import torch

from embeddings.artifact import update_fidelity, write_artifact
from embeddings.backbone import Backbone
from embeddings.backbones import load_backbone
from embeddings.compress import report as rep
from embeddings.compress.distill import DistillOptions, distill
from embeddings.compress.project import explained_variance, fit_projection
from embeddings.compress.prune import count_macs, prune_channels
from embeddings.compress.quantize import PRECISIONS, cast_weights, quantize_int8
from embeddings.errors import ImageError, InputError
from embeddings.images import decode_image, read_image_bytes
from embeddings.onnx_export import export_module
from embeddings.onnx_runtime import OnnxEmbedder
from embeddings.preprocess import build_transform
from embeddings.runtimes import make_embedder

log = logging.getLogger(__name__)

MIN_IMAGES = 12
THUMBNAIL = 320  # training images are kept this small in memory; views are cropped from them


@dataclass
class CompressOptions:
    student: str | None = None  # "ARCH" or "ARCH@PIXELS", e.g. "tf_efficientnet_lite0@160"
    prune: float | None = None
    quantize: str = "int8"
    dim: int | None = None
    distill_steps: int = 300
    batch_size: int = 16
    lr: float = 1.5e-4  # Adam moves every weight by about lr a step: pretrained weights need it small
    time_budget_s: float | None = None
    holdout: float = 0.2
    max_holdout: int = 400
    calibration_images: int = 128
    calibration_method: str = "minmax"
    throughput_images: int = 96  # images timed per variant for the model-alone speed
    seed: int = 0


@dataclass
class NearDuplicates:
    """Real photos and augmented copies: `labels` names each image's photo, `queries` the copies."""

    images: list[Any]
    labels: np.ndarray
    queries: np.ndarray


def parse_student(spec: str) -> tuple[str, int | None]:
    arch, _, size = spec.partition("@")
    if not size:
        return arch, None
    if not size.isdigit() or not 32 <= int(size) <= 1024:
        raise InputError(f"--student {spec!r}: the size after @ must be a pixel count from 32 to 1024")
    return arch, int(size)


def check_options(options: CompressOptions) -> None:
    if options.quantize not in PRECISIONS:
        raise InputError(f"--quantize {options.quantize!r}: expected one of {', '.join(PRECISIONS)}")
    if options.prune is not None and not 0.0 < options.prune < 1.0:
        raise InputError(f"--prune {options.prune}: the ratio of channels to remove must be between 0 and 1")
    if options.dim is not None and options.dim < 1:
        raise InputError(f"--dim {options.dim}: must be a positive number of dimensions")
    if options.distill_steps < 0:
        raise InputError(f"--distill-steps {options.distill_steps}: must be zero or more")
    if options.student:
        parse_student(options.student)


def load_images(catalog: pd.DataFrame) -> tuple[pd.DataFrame, list[Any]]:
    """Decode every catalogue image once (small thumbnails); unreadable ones are left out."""
    rows, images = [], []
    for row, ref in enumerate(catalog["image"]):
        try:
            image = decode_image(read_image_bytes(ref))
        except ImageError as exc:
            log.warning("%s: left out of compression (%s)", ref, exc.message)
            continue
        image.thumbnail((THUMBNAIL, THUMBNAIL))
        rows.append(row)
        images.append(image)
    if len(images) < MIN_IMAGES:
        raise InputError(f"compression needs at least {MIN_IMAGES} readable catalogue images, "
                         f"got {len(images)}")
    return catalog.iloc[rows].reset_index(drop=True), images


def split(n: int, options: CompressOptions) -> tuple[np.ndarray, np.ndarray]:
    """Held-out evaluation rows and training rows, disjoint."""
    order = np.random.default_rng(options.seed).permutation(n)
    n_eval = min(options.max_holdout, max(MIN_IMAGES // 2, int(round(n * options.holdout))))
    return np.sort(order[:n_eval]), np.sort(order[n_eval:])


def build_student(teacher: Backbone, options: CompressOptions) -> tuple[torch.nn.Module, dict, str, str]:
    """(model, data config, arch, how it was initialised) for the requested student."""
    if not options.student:
        model = copy.deepcopy(teacher.torch_model())
        return model, dict(teacher.data_config), teacher.arch, "teacher weights"
    arch, size = parse_student(options.student)
    try:
        model = timm.create_model(arch, pretrained=False, num_classes=0)
    except RuntimeError as exc:
        raise InputError(f"--student {options.student!r}: unknown architecture ({exc})") from None
    config = dict(teacher.data_config)
    source = "teacher weights"
    teacher_state = teacher.torch_model().state_dict()
    shapes = [tuple(v.shape) for v in model.state_dict().values()]
    if shapes == [tuple(v.shape) for v in teacher_state.values()]:
        # Same shapes (another padding, a lower resolution): start from the teacher's own weights.
        model.load_state_dict(dict(zip(model.state_dict(), teacher_state.values())))
    else:
        pretrained = load_backbone(arch)
        model, config = pretrained.torch_model(), dict(pretrained.data_config)
        source = "own pretrained weights"
    if size:
        config["input_size"] = (3, size, size)
    return model.eval(), config, arch, source


class _OnnxTeacher:
    """The teacher's raw features through its fp32 ONNX export (same vectors, several times faster)."""

    def __init__(self, path: Path, config: dict, dim: int) -> None:
        self.embedder = OnnxEmbedder(path, config, dim)

    def __call__(self, batch: torch.Tensor) -> np.ndarray:
        return self.embedder.features(batch.numpy())


def _preprocessed(images: list[Any], config: dict, limit: int | None = None) -> torch.Tensor:
    transform = build_transform(config)
    return torch.stack([transform(image) for image in images[:limit]])


def compress(
    teacher_spec: str,
    catalog: pd.DataFrame,
    out_dir: Path,
    options: CompressOptions | None = None,
    *,
    near_duplicates: NearDuplicates | None = None,
    on_step: Callable[[int, float], None] | None = None,
) -> dict[str, Any]:
    """Run the chain, write the artifact and its report into `out_dir`; returns the report."""
    options = options or CompressOptions()
    check_options(options)
    out_dir = Path(out_dir)
    teacher = load_backbone(teacher_spec)
    catalog, images = load_images(catalog)
    eval_rows, train_rows = split(len(images), options)
    train_images = [images[i] for i in train_rows]
    eval_catalog = catalog.iloc[eval_rows].reset_index(drop=True)
    random.Random(options.seed).shuffle(train_images)
    variants_dir = out_dir / "variants"
    if variants_dir.exists():
        shutil.rmtree(variants_dir)
    variants_dir.mkdir(parents=True)
    teacher_record = {"spec": teacher_spec, "arch": teacher.arch, "id": teacher.model_id}
    teacher_macs, teacher_params = count_macs(teacher.torch_model(), teacher.data_config["input_size"])
    plan: list[dict[str, Any]] = [{"name": "teacher fp32 torch", "path": teacher_spec, "backbone": teacher,
                                   "gmacs": teacher_macs / 1e9, "params_m": teacher_params / 1e6}]

    def add(name: str, folder: Path, macs: tuple[int, int]) -> None:
        plan.append({"name": name, "path": folder, "gmacs": macs[0] / 1e9, "params_m": macs[1] / 1e6})

    teacher_onnx = export_module(teacher.torch_model(), teacher.data_config["input_size"],
                                 variants_dir / "teacher.onnx")
    write_artifact(variants_dir / "teacher-fp32-onnx", arch=teacher.arch, data_config=teacher.data_config,
                   feature_dim=teacher.dim, runtime="onnx", precision="fp32", steps=[],
                   teacher=teacher_record, onnx_file=teacher_onnx)
    add("teacher fp32 onnx", variants_dir / "teacher-fp32-onnx", (teacher_macs, teacher_params))

    model, config, arch, source = build_student(teacher, options)
    steps: list[dict[str, Any]] = []
    pruned = False
    if options.student:
        steps.append({"step": "student", "arch": arch, "input_size": list(config["input_size"]),
                      "init": source})
    if options.prune:
        prune_channels(model, config["input_size"], options.prune)
        pruned = True
        steps.append({"step": "prune", "ratio": options.prune, "method": "DepGraph L2 magnitude"})
    macs = count_macs(model, config["input_size"])
    fp32_onnx, name = teacher_onnx, "teacher"
    if options.student or options.prune:
        result = None
        if options.distill_steps:
            result = distill(
                model, _OnnxTeacher(teacher_onnx, teacher.data_config, teacher.dim), train_images,
                teacher_config=teacher.data_config, student_config=config, on_step=on_step,
                options=DistillOptions(steps=options.distill_steps, batch_size=options.batch_size,
                                       lr=options.lr, time_budget_s=options.time_budget_s, seed=options.seed))
            steps.append({"step": "distill", "loss": "cosine + relational", **result.summary()})
        name = "pruned" if pruned and not options.student else "student"
        fp32_onnx = export_module(model, config["input_size"], variants_dir / f"{name}.onnx")
        label = f"{name} fp32" + (f" ({result.steps} distill steps)" if result else " (not distilled)")
        write_artifact(variants_dir / f"{name}-fp32", arch=arch, data_config=config, feature_dim=teacher.dim,
                       runtime="onnx", precision="fp32", steps=list(steps), teacher=teacher_record,
                       model=model, onnx_file=fp32_onnx, pruned=pruned)
        add(label, variants_dir / f"{name}-fp32", macs)
    last = plan[-1]["path"]
    if options.quantize == "int8":
        def int8_variant(source: Path, label: str, arch: str, config: dict, steps: list) -> Path:
            calibration = _preprocessed(train_images, config, options.calibration_images).numpy()
            int8 = quantize_int8(source, variants_dir / f"{label}-int8.onnx",
                                 (calibration[i:i + 16] for i in range(0, len(calibration), 16)),
                                 method=options.calibration_method)
            steps.append({"step": "quantize", "precision": "int8", "format": "QDQ",
                          "weights": "per-channel int8", "activations": "uint8",
                          "calibration": options.calibration_method, "calibration_images": len(calibration)})
            folder = variants_dir / f"{label}-int8"
            write_artifact(folder, arch=arch, data_config=config, feature_dim=teacher.dim, runtime="onnx",
                           precision="int8", steps=steps, teacher=teacher_record, onnx_file=int8)
            return folder

        if name != "teacher":  # the teacher's own int8 too, to show what the student adds
            add("teacher int8", int8_variant(teacher_onnx, "teacher", teacher.arch, teacher.data_config, []),
                (teacher_macs, teacher_params))
        last = int8_variant(fp32_onnx, name, arch, config, steps)
        add(f"{name} int8", last, macs)
    elif options.quantize in ("fp16", "bf16"):
        steps.append({"step": "quantize", "precision": options.quantize, "for": "GPUs (torch runtime)"})
        last = variants_dir / f"{name}-{options.quantize}"
        write_artifact(last, arch=arch, data_config=config, feature_dim=teacher.dim, runtime="torch",
                       precision=options.quantize, steps=list(steps), teacher=teacher_record,
                       model=cast_weights(copy.deepcopy(model), options.quantize), pruned=pruned)
        add(f"{name} {options.quantize}", last, macs)
    if options.dim:
        source_embedder = make_embedder(load_backbone(str(last)), "cpu")
        vectors = source_embedder.embed_tensors(_preprocessed(train_images, config))
        projection = fit_projection(vectors, options.dim)
        steps.append({"step": "project", "dim": options.dim, "method": "PCA on unit vectors",
                      "explained_variance": round(explained_variance(vectors, projection), 4),
                      "fit_images": len(vectors)})
        precision = options.quantize if options.quantize != "none" else "fp32"
        folder = variants_dir / f"{name}-{precision}-pca{options.dim}"
        onnx_file = Path(last) / "model.onnx" if (Path(last) / "model.onnx").is_file() else None
        write_artifact(folder, arch=arch, data_config=config, feature_dim=teacher.dim,
                       runtime="onnx" if onnx_file else "torch", precision=precision, steps=list(steps),
                       teacher=teacher_record, onnx_file=onnx_file,
                       model=None if onnx_file else model, projection=projection, pruned=pruned)
        add(f"{name} {precision} pca{options.dim}", folder, macs)
    variants = [evaluate(entry, eval_catalog, plan[0], near_duplicates, options.throughput_images)
                for entry in plan]
    final = plan[-1]["path"]
    if isinstance(final, Path):
        for item in Path(final).iterdir():
            shutil.copyfile(item, out_dir / item.name)
        update_fidelity(out_dir, {k: variants[-1].get(k) for k in ("cosine_mean", "cosine_min", "overlap10",
                                                                   "near_dup_recall", "speedup_e2e")})
    report = {
        "teacher": teacher_record,
        "options": {k: v for k, v in vars(options).items()},
        "catalogue": {"images": len(images), "held_out": len(eval_rows), "train": len(train_rows)},
        "artifact": str(out_dir) if isinstance(final, Path) else None,
        "steps": steps,
        "variants": variants,
        "note": "images/s measured on a shared machine in one run: compare variants within this report",
    }
    rep.write_report(report, out_dir)
    return report


def evaluate(entry: dict[str, Any], eval_catalog: pd.DataFrame, teacher_entry: dict[str, Any],
             near_duplicates: NearDuplicates | None, throughput_images: int = 96) -> dict[str, Any]:
    """Measure one variant against the teacher (whose measurements come first and are cached)."""
    backbone = entry.get("backbone") or load_backbone(str(entry["path"]))
    embedder = make_embedder(backbone, "cpu")
    batch = embedder.preprocess([decode_image(read_image_bytes(ref)) for ref in eval_catalog["image"][:32]])
    vectors, ids, e2e = rep.end_to_end(eval_catalog, backbone)
    row = {
        "name": entry["name"],
        "path": str(entry["path"]),
        "runtime": backbone.runtime,
        "precision": backbone.extra.get("precision", "fp32"),
        "input": int(backbone.data_config["input_size"][-1]),
        "dim": backbone.dim,
        "params_m": entry["params_m"],
        "gmacs": entry["gmacs"],
        "size_mb": rep.directory_size(entry["path"]) / 1e6 if isinstance(entry["path"], Path) else None,
        "model_ips": rep.model_throughput(embedder, batch, throughput_images),
        "e2e_ips": e2e,
    }
    if "vectors" not in teacher_entry:
        teacher_entry.update(vectors=vectors, ids=ids, e2e=e2e)
    teacher_vectors = teacher_entry["vectors"]
    if ids != teacher_entry["ids"]:
        raise RuntimeError("the embed job returned items out of catalogue order")
    row["speedup_e2e"] = e2e / teacher_entry["e2e"]
    row["cosine_mean"], row["cosine_min"] = (rep.mean_cosine(teacher_vectors, vectors)
                                             if vectors.shape == teacher_vectors.shape else (None, None))
    row["overlap10"] = rep.neighbour_overlap(teacher_vectors, vectors, 10)
    if near_duplicates is not None:
        dup_vectors = embedder.embed_images(near_duplicates.images)
        row["near_dup_recall"] = rep.near_duplicate_recall(dup_vectors, near_duplicates.labels,
                                                           near_duplicates.queries)
    log.info("variant %s: %s", entry["name"], {k: v for k, v in row.items() if k not in ("name", "path")})
    return row
