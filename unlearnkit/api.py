"""The classes plugins implement: Method, Augmenter and Evaluator; Architecture and DataSource; Tracker.

Every plugin class carries a `name`. Methods, augmenters, evaluators and trackers are configured
from a run spec: each has a pydantic `Params` model, a spec's ``params`` for it are
validated against that model (unknown keys are rejected), and the validated instance is
handed to its constructor. Architectures and data sets take no params: a spec names them.
The types these classes see at run time are in `unlearnkit.contract`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Mapping

from pydantic import Field

from unlearnkit.params import INT_LIMIT, Checked, Choice, Params, Range, SearchRange, TrainParams

if TYPE_CHECKING:  # pragma: no cover
    from pathlib import Path

    import torch
    from torch import nn

    from unlearnkit.contract import Batch, Classifier, Subject, UnlearnRun
    from unlearnkit.data.images import ImageSet, Transform
    from unlearnkit.data.streamed import Datasets

SCENARIOS = ("random", "class", "indices", "sequential")

#: `Params` under another name, for annotations inside `Configurable`, where `Params` names the class attribute
_Params = Params


class Registered:
    """What every class a plugin registers shares: its kind, a name and a one-line summary."""

    #: the kind of what a plugin registers ("method", ...): its base class says it once, for messages and listings
    kind: ClassVar[str]
    name: str  # a class attribute; a wrapper (AugmentedMethod) sets its own per instance

    @classmethod
    def summary(cls) -> str:
        doc = (cls.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""


class Configurable(Registered):
    """A registered class a run spec configures: its `Params` model validates the spec's params for it."""

    Params: ClassVar[type[Params]] = Params
    #: where `unlearn tune` searches each param (keys as a spec writes them); empty = nothing to tune by default
    search_space: ClassVar[Mapping[str, SearchRange]] = {}

    def __init__(self, params: _Params | None = None):
        self.params = params if params is not None else self.Params()


class Method(Configurable):
    """An unlearning method: turns the original model into the unlearned one.

    `unlearn(run)` edits `run.model` in place (it starts as a copy of the
    original). Class attributes declare what the method needs, so that a spec
    asking for something impossible fails at validation, before any training.
    """

    kind: ClassVar[str] = "method"
    #: it takes optimisation steps on retain batches, so an augmenter can add loss terms to them
    trains_on_retain: bool = True
    #: it reads the forget set; methods that must not (CoUn) get a run whose forget data is sealed
    uses_forget: bool = True
    #: forget scenarios it supports (see unlearnkit.api.SCENARIOS)
    scenarios: tuple[str, ...] = SCENARIOS

    def unlearn(self, run: UnlearnRun) -> None:
        raise NotImplementedError


class Augmenter(Configurable):
    """Adds loss terms computed from retain-batch representations to any method that trains on retain data.

    The core captures the features f(x) the method's own forward pass computed
    for the retain batch and passes them in, so methods need not cooperate.
    """

    kind: ClassVar[str] = "augmenter"
    #: augmented views it back-propagates per sample of the batch it computes over (the step's retain batch, or its
    #: own from `Batch.retain_batch`): 3 forwards each by the cost convention
    extra_views: ClassVar[int] = 0

    @classmethod
    def cannot_wrap(cls, method: type[Method]) -> str | None:
        """Why this augmenter cannot wrap `method`, or None if it can."""
        if not method.trains_on_retain:
            return (
                f"augmenter '{cls.name}' adds loss terms to retain-data training steps, "
                f"and method '{method.name}' takes none"
            )
        return None

    def parameters(self) -> list[nn.Parameter]:
        """Trainable parameters the augmenter owns (a projection head, say); optimised with the model's."""
        return []

    def loss_terms(self, model: Classifier, batch: Batch, features: torch.Tensor) -> dict[str, torch.Tensor]:
        """Named loss terms for one retain batch; `features` = f(batch.x) from the method's forward."""
        raise NotImplementedError


class Evaluator(Configurable):
    """Measures a model. Evaluators run in order, each seeing the metrics produced before it."""

    kind: ClassVar[str] = "evaluator"
    #: the metric keys it produces, in display order
    metrics: ClassVar[tuple[str, ...]] = ()
    #: it compares with Retrain, so it is skipped when a run trains no Retrain
    needs_reference: ClassVar[bool] = False

    def needs(self) -> tuple[str, ...]:
        """Metric keys that evaluators listed before this one must produce."""
        return ()

    def evaluate(self, subject: Subject, reference: Subject | None) -> dict[str, float | None]:
        """Metrics for `subject`. `reference` is Retrain, already measured (its metrics and outputs);
        None while Retrain itself is evaluated."""
        raise NotImplementedError


@dataclass(frozen=True)
class DataShape:
    """What an architecture must fit: the data set's image channels, class count and image side."""

    in_channels: int
    num_classes: int
    image_size: int


@dataclass(frozen=True)
class DataOutline:
    """A data set as known without loading its images: the shape a model must fit and, when it is known
    exactly without loading, the training set's size. `unlearn validate` (and `run`, before it loads the
    data) checks the forget set and an --original checkpoint against it."""

    shape: DataShape
    train_size: int | None = None


class Architecture(Registered):
    """A model architecture that `--model NAME` builds, fitted to the data set's shape.

    `build` returns a classifier nn.Module: an `unlearnkit.Classifier`, or any network whose
    final nn.Linear the toolkit can find (see `unlearnkit.models.as_classifier`). A family with
    `variants = True` is addressed as NAME:VARIANT (torchvision:resnet18) and gets the variant.
    """

    kind: ClassVar[str] = "model"
    variants: ClassVar[bool] = False
    #: the `model.width` a spec gets when it sets none; None: the architecture has no width to set
    default_width: ClassVar[int | None] = None

    def build(self, shape: DataShape, width: int | None = None, variant: str | None = None) -> nn.Module:
        raise NotImplementedError


class DataSource(Registered):
    """A data set that `--data NAME` loads.

    `load` returns the images in memory with their transform (`ImageSet`, `Transform`), which the
    toolkit augments on whole batches, or map-style torch Datasets (`unlearnkit.Datasets`)
    read sample by sample with their own transforms.
    """

    kind: ClassVar[str] = "dataset"

    def load(self, root: Path | None, download: bool, image_size: int) -> tuple[ImageSet, Transform] | Datasets:
        raise NotImplementedError

    def outline(self, root: Path | None, image_size: int) -> DataOutline | None:
        """The data's outline, known without loading it; None (the default): known only once loaded, so the
        checks that need it wait for the run."""
        return None


class TrackerParams(Params):
    """Where a tracker writes; a tracker's own Params may add fields."""

    uri: str | None = Field(None, description="where the tracker writes (--track-uri); default: its own place in the "
                                              "command's output folder")


class Tracker(Configurable):
    """Follows a command's runs as they go, in a tool of the user's choice (`--track NAME`).

    The core calls, in order: `prepare` once before any training; then for each run `start`, `log_params`,
    `log_metrics` (as training and evaluation produce them), `log_artifact` (each file it wrote) and `end`. A bench
    or a tuning is one run holding a child run per cell or trial: `start` with `parent` (the name of the run
    still open) opens it, its `end` closes it, and the other calls go to the innermost open run. A tracker
    whose call raises is switched off for the rest of the command, with a warning naming it; the results
    are written all the same.
    """

    kind: ClassVar[str] = "tracker"
    Params: ClassVar[type[_Params]] = TrackerParams

    def prepare(self, folder: Path) -> str | None:
        """Before any training, writing nothing: raise `UnlearnkitError` if the tracker cannot log (its library
        is not installed, its `uri` cannot be reached). `folder` is the command's output folder, where a
        tracker without a `uri` writes. Returns how to look at what it will log, or None."""
        return None

    def start(self, name: str, parent: str | None, tags: Mapping[str, str]) -> None:
        """Open a run; `parent` is the run it belongs to (a bench's, for one of its cells), None for a run of its own."""
        raise NotImplementedError

    def log_params(self, params: Mapping[str, Any]) -> None:
        """The open run's settings: spec fields by dotted name (`method.params.lr`), values as text or numbers."""
        raise NotImplementedError

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """Values at `step` (an epoch, or an optimisation step with `log_every`): `unlearned/loss`, `retrain/ra`, ..."""
        raise NotImplementedError

    def log_artifact(self, path: Path) -> None:
        """A file the run wrote (a bundle's results.json, a figure)."""
        raise NotImplementedError

    def end(self, status: str) -> None:
        """Close the innermost open run: `finished`, `failed` or `interrupted`."""
        raise NotImplementedError


__all__ = [
    "INT_LIMIT", "SCENARIOS", "Architecture", "Augmenter", "Checked", "Choice", "Configurable", "DataOutline", "DataShape",
    "DataSource", "Evaluator", "Method", "Params", "Range", "Registered", "SearchRange", "Tracker", "TrackerParams",
    "TrainParams",
]
