"""The types a plugin's code sees, defined apart from the engine that implements them.

A method is handed an `UnlearnRun`, trains with `LossFn`s over `Step`s of `Batch`es and
edits a `Classifier`; an evaluator measures a `Subject`. The engine's classes satisfy
these protocols (the type checker verifies it where the core hands them to a plugin),
so a plugin depends on this page and on `unlearnkit.api`, never on the engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Literal, Mapping, Protocol, Union

import torch
from torch import nn

from unlearnkit.errors import UnlearnkitError

if TYPE_CHECKING:  # pragma: no cover
    from unlearnkit.data.images import Transform
    from unlearnkit.params import TrainParams

#: which training samples a step stream goes over: all, retain, forget, both sides paired in each step
#: (retain+forget), or their union drawn as one side
Part = Literal["all", "retain", "forget", "retain+forget", "union"]


class Classifier(nn.Module):
    """`features` maps images to flat penultimate representations Z = f(x); `head` maps Z to logits."""

    def __init__(self, features: nn.Module, feature_dim: int, num_classes: int):
        super().__init__()
        self.features = features
        self.feature_dim = feature_dim
        self.head = nn.Linear(feature_dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@dataclass
class Batch:
    """Training samples: `x` is one augmented view; `view()` and `view_with()` draw others of the same samples.

    The retain batch an augmenter is handed can also draw a batch of its own (`retain_batch`).
    """

    x: torch.Tensor
    y: torch.Tensor
    index: torch.Tensor  # positions in the training set
    redraw: Callable[[], torch.Tensor] = field(repr=False)
    #: (crop_padding, flip) -> a view under that augmentation; None for a batch made without its images
    redraw_with: Callable[[int, bool], torch.Tensor] | None = field(default=None, repr=False)
    #: size -> retain samples drawn with the run's generator; set on the retain batches augmenters are handed
    draw_retain: Callable[[int], Batch] | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.y)

    def view(self) -> torch.Tensor:
        """Another independently augmented view of the same samples (their own random transforms)."""
        return self.redraw()

    def view_with(self, crop_padding: int, flip: bool) -> torch.Tensor:
        """Another view of the same samples under this augmentation instead of the data's own training one:
        a random crop after zero padding of `crop_padding` pixels (0: none), a horizontal flip half the
        time if `flip`, then the data's normalisation; each sample draws its own crop and flip.

        Images in memory are augmented from their raw pixels. A user's torch Dataset hands out images its
        own transforms have already made, so there this is a second read through them, as `view()` is.
        """
        if self.redraw_with is None:
            raise UnlearnkitError("this batch was made without its images, so it cannot draw views of them",
                                  "Draw batches through the run (`run.steps`, `run.batch`), not by hand.")
        return self.redraw_with(crop_padding, flip)

    def retain_batch(self, size: int) -> Batch:
        """`size` retain samples (all of them when D_r has fewer), drawn afresh with the run's generator: for an
        augmenter whose terms are computed over a batch of its own size rather than the method's. In a
        distributed run, this rank's rows of them."""
        if self.draw_retain is None:
            raise UnlearnkitError("only the retain batch an augmenter is handed can draw retain samples of its own",
                                  "Call retain_batch from an augmenter's loss_terms.")
        return self.draw_retain(size)

    def rows(self, rows: slice) -> Batch:
        """Some of the batch's rows; their further views are cut from views of the whole batch (so every
        rank of a distributed run draws the same random numbers)."""
        redraw_with = self.redraw_with
        return Batch(self.x[rows], self.y[rows], self.index[rows], lambda: self.redraw()[rows],
                     None if redraw_with is None else lambda padding, flip: redraw_with(padding, flip)[rows],
                     self.draw_retain)


@dataclass
class Step:
    """One optimisation step's data. Either side may be None, depending on what the method trains over."""

    retain: Batch | None
    forget: Batch | None
    epoch: int
    epochs: int
    iteration: int
    iterations: int
    _joint: torch.Tensor | None = field(default=None, repr=False, compare=False)

    def joint_x(self) -> torch.Tensor:
        """The retain then the forget samples' views in one tensor (made once per step).

        For methods that forward both sides together, so that BatchNorm normalises
        them as one batch; the trainer recognises this tensor and hands augmenters
        the features of its retain rows, with no extra forward.
        """
        if self._joint is None:
            parts = [b.x for b in (self.retain, self.forget) if b is not None]
            self._joint = parts[0] if len(parts) == 1 else torch.cat(parts)
        return self._joint

    @property
    def progress(self) -> float:
        """Fraction of training done before this step, in [0, 1)."""
        return self.iteration / max(self.iterations, 1)

    def __len__(self) -> int:
        return sum(len(b) for b in (self.retain, self.forget) if b is not None)


#: a loss on one step: one tensor, or named terms that are summed (and reported apart)
Loss = Union[torch.Tensor, Mapping[str, torch.Tensor]]
LossFn = Callable[[Classifier, Step], Loss]
#: a method's own step schedule: each step with the loss it is trained on (SCRUB alternates two)
Schedule = Iterable[tuple[LossFn, Step]]


class RepresentationTerms(Protocol):
    """Loss terms added to every training step that has a retain batch, computed from the features the step's
    own forward pass gave (what the engine asks of an `unlearnkit.Augmenter`)."""

    @property
    def name(self) -> str: ...
    @property
    def extra_views(self) -> int:
        """Augmented views it back-propagates per sample of the batch it computes over: the step's retain batch,
        or its own from `Batch.retain_batch` (for counting cost)."""
        ...

    def parameters(self) -> list[nn.Parameter]:
        """Trainable parameters it owns, optimised with the model's."""
        ...

    def loss_terms(self, model: Classifier, batch: Batch, features: torch.Tensor) -> dict[str, torch.Tensor]:
        """Named loss terms for one retain batch; `features` = f(batch.x) from the step's forward."""
        ...


class CostCounter(Protocol):
    """Counts the compute a method spends outside the shared training loop (a teacher's forwards, say)."""

    def trained(self, samples: int, times: int = 1) -> None:
        """`samples` went forward and backward through the model, `times` times."""

    def forwarded(self, samples: int, times: int = 1) -> None:
        """`samples` went forward only, `times` times."""


class ForgetSplit(Protocol):
    """The training positions to forget and to retain, and the classes forgotten whole (class-wise forgetting)."""

    @property
    def forget(self) -> torch.Tensor: ...
    @property
    def retain(self) -> torch.Tensor: ...
    @property
    def classes(self) -> tuple[int, ...]: ...


class TrainingData(Protocol):
    """The run's data as a method may read it directly (most need only `UnlearnRun`'s streams)."""

    @property
    def split(self) -> ForgetSplit: ...
    @property
    def train_y(self) -> torch.Tensor: ...
    #: the in-memory images' transform; None for a data set streamed from torch Datasets
    @property
    def transform(self) -> Transform | None: ...

    def indices(self, part: str) -> torch.Tensor:
        """The training positions of retain, forget or all samples of this split."""
        ...

    def eval_views(self, part: str, batch_size: int = 1024) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(images, labels) of retain, forget, train or test samples with test-time transforms."""
        ...


class UnlearnRun(Protocol):
    """What `Method.unlearn` is handed: the model to edit in place (a copy of the original), the data
    as streams of steps, and training that adds the run's augmenter terms and counts cost."""

    model: Classifier
    #: what joins this run's training steps with loss terms of its own (`AugmentedMethod` adds its augmenters)
    augmenters: list[RepresentationTerms]

    @property
    def recipe(self) -> TrainParams:
        """The original training recipe (what Retrain uses)."""
        ...
    @property
    def new_model(self) -> Callable[[], Classifier]:
        """Makes a freshly initialised model of the same architecture."""
        ...
    @property
    def cost(self) -> CostCounter: ...
    @property
    def seed(self) -> int: ...
    @property
    def generator(self) -> torch.Generator:
        """Every random draw of the method goes through it, so that a run repeats bit for bit."""
        ...
    @property
    def data(self) -> TrainingData: ...
    @property
    def device(self) -> torch.device: ...
    @property
    def num_classes(self) -> int: ...
    @property
    def forget_classes(self) -> tuple[int, ...]: ...
    @property
    def original(self) -> Classifier:
        """A frozen copy of the original model (a teacher, a reference), in eval mode."""
        ...

    def steps(self, over: Part, batch_size: int, epochs: int, among: torch.Tensor | None = None) -> Iterator[Step]:
        """The step stream over a part of the training data; `among` limits it to some training positions."""
        ...

    def steps_per_epoch(self, over: Part, batch_size: int, among: torch.Tensor | None = None) -> int: ...

    def batch(self, index: torch.Tensor) -> Batch:
        """A training batch of the given training positions (for a method's own schedule)."""
        ...

    def batches(self, part: str, batch_size: int) -> Iterator[Batch]:
        """One shuffled pass over retain, forget or all training samples (for statistics such as saliency)."""
        ...

    def train(self, loss_fn: LossFn, params: TrainParams, over: Part = "retain",
              parameters: Iterable[nn.Parameter] | None = None, label: str | None = None,
              masks: Mapping[nn.Parameter, torch.Tensor] | None = None) -> None:
        """Train `model` for `params.epochs` over a part of the data with one loss."""
        ...

    def fit(self, schedule: Schedule, params: TrainParams, total_steps: int, *,
            parameters: Iterable[nn.Parameter] | None = None, label: str | None = None,
            masks: Mapping[nn.Parameter, torch.Tensor] | None = None) -> None:
        """Train `model` over a method's own schedule of (loss, step) pairs, in the order given."""
        ...


class Subject(Protocol):
    """A model under evaluation (`name`: original, retrain or unlearned), its outputs computed once and shared."""

    name: str
    model: Classifier
    #: what obtaining the model cost; None when unknown (a given model)
    flops: float | None
    seconds: float | None
    #: what the evaluators before this one produced
    metrics: dict[str, float | None]

    def outputs(self, part: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, labels) for retain, forget, train or test samples."""
        ...

    def features(self, part: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(penultimate features f(x), labels) for retain, forget, train or test samples."""
        ...

    def accuracy(self, part: str) -> float:
        """Top-1 accuracy in percent."""
        ...
