"""The training engine every method shares."""

from unlearnkit.engine.cost import CostMeter, forward_flops
from unlearnkit.engine.streams import RunData
from unlearnkit.engine.run import AugmentedMethod, Workbench, fit
from unlearnkit.engine.train import Trainer, lr_factor, retain_cross_entropy

__all__ = [
    "AugmentedMethod", "CostMeter", "RunData", "Trainer", "Workbench", "fit", "forward_flops", "lr_factor",
    "retain_cross_entropy",
]
