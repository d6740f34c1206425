"""The bench's tests: the paired seed bootstrap of the Avg Gap, Holm, the cross-scenario change, the power line."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from unlearnkit.bench.statistics import (
    Interval,
    change_between_scenarios,
    gap_difference,
    holm,
    minimum_detectable_difference,
    paired_interval,
    seed_resamples,
)


def test_the_bootstrap_of_the_avg_gap_difference_is_every_seed_resample_on_three_seeds():
    rng = np.random.default_rng(7)
    first, second, retrain = (rng.uniform(0, 100, size=(3, 4)) for _ in range(3))

    def avg_gap(arm, seeds):  # the paper's: |mean over seeds - Retrain's mean over the same seeds|, averaged
        return sum(abs(np.mean([arm[s][k] for s in seeds]) - np.mean([retrain[s][k] for s in seeds])) for k in range(4)) / 4

    everything = list(itertools.product(range(3), repeat=3))
    values = [avg_gap(first, seeds) - avg_gap(second, seeds) for seeds in everything]
    assert len(values) == 27 and len(seed_resamples(3)) == 27
    found = gap_difference(first, second, retrain)
    assert found.mean == pytest.approx(avg_gap(first, range(3)) - avg_gap(second, range(3)))
    assert [found.low, found.high] == pytest.approx(np.percentile(values, [2.5, 97.5]))
    below, above = np.mean(np.array(values) <= 0), np.mean(np.array(values) >= 0)
    assert found.p == pytest.approx(min(1, 2 * min(below, above))) and found.n == 3
    assert found.se == pytest.approx(np.std(values))


def test_the_bootstrap_resamples_seeds_jointly_so_a_constant_difference_is_certain():
    retrain = np.array([[90.0], [80.0], [70.0]])
    # seeds move both variants alike: each is 1 and 3 points above its seed's Retrain
    found = gap_difference(retrain + 1, retrain + 3, retrain)
    assert (found.mean, found.low, found.high, found.p) == pytest.approx((-2, -2, -2, 0))
    assert found.significant and found.verdict == "lower"
    one_seed = gap_difference(retrain[:1] + 1, retrain[:1], retrain[:1])
    assert one_seed.p is None and not one_seed.significant and one_seed.verdict == "not shown"


def test_many_seeds_draw_a_fixed_number_of_resamples_reproducibly():
    assert seed_resamples(5).shape == (5**5, 5)  # 3,125: still exact
    drawn = seed_resamples(8)
    assert drawn.shape == (10_000, 8) and (drawn == seed_resamples(8)).all()


def test_holm_against_a_hand_computed_example():
    # sorted: 0.005 x 4 = 0.02, 0.01 x 3 = 0.03, 0.03 x 2 = 0.06, 0.04 x 1 = 0.04 -> kept at 0.06 (step-down)
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])  # never above 1
    assert holm([]) == []
    # a verdict follows the adjusted p-value: raw 0.03 rejects, adjusted 0.06 does not
    raw = Interval(-1.0, -2.0, -0.1, 5, p=0.03)
    assert raw.significant and not Interval(-1.0, -2.0, -0.1, 5, p=0.03, adjusted_p=0.06).significant


def test_the_change_between_scenarios_pairs_seeds_by_hand():
    zero = np.zeros((2, 1))
    before = (np.array([[2.0], [4.0]]), np.ones((2, 1)), zero)  # effect per resample: 1, 2, 2, 3
    after = (np.array([[5.0], [3.0]]), np.ones((2, 1)), zero)  # the same resamples: 4, 3, 3, 2
    found = change_between_scenarios(before, after)
    # resamples (0,0), (0,1), (1,0), (1,1): changes 3, 1, 1, -1; on both seeds (4 - 1) - (3 - 1) = 1
    assert found.mean == pytest.approx(1)
    # numpy's linear percentiles of [-1, 1, 1, 3]: -1 + 0.075 x 2 and 1 + 0.925 x 2
    assert (found.low, found.high) == pytest.approx((-0.85, 2.85))
    assert found.p == pytest.approx(0.5)  # a quarter of the resamples at or below 0, doubled
    # a seed's luck shared by both scenarios cancels: the change is +1 on every seed, so on every resample
    shared = change_between_scenarios((np.array([[1.0], [5.0]]), zero, zero), (np.array([[2.0], [6.0]]), zero, zero))
    assert (shared.low, shared.high, shared.p) == pytest.approx((1, 1, 0))


def test_the_per_seed_gap_keeps_its_paired_t_interval():
    interval = paired_interval([-1.0, 0.5, -2.0, -0.5, -1.5])
    # mean -0.9, sd 0.9618, t(0.975, 4) = 2.7764: half-width 1.1942; t = -2.0924 on 4 dof: p = 0.1045
    assert interval.mean == pytest.approx(-0.9) and interval.high - interval.mean == pytest.approx(1.1942, abs=1e-4)
    assert interval.p == pytest.approx(0.1045, abs=1e-4) and not interval.significant
    assert paired_interval([-1.0, -1.2, -0.8]).significant
    assert not paired_interval([-3.0]).significant  # one seed: no interval, never significant


def test_the_minimum_detectable_difference_on_a_known_case():
    # 5 seeds, alpha 0.05: t(0.975, 4) = 2.7764 and t(0.8, 4) = 0.9410, so 3.7174 standard errors
    assert minimum_detectable_difference(1.0, 5, 0.05) == pytest.approx(3.7174, abs=1e-4)
    # a stricter alpha (Holm's first step over 10 comparisons) needs a larger effect: t(0.9975, 4) = 5.5976
    assert minimum_detectable_difference(0.5, 5, 0.005) == pytest.approx(0.5 * (5.5976 + 0.9410), abs=1e-3)
