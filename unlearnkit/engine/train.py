"""The one training loop: original training, Retrain and every loss-based method share it."""

from __future__ import annotations

import math
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, replace
from functools import partial
from typing import Callable, Iterable, Iterator, Mapping, Sequence, cast

import torch
import torch.nn.functional as F
from torch import nn

from unlearnkit.api import TrainParams
from unlearnkit.contract import Batch, LossFn, RepresentationTerms, Step
from unlearnkit.engine.compute import FP32, Compute
from unlearnkit.engine.cost import CostMeter
from unlearnkit.engine.streams import shard
from unlearnkit.engine.distributed import average_gradients, broadcast_buffers, broadcast_state, world
from unlearnkit.errors import UnlearnkitError
from unlearnkit.models import Classifier


def retain_cross_entropy(model: Classifier, step: Step) -> torch.Tensor:
    """Cross-entropy on the step's retain batch: how Original and Retrain are trained, and FT's loss."""
    assert step.retain is not None  # a stream over retain (or all) data has a retain batch in every step
    return F.cross_entropy(model(step.retain.x), step.retain.y)


def lr_factor(params: TrainParams, progress: float) -> float:
    """The learning-rate multiplier after `progress` (0..1) of training."""
    if params.schedule == "cosine":
        floor = min(params.min_lr / params.lr, 1.0)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    if params.schedule == "multistep":
        return 0.1 ** sum(progress >= m for m in params.milestones)
    return 1.0


@contextmanager
def captured_features(model: Classifier, step: Step) -> Iterator[list[torch.Tensor]]:
    """Record f(retain.x) when the model's feature extractor runs on the step's retain view, or on its
    joint tensor (`Step.joint_x`, retain rows first)."""
    found: list[torch.Tensor] = []
    assert step.retain is not None  # only used on steps with a retain batch
    retain = step.retain.x

    def hook(module, inputs, output):
        x = inputs[0] if inputs else None
        if x is retain:
            found.append(output)
        elif x is not None and x is step._joint:
            found.append(output[: len(retain)])

    handle = model.features.register_forward_hook(hook)
    try:
        yield found
    finally:
        handle.remove()


@dataclass(frozen=True)
class Logged:
    """The mean of each loss term over the steps since the last record, and the learning rate at the last of them.

    `epoch_end`: the record closes epoch `epoch` (counted from 1); otherwise it is one of `log_every`'s, within it.
    `step` counts the optimisation steps taken so far.
    """

    epoch: int
    step: int
    lr: float
    terms: dict[str, float]
    epoch_end: bool


#: what the training loop calls with each record: at every epoch's end, and every `log_every` steps when asked
OnLog = Callable[[Logged], None]


class _Sums:
    """Loss terms summed on the device, step by step, and read back once (one wait for the device per read)."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.steps = 0

    def add(self, terms: Mapping[str, torch.Tensor]) -> None:
        for name, value in terms.items():
            value = value.detach().float()
            self.sums[name] = self.sums[name] + value if name in self.sums else value
        self.steps += 1

    def means(self) -> dict[str, float]:
        values = torch.stack(list(self.sums.values())).div(self.steps).tolist() if self.sums else []
        means = dict(zip(self.sums, values))
        self.sums, self.steps = {}, 0
        return means


class Trainer:
    """SGD (or Adam) over a model's (or given) parameters for a fixed number of steps, with augmenter terms added.

    `step(loss_fn, step)` runs the method's loss on one Step; when the step has a
    retain batch, each augmenter adds its named terms computed from f(retain.x),
    taken from the method's own forward pass when it made one.

    `masks` (parameter -> 0/1 tensor of its shape) restricts updates to the
    masked-in entries: weight decay joins the gradient before the mask, so a
    masked-out weight does not move at all (SalUn's frozen weights).

    `compute` sets the precision the losses are computed in (bf16/fp16 autocast,
    fp16 with loss scaling); weights and optimiser state stay fp32.

    `retain_batches(size)` draws retain samples with the run's generator: an augmenter asks
    for a batch of its own size through `Batch.retain_batch`, and its views are counted on it.

    Under torchrun each rank trains on its rows of every step and the gradients are
    averaged over the ranks (see `unlearnkit.engine.distributed`); costs count whole steps.

    `on_log` receives each loss term's mean at every epoch's end (an epoch is `total_steps / params.epochs`
    steps) and, with `log_every`, every that many steps; terms are summed on the device and read once per
    record, so that logging never waits for an accelerator step by step. Under torchrun they are this rank's.
    """

    def __init__(
        self,
        model: Classifier,
        params: TrainParams,
        total_steps: int,
        cost: CostMeter,
        augmenters: Sequence[RepresentationTerms] = (),
        parameters: Iterable[nn.Parameter] | None = None,
        masks: Mapping[nn.Parameter, torch.Tensor] | None = None,
        compute: Compute = FP32,
        retain_batches: Callable[[int], Batch] | None = None,
        on_log: OnLog | None = None,
        log_every: int | None = None,
    ):
        self.model = model
        self.on_log = on_log
        self.log_every = log_every
        self._epoch, self._window = _Sums(), _Sums()
        self.epochs_logged = 0
        self.retain_batches = retain_batches
        self.compute = compute
        self.scaler = compute.grad_scaler()
        self.params = params
        self.total_steps = max(total_steps, 1)
        self.cost = cost
        self.augmenters = list(augmenters)
        trainable = list(parameters if parameters is not None else model.parameters())
        for augmenter in self.augmenters:
            trainable += augmenter.parameters()
        self.trainable = trainable
        self.world = world()
        if self.world.size > 1:
            broadcast_state(model)
        self.masks = dict(masks or {})
        self.optimizer: torch.optim.Optimizer
        decay = 0 if self.masks else params.weight_decay  # with masks, weight decay is applied before masking
        if params.optimizer == "adam":
            self.optimizer = torch.optim.Adam(trainable, lr=params.lr, weight_decay=decay)
        else:
            self.optimizer = torch.optim.SGD(trainable, lr=params.lr, momentum=params.momentum, weight_decay=decay)
        self.steps_done = 0
        #: the first step whose loss was not finite (-1: none yet), kept on the device: reading it waits for the device
        self._first_nonfinite: torch.Tensor | None = None

    def loss_terms(self, loss_fn: LossFn, whole: Step) -> dict[str, torch.Tensor]:
        """The method's terms and each augmenter's, on this rank's rows of the step (all of it in one process)."""
        step = shard(whole, self.world)
        retain = step.retain if self.augmenters else None  # augmenters add terms only to steps with a retain batch
        capture: AbstractContextManager[list[torch.Tensor]] = (
            captured_features(self.model, step) if retain is not None else nullcontext([])
        )
        with capture as found:
            loss = loss_fn(self.model, step)
        terms = dict(loss) if isinstance(loss, Mapping) else {"loss": loss}
        if retain is None:
            return terms
        if found:
            features = found[0]
        else:  # the method never ran the model on the retain view itself; these features are back-propagated
            features = self.model.features(retain.x)
            self.cost.trained(len(whole.retain or ()))
        for augmenter in self.augmenters:
            drawn: list[int] = []  # the sizes of the retain batches it drew of its own
            handed = replace(retain, draw_retain=partial(self._draw_retain, drawn=drawn))
            for key, value in augmenter.loss_terms(self.model, handed, features).items():
                terms[f"{augmenter.name}/{key}"] = value
            # its views are of its own batches when it drew some, else of the step's retain batch
            self.cost.trained(sum(drawn) if drawn else len(whole.retain or ()), augmenter.extra_views)
        return terms

    def _draw_retain(self, size: int, drawn: list[int]) -> Batch:
        """An augmenter's own retain batch (this rank's rows of it); its whole size is recorded for the cost."""
        if self.retain_batches is None:
            raise UnlearnkitError("this training loop has no retain data to draw an augmenter's own batch from",
                                  "Train through the run (`run.train`, `run.fit`), which hands the trainer its data.")
        batch = self.retain_batches(size)
        drawn.append(len(batch))
        rows = self.world.rows(len(batch))
        return batch if rows is None else batch.rows(rows)

    def step(self, loss_fn: LossFn, step: Step) -> torch.Tensor:
        """One optimisation step; returns the total loss (detached)."""
        self.model.train()
        factor = lr_factor(self.params, self.steps_done / self.total_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = self.params.lr * factor
        with self.compute.autocast():
            terms = self.loss_terms(loss_fn, step)
            total = cast(torch.Tensor, sum(terms.values()))  # a loss has at least one term, so never the int 0
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        if self.world.size > 1:
            average_gradients(self.trainable, self.world.size)
        if self.masks:
            self.scaler.unscale_(self.optimizer)  # the masks and weight decay act on true gradients
            self._mask_updates()
        self.scaler.step(self.optimizer)  # skipped when fp16 gradients overflowed; the scale then drops
        self.scaler.update()
        if self.world.size > 1:
            broadcast_buffers(self.model)
        self.cost.trained(len(step))
        self._watch(total.detach())
        self.steps_done += 1
        if self.on_log is not None:
            self._log(terms)
        return total.detach()

    def _log(self, terms: Mapping[str, torch.Tensor]) -> None:
        self._epoch.add(terms)
        if self.log_every:
            self._window.add(terms)
            if self.steps_done % self.log_every == 0:
                self._record(self._window, epoch_end=False)
        if self.steps_done * max(self.params.epochs, 1) >= (self.epochs_logged + 1) * self.total_steps:
            self._record(self._epoch, epoch_end=True)

    def _record(self, sums: _Sums, epoch_end: bool) -> None:
        assert self.on_log is not None
        lr = self.optimizer.param_groups[0]["lr"]
        self.epochs_logged += epoch_end
        self.on_log(Logged(self.epochs_logged + (not epoch_end), self.steps_done, lr, sums.means(), epoch_end))

    def finish_log(self) -> None:
        """The last epoch's record, when the schedule ended before `total_steps` (a method's own schedule may)."""
        if self.on_log is not None and self._epoch.steps:
            self._record(self._epoch, epoch_end=True)

    def _watch(self, loss: torch.Tensor) -> None:
        if self._first_nonfinite is None:
            self._first_nonfinite = torch.full((), -1, dtype=torch.long, device=loss.device)
        first = self._first_nonfinite
        self._first_nonfinite = torch.where((first < 0) & ~torch.isfinite(loss), self.steps_done, first)

    def check_finite(self, label: str) -> None:
        """Stop with one message once a loss has been NaN or infinite: every later step and metric would be too."""
        found = -1 if self._first_nonfinite is None else int(self._first_nonfinite)
        if found >= 0:
            raise UnlearnkitError(
                f"{label}: the training loss became NaN or infinite at step {found + 1} of {self.total_steps}, "
                "so the model's weights are no longer numbers; nothing was evaluated",
                "Lower the learning rate (or the weight of the term that grew), or check the data and the "
                "starting weights for non-finite values.")

    def _mask_updates(self) -> None:
        for group in self.optimizer.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                p.grad.add_(p.detach(), alpha=self.params.weight_decay)
                if p in self.masks:
                    p.grad.mul_(self.masks[p])
