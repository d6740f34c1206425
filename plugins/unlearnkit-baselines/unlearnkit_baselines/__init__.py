"""Baseline unlearning methods, registered through the `unlearnkit` entry point."""

from typing import Callable

from unlearnkit import hookimpl
from unlearnkit_baselines.ascent import GradientAscent, NegGrad, NegGradPlus
from unlearnkit_baselines.boundary import BoundaryExpand, BoundaryShrink
from unlearnkit_baselines.contrastive_unlearning import ContrastiveUnlearning
from unlearnkit_baselines.dampening import SelectiveSynapticDampening
from unlearnkit_baselines.finetune import FineTune
from unlearnkit_baselines.negation import NegateThenTune
from unlearnkit_baselines.relabel import RandomLabel, SalUn
from unlearnkit_baselines.retrain import Retrain
from unlearnkit_baselines.scrub import Scrub
from unlearnkit_baselines.sparse import L1Sparse
from unlearnkit_baselines.teacher import BadTeacher

# By the data each method trains on, as its `trains_on_retain` and `uses_forget` declare.
METHODS = (
    # training on the retain set only: never reads the forget set
    Retrain,
    FineTune,
    L1Sparse,
    NegateThenTune,
    # training on the retain and the forget set
    NegGrad,
    NegGradPlus,
    RandomLabel,
    SalUn,
    Scrub,
    BadTeacher,
    ContrastiveUnlearning,
    # training on the forget set only
    GradientAscent,
    BoundaryShrink,
    BoundaryExpand,
    # no training: dampens the weights far more important to the forget set than to the whole training set
    SelectiveSynapticDampening,
)


@hookimpl
def register_methods(register: Callable[[type], None]) -> None:
    for method in METHODS:
        register(method)
