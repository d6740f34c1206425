"""The classes plugins implement: Method, Augmenter and Evaluator; Architecture and DataSource.

Every plugin class carries a `name`. Methods, augmenters and evaluators are configured
from a run spec: each has a pydantic `Params` model, a spec's ``params`` for it are
validated against that model (unknown keys are rejected), and the validated instance is
handed to its constructor. Architectures and data sets take no params: a spec names them.
The types these classes see at run time are in `unlearnkit.contract`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Iterator, Literal, Mapping, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

if TYPE_CHECKING:  # pragma: no cover
    from pathlib import Path

    import torch
    from torch import nn

    from unlearnkit.contract import Batch, Classifier, Subject, UnlearnRun
    from unlearnkit.data.images import ImageSet, Transform
    from unlearnkit.data.streamed import Datasets

SCENARIOS = ("random", "class", "indices", "sequential")


#: the largest integer a field takes: C ints (sizes, counts) stop here, numpy's and scikit-learn's seeds at 2**32 - 1
INT_LIMIT = 2**31 - 1


def _ints(value: Any) -> Iterator[int]:
    """The integers in a field's value, inside lists and tuples too (a dict holds another model's input)."""
    if isinstance(value, int) and not isinstance(value, bool):
        yield value
    elif isinstance(value, (list, tuple, set, frozenset)):
        for item in value:
            yield from _ints(item)


class Checked(BaseModel):
    """Base of every model a user fills in (run spec sections, plugin params): a value that validates can run.

    Unknown keys are errors, not silent no-ops; floats must be finite (no inf or nan); integers must fit
    what torch, numpy and scikit-learn take. Subclasses, a third party's plugin Params included, inherit all three.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @field_validator("*")
    @classmethod
    def _int_in_range(cls, value: Any) -> Any:
        for n in _ints(value):
            if abs(n) > INT_LIMIT:
                bound = f"at most {INT_LIMIT}" if n > 0 else f"at least {-INT_LIMIT}"
                raise PydanticCustomError("int_range", "Input should be {bound}: integers beyond it overflow torch and numpy",
                                          {"bound": bound})
        return value


class Params(Checked):
    """Base for plugin parameters, checked as every spec field is (see `Checked`)."""


#: `Params` under another name, for annotations inside `Configurable`, where `Params` names the class attribute
_Params = Params


class TrainParams(Params):
    """An optimisation recipe. The run spec's `train` section and every training method's params use it."""

    optimizer: Literal["sgd", "adam"] = Field("sgd", description="sgd (with momentum) or adam (momentum unused)")
    epochs: int = Field(10, ge=0, description="passes over the method's training data")
    lr: float = Field(0.01, gt=0, description="initial learning rate")
    batch_size: int = Field(256, ge=1)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(5e-4, ge=0)
    schedule: Literal["constant", "cosine", "multistep"] = Field(
        "constant", description="cosine decays to min_lr; multistep multiplies by 0.1 at each milestone"
    )
    min_lr: float = Field(1e-4, ge=0, description="final learning rate of the cosine schedule")
    milestones: tuple[float, ...] = Field(
        (0.5, 0.75), description="fractions of training at which multistep decays the learning rate"
    )


@dataclass(frozen=True)
class Range:
    """A tuning range for a numeric param: [low, high], spaced on a log scale when `log`."""

    low: float
    high: float
    log: bool = False

    def grid(self, points: int) -> list[float]:
        if points == 1:
            return [self._at(0.5)]
        return [self._at(i / (points - 1)) for i in range(points)]

    def _at(self, t: float) -> float:
        if self.log:
            return float(math.exp(math.log(self.low) + t * (math.log(self.high) - math.log(self.low))))
        return float(self.low + t * (self.high - self.low))

    def __str__(self) -> str:
        return f"{self.low:g}..{self.high:g}{' (log)' if self.log else ''}"


@dataclass(frozen=True)
class Choice:
    """A tuning range given as the values to try."""

    values: tuple[Any, ...]

    def grid(self, points: int) -> list[Any]:
        return list(self.values)

    def __str__(self) -> str:
        return ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in self.values)


SearchRange = Union[Range, Choice]


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
    #: extra augmented views drawn per retain sample and back-propagated: 3 forwards each by the cost convention
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
