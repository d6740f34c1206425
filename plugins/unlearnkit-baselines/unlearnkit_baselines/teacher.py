"""Bad Teacher: the student distils the original model on retain samples and a random model on forget samples."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from unlearnkit import Method, Range, TrainParams

if TYPE_CHECKING:  # pragma: no cover
    from unlearnkit import Batch, Classifier, CostCounter, Step, UnlearnRun


def incompetent_teacher(run: UnlearnRun) -> torch.nn.Module:
    """A randomly initialised model of the run's architecture, seeded from `run.generator`, frozen, in eval mode.

    The global torch RNG is used for the initialisation inside a forked RNG state,
    so the rest of the process sees no change.
    """
    seed = int(torch.randint(0, 2**62, (1,), generator=run.generator))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = run.new_model()
    return model.to(run.device).eval().requires_grad_(False)


def bad_teacher_loss(
    competent: nn.Module, incompetent: nn.Module, temperature: float, cost: CostCounter
) -> Callable[[Classifier, Step], dict[str, torch.Tensor]]:
    """KL(teacher || student) at temperature T over a union batch, averaged over all its samples.

    The teacher of a sample is `competent` (the original) when it is a retain
    sample and `incompetent` (the random model) when it is a forget sample: the
    per-sample flag of the paper, here the step's retain/forget sides. The
    student runs once over the whole batch; each teacher runs only on the
    samples it teaches, and its forward is counted.
    """

    def loss(model: Classifier, step: Step) -> dict[str, torch.Tensor]:
        sides: list[tuple[str, Batch, nn.Module]] = [
            (key, batch, teacher)
            for key, batch, teacher in (("retain_kl", step.retain, competent), ("forget_kl", step.forget, incompetent))
            if batch is not None
        ]
        # One student forward over the whole batch, as in the paper's code: in training mode BatchNorm
        # normalises the mixed batch together, rather than the forget samples among themselves.
        x = step.joint_x()
        log_student = F.log_softmax(model(x) / temperature, dim=1)
        terms: dict[str, torch.Tensor] = {}
        start, n = 0, len(x)
        for key, batch, teacher in sides:
            with torch.no_grad():
                target = F.softmax(teacher(batch.x) / temperature, dim=1)
            cost.forwarded(len(batch))
            end = start + len(batch)
            terms[key] = F.kl_div(log_student[start:end], target, reduction="sum") / n
            start = end
        return terms

    return loss


class BadTeacherParams(TrainParams):
    epochs: int = Field(1, ge=0, description="passes over D_u and the retain subset (public code: 1)")
    lr: float = Field(1e-4, gt=0, description="public code: Adam, lr 1e-4")
    batch_size: int = Field(256, ge=1, description="public code: 256")
    weight_decay: float = Field(0.0, ge=0, description="public code: none")
    optimizer: Literal["sgd", "adam"] = Field("adam", description="public code: Adam (momentum is then unused)")
    temperature: float = Field(1.0, gt=0, description="KL temperature T (PROTOCOL and public code: 1)")
    retain_fraction: float = Field(
        0.3, gt=0, le=1, description="share of D_r drawn once (seeded) and used with all of D_u (public code: 0.3)"
    )


class BadTeacher(Method):
    """Bad Teacher: distil the original on (a subset of) D_r and a randomly initialised model on D_u, by KL.

    Chundawat, Tarun, Mandal, Kankanhalli, "Can Bad Teaching Induce Forgetting?
    Unlearning in Deep Networks Using an Incompetent Teacher", AAAI 2023.

    The student is `run.model`; the competent teacher is the frozen original
    (`run.original`); the incompetent teacher is a fresh random model of the same
    architecture (`run.new_model()`, seeded from the run's generator, frozen,
    never trained). Training runs over shuffled batches of D_u together with a
    retain subset (the engine's "union" stream over those samples): each batch
    minimises KL(softmax(teacher(x)/T) || softmax(student(x)/T)) averaged over
    its samples, the teacher being the competent one for retain samples and the
    incompetent one for forget samples.

    Params and defaults (PROTOCOL.md: T 1; the rest from the authors' public
    code, github.com/vikram2000b/bad-teaching-unlearning, as also run by the SSD
    authors for CIFAR): a random 30% of D_r (`retain_fraction`, drawn once with
    the run's generator) with all of D_u, 1 epoch, batch 256, Adam lr 1e-4, no
    weight decay (`optimizer: sgd` switches to the shared SGD recipe). No search
    ranges are fixed by PROTOCOL.

    Choices: the KL is the per-sample KL averaged over the batch ("batchmean",
    the authors' later code; their first release averaged over classes too,
    which only rescales the loss), with no T^2 factor, as in their code. The
    student runs once over each mixed batch, as in their code, so that BatchNorm
    in training mode normalises retain and forget samples together (separate
    forwards would let a forget-only sub-batch be normalised by its own
    statistics, which breaks class-wise forgetting). The public code runs both
    teachers on every sample and keeps one output per sample; here each teacher
    runs only on the samples it teaches: the same loss at one teacher forward
    per sample instead of two. Augmenters (coun-cl) add their terms on every
    step that has retain samples, with the retain rows' features taken from the
    student's joint forward (`step.joint_x()`).

    Cost: the Trainer counts 3 forwards per trained sample; the teacher forward
    adds 1 per sample.
    """

    name = "bad-teacher"
    Params = BadTeacherParams
    params: BadTeacherParams
    search_space = {"lr": Range(1e-5, 1e-3, log=True)}  # a decade either side of the public code's 1e-4 (Adam)

    def unlearn(self, run: UnlearnRun) -> None:
        p = self.params
        retain = run.data.split.retain
        keep = max(1, int(p.retain_fraction * len(retain))) if len(retain) else 0
        subset = retain[torch.randperm(len(retain), generator=run.generator)[:keep]]
        index = torch.cat([subset, run.data.split.forget])
        total = run.steps_per_epoch("union", p.batch_size, among=index) * p.epochs
        loss_fn = bad_teacher_loss(run.original, incompetent_teacher(run), p.temperature, run.cost)
        steps = run.steps("union", p.batch_size, p.epochs, among=index)
        run.fit(((loss_fn, step) for step in steps), p, total)
