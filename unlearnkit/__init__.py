"""unlearnkit: a plugin-based machine unlearning toolkit.

Users call `unlearnkit.unlearn(model, train_set, forget, test_set=...)` or the `unlearn` CLI.
Plugins implement `Method`, `Augmenter`, `Evaluator`, `Architecture` or `DataSource` and
register them with the hooks in `unlearnkit.hookspecs`, marked with `hookimpl`.
"""

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

from unlearnkit.api import (  # noqa: E402
    Architecture, Augmenter, Choice, DataOutline, DataShape, DataSource, Evaluator, Method, Params, Range, TrainParams,
)
from unlearnkit.errors import UnlearnkitError  # noqa: E402
from unlearnkit.hookspecs import hookimpl  # noqa: E402

RepresentationAugmenter = Augmenter  # the contract's name in the design


# What plugins and users work with beyond the contracts, by the module that defines it. These pull in
# torch and the engine, so they are imported on first use: listing plugins and the CLI stay fast.
_LAZY = {
    "unlearn": "unlearnkit.workflow", "UnlearnResult": "unlearnkit.workflow",
    "UnlearnRun": "unlearnkit.engine.run", "AugmentedMethod": "unlearnkit.engine.run",
    "Batch": "unlearnkit.engine.data", "Step": "unlearnkit.engine.data",
    "Subject": "unlearnkit.evaluation.subject", "Classifier": "unlearnkit.models.base",
    # the shared losses and their type: a loss takes the model and one Step
    "LossFn": "unlearnkit.engine.train", "retain_cross_entropy": "unlearnkit.engine.train",
    # a loss over the global batch of a distributed run (coun-cl's contrastive term)
    "gather_rows": "unlearnkit.engine.distributed",
}

if TYPE_CHECKING:  # what the type checker sees of the lazy names below
    from unlearnkit.engine.data import Batch, Step
    from unlearnkit.engine.distributed import gather_rows
    from unlearnkit.engine.run import AugmentedMethod, UnlearnRun
    from unlearnkit.engine.train import LossFn, retain_cross_entropy
    from unlearnkit.evaluation.subject import Subject
    from unlearnkit.models.base import Classifier
    from unlearnkit.workflow import UnlearnResult, unlearn


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'unlearnkit' has no attribute {name!r}")


__all__ = [
    "Architecture", "AugmentedMethod", "Augmenter", "Batch", "Choice", "Classifier", "DataOutline", "DataShape", "DataSource",
    "Evaluator", "LossFn", "Method", "Params", "Range", "RepresentationAugmenter", "Step", "Subject", "TrainParams",
    "UnlearnResult", "UnlearnRun", "UnlearnkitError", "gather_rows", "hookimpl", "retain_cross_entropy", "unlearn",
    "__version__",
]
