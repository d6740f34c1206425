"""Per-example privacy audits: the statistics of U-LiRA, of the NeurIPS 2023 challenge's epsilon score and of RMIA.

docs/audit.md says what each number means and where these estimators differ from the
open reference code. Everything here but `logit_confidence` is plain numpy on arrays
of per-(model, sample) values, so an audit's figures can be recomputed from its files
without a model in sight.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from unlearnkit.errors import UnlearnkitError

#: a side whose values are all equal (a method that ignores its seed) would otherwise make the likelihood infinite
MIN_VARIANCE = 1e-6
#: how far (in phi) the width of an interval rule may stray from the range of the side it calls, as in the challenge
INTERVAL_SLACK = 2.0


# --------------------------------------------------------------------------- the statistic


def logit_confidence(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """phi = log p_y - log(1 - p_y), one value per row, computed stably in float64 as
    logit_y - logsumexp_{j != y} logit_j (LiRA's statistic)."""
    logits = logits.double()
    true = logits.gather(1, labels[:, None]).squeeze(1)
    others = logits.scatter(1, labels[:, None], float("-inf"))
    return true - torch.logsumexp(others, dim=1)


# --------------------------------------------------------------------------- ROC


def _roc(scores: np.ndarray, is_positive: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(fpr, tpr) at every distinct score used as threshold (score >= threshold calls positive), from (0, 0) up;
    tied scores move together, as in scikit-learn. `weights` count each score (a bootstrap resample's multiplicity)."""
    order = np.argsort(-scores, kind="stable")
    scores, is_positive, weights = scores[order], is_positive[order], weights[order]
    last_of_each_value = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]
    true_positives = np.cumsum(weights * is_positive)[last_of_each_value]
    false_positives = np.cumsum(weights * ~is_positive)[last_of_each_value]
    return np.r_[0.0, false_positives] / false_positives[-1], np.r_[0.0, true_positives] / true_positives[-1]


def _auc(fpr: np.ndarray, tpr: np.ndarray) -> float:
    return float(np.trapezoid(tpr, fpr))


def roc_auc(scores_pos: np.ndarray, scores_neg: np.ndarray) -> float:
    """The probability that a positive scores above a negative, ties counting one half (scikit-learn's ROC AUC)."""
    scores = np.concatenate([scores_pos, scores_neg]).astype(float)
    is_positive = np.r_[np.ones(len(scores_pos), bool), np.zeros(len(scores_neg), bool)]
    return _auc(*_roc(scores, is_positive, np.ones(len(scores))))


# --------------------------------------------------------------------------- U-LiRA


def _check_models_by_targets(name: str, array: np.ndarray, shape: tuple[int, ...] | None = None) -> None:
    if array.ndim != 2 or (shape is not None and array.shape != shape):
        expected = f"shape {shape}" if shape is not None else "two dimensions (models, targets)"
        raise UnlearnkitError(f"{name} has shape {array.shape}, expected {expected}",
                              "Give one row per model and one column per audit target.")


def _leave_one_out_gaussians(phi: np.ndarray, side: np.ndarray, pooled_variance: bool
                             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each (model k, target t): the mean and variance of t's values on `side` among the models other than k,
    and how many there are. Pooled, the variance is the within-target one pooled over every target that has at
    least 2 values (still without model k)."""
    count = side.sum(axis=0) - side
    # centred per target first, so that sums of squares lose no precision
    centre = np.divide((phi * side).sum(axis=0), side.sum(axis=0), out=np.zeros(phi.shape[1]), where=side.any(axis=0))
    values = np.where(side, phi - centre, 0.0)
    total = values.sum(axis=0) - values
    squares = (values**2).sum(axis=0) - values**2
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = total / count
        deviations = np.maximum(squares - count * mean**2, 0.0)  # sum of squared deviations from that mean
        fitted = count >= 2
        if pooled_variance:
            pooled = np.where(fitted, deviations, 0.0).sum(axis=1) / np.where(fitted, count - 1, 0).sum(axis=1)
            variance = np.broadcast_to(pooled[:, None], phi.shape)
        else:
            variance = deviations / (count - 1)
    return mean + centre, np.maximum(variance, MIN_VARIANCE), count


def _log_normal(x: np.ndarray, mean: np.ndarray, variance: np.ndarray) -> np.ndarray:
    return -0.5 * (np.log(2 * math.pi * variance) + (x - mean) ** 2 / variance)


def lira_scores(phi: np.ndarray, unlearned_in: np.ndarray, never_seen: np.ndarray,
                pooled_variance: bool = True) -> np.ndarray:
    """U-LiRA's score of every (model k, target t), leave one model out: log N(phi[k, t]; IN) - log N(phi[k, t]; OUT),
    with IN and OUT Gaussians fitted on the other K - 1 models' values of t.

    `phi` is [K, T]; `unlearned_in[k, t]`: t was in model k's forget set (seen, then unlearned);
    `never_seen[k, t]`: t was not in model k's training set. The variance is pooled over targets
    (LiRA's fixed-variance variant) unless `pooled_variance` is false. NaN where (k, t) is neither,
    or where a side has fewer than 2 values among the other models (`AttackFigures.unscored_targets`
    counts those targets).
    """
    phi = np.asarray(phi, dtype=float)
    unlearned_in, never_seen = np.asarray(unlearned_in, dtype=bool), np.asarray(never_seen, dtype=bool)
    _check_models_by_targets("phi", phi)
    _check_models_by_targets("unlearned_in", unlearned_in, phi.shape)
    _check_models_by_targets("never_seen", never_seen, phi.shape)
    if (unlearned_in & never_seen).any():
        raise UnlearnkitError("a target is both unlearned and never seen by the same model",
                              "A model's forget set must lie inside its training set.")
    in_mean, in_variance, in_count = _leave_one_out_gaussians(phi, unlearned_in, pooled_variance)
    out_mean, out_variance, out_count = _leave_one_out_gaussians(phi, never_seen, pooled_variance)
    scorable = (unlearned_in | never_seen) & (in_count >= 2) & (out_count >= 2)
    with np.errstate(invalid="ignore"):
        scores = _log_normal(phi, in_mean, in_variance) - _log_normal(phi, out_mean, out_variance)
    return np.where(scorable, scores, np.nan)


@dataclass(frozen=True)
class AttackFigures:
    """How well an attack's scores tell positives from negatives, pooled over every (model, target) pair.

    Rates and AUC are fractions (0.5 is chance); each `*_ci` is a 95% bootstrap interval (low, high).
    `positives` and `negatives` count the pairs scored: a TPR at 0.1% FPR rests on the top 0.1% of the
    negatives, so with 1,000 negatives it rests on one. `unscored_targets`: targets with a positive or
    negative pair whose score is NaN (too few models on a side), left out. `fpr`, `tpr`: the ROC curve.
    """

    auc: float
    auc_ci: tuple[float, float]
    balanced_accuracy: float
    balanced_accuracy_ci: tuple[float, float]
    tpr_at_1: float
    tpr_at_1_ci: tuple[float, float]
    tpr_at_01: float
    tpr_at_01_ci: tuple[float, float]
    positives: int
    negatives: int
    unscored_targets: int
    fpr: np.ndarray
    tpr: np.ndarray

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: every field, the curve as lists."""
        return {name: value.tolist() if isinstance(value, np.ndarray) else value
                for name, value in self.__dict__.items()}


def _figures(fpr: np.ndarray, tpr: np.ndarray) -> tuple[float, float, float, float]:
    """AUC, balanced accuracy at the best threshold, TPR at 1% and at 0.1% FPR (the best TPR with FPR at most that)."""
    return (_auc(fpr, tpr), float(((tpr + 1 - fpr) / 2).max()),
            float(tpr[fpr <= 0.01].max()), float(tpr[fpr <= 0.001].max()))


def attack_figures(scores: np.ndarray, positive: np.ndarray, negative: np.ndarray, *, bootstrap: int = 1000,
                   seed: int = 0, groups: np.ndarray | None = None) -> AttackFigures:
    """The attack's figures over every (model, target) pair that is positive or negative and has a score.

    The intervals come from `bootstrap` resamples of the targets (columns), or of `groups`, an id per column
    ([T]) or per pair ([K, T]): a resampled group brings all its pairs, so pairs that share a target are
    never treated as independent.
    """
    scores = np.asarray(scores, dtype=float)
    positive, negative = np.asarray(positive, dtype=bool), np.asarray(negative, dtype=bool)
    _check_models_by_targets("scores", scores)
    _check_models_by_targets("positive", positive, scores.shape)
    _check_models_by_targets("negative", negative, scores.shape)
    labelled = positive | negative
    if (positive & negative).any():
        raise UnlearnkitError("a (model, target) pair is both a positive and a negative",
                              "A target is either in a model's forget set or outside its training set.")
    scored = labelled & np.isfinite(scores)
    values, is_positive = scores[scored], positive[scored]
    if is_positive.all() or not is_positive.any():
        raise UnlearnkitError(
            f"the attack has {int(is_positive.sum())} scored positives and {int((~is_positive).sum())} "
            "scored negatives; it needs both",
            "Use more models, so that every target is unlearned by some and never seen by others.")
    group_ids = np.arange(scores.shape[1]) if groups is None else np.asarray(groups)
    _, group_of_pair = np.unique(np.broadcast_to(group_ids, scores.shape)[scored], return_inverse=True)
    groups_count = int(group_of_pair.max()) + 1

    fpr, tpr = _roc(values, is_positive, np.ones(len(values)))
    estimate = _figures(fpr, tpr)
    rng = np.random.default_rng(seed)
    replicates = []
    for _ in range(bootstrap):
        weights = np.bincount(rng.integers(groups_count, size=groups_count), minlength=groups_count)[group_of_pair]
        if weights[is_positive].any() and weights[~is_positive].any():  # a resample can miss one side entirely
            replicates.append(_figures(*_roc(values, is_positive, weights)))
    if replicates:
        low, high = np.percentile(np.array(replicates), [2.5, 97.5], axis=0)
    else:
        low = high = np.full(4, np.nan)
    intervals = [(float(lo), float(hi)) for lo, hi in zip(low, high)]
    return AttackFigures(
        auc=estimate[0], auc_ci=intervals[0],
        balanced_accuracy=estimate[1], balanced_accuracy_ci=intervals[1],
        tpr_at_1=estimate[2], tpr_at_1_ci=intervals[2],
        tpr_at_01=estimate[3], tpr_at_01_ci=intervals[3],
        positives=int(is_positive.sum()), negatives=int((~is_positive).sum()),
        unscored_targets=int((labelled & ~scored).any(axis=0).sum()),
        fpr=fpr, tpr=tpr,
    )


def per_sample_vulnerability(scores: np.ndarray, positive: np.ndarray, negative: np.ndarray) -> np.ndarray:
    """Each target's own AUC: its scores as a positive against its scores as a negative, across the models.
    NaN for a target without a scored positive or negative."""
    scores = np.asarray(scores, dtype=float)
    positive, negative = np.asarray(positive, dtype=bool), np.asarray(negative, dtype=bool)
    finite = np.isfinite(scores)
    vulnerability = np.full(scores.shape[1], np.nan)
    for t, column in enumerate(scores.T):
        pos, neg = column[positive[:, t] & finite[:, t]], column[negative[:, t] & finite[:, t]]
        if len(pos) and len(neg):
            vulnerability[t] = roc_auc(pos, neg)
    return vulnerability


# --------------------------------------------------------------------------- the challenge's epsilon score


def _rule_epsilon(fpr: np.ndarray, fnr: np.ndarray, delta: float) -> float:
    """The largest epsilon that decision rules with these error rates prove:
    max(log(1 - delta - FPR) - log FNR, log(1 - delta - FNR) - log FPR) per rule. A rule with no error at all
    proves infinity; a rule with one error rate of 0 proves nothing (too few runs to estimate it)."""
    if ((fpr == 0) & (fnr == 0)).any():
        return math.inf
    informative = (fpr > 0) & (fnr > 0)
    fpr, fnr = fpr[informative], fnr[informative]
    with np.errstate(divide="ignore", invalid="ignore"):  # log of 0 or less: that side proves nothing
        proved = np.fmax(np.log(1 - delta - fpr) - np.log(fnr), np.log(1 - delta - fnr) - np.log(fpr))
    return float(np.nanmax(proved, initial=0.0))


def _sample_epsilon(method: np.ndarray, retrain: np.ndarray, delta: float) -> float:
    """The challenge's two families of decision rules, each rule at every place the data can tell apart:
    a single threshold calling the side with the larger median above it, and an interval calling the side with
    the smaller range inside it, of a width within `INTERVAL_SLACK` of that range."""
    positive, negative = (retrain, method) if np.median(retrain) > np.median(method) else (method, retrain)
    narrow, wide = (negative, positive) if np.ptp(positive) >= np.ptp(negative) else (positive, negative)
    values = np.unique(np.concatenate([method, retrain]))

    def at_or_below(side: np.ndarray) -> np.ndarray:
        """How many of a side's values lie at or below each distinct value, with 0 before the first."""
        return np.r_[0, np.searchsorted(np.sort(side), values, side="right")]

    # a threshold between distinct values k - 1 and k calls everything from value k on positive
    positive_below, negative_below = at_or_below(positive), at_or_below(negative)
    threshold_fpr = (len(negative) - negative_below) / len(negative)
    threshold_fnr = positive_below / len(positive)
    # an interval holding distinct values first..last can be as narrow as their span and, reaching towards the
    # values either side, almost as wide as the span from the one before to the one after
    first, last = np.triu_indices(len(values))
    padded = np.r_[-np.inf, values, np.inf]
    width = np.ptp(narrow)
    fits = (values[last] - values[first] <= width + INTERVAL_SLACK) & (padded[last + 2] - padded[first] > width - INTERVAL_SLACK)
    first, last = first[fits], last[fits]
    narrow_below, wide_below = at_or_below(narrow), at_or_below(wide)
    interval_fpr = (wide_below[last + 1] - wide_below[first]) / len(wide)
    interval_fnr = (len(narrow) - narrow_below[last + 1] + narrow_below[first]) / len(narrow)
    return _rule_epsilon(np.r_[threshold_fpr, interval_fpr], np.r_[threshold_fnr, interval_fnr], delta)


def epsilons(method_phi: np.ndarray, retrain_phi: np.ndarray, delta: float = 1e-5) -> np.ndarray:
    """Per forget sample, the epsilon that telling the method's runs from Retrain's proves (the challenge's
    hypothesis-testing estimate). `method_phi` and `retrain_phi` are [N runs, U samples] of phi under N runs of
    the method from one original and N Retrains; inf where the two never overlap."""
    method_phi, retrain_phi = np.asarray(method_phi, dtype=float), np.asarray(retrain_phi, dtype=float)
    for name, array in (("method_phi", method_phi), ("retrain_phi", retrain_phi)):
        if array.ndim != 2 or len(array) < 2:
            raise UnlearnkitError(f"{name} has shape {array.shape}: epsilon needs [runs, samples] with at least 2 runs",
                                  "Run the method and Retrain with at least 2 seeds each.")
        if not np.isfinite(array).all():
            raise UnlearnkitError(f"{name} holds NaN or infinite values", "Measure phi on models with finite outputs.")
    if method_phi.shape[1] != retrain_phi.shape[1]:
        raise UnlearnkitError(f"method_phi has {method_phi.shape[1]} samples and retrain_phi {retrain_phi.shape[1]}",
                              "Measure both on the same forget samples, in the same order.")
    return np.array([_sample_epsilon(m, r, delta) for m, r in zip(method_phi.T, retrain_phi.T)])


def epsilon_ceiling(n: int, delta: float = 1e-5) -> float:
    """The largest finite epsilon `epsilons` can give with n runs per side, about ln n: the best rule still
    making an error on each side has FPR = FNR = 1/n, proving log((1 - delta - 1/n) n)."""
    if n < 2:
        raise UnlearnkitError(f"epsilon needs at least 2 runs per side, not {n}", "Give N of at least 2.")
    return max(0.0, math.log(n * (1 - delta) - 1))


def forget_quality(eps: np.ndarray) -> float:
    """The challenge's F: the mean over forget samples of 2^-b, where b = floor(2 epsilon) numbers the epsilon's
    bucket of width 0.5 (1 for epsilon below 0.5, 1/2 below 1, ...); an infinite epsilon scores 0."""
    eps = np.asarray(eps, dtype=float)
    finite = np.isfinite(eps)
    points = np.zeros(eps.shape)
    points[finite] = 2.0 ** -np.floor(2 * eps[finite])
    return float(points.mean())


def challenge_score(forget_quality: float, ra: float, ra_retrain: float, ta: float, ta_retrain: float) -> float:
    """The challenge's final score F x RA/RA* x TA/TA* (accuracies of the method and of Retrain, any one unit)."""
    if ra_retrain <= 0 or ta_retrain <= 0:
        raise UnlearnkitError("Retrain's retain or test accuracy is 0, so the utility ratios are undefined",
                              "Check that Retrain trained: its accuracy should be well above chance.")
    return forget_quality * (ra / ra_retrain) * (ta / ta_retrain)


# --------------------------------------------------------------------------- RMIA


def rmia_scores(target_x: np.ndarray, reference_x: np.ndarray, target_z: np.ndarray, reference_z: np.ndarray,
                a: float = 0.3, gamma: float = 1.0) -> np.ndarray:
    """RMIA's score of each sample x: the fraction of population samples z with
    [Pr(x|theta) / Pr(x)] / [Pr(z|theta) / Pr(z)] >= gamma.

    Inputs are true-class probabilities: `target_x` [X] and `target_z` [Z] under the model attacked,
    `reference_x` [R, X] and `reference_z` [R, Z] under R reference models that saw neither. Pr(.) is
    the offline approximation ((1 + a) / 2) mean_R + (1 - a) / 2 (a = 1 trusts the references as they are).
    """
    target_x, target_z = np.asarray(target_x, dtype=float), np.asarray(target_z, dtype=float)
    reference_x, reference_z = np.asarray(reference_x, dtype=float), np.asarray(reference_z, dtype=float)
    if not 0 <= a <= 1 or gamma <= 0:
        raise UnlearnkitError(f"RMIA's a = {a} and gamma = {gamma}", "a lies in [0, 1] and gamma is positive.")
    if (target_x.ndim != 1 or target_z.ndim != 1 or reference_x.ndim != 2 or reference_x.shape != (len(reference_x), len(target_x))
            or reference_z.shape != (len(reference_x), len(target_z)) or len(reference_x) < 1 or len(target_z) < 1):
        raise UnlearnkitError(
            f"RMIA's inputs have shapes {target_x.shape}, {reference_x.shape}, {target_z.shape}, {reference_z.shape}",
            "Give target_x [X], reference_x [R, X], target_z [Z], reference_z [R, Z], with R and Z at least 1.")

    def ratio(target: np.ndarray, reference: np.ndarray) -> np.ndarray:
        return target / ((1 + a) / 2 * reference.mean(axis=0) + (1 - a) / 2)

    population = np.sort(ratio(target_z, reference_z))
    # ratio_x / ratio_z >= gamma  <=>  ratio_z <= ratio_x / gamma
    return np.searchsorted(population, ratio(target_x, reference_x) / gamma, side="right") / len(population)
