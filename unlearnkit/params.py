"""What users fill in and plugins declare: checked pydantic models (spec sections, plugin Params, the training
recipe) and the tuning ranges a plugin declares for its params. Free of torch, so that specs validate fast."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterator, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

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
