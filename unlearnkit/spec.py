"""The run spec's schema: one pydantic model of sections (data, model, forget, train, method, ...).

Where a spec comes from (files, flags, --set) is `unlearnkit.spec_input`; validating it
against the installed plugins, their params included, is `unlearnkit.resolve`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import Field, SerializerFunctionWrapHandler, StrictInt, field_validator, model_serializer, model_validator

from unlearnkit.params import Checked, TrainParams


class Section(Checked):
    """A part of the run spec: unknown keys, non-finite floats and out-of-range integers are errors."""


class PluginSpec(Section):
    """A plugin by name, with params for its own Params model. A bare string means no params."""

    name: str = Field(description="the plugin's registered name (unlearn plugins lists them)")
    params: dict[str, Any] = Field(default_factory=dict, description="its params, checked against its own Params model")

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"name": value}
        if isinstance(value, dict) and value.get("params", {}) is None:  # an empty `params:` in YAML
            return {**value, "params": {}}
        return value


class DataSpec(Section):
    """The data set, and which of its images a run uses."""

    name: str = Field(
        "digits",
        description="a registered data set (digits, fashion-mnist, mnist, cifar10, cifar100, svhn, or a plugin's), "
        "or an ImageFolder directory",
    )
    root: Path | None = Field(None, description="where the data set's files are (default: its usual place)")
    download: bool = Field(False, description="download with torchvision when the files are not found")
    train_subset: int | None = Field(None, ge=2, description="use a fixed random subset of this many training samples")
    test_subset: int | None = Field(None, ge=1, description="use a fixed random subset of this many test samples")
    image_size: int = Field(32, ge=4, description="side to resize ImageFolder images to")
    crop_padding: int | None = Field(
        None, ge=0, le=16, description="training views: random-crop padding in pixels, 0 = no crop (default: the data set's)"
    )
    flip: bool | None = Field(None, description="training views: random horizontal flip (default: the data set's)")
    workers: int = Field(0, ge=0, le=64, description="DataLoader processes reading a data set given as torch Datasets")
    pool: Literal["evaluation", "tuning"] = Field(
        "evaluation", description="which images the subsets take: evaluation (the fixed random subsets results report) "
        "or tuning (as many other images, disjoint from them, to choose hyper-parameters on)")
    balanced: bool = Field(False, description="class-balanced subsets: each class gets an equal share of each subset")

    @model_validator(mode="after")
    def _pool_of_subsets(self) -> DataSpec:
        if self.pool == "tuning" and (self.train_subset is None or self.test_subset is None):
            raise ValueError("the tuning pool is drawn apart from the evaluation subsets, so it needs both "
                             "train_subset and test_subset")
        if self.balanced and self.train_subset is None and self.test_subset is None:
            raise ValueError("balanced applies to subsets: give train_subset or test_subset")
        return self

    @model_serializer(mode="wrap")
    def _defaults_left_out(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # absent at their defaults, so that every cache and cell key written before them still names the same images
        out = handler(self)
        if self.pool == "evaluation":
            out.pop("pool", None)
        if not self.balanced:
            out.pop("balanced", None)
        return out


class ModelSpec(Section):
    """The architecture, built for the data set's channels, classes and image side."""

    name: str = Field(
        "small-cnn",
        description="a registered architecture: small-cnn, resnet18, vgg16-bn, torchvision:NAME, timm:NAME, or a plugin's",
    )
    width: int | None = Field(
        None, ge=1, le=4096,
        description="channels of the first layer, later layers in proportion (default: the model's own: "
        "small-cnn 32, resnet18 64, vgg16-bn 64)",
    )


class ForgetSpec(Section):
    """Which training samples the run forgets (the forget set D_u; the rest is the retain set D_r)."""

    kind: Literal["random", "class", "indices", "sequential"] = Field(
        "random", description="random: a fraction; class: every sample of some classes; indices: given samples; "
        "sequential: several random requests in a row")
    fraction: float = Field(
        0.1, gt=0, lt=1, description="random: share of the training set to forget; sequential: share per request"
    )
    classes: list[Annotated[int, Field(ge=0)]] = Field(default_factory=list, description="class: the classes to forget")
    file: Path | None = Field(None, description="indices: a file of training indices (JSON list or one per line)")
    indices: list[Annotated[StrictInt, Field(ge=0)]] | None = Field(  # strict: true or 2.0 names no sample
        None, description="indices: the training indices themselves, instead of a file"
    )
    steps: int = Field(5, ge=2, description="sequential: forget requests in a row, each unlearned from the last model")

    @model_validator(mode="after")
    def _complete(self) -> ForgetSpec:
        if self.kind == "class" and not self.classes:
            raise ValueError("class-wise forgetting needs `classes`, e.g. [3]")
        if self.kind == "indices" and (self.file is None) == (self.indices is None):
            raise ValueError("forgetting by indices needs either `file` or `indices`")
        if self.kind == "sequential" and self.fraction * self.steps >= 1:
            raise ValueError(f"sequential forgetting of {self.steps} requests of {self.fraction:g} each would forget "
                             f"{self.fraction * self.steps:.0%} of the training set; fraction x steps must be below 1")
        return self


class Recipe(TrainParams):
    """The original training recipe (Retrain uses it too): SGD, lr 0.1, x0.1 at 50% and 75% of training."""

    epochs: int = Field(30, ge=1, description="passes over the training data")
    lr: float = Field(0.1, gt=0, description="initial learning rate")
    batch_size: int = Field(128, ge=2, description="samples per optimisation step")
    schedule: Literal["constant", "cosine", "multistep"] = Field(
        "multistep", description="cosine decays to min_lr; multistep multiplies by 0.1 at each milestone")


class ComputeSpec(Section):
    """How training runs on the device; none of it changes what is computed beyond rounding."""

    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="auto: bf16 on a CUDA GPU that supports it, else fp32; fp16 scales the loss"
    )
    channels_last: bool | None = Field(None, description="convolutions in channels-last layout (default: on CUDA)")
    compile: bool = Field(False, description="compile the feature extractor and head with torch.compile")


class OutputSpec(Section):
    """Where `unlearn run` writes its result bundle."""

    dir: Path | None = Field(None, description="the result bundle's folder (default: runs/<time>-<method>)")
    overwrite: bool = Field(False, description="replace an existing bundle (only once the new one is complete)")


class Criterion(NamedTuple):
    """What `keep` keeps the best of: a metric, and which way is better."""

    metric: str
    lower_is_better: bool


def criterion(keep: str) -> Criterion:
    """`best:avg_gap`, `best:min:METRIC` or `best:max:METRIC` as the metric and its direction (ValueError otherwise)."""
    best, _, rest = keep.partition(":")
    direction, _, metric = rest.partition(":")
    if best == "best" and rest == "avg_gap":
        return Criterion("avg_gap", True)
    if best == "best" and direction in ("min", "max") and metric:
        return Criterion(metric, direction == "min")
    raise ValueError("use best:avg_gap (lower is better), best:min:METRIC or best:max:METRIC (METRIC: one an "
                     "evaluator of the run produces, e.g. best:max:TA)")


DEFAULT_METHOD = "ft"
DEFAULT_EVALUATORS = ["accuracy", "mia", "rmia", "avg-gap", "premise", "cost"]


#: run spec fields that change no number a run computes: where it runs, and what follows it (trackers, how often
#: it logs). Bench cells, bench folders and tunings leave them out of what identifies them.
WATCHING = ("device", "track", "log_every")


class RunSpec(Section):
    """One run of the protocol: Original, Retrain and the method, measured (`unlearn run`)."""

    data: DataSpec = Field(default_factory=DataSpec, description="the data set")
    model: ModelSpec = Field(default_factory=ModelSpec, description="the architecture")
    forget: ForgetSpec = Field(default_factory=ForgetSpec, description="the forget set")
    train: Recipe = Field(default_factory=Recipe, description="the recipe Original and Retrain are trained with")
    method: PluginSpec = Field(default_factory=lambda: PluginSpec(name=DEFAULT_METHOD), description="the unlearning method")
    augment: list[PluginSpec] = Field(default_factory=list, description="augmenters wrapping the method, in order")
    evaluate: list[PluginSpec] = Field(default_factory=lambda: [PluginSpec(name=n) for n in DEFAULT_EVALUATORS],
                                       description="evaluators, in order (each sees the metrics of those before it)")
    seed: int = Field(0, ge=0, description="draws the forget set and seeds every training of the run")
    device: str = Field("auto", description="auto (CUDA when available), cpu, cuda, cuda:N or mps")
    compute: ComputeSpec = Field(default_factory=ComputeSpec, description="how training runs on the device")
    original: Path | None = Field(
        None, description="the original model's weights (.safetensors, or a .pt/.pth state dict) to unlearn from, instead of training one"
    )
    retrain: bool = Field(
        True, description="train Retrain and score every model against it; false: the reference-free metrics only (RA, UA, TA, MIA)"
    )
    cache: bool = Field(True, description="reuse cached original and Retrain models (UNLEARNKIT_CACHE_DIR)")
    output: OutputSpec = Field(default_factory=OutputSpec, description="the result bundle")
    track: list[PluginSpec] = Field(default_factory=list, description="trackers that follow the run as it goes "
                                    "(mlflow, tensorboard, or a plugin's); its bundle's events.jsonl is written without any")
    log_every: int | None = Field(None, ge=1, description="also log the loss terms every this many optimisation steps "
                                  "(default: once per epoch)")
    eval_every: int | None = Field(
        None, ge=1, description="also measure the unlearned model every this many epochs of the method's training (with "
        "the run's evaluators, those comparing with Retrain when it has one), logged as events; the method computes "
        "the same, and what the measurements cost is counted apart (eval_flops)")
    keep: str | None = Field(
        None, description="with eval_every: keep the weights best by a criterion among the measured epochs and the final "
        "model: best:avg_gap (lower is better; needs Retrain), best:min:METRIC or best:max:METRIC for any metric an "
        "evaluator of the run produces")

    @field_validator("keep")
    @classmethod
    def _criterion(cls, value: str | None) -> str | None:
        if value is not None:
            criterion(value)
        return value

    @field_validator("augment", mode="before")
    @classmethod
    def _none_means_empty(cls, value: Any) -> Any:
        if value in (None, "none"):
            return []
        if isinstance(value, list):
            return [v for v in value if v != "none"]
        return value

    @property
    def keep_criterion(self) -> Criterion | None:
        return None if self.keep is None else criterion(self.keep)

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if value not in ("auto", "cpu", "cuda", "mps") and not (value.startswith("cuda:") and value[5:].isdigit()):
            raise ValueError("use auto, cpu, cuda, cuda:N or mps")
        return value
