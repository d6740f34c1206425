"""unlearnkit: a plugin-based machine unlearning toolkit.

Users call `unlearnkit.unlearn(model, train_set, forget, test_set=...)` or the `unlearn` CLI.
Plugins implement `Method`, `Augmenter`, `Evaluator`, `Architecture`, `DataSource` or `Tracker` and
register them with the hooks in `unlearnkit.hookspecs`, marked with `hookimpl`.
"""

from typing import TYPE_CHECKING, Any

from unlearnkit._version import __version__
from unlearnkit.api import (
    Architecture,
    Augmenter,
    Choice,
    DataOutline,
    DataShape,
    DataSource,
    Evaluator,
    Method,
    Params,
    Range,
    Tracker,
    TrackerParams,
    TrainParams,
)
from unlearnkit.errors import DataNotFoundError, PluginFault, UnlearnkitError
from unlearnkit.hookspecs import hookimpl

RepresentationAugmenter = Augmenter  # the contract's name in the design


# What plugins and users work with beyond the contracts, by the module that defines it. These pull in
# torch and the engine, so they are imported on first use: listing plugins and the CLI stay fast.
_LAZY = {
    "unlearn": "unlearnkit.workflow", "UnlearnResult": "unlearnkit.workflow",
    "audit": "unlearnkit.workflow", "AuditReport": "unlearnkit.workflow",
    # the types a plugin's code sees
    "UnlearnRun": "unlearnkit.contract", "Batch": "unlearnkit.contract", "Step": "unlearnkit.contract",
    "Subject": "unlearnkit.contract", "Classifier": "unlearnkit.contract", "LossFn": "unlearnkit.contract",
    "CostCounter": "unlearnkit.contract", "Part": "unlearnkit.contract",
    # what a method may build its training from: the wrapper, the shared loss, schedules and shuffles
    "AugmentedMethod": "unlearnkit.engine.run", "retain_cross_entropy": "unlearnkit.engine.train",
    "lr_factor": "unlearnkit.engine.train", "shuffled": "unlearnkit.engine.streams",
    # what a data-set plugin returns
    "ImageSet": "unlearnkit.data.images", "Transform": "unlearnkit.data.images", "Datasets": "unlearnkit.data.streamed",
    "AdaptedClassifier": "unlearnkit.models.adapt",
    # a loss over the global batch of a distributed run (coun-cl's contrastive term)
    "gather_rows": "unlearnkit.engine.distributed",
}

if TYPE_CHECKING:  # what the type checker sees of the lazy names below
    from unlearnkit.contract import Batch, Classifier, CostCounter, LossFn, Part, Step, Subject, UnlearnRun
    from unlearnkit.data.images import ImageSet, Transform
    from unlearnkit.data.streamed import Datasets
    from unlearnkit.engine.streams import shuffled
    from unlearnkit.engine.distributed import gather_rows
    from unlearnkit.engine.run import AugmentedMethod
    from unlearnkit.engine.train import lr_factor, retain_cross_entropy
    from unlearnkit.models.adapt import AdaptedClassifier
    from unlearnkit.workflow import AuditReport, UnlearnResult, audit, unlearn


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'unlearnkit' has no attribute {name!r}")


#: the public API: what plugins and users import (from `unlearnkit` itself); every other module is internal
__all__ = [
    "AdaptedClassifier", "Architecture", "AuditReport", "AugmentedMethod", "Augmenter", "Batch", "Choice", "Classifier", "CostCounter",
    "DataNotFoundError", "DataOutline", "DataShape", "DataSource", "Datasets", "Evaluator", "ImageSet", "LossFn", "Method",
    "Params", "Part", "PluginFault", "Range",
    "RepresentationAugmenter", "Step", "Subject", "Tracker", "TrackerParams", "TrainParams", "Transform", "UnlearnResult", "UnlearnRun",
    "UnlearnkitError", "audit", "gather_rows", "hookimpl", "lr_factor", "retain_cross_entropy", "shuffled", "unlearn",
    "__version__",
]
