"""unlearnkit: a plugin-based machine unlearning toolkit.

Plugins implement `Method`, `Augmenter` or `Evaluator` and register them with
the hooks in `unlearnkit.hookspecs`, marked with `hookimpl`.
"""

__version__ = "0.1.0"

from unlearnkit.api import Augmenter, Choice, Evaluator, Method, Params, Range, TrainParams  # noqa: E402
from unlearnkit.errors import UnlearnkitError  # noqa: E402
from unlearnkit.hookspecs import hookimpl  # noqa: E402

__all__ = ["Augmenter", "Choice", "Evaluator", "Method", "Params", "Range", "TrainParams", "UnlearnkitError", "hookimpl", "__version__"]
