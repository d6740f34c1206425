"""unlearnkit: a plugin-based machine unlearning toolkit.

Users call `unlearnkit.unlearn(model, train_set, forget, test_set=...)` or the `unlearn` CLI.
Plugins implement `Method`, `Augmenter`, `Evaluator`, `Architecture` or `DataSource` and
register them with the hooks in `unlearnkit.hookspecs`, marked with `hookimpl`.
"""

__version__ = "0.1.0"

from unlearnkit.api import (  # noqa: E402
    Architecture, Augmenter, Choice, DataShape, DataSource, Evaluator, Method, Params, Range, TrainParams,
)
from unlearnkit.errors import UnlearnkitError  # noqa: E402
from unlearnkit.hookspecs import hookimpl  # noqa: E402

RepresentationAugmenter = Augmenter  # the contract's name in the design


def __getattr__(name: str):
    # The Python API pulls in torch and the engine: imported on first use, so plugins and the CLI start fast.
    if name in ("unlearn", "UnlearnResult"):
        from unlearnkit import workflow

        return getattr(workflow, name)
    raise AttributeError(f"module 'unlearnkit' has no attribute {name!r}")


__all__ = [
    "Architecture", "Augmenter", "Choice", "DataShape", "DataSource", "Evaluator", "Method", "Params", "Range",
    "RepresentationAugmenter", "TrainParams", "UnlearnResult", "UnlearnkitError", "hookimpl", "unlearn", "__version__",
]
