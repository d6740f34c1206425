"""The training engine every method shares."""

from unlearnkit.engine.cost import CostMeter, forward_flops
from unlearnkit.engine.data import Batch, RunData, Step
from unlearnkit.engine.run import AugmentedMethod, UnlearnRun, fit
from unlearnkit.engine.train import Trainer, lr_factor, retain_cross_entropy

__all__ = [
    "AugmentedMethod", "Batch", "CostMeter", "RunData", "Step", "Trainer", "UnlearnRun", "fit", "forward_flops", "lr_factor",
    "retain_cross_entropy",
]
