"""Cost by the paper's convention: forward FLOPs = 2 x MACs, counted once per model with
torch.utils.flop_counter; a trained sample costs 3 forwards (forward + backward), and so does an
extra augmented view that is back-propagated (CoUn's views); an inference-only forward costs 1."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


def forward_flops(model: nn.Module, sample: torch.Tensor) -> int:
    """FLOPs of one forward pass on one sample (counter convention: a multiply-add is 2 FLOPs)."""
    from torch.utils.flop_counter import FlopCounterMode  # imports triton where installed: a second, only when counting

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(sample[:1])
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())


@dataclass
class CostMeter:
    """Counts sample-forwards; FLOPs = forwards x FLOPs of one forward."""

    flops_per_forward: int
    forwards: int = 0

    def trained(self, samples: int, times: int = 1) -> None:
        """Samples (or extra views of them) that went through forward and backward."""
        self.forwards += 3 * times * samples

    def forwarded(self, samples: int, times: int = 1) -> None:
        """Forward-only passes: teachers, frozen copies, one-shot statistics."""
        self.forwards += times * samples

    @property
    def flops(self) -> int:
        return self.forwards * self.flops_per_forward
