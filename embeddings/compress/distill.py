"""Knowledge distillation on unlabeled images: the student learns to reproduce the teacher's vectors.

Teacher and student see the same augmented view (the student's copy resized to its own input
size). The loss is the cosine distance between the normalised vectors plus a relational term: the
mean squared difference between the batch's student and teacher similarity matrices, which keeps
the neighbourhood structure among items that retrieval depends on.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import transforms

from embeddings.errors import InputError

log = logging.getLogger(__name__)

# teacher: a (n, 3, H, W) float batch in its own normalisation -> (n, dim) raw features.
TeacherFn = Callable[[torch.Tensor], np.ndarray | torch.Tensor]


@dataclass
class DistillOptions:
    steps: int = 200
    batch_size: int = 16
    lr: float = 1.5e-4
    weight_decay: float = 1e-5
    relational_weight: float = 1.0
    time_budget_s: float | None = None  # stop early (and say so) when the budget is spent
    seed: int = 0


@dataclass
class DistillResult:
    steps: int
    seconds: float
    losses: list[float] = field(default_factory=list)
    stopped_early: bool = False

    def summary(self) -> dict[str, Any]:
        head = float(np.mean(self.losses[: max(1, len(self.losses) // 10)])) if self.losses else None
        tail = float(np.mean(self.losses[-max(1, len(self.losses) // 10):])) if self.losses else None
        return {"steps": self.steps, "seconds": round(self.seconds, 1), "loss_first": head,
                "loss_last": tail, "stopped_early": self.stopped_early}


def augmentation(size: int) -> transforms.Compose:
    """The shared view: random crop and scale, flip, colour jitter; [0, 1] tensor, not normalised."""
    return transforms.Compose([
        transforms.RandomResizedCrop(size, scale=(0.3, 1.0),
                                     interpolation=transforms.InterpolationMode.BICUBIC),
        transforms.RandomHorizontalFlip(),
        transforms.ColorJitter(0.3, 0.3, 0.3, 0.02),
        transforms.ToTensor(),
    ])


def normalizer(data_config: dict[str, Any]) -> Callable[[torch.Tensor], torch.Tensor]:
    mean = torch.tensor(data_config["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(data_config["std"]).view(1, 3, 1, 1)
    return lambda batch: (batch - mean) / std


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor,
                      relational_weight: float = 1.0) -> torch.Tensor:
    """Cosine distance plus the relational (batch similarity matrix) term, on unit vectors."""
    s = F.normalize(student, dim=1)
    t = F.normalize(teacher, dim=1)
    cosine = (1.0 - (s * t).sum(dim=1)).mean()
    relational = F.mse_loss(s @ s.T, t @ t.T)
    return cosine + relational_weight * relational


def distill(
    student: torch.nn.Module,
    teacher: TeacherFn,
    images: Sequence[Image.Image],
    *,
    teacher_config: dict[str, Any],
    student_config: dict[str, Any],
    options: DistillOptions | None = None,
    on_step: Callable[[int, float], None] | None = None,
) -> DistillResult:
    """Train `student` in place for `options.steps` steps; returns the loss history."""
    options = options or DistillOptions()
    if not images:
        raise InputError("distillation needs at least one training image")
    if options.steps < 1:
        raise InputError(f"--distill-steps must be at least 1, not {options.steps}")
    rng = random.Random(options.seed)
    torch.manual_seed(options.seed)
    teacher_size = tuple(teacher_config["input_size"][1:])
    student_size = tuple(student_config["input_size"][1:])
    view = augmentation(teacher_size[0])
    norm_teacher, norm_student = normalizer(teacher_config), normalizer(student_config)
    optimizer = torch.optim.AdamW(student.parameters(), lr=options.lr, weight_decay=options.weight_decay)
    warmup = max(1, min(10, options.steps // 20))

    # Batch norm keeps the teacher's running statistics: with the small batches a CPU affords,
    # re-estimating them costs more fidelity than it wins; its affine weights still learn.
    student.eval()
    result = DistillResult(steps=0, seconds=0.0)
    started = time.perf_counter()
    for step in range(options.steps):
        batch = torch.stack([view(rng.choice(images)) for _ in range(options.batch_size)])
        with torch.no_grad():
            target = torch.as_tensor(np.asarray(teacher(norm_teacher(batch))), dtype=torch.float32)
        small = batch if student_size == teacher_size else F.interpolate(
            batch, size=student_size, mode="bilinear", antialias=True, align_corners=False)
        loss = distillation_loss(student(norm_student(small)), target, options.relational_weight)
        # Linear warm-up, then cosine decay over the steps or the time budget, whichever ends first.
        progress = step / options.steps
        if options.time_budget_s:
            progress = max(progress, (time.perf_counter() - started) / options.time_budget_s)
        scale = min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
        for group in optimizer.param_groups:
            group["lr"] = options.lr * scale
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        result.losses.append(loss.item())
        result.steps = step + 1
        if on_step:
            on_step(step, result.losses[-1])
        if step % 10 == 0:
            log.info("distill step %d/%d: loss %.4f (%.0f s)", step, options.steps, result.losses[-1],
                     time.perf_counter() - started)
        if options.time_budget_s and time.perf_counter() - started > options.time_budget_s:
            result.stopped_early = step + 1 < options.steps
            break
    result.seconds = time.perf_counter() - started
    student.eval()
    log.info("distilled %d steps in %.0f s: loss %.4f -> %.4f", result.steps, result.seconds,
             result.summary()["loss_first"], result.summary()["loss_last"])
    return result
