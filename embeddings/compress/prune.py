"""Structured channel pruning with Torch-Pruning (DepGraph), and MAC/parameter counting.

DepGraph finds every layer coupled to a channel (residual adds, depthwise convolutions, batch
norms) so that whole channel groups go together and the model stays runnable. The convolution that
writes the embedding keeps its output channels, so the pruned student's vectors stay comparable with
the teacher's during distillation.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
import torch_pruning as tp

from embeddings.errors import InputError

log = logging.getLogger(__name__)


def count_macs(model: torch.nn.Module, input_size: Sequence[int]) -> tuple[int, int]:
    """(multiply-accumulates, parameters) of one image's forward pass."""
    was_training = model.training
    model.eval()
    macs, params = tp.utils.count_ops_and_params(model, torch.zeros(1, *input_size))
    model.train(was_training)
    return int(macs), int(params)


def output_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The layers whose output channels are the embedding: the last conv (and any classifier)."""
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    return convs[-1:] + linears


def prune_channels(model: torch.nn.Module, input_size: Sequence[int], ratio: float, *,
                   round_to: int = 8) -> torch.nn.Module:
    """Remove `ratio` of the channels in every prunable group (L2 magnitude), in place."""
    if not 0.0 < ratio < 1.0:
        raise InputError(f"--prune {ratio}: the ratio of channels to remove must be between 0 and 1")
    model.eval()
    example = torch.zeros(1, *input_size)
    before = count_macs(model, input_size)
    pruner = tp.pruner.MetaPruner(
        model,
        example,
        importance=tp.importance.GroupMagnitudeImportance(p=2),
        pruning_ratio=ratio,
        ignored_layers=output_layers(model),
        round_to=round_to,  # SIMD-friendly channel counts
    )
    pruner.step()
    after = count_macs(model, input_size)
    log.info("pruned %.0f%% of channels: %.3f -> %.3f GMACs, %.2fM -> %.2fM parameters", ratio * 100,
             before[0] / 1e9, after[0] / 1e9, before[1] / 1e6, after[1] / 1e6)
    return model
