"""CU: Contrastive Unlearning (Lee, Zhang, Yang, Lou, Xiong, IJCAI 2025)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Iterator

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from unlearnkit import Method, Range, Step, TrainParams, UnlearnkitError, lr_factor, shuffled

if TYPE_CHECKING:  # pragma: no cover
    from unlearnkit import Classifier, UnlearnRun


def contrastive_unlearning_loss(
    z_forget: torch.Tensor, y_forget: torch.Tensor, z_retain: torch.Tensor, y_retain: torch.Tensor, tau: float
) -> torch.Tensor:
    """L_UL on L2-normalised embeddings, the paper's supervised-contrastive form.

    With s_ij = z_u_i . z_r_j / tau, positives P(i) = retain samples of another class
    than anchor i, negatives N(i) = retain samples of anchor i's own class:

        l_i = -1/|P(i)| sum_{p in P(i)} log( exp(s_ip) / sum_{n in N(i)} exp(s_in) )
            = logsumexp_{n in N(i)} s_in - mean_{p in P(i)} s_ip

    An anchor without negatives (class-wise forgetting: no retain sample shares its
    class) gets a denominator of 1, as the authors' code does, so it is only pulled
    toward the other classes. L_UL is the mean of l_i over anchors that have at least
    one positive (an anchor without any is skipped; 0 if none has one).
    """
    similarity = z_forget @ z_retain.T / tau
    same = y_forget[:, None] == y_retain[None, :]
    positive = (~same).to(similarity.dtype)
    n_positive = positive.sum(dim=1)
    pulled = (similarity * positive).sum(dim=1) / n_positive.clamp(min=1)
    pushed = torch.logsumexp(similarity.masked_fill(~same, float("-inf")), dim=1)
    pushed = torch.where(same.any(dim=1), pushed, torch.zeros_like(pushed))
    per_anchor = pushed - pulled
    has_positive = n_positive > 0
    if not has_positive.any():
        return similarity.sum() * 0.0
    return per_anchor[has_positive].mean()


class ProjectionHead(nn.Sequential):
    """The method's MLP projection head: Linear(d, d) - ReLU - Linear(d, out) (SupCon's 'mlp' head)."""

    def __init__(self, feature_dim: int, out_dim: int):
        super().__init__(nn.Linear(feature_dim, feature_dim), nn.ReLU(inplace=True), nn.Linear(feature_dim, out_dim))


class ProjectionClassifier(nn.Sequential):
    """The classifier the authors' network puts on the normalised projection: ReLU - Linear(out, classes)."""

    def __init__(self, projection_dim: int, num_classes: int):
        super().__init__(nn.ReLU(), nn.Linear(projection_dim, num_classes))


def fit_projection_head(
    head: nn.Module,
    classifier: nn.Module,
    features: torch.Tensor,
    labels: torch.Tensor,
    recipe: TrainParams,
    epochs: int,
    generator: torch.Generator,
) -> None:
    """Train `head` and `classifier` with CE(classifier(normalize(head(f))), y) on fixed features f.

    The optimiser, learning rate, schedule, momentum, weight decay and batch size are
    the recipe's; `epochs` shuffled passes over the samples, drawn from `generator`.
    """
    parameters = list(head.parameters()) + list(classifier.parameters())
    optimizer: torch.optim.Optimizer
    if recipe.optimizer == "adam":
        optimizer = torch.optim.Adam(parameters, lr=recipe.lr, weight_decay=recipe.weight_decay)
    else:
        optimizer = torch.optim.SGD(parameters, lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay)
    head.train()
    classifier.train()
    index = torch.arange(len(labels))
    done, total = 0, 0
    for _ in range(epochs):
        chunks = shuffled(index, recipe.batch_size, generator)
        total = total or epochs * len(chunks)  # every pass has the same number of batches
        for chunk in chunks:
            chunk = chunk.to(features.device)
            for group in optimizer.param_groups:
                group["lr"] = recipe.lr * lr_factor(recipe, done / total)
            logits = classifier(F.normalize(head(features[chunk]), dim=1))
            loss = F.cross_entropy(logits, labels[chunk])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            done += 1


@torch.no_grad()
def original_features(run: UnlearnRun) -> tuple[torch.Tensor, torch.Tensor]:
    """f(x) of the frozen Original and the labels of every training sample (D), from un-augmented views."""
    features, labels = [], []
    for x, y in run.data.eval_views("train"):
        features.append(run.original.features(x))
        labels.append(y)
    run.cost.forwarded(sum(len(y) for y in labels))
    return torch.cat(features), torch.cat(labels)


class ContrastiveUnlearningParams(TrainParams):
    """Defaults: PROTOCOL.md and the authors' public code (they agree)."""

    epochs: int = Field(3, ge=0, description="passes over the forget set (each forget batch used omega times)")
    lr: float = Field(1e-3, gt=0)
    batch_size: int = Field(128, ge=1, description="forget batch size; each retain batch has as many samples (authors' code: 128)")
    weight_decay: float = Field(0.0, ge=0, description="the authors' unlearning optimiser passes none")
    tau: float = Field(0.7, gt=0, description="temperature of s = z_u . z_r / tau")
    omega: int = Field(4, ge=1, description="retain batches (steps) per forget batch")
    lambda_ul: float = Field(3.0, ge=0, description="weight of the contrastive unlearning loss L_UL")
    lambda_ce: float = Field(1.0, ge=0, description="weight of the cross-entropy on the retain batch")
    projection_dim: int = Field(128, ge=1, description="output size of the MLP projection head (authors' code: 128)")
    head_epochs: int | None = Field(
        None,
        ge=0,
        description="epochs fitting the projection head on the frozen Original before unlearning, with the "
        "Original's recipe; None = the recipe's epochs, 0 = start from a random head",
    )


class ContrastiveUnlearning(Method):
    """CU: pull forget embeddings toward other-class retain samples, away from same-class ones, plus CE on retain.

    Lee, Zhang, Yang, Lou, Xiong, "Contrastive Unlearning: A Contrastive Approach to
    Machine Unlearning", IJCAI 2025 (arXiv 2401.10458).

    Before unlearning, the method's MLP projection head (Linear(d, d) - ReLU -
    Linear(d, 128)) is fitted on the Original, as in the authors' code, where it is
    part of the original network and trained with it (see the choices below). Then
    each forget batch (one augmented view, drawn once) is used for omega consecutive
    steps, each with a fresh retain batch of the same size. A step forwards the two
    batches together (one BatchNorm batch, as the authors' code does), maps the
    penultimate features f(x) through the projection head (trained with the model
    from here on: the authors' unlearning optimiser freezes nothing) and
    L2-normalises them. For each forget anchor, positives are the retain samples of
    OTHER classes (pulled toward) and negatives the retain samples of its OWN class
    (pushed away), in a supervised-contrastive loss (see `contrastive_unlearning_loss`). The step
    minimises lambda_UL * L_UL + lambda_CE * CE(h(f(x_r)), y_r).

    Params (PROTOCOL.md = the authors' code defaults): tau 0.7, omega 4, lambda_UL 3,
    lambda_CE 1, lr 1e-3 (constant), 3 epochs over D_u, SGD momentum 0.9; batch 128
    and no weight decay from the authors' code. No search range is published.
    `head_epochs` (None = the Original recipe's epochs) sets the head's fit.

    Choices where code and paper differ or this framework must decide:
    - Loss: the paper's equation (above). The authors' code sums the broadcast
      log-denominator over all retain columns before dividing by |P(i)|, which
      weights the push term by |R|/|P(i)|; we follow the equation.
    - Projection head: in the authors' code the network is f -> MLP head ->
      L2-normalise -> ReLU -> Linear(128, classes), so the head is part of the
      Original and is trained with it, end to end by cross-entropy on all of D
      (un-augmented views, the Original's SGD recipe). Here the Original is a core
      model trained by cross-entropy as f -> model.head, shared by every method, so
      the head cannot be trained inside it. Closest choice: before unlearning, the
      head and a classifier of the authors' form on its normalised output
      (ReLU - Linear(128, classes)) are trained by cross-entropy on the frozen
      Original's features of every training sample of D (forget samples included,
      as the Original saw them), un-augmented, with the Original's recipe
      (optimiser, lr, schedule, momentum, weight decay, batch size, epochs;
      `head_epochs` overrides the epochs, 0 keeps a random head). The head moves on
      frozen features where the authors' moved with its encoder. That classifier
      is then dropped: the model's classifier stays model.head on f(x), so during
      unlearning the head gets the L_UL gradient only (in the authors' code the
      retain CE also reaches it, through their classifier).
    - Retain batches are drawn from shuffled passes over D_r, cycled (reshuffled
      when exhausted); the authors' code restarts a shuffled retain loader for every
      forget batch. Both give omega fresh random retain batches per forget batch.
    - The code stops early once forget accuracy falls to test accuracy (random) or
      chance (class); this implementation runs the given epochs.
    - Cost: fitting the head forwards the frozen Original once per training sample
      (1 forward each); the trainer then counts 3 forwards per forget and retain
      sample of every step. The projection head's own FLOPs (about 2(d^2 + 128 d)
      per sample and pass, 0.06% of a CIFAR ResNet-18 forward) are not counted, in
      the fit or in the steps: the convention counts model forwards (over the CIFAR
      recipe's 182 epochs the fit's come to about a third of a forward per sample).

    It takes steps on retain batches, so augmenters (coun-cl) can wrap it; they see
    the retain batch of every step. CU's own forward runs on retain and forget
    together (`step.joint_x()`), and the trainer hands augmenters the features of
    its retain rows, so wrapping costs no extra forward of the retain view.
    """

    name = "cu"
    Params = ContrastiveUnlearningParams
    params: ContrastiveUnlearningParams
    search_space = {"lr": Range(1e-4, 1e-2, log=True)}  # a decade either side of the authors' 1e-3

    def unlearn(self, run: UnlearnRun) -> None:
        p = self.params
        model = run.model
        head = self.projection_head(run, model.feature_dim)
        self.fit_head_on_original(run, head)
        per_forget_epoch = run.steps_per_epoch("forget", p.batch_size)
        total = per_forget_epoch * p.omega * p.epochs
        loss_fn = self.loss_fn(head)
        run.fit(((loss_fn, step) for step in self.steps(run, total)), p, total,
                parameters=list(model.parameters()) + list(head.parameters()))

    def projection_head(self, run: UnlearnRun, feature_dim: int) -> ProjectionHead:
        """A freshly initialised head, drawn with a seed from the run (the global RNG is left untouched)."""
        seed = int(torch.randint(0, 2**62, (1,), generator=run.generator))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            head = ProjectionHead(feature_dim, self.params.projection_dim)
        return head.to(run.device)

    def fit_head_on_original(self, run: UnlearnRun, head: ProjectionHead) -> None:
        """Train the head as the authors' Original trained it: CE through a classifier on its normalised
        output, over all of D, with the Original's recipe; the Original itself is frozen and is
        forwarded once per training sample (un-augmented view), which the cost counts."""
        epochs = run.recipe.epochs if self.params.head_epochs is None else self.params.head_epochs
        if epochs == 0:
            return
        seed = int(torch.randint(0, 2**62, (1,), generator=run.generator))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            classifier = ProjectionClassifier(self.params.projection_dim, run.num_classes).to(run.device)
        features, labels = original_features(run)
        fit_projection_head(head, classifier, features, labels, run.recipe, epochs, run.generator)

    def loss_fn(self, head: nn.Module) -> Callable[[Classifier, Step], dict[str, torch.Tensor]]:
        p = self.params

        def loss(model: Classifier, step: Step) -> dict[str, torch.Tensor]:
            forget, retain = step.forget, step.retain
            assert forget is not None and retain is not None  # `steps` pairs every forget batch with a retain batch
            features = model.features(step.joint_x())  # retain rows first
            z = F.normalize(head(features), dim=1)
            z_retain, z_forget = z[: len(retain)], z[len(retain):]
            logits = model.head(features[: len(retain)])
            return {
                "ul": p.lambda_ul * contrastive_unlearning_loss(z_forget, forget.y, z_retain, retain.y, p.tau),
                "ce": p.lambda_ce * F.cross_entropy(logits, retain.y),
            }

        return loss

    def steps(self, run: UnlearnRun, total: int) -> Iterator[Step]:
        """Each forget batch omega times in a row, each time with a fresh retain batch of the same size."""
        p = self.params
        data, generator = run.data, run.generator
        retain_index = data.indices("retain")
        if len(retain_index) == 0:
            raise UnlearnkitError("cu needs retain samples: the retain set is empty")
        pool = retain_index[:0]
        i = 0
        for epoch in range(p.epochs):
            for chunk in shuffled(data.indices("forget"), p.batch_size, generator):
                forget = run.batch(chunk)
                for _ in range(p.omega):
                    parts = []
                    need = len(chunk)
                    while need > 0:
                        if len(pool) == 0:  # a fresh shuffled pass over D_r
                            pool = retain_index[torch.randperm(len(retain_index), generator=generator)]
                        parts.append(pool[:need])
                        pool = pool[need:]
                        need -= len(parts[-1])
                    retain = run.batch(torch.cat(parts))
                    yield Step(retain, forget, epoch, p.epochs, i, total)
                    i += 1
