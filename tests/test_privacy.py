"""The statistics of the per-example privacy audits (docs/audit.md) on inputs with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.optimize import brentq
from scipy.stats import norm
from sklearn.metrics import roc_auc_score, roc_curve

from unlearnkit.errors import UnlearnkitError
from unlearnkit.evaluation.privacy import (
    attack_figures,
    challenge_score,
    epsilon_ceiling,
    epsilons,
    forget_quality,
    lira_scores,
    logit_confidence,
    per_sample_vulnerability,
    rmia_scores,
    roc_auc,
)

# --------------------------------------------------------------------------- phi


def test_phi_by_hand():
    logits = torch.tensor([[2.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    phi = logit_confidence(logits, torch.tensor([0, 2]))
    assert phi.dtype == torch.float64
    assert phi[0].item() == pytest.approx(2.0 - math.log(math.exp(0.0) + math.exp(1.0)))
    assert phi[1].item() == pytest.approx(-math.log(2.0))


def test_phi_is_the_log_odds_of_the_true_class_probability():
    logits = torch.randn(50, 10, generator=torch.Generator().manual_seed(0)) * 3
    labels = torch.arange(50) % 10
    p = torch.softmax(logits.double(), 1)[torch.arange(50), labels]
    assert torch.allclose(logit_confidence(logits, labels), torch.log(p / (1 - p)), atol=1e-9)


def test_phi_stays_finite_and_exact_for_extreme_logits():
    logits = torch.tensor([[1000.0, 0.0, -1000.0], [-1000.0, 1000.0, 0.0]])
    phi = logit_confidence(logits, torch.tensor([0, 0]))
    assert torch.isfinite(phi).all()  # p_y is 1 (or 0) in float64, so log(p / (1 - p)) would be inf
    assert phi.tolist() == pytest.approx([1000.0, -2000.0])


# --------------------------------------------------------------------------- ROC


def test_roc_auc_equals_scikit_learns_with_ties():
    rng = np.random.default_rng(0)
    pos, neg = rng.integers(0, 5, 40).astype(float), rng.integers(0, 4, 30).astype(float)
    expected = roc_auc_score(np.r_[np.ones(40), np.zeros(30)], np.r_[pos, neg])
    assert roc_auc(pos, neg) == pytest.approx(expected)
    assert roc_auc(np.array([1.0]), np.array([1.0])) == 0.5


# --------------------------------------------------------------------------- U-LiRA


def ulira_design(models: int, targets: int, shift: float, seed: int = 0):
    """Each target is unlearned by half the models and never seen by the other half; the unlearned side's phi is
    shifted by `shift` (0: unlearning left no trace)."""
    rng = np.random.default_rng(seed)
    unlearned_in = np.zeros((models, targets), bool)
    for t in range(targets):
        unlearned_in[rng.permutation(models)[: models // 2], t] = True
    base = rng.normal(0.0, 2.0, targets)  # each target has its own difficulty
    phi = base + rng.normal(0.0, 1.0, (models, targets)) + shift * unlearned_in
    return phi, unlearned_in, ~unlearned_in


@pytest.mark.parametrize("pooled", [True, False])
def test_identical_in_and_out_distributions_give_chance_and_separated_ones_near_one(pooled):
    phi, unlearned, never = ulira_design(32, 200, shift=0.0)
    same = attack_figures(lira_scores(phi, unlearned, never, pooled), unlearned, never, bootstrap=100)
    assert same.auc == pytest.approx(0.5, abs=0.03)
    assert same.auc_ci[0] < 0.5 < same.auc_ci[1]
    phi, unlearned, never = ulira_design(32, 200, shift=4.0)
    apart = attack_figures(lira_scores(phi, unlearned, never, pooled), unlearned, never, bootstrap=100)
    assert apart.auc > 0.97 and apart.tpr_at_1 > 0.5
    assert (apart.positives, apart.negatives, apart.unscored_targets) == (32 * 100, 32 * 100, 0)


def test_the_score_is_the_log_likelihood_ratio_of_the_other_models_gaussians():
    phi, unlearned, never = ulira_design(8, 3, shift=1.0)
    scores = lira_scores(phi, unlearned, never, pooled_variance=False)
    k, t = 0, 1
    others = np.arange(8) != k
    inside, outside = phi[others & unlearned[:, t], t], phi[others & never[:, t], t]
    expected = (norm.logpdf(phi[k, t], inside.mean(), inside.std(ddof=1))
                - norm.logpdf(phi[k, t], outside.mean(), outside.std(ddof=1)))
    assert scores[k, t] == pytest.approx(expected)


def test_pooled_variance_pools_within_target_deviations_of_the_other_models():
    phi, unlearned, never = ulira_design(8, 3, shift=1.0)
    scores = lira_scores(phi, unlearned, never)
    k, t, others = 2, 0, np.arange(8) != 2

    def pooled(side):
        groups = [phi[others & side[:, u], u] for u in range(3)]
        return sum(((g - g.mean()) ** 2).sum() for g in groups) / sum(len(g) - 1 for g in groups)

    inside, outside = phi[others & unlearned[:, t], t], phi[others & never[:, t], t]
    expected = (norm.logpdf(phi[k, t], inside.mean(), math.sqrt(pooled(unlearned)))
                - norm.logpdf(phi[k, t], outside.mean(), math.sqrt(pooled(never))))
    assert scores[k, t] == pytest.approx(expected)


def test_the_attacked_models_own_value_is_left_out():
    # target 0: model 0 unlearned it and gives a wild phi; the other unlearned models give 1 and 1.2, the
    # never-seen ones -1 and -1.2
    phi = np.array([[50.0], [1.0], [1.2], [-1.0], [-1.2]])
    unlearned = np.array([[True], [True], [True], [False], [False]])
    scores = lira_scores(phi, unlearned, ~unlearned, pooled_variance=False)
    # IN from models 1 and 2 alone: N(1.1, 0.02); OUT: N(-1.1, 0.02). With model 0's own 50 in it, IN's mean
    # would be 17.4 and its variance about 770, and the score near 0
    assert scores[0, 0] == pytest.approx((51.1**2 - 48.9**2) / (2 * 0.02))
    # a never-seen model is scored without its own value too: one OUT value is left, too few to fit
    assert np.isnan(scores[3, 0]) and np.isnan(scores[4, 0])


def test_pairs_that_are_neither_or_lack_models_are_nan_and_counted_as_unscored():
    phi = np.zeros((6, 2)) + np.arange(6)[:, None]
    unlearned = np.array([[1, 1], [1, 1], [1, 1], [0, 0], [0, 0], [0, 0]], bool)
    never = ~unlearned
    never[5, 1] = False  # target 1: model 5 saw it and kept it; target 1 then has only 2 never-seen models
    scores = lira_scores(phi, unlearned, never)
    assert np.isnan(scores[5, 1])  # neither
    assert np.isnan(scores[3, 1]) and np.isnan(scores[4, 1])  # one never-seen value left among the others
    assert np.isfinite(scores[:, 0]).all() and np.isfinite(scores[:3, 1]).all()
    figures = attack_figures(scores, unlearned, never, bootstrap=0)
    assert figures.unscored_targets == 1 and figures.negatives == 3
    assert math.isnan(figures.auc_ci[0])


def test_overlapping_memberships_are_refused():
    both = np.ones((4, 2), bool)
    with pytest.raises(UnlearnkitError, match="both unlearned and never seen"):
        lira_scores(np.zeros((4, 2)), both, both)
    with pytest.raises(UnlearnkitError, match="both a positive and a negative"):
        attack_figures(np.zeros((4, 2)), both, both)


# --------------------------------------------------------------------------- the figures


def test_tpr_at_low_fpr_and_balanced_accuracy_on_a_hand_example():
    # 200 negatives scoring 0..199 and 4 positives: 1000, 198.5, 150 and 10
    negatives = np.arange(200.0)
    scores = np.r_[[1000.0, 198.5, 150.0, 10.0], negatives][None, :]
    positive = np.r_[[True] * 4, [False] * 200][None, :]
    figures = attack_figures(scores, positive, ~positive, bootstrap=0)
    # at FPR 0.1% (below 1/200) no negative may pass: only 1000 is caught; at 1% two negatives (199, 198) may
    assert figures.tpr_at_01 == 0.25 and figures.tpr_at_1 == 0.5
    # best balanced accuracy: a threshold at 150 catches 3 of 4 with 50 of 200 negatives (150..199), beating
    # 198.5's (0.5 + 199 / 200) / 2
    assert figures.balanced_accuracy == pytest.approx((0.75 + 150 / 200) / 2)
    fpr, tpr, _ = roc_curve(positive[0], scores[0], drop_intermediate=False)
    assert np.allclose(figures.fpr, fpr) and np.allclose(figures.tpr, tpr)
    assert figures.auc == pytest.approx(roc_auc_score(positive[0], scores[0]))


def test_the_bootstrap_interval_holds_the_estimate_and_narrows_with_more_targets():
    widths = []
    for targets in (30, 300):
        phi, unlearned, never = ulira_design(16, targets, shift=1.0, seed=1)
        figures = attack_figures(lira_scores(phi, unlearned, never), unlearned, never, bootstrap=200, seed=3)
        for value, (low, high) in ((figures.auc, figures.auc_ci), (figures.balanced_accuracy, figures.balanced_accuracy_ci)):
            assert low <= value <= high
        widths.append(figures.auc_ci[1] - figures.auc_ci[0])
    assert widths[1] < widths[0] / 2  # ten times the targets: about a third of the width


def test_the_bootstrap_resamples_the_groups_it_is_given():
    phi, unlearned, never = ulira_design(16, 60, shift=1.0)
    scores = lira_scores(phi, unlearned, never)
    by_target = attack_figures(scores, unlearned, never, bootstrap=100)
    one_group = attack_figures(scores, unlearned, never, bootstrap=100, groups=np.zeros(60, int))
    assert by_target.auc_ci[0] < by_target.auc_ci[1]
    assert one_group.auc_ci == (one_group.auc, one_group.auc)  # resampling the only group gives the same data


def test_per_sample_vulnerability_is_each_targets_own_auc():
    scores = np.array([[5.0, 1.0, np.nan], [4.0, 2.0, 0.0], [1.0, 3.0, 0.0], [0.0, 0.0, 0.0]])
    positive = np.array([[1, 1, 1], [1, 0, 0], [0, 1, 0], [0, 0, 0]], bool)
    vulnerability = per_sample_vulnerability(scores, positive, ~positive)
    assert vulnerability[0] == 1.0  # 5 and 4 above 1 and 0
    assert vulnerability[1] == pytest.approx(roc_auc(np.array([1.0, 3.0]), np.array([2.0, 0.0])))
    assert np.isnan(vulnerability[2])  # its only positive has no score


# --------------------------------------------------------------------------- the challenge's epsilon


def gaussian_epsilon(mu: float, delta: float) -> float:
    """The tight epsilon of N(mu, 1) against N(0, 1) (Balle and Wang 2018): the largest over threshold tests."""
    return brentq(lambda e: norm.cdf(mu / 2 - e / mu) - math.exp(e) * norm.cdf(-mu / 2 - e / mu) - delta, 0, 50)


def test_epsilon_of_two_gaussians_approaches_the_analytic_value_at_large_n():
    rng = np.random.default_rng(0)
    runs = 1500
    method, retrain = rng.normal(1.0, 1.0, (runs, 6)), rng.normal(0.0, 1.0, (runs, 6))
    # a delta large enough that the best test's error rates are well resolved by 1,500 runs a side
    assert np.median(epsilons(method, retrain, delta=0.2)) == pytest.approx(gaussian_epsilon(1.0, 0.2), abs=0.15)
    # the more separated, the larger; reversed sides give the same epsilon
    far = epsilons(rng.normal(2.0, 1.0, (runs, 6)), retrain, delta=0.2)
    assert np.median(far) > np.median(epsilons(method, retrain, delta=0.2)) + 1
    assert np.allclose(epsilons(retrain, method, delta=0.2), epsilons(method, retrain, delta=0.2))


def test_epsilon_edge_cases_and_its_ceiling():
    rng = np.random.default_rng(0)
    retrain = rng.normal(0.0, 1.0, (16, 3))
    apart = epsilons(retrain + 100, retrain)
    assert np.isinf(apart).all()  # never overlapping: no rule errs, the two are told apart every time
    constant = epsilons(np.full((16, 3), 0.123), retrain)  # a method whose runs all agree: an interval isolates them
    assert np.isinf(constant).all()
    overlapping = epsilons(rng.normal(0.5, 1.0, (16, 50)), rng.normal(0.0, 1.0, (16, 50)))
    assert (overlapping >= 0).all() and (overlapping <= epsilon_ceiling(16) + 1e-12).all()
    # the ceiling is reached when the best rule errs once on each side: method 0..14 and retrain 20..34, but for one
    # method value above them all and one retrain value below
    method, retrain = np.r_[np.arange(15.0), 50.0], np.r_[-50.0, np.arange(20.0, 35.0)]
    assert epsilons(method[:, None], retrain[:, None])[0] == pytest.approx(epsilon_ceiling(16))
    assert epsilon_ceiling(64) == pytest.approx(math.log(64 * (1 - 1e-5) - 1)) and epsilon_ceiling(2) == 0.0
    with pytest.raises(UnlearnkitError, match="at least 2 runs"):
        epsilons(retrain[:1], retrain[:1])


def test_forget_quality_buckets_by_hand():
    # buckets of width 0.5 score 1, 1/2, 1/4, ...; an infinite epsilon scores 0
    eps = np.array([0.0, 0.49, 0.5, 1.2, 3.0, np.inf])
    assert forget_quality(eps) == pytest.approx((1 + 1 + 0.5 + 0.25 + 2.0**-6 + 0) / 6)
    assert challenge_score(0.5, ra=90, ra_retrain=100, ta=80, ta_retrain=80) == pytest.approx(0.45)
    with pytest.raises(UnlearnkitError, match="Retrain's retain or test accuracy is 0"):
        challenge_score(0.5, 90, 0, 80, 80)


# --------------------------------------------------------------------------- RMIA


def test_rmia_by_hand():
    # a = 1: Pr(x) is Retrain's probability. Ratios: x 0.9/0.3 = 3 and 0.2/0.4 = 0.5; population 1, 2 and 4
    scores = rmia_scores(np.array([0.9, 0.2]), np.array([[0.3, 0.4]]), np.array([0.5, 0.4, 0.8]),
                         np.array([[0.5, 0.2, 0.2]]), a=1.0)
    assert scores.tolist() == pytest.approx([2 / 3, 0.0])
    # gamma 2: ratio_x / ratio_z >= 2 leaves only z with ratio 1 for x's 3
    assert rmia_scores(np.array([0.9]), np.array([[0.3]]), np.array([0.5, 0.4, 0.8]), np.array([[0.5, 0.2, 0.2]]),
                       a=1.0, gamma=2.0).tolist() == pytest.approx([1 / 3])
    # a = 0: Pr(x) = (Pr_out(x) + 1) / 2
    assert rmia_scores(np.array([0.6]), np.array([[0.2]]), np.array([0.6]), np.array([[0.4]]), a=0.0).tolist() == [1.0]


def rmia_auc(target_boost: float) -> float:
    """Forget samples x and held-out samples share one distribution under the references; the target model gives x
    log-odds `target_boost` higher than the references do."""
    rng = np.random.default_rng(0)
    logit = rng.normal(1.0, 1.5, (4, 1200))  # 4 references: 400 x, 400 held out, 400 population
    references = 1 / (1 + np.exp(-(logit + rng.normal(0, 0.3, (4, 1200)))))
    own = logit[0] + rng.normal(0, 0.3, 1200)
    own[:400] += target_boost
    target = 1 / (1 + np.exp(-own))
    scores = rmia_scores(target[:800], references[:, :800], target[800:], references[:, 800:])
    return 100 * roc_auc(scores[:400], scores[400:800])


def test_rmia_at_chance_when_the_target_is_like_its_references_and_high_when_it_is_more_confident_on_x():
    assert rmia_auc(0.0) == pytest.approx(50, abs=5)
    assert rmia_auc(3.0) > 80


def test_rmia_refuses_mismatched_inputs():
    with pytest.raises(UnlearnkitError, match="reference_x \\[R, X\\]"):
        rmia_scores(np.ones(3), np.ones((1, 2)), np.ones(2), np.ones((1, 2)))
    with pytest.raises(UnlearnkitError, match="a lies in"):
        rmia_scores(np.ones(3), np.ones((1, 3)), np.ones(2), np.ones((1, 2)), a=2.0)
