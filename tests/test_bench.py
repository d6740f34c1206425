"""Grids: expansion and validation, one original and Retrain per (scenario, seed), resuming, tables, tuning."""

from __future__ import annotations

import csv
import io
import types

import pytest

from unlearnkit import Augmenter, Method, Range, hookimpl
from unlearnkit.api import Choice
from unlearnkit.bench.grid import BenchSpec, Cell, expand, merge, read_bench_spec, scenario_label, scenario_overrides
from unlearnkit.bench.runner import CellStore, run_grid
from unlearnkit.bench.statistics import holm
from unlearnkit.bench.summary import (
    cl_effects,
    csv_text,
    effects_markdown,
    family_power,
    markdown,
    regime_markdown,
    regimes,
    tabulate,
)
from unlearnkit.bench.tune import grid_trials, overlay, parse_range, ranking, search_space
from unlearnkit.errors import SpecError, UnlearnkitError
from unlearnkit.plugins import discover

TINY = {"data": {"name": "digits", "train_subset": 240, "test_subset": 80}, "train": {"epochs": 1}, "device": "cpu"}


pytestmark = pytest.mark.usefixtures("private_cache")


# --------------------------------------------------------------------------- in-test methods


class Calls:
    count = 0
    interrupt_at: int | None = None


class Identity(Method):
    """Leaves the model as it is; counts its calls and can simulate Ctrl-C on the n-th."""

    name = "identity"
    trains_on_retain = False

    def unlearn(self, run):
        Calls.count += 1
        if Calls.interrupt_at == Calls.count:
            raise KeyboardInterrupt


class Explode(Method):
    """Always fails."""

    name = "explode"
    trains_on_retain = False

    def unlearn(self, run):
        raise RuntimeError("boom")


@pytest.fixture
def registry():
    module = types.ModuleType("bench_test_methods")
    module.register_methods = hookimpl(lambda register: [register(Identity), register(Explode)])
    Calls.count, Calls.interrupt_at = 0, None
    return discover(modules=[("bench-test", module)], env={})


# --------------------------------------------------------------------------- the grid


def test_scenarios_read_as_forget_fields_and_labels():
    assert scenario_overrides("random:0.5") == ["forget.kind=random", "forget.fraction=0.5"]
    assert scenario_overrides("class:3,5") == ["forget.kind=class", "forget.classes=[3,5]"]
    assert scenario_label("random:0.1") == "random 10%" and scenario_label("class:3") == "class 3"
    for bad in ("random", "random:10%", "random:1.5", "class:", "class:x", "half"):
        with pytest.raises(UnlearnkitError, match="random:FRACTION"):
            scenario_overrides(bad)


def test_merge_joins_mappings_and_augmenters_by_name():
    spec = {"method": {"name": "ft", "params": {"lr": 0.1, "epochs": 3}}, "augment": [{"name": "coun-cl"}]}
    merged = merge(spec, {"method": {"params": {"lr": 0.02}}, "augment": [{"name": "coun-cl", "params": {"lambda": 2}}]})
    assert merged["method"] == {"name": "ft", "params": {"lr": 0.02, "epochs": 3}}
    assert merged["augment"] == [{"name": "coun-cl", "params": {"lambda": 2}}]
    assert spec["method"]["params"]["lr"] == 0.1  # inputs untouched


def test_a_variants_params_reach_only_that_variant(registry):
    spec = BenchSpec(base=TINY, methods=["ft"], scenarios=["random:0.1"], seeds=1, params={
        "ft": {"method": {"params": {"epochs": 2}}},
        "ft+coun-cl": {"method": {"params": {"lr": 0.05}}, "augment": [{"name": "coun-cl", "params": {"lambda": 3}}]},
    })
    grid = expand(spec, registry)
    plain, wrapped = (grid.resolved[c] for c in grid.cells)
    assert (plain.name, plain.method.params.epochs, plain.method.params.lr) == ("ft", 2, 0.01)
    assert (wrapped.name, wrapped.method.params.epochs, wrapped.method.params.lr) == ("ft+coun-cl", 2, 0.05)
    assert wrapped.augmenters[0].params.lambda_ == 3


def test_expand_leaves_out_impossible_variants_and_says_why(registry):
    spec = BenchSpec(base=TINY, methods=["ga", "boundary-expand"], scenarios=["random:0.1", "class:1"], seeds=2)
    grid = expand(spec, registry)
    assert {(c.variant, c.scenario) for c in grid.cells} == {
        ("ga", "random:0.1"), ("ga", "class:1"), ("boundary-expand", "class:1")}
    assert len(grid.cells) == 3 * 2
    assert any(s.startswith("ga+coun-cl: ") and "takes none" in s for s in grid.skipped)
    assert any("boundary-expand (random 10%)" in s for s in grid.skipped)


def test_per_method_params_may_not_change_the_shared_references():
    with pytest.raises(ValueError, match="params.ft may set method and augment only, not train"):
        BenchSpec(params={"ft": {"train": {"epochs": 2}, "method": {"params": {"lr": 0.1}}}})
    with pytest.raises(ValueError, match="seeds"):
        BenchSpec(seeds="two")
    assert BenchSpec(seeds="0,4").seed_list() == [0, 4] and BenchSpec(seeds="2").seed_list() == [0, 1]


def test_a_bad_param_fails_before_anything_runs(registry):
    spec = BenchSpec(base=TINY, methods=["ft"], augment=["none"], params={"ft": {"method": {"params": {"lr": -1}}}})
    with pytest.raises(SpecError, match="method.params.lr"):
        expand(spec, registry)
    with pytest.raises(UnlearnkitError, match="unknown method 'fine-tune'"):
        expand(BenchSpec(base=TINY, methods=["fine-tune"]), registry)


# --------------------------------------------------------------------------- running and resuming


def test_references_are_trained_once_per_scenario_and_seed_and_cells_resume(registry, tmp_path):
    spec = BenchSpec(base=TINY, methods=["identity", "explode"], augment=["none"], scenarios=["random:0.1", "class:1"], seeds=2)
    grid = expand(spec, registry)
    store = CellStore(tmp_path / "bench")
    seen, references = [], []
    first = run_grid(grid, store, after_group=lambda records: seen.append(len(records)),
                     after_references=lambda records: references.append([r["kind"] for r in records]))
    assert Calls.count == 4 and first.computed == 4
    # every group's Retrain and Original come first, before any method runs
    assert references == [["retrain", "original"] * 4]
    assert seen == [9, 10, 11, 12]  # then after each (scenario, seed) group: one more finished cell
    assert len(first.failures) == 4 and all("RuntimeError: boom" in f for f in first.failures)
    cached = sorted(p.name.split("-")[0] for p in (tmp_path / "cache").iterdir())
    assert cached == ["original"] * 2 + ["retrain"] * 4  # the original does not depend on the split
    kinds = [r["kind"] for r in first.records]
    assert kinds.count("original") == kinds.count("retrain") == 4 and kinds.count("unlearned") == 4

    again = run_grid(grid, store)
    assert Calls.count == 4 and again.computed == 0  # finished cells are not recomputed; failed ones are retried
    assert len(again.failures) == 4

    one = next(r for r in again.records if r["variant"] == "identity" and r["scenario"] == "class:1")
    (store.folder / f"{one['key']}.json").unlink()
    assert run_grid(grid, store).computed == 1 and Calls.count == 5


def test_an_interrupted_grid_keeps_its_finished_cells(registry, tmp_path):
    spec = BenchSpec(base=TINY, methods=["identity"], augment=["none"], scenarios=["random:0.1"], seeds=4)
    grid = expand(spec, registry)
    store = CellStore(tmp_path / "bench")
    Calls.interrupt_at = 3
    stopped = run_grid(grid, store)
    assert stopped.interrupted and stopped.computed == 2
    assert sorted(r["seed"] for r in stopped.records if r["kind"] == "unlearned") == [0, 1]
    assert not list(store.folder.glob(".*.tmp"))
    Calls.interrupt_at = None
    resumed = run_grid(grid, store)
    assert not resumed.interrupted and resumed.computed == 2 and Calls.count == 5  # seeds 2 and 3 (2 again)


def test_cells_record_their_params_and_identity_of_the_original(registry, tmp_path):
    spec = BenchSpec(base=TINY, methods=["identity"], augment=["none"], scenarios=["random:0.1"], seeds=1)
    outcome = run_grid(expand(spec, registry), CellStore(tmp_path / "b"))
    by_kind = {r["kind"]: r for r in outcome.records}
    # identity leaves the original as it is: same metrics as the Original row
    for key in ("RA", "UA", "TA", "MIA", "avg_gap", "premise"):
        assert by_kind["unlearned"]["metrics"][key] == pytest.approx(by_kind["original"]["metrics"][key])
    assert by_kind["retrain"]["metrics"]["avg_gap"] == 0
    assert by_kind["unlearned"]["params"] == {"method": {}, "augment": {}}
    assert by_kind["unlearned"]["forget_count"] == 24


# --------------------------------------------------------------------------- tables


def record(variant, seed, scenario="random:0.1", augment=(), **metrics):
    kind = variant.lower() if variant in ("Retrain", "Original") else "unlearned"
    method = None if kind != "unlearned" else variant.split("+")[0]
    return {"kind": kind, "variant": variant, "method": method, "augment": list(augment), "scenario": scenario,
            "seed": seed, "forget_count": 10, "retain_count": 90, "metrics": metrics}


RECORDS = [
    record("Retrain", 0, RA=100, UA=5, TA=90, MIA=10, avg_gap=0, flops=2e15, seconds=10),
    record("Retrain", 1, RA=100, UA=7, TA=92, MIA=14, avg_gap=0, flops=2e15, seconds=12),
    record("ft", 0, RA=99, UA=3, TA=91, MIA=8, avg_gap=2.0, flops=5e14, seconds=2),
    record("ft", 1, RA=97, UA=5, TA=89, MIA=10, avg_gap=3.0, flops=5e14, seconds=4),
    record("ft+coun-cl", 0, augment=["coun-cl"], RA=99, UA=5, TA=90, MIA=11, avg_gap=1.0, flops=7e14, seconds=3),
    record("ft+coun-cl", 1, augment=["coun-cl"], RA=99, UA=6, TA=91, MIA=12, avg_gap=2.0, flops=7e14, seconds=5),
]


def test_tables_give_mean_std_and_the_gap_of_means_to_retrain():
    rows = tabulate(RECORDS)["random:0.1"]
    assert list(rows) == ["Retrain", "ft", "ft+coun-cl"]
    ft = rows["ft"]
    assert ft.stats["RA"].mean == 98 and ft.stats["RA"].std == pytest.approx(2 ** 0.5)
    assert ft.gaps == {"RA": 2, "UA": 2, "TA": 1, "MIA": 3}  # |mean - Retrain's mean|
    text = markdown(tabulate(RECORDS), {})
    # RMIA (absent from these records: n/a, and never part of the gap), the paper's Avg Gap (mean of the bracketed
    # gaps, 2.00), then the mean of per-seed gaps (2.50 ± 0.71)
    assert ("| ft | 98.00 ± 1.41 (2.00) | 4.00 ± 1.41 (2.00) | 90.00 ± 1.41 (1.00) | 9.00 ± 1.41 (3.00) | n/a | 2.00 "
            "| 2.50 ± 0.71 |") in text
    assert "| Retrain | 100.00 ± 0.00 | 6.00 ± 1.41 |" in text
    assert " | 0.5 (25%) | 3.00 ± 1.41 |" in text  # PFLOPs with the share of Retrain's, then seconds


def test_the_papers_avg_gap_is_the_gap_of_seed_means_not_the_mean_of_per_seed_gaps():
    # the paper's own check: CoUn's CIFAR-10 row, (0.01 + 0.69 + 0.10 + 0.21) / 4 = 0.25
    records = [record("Retrain", 0, RA=100.00, UA=4.81, TA=94.67, MIA=11.02, avg_gap=0),
               record("coun", 0, RA=99.99, UA=4.12, TA=94.57, MIA=10.81, avg_gap=0.2525)]
    assert tabulate(records)["random:0.1"]["coun"].avg_gap == pytest.approx(0.2525)
    # two seeds whose errors cancel: each seed is 2 points off, the means agree exactly
    records = [record("Retrain", s, RA=90, UA=10, TA=80, MIA=20, avg_gap=0) for s in (0, 1)]
    records += [record("x", 0, RA=92, UA=12, TA=82, MIA=22, avg_gap=2), record("x", 1, RA=88, UA=8, TA=78, MIA=18, avg_gap=2)]
    row = tabulate(records)["random:0.1"]["x"]
    assert row.avg_gap == 0 and row.stats["avg_gap"].mean == 2


def test_the_gap_to_retrain_uses_the_variants_own_seeds():
    missing_seed = [r for r in RECORDS if not (r["variant"] == "ft" and r["seed"] == 1)]
    ft = tabulate(missing_seed)["random:0.1"]["ft"]
    assert ft.seeds == [0] and ft.gaps == {"RA": 1, "UA": 2, "TA": 1, "MIA": 2}  # against Retrain's seed 0 only


def test_csv_has_one_numeric_row_per_variant():
    rows = list(csv.DictReader(io.StringIO(csv_text(tabulate(RECORDS)))))
    assert [r["variant"] for r in rows] == ["Retrain", "ft", "ft+coun-cl"]
    assert float(rows[1]["MIA_gap"]) == 3 and float(rows[2]["avg_gap_mean"]) == 1.5 and rows[2]["augment"] == "coun-cl"


def test_the_cl_effect_tests_the_avg_gap_difference_the_table_ranks():
    rows = tabulate(RECORDS)["random:0.1"]
    effect = cl_effects(tabulate(RECORDS))["random:0.1"]["ft"]
    # the paper's Avg Gap: ft+coun-cl 0.5 (RA 1, UA 0.5, TA 0.5, MIA 0.5 -> 0.625), ft 2.0: the difference tested
    assert effect.mean == pytest.approx(rows["ft+coun-cl"].avg_gap - rows["ft"].avg_gap) == pytest.approx(-1.375)
    assert effect == rows["ft+coun-cl"].cl_effect.avg_gap and effect.n == 2
    # two seeds, 4 resamples: (0,0) 0.5 - 1.5, (0,1) and (1,0) -1.375, (1,1) 1.25 - 3.0; none at or above 0, and
    # numpy's linear percentiles of [-1.75, -1.375, -1.375, -1.0]
    assert (effect.low, effect.high, effect.p) == pytest.approx((-1.721875, -1.028125, 0.0))
    assert effect.adjusted_p == pytest.approx(0.0) and effect.verdict == "lower"  # a family of one
    # where the gap comes from, metric by metric: |mean - Retrain's mean| wrapped minus unwrapped
    found = rows["ft+coun-cl"].cl_effect
    assert {k: i.mean for k, i in found.metrics.items()} == pytest.approx({"RA": -1, "UA": -1.5, "TA": -0.5, "MIA": -2.5})
    # the per-seed gap keeps its own name and paired t interval: 1.0 - 2.0 and 2.0 - 3.0
    assert (found.per_seed.mean, found.per_seed.low, found.per_seed.high) == (-1, -1, -1)


def test_claim_one_compares_coun_with_each_unwrapped_baseline_holm_corrected():
    coun = [record("coun", s, RA=99, UA=5 + s, TA=90 + s, MIA=11 + s, avg_gap=1.0) for s in (0, 1)]
    far = [record("ga", s, RA=80, UA=30, TA=70, MIA=40 - s, avg_gap=20.0) for s in (0, 1)]
    rows = tabulate(RECORDS + coun + far)["random:0.1"]
    assert rows["coun"].coun_difference is None and rows["ft+coun-cl"].coun_difference is None  # not baselines
    against = {name: rows[name].coun_difference.avg_gap for name in ("ft", "ga")}
    assert against["ga"].mean == pytest.approx(rows["coun"].avg_gap - rows["ga"].avg_gap)
    raw = [against["ft"].p, against["ga"].p]
    assert [against["ft"].adjusted_p, against["ga"].adjusted_p] == pytest.approx(holm(raw))
    text = markdown(tabulate(RECORDS + coun + far), {})
    assert "| coun − ga |" in text and "| ft+coun-cl − ft |" in text  # the comparisons under the table
    assert "Power: " in text and "claim 1 (coun − each baseline), 2 comparisons over 2 seeds" in text
    power = family_power(rows, "coun_difference")
    assert power["alpha"] == pytest.approx(0.025) and power["comparisons"] == 2


def test_the_cl_effect_pairs_seeds_and_shows_in_tables():
    records = RECORDS + [record("ft", 2, RA=99, UA=4, TA=90, MIA=9, avg_gap=9.0)]  # no wrapped seed 2 to pair with
    effect = tabulate(records)["random:0.1"]["ft+coun-cl"].cl_effect
    assert effect.avg_gap.n == 2 and effect.per_seed.mean == -1
    text = markdown(tabulate(RECORDS), {})
    wrapped = next(line for line in text.splitlines() if line.startswith("| ft+coun-cl |"))
    assert wrapped.endswith("| -1.38 [-1.72, -1.03]* (p 0.000) |")  # * = the Holm-adjusted test rejects 0
    assert "| -1.38 [-1.72, -1.03]*: lower |" in effects_markdown(cl_effects(tabulate(RECORDS)))


def test_the_regime_check_compares_the_originals_gap_with_seed_noise():
    retrain = [record("Retrain", s, RA=80, UA=20 + s, TA=78, MIA=30 + s) for s in (0, 1, 2)]
    memorised = [record("Original", s, RA=100, UA=0, TA=80, MIA=5) for s in (0, 1, 2)]
    found = regimes(tabulate(retrain + memorised))[0]
    # Retrains differ by 1 or 2 points in UA and MIA: mean pairwise Avg Gap = (0.5 + 1 + 0.5) / 3
    assert found.noise == pytest.approx(2 / 3) and found.gap == pytest.approx((20 + 21 + 2 + 26) / 4)
    assert found.discriminates and found.warning() is None and found.generalisation_gap == 20
    weak = [record("Original", s, RA=81, UA=20, TA=78, MIA=31) for s in (0, 1, 2)]
    found = regimes(tabulate(retrain + weak))[0]
    assert not found.discriminates and "has not memorised" in found.warning()
    assert "**no**" in regime_markdown([found])
    one_seed = regimes(tabulate(retrain[:1] + memorised[:1]))[0]
    assert one_seed.discriminates is None and "one seed" in one_seed.warning()


# --------------------------------------------------------------------------- tuning


def test_ranges_parse_as_ranges_or_choices():
    assert parse_range("ft.lr=0.01:0.1:log") == ("ft.lr", Range(0.01, 0.1, True))
    assert parse_range("neggrad+.beta=0.99,0.999") == ("neggrad+.beta", Choice((0.99, 0.999)))
    for bad in ("lr=0.1:1", "ft.lr", "ft.lr=a:b", "ft.lr=0:1:log", "ft.lr=1:2:cube"):
        with pytest.raises(UnlearnkitError):
            parse_range(bad)


def test_the_grid_covers_the_space(registry):
    space = search_space("ft", ("coun-cl",), registry, ["ft.epochs=1,2"])
    assert set(space) == {"ft.lr", "coun-cl.lambda", "ft.epochs"}
    grid = grid_trials(space, 3)
    assert len(grid) == 3 * 3 * 2
    assert sorted({t["ft.lr"] for t in grid}) == [0.003, 0.03, 0.3]  # log-spaced, 4 significant digits
    assert sorted({t["coun-cl.lambda"] for t in grid}) == [0.1, 1.414, 20.0]
    with pytest.raises(UnlearnkitError, match="declares no search space"):
        search_space("retrain", (), registry, [])
    with pytest.raises(UnlearnkitError, match="not part of this run"):
        search_space("ft", (), registry, ["coun-cl.lambda=1,2"])


def test_overlay_and_ranking():
    assert overlay("ft", {"ft.lr": 0.03, "coun-cl.lambda": 2.0}) == {
        "method": {"params": {"lr": 0.03}}, "augment": [{"name": "coun-cl", "params": {"lambda": 2.0}}]}
    retrain = [{"kind": "retrain", "seed": s, "metrics": {"RA": 100, "UA": 10 + 2 * s, "TA": 90, "MIA": 20}} for s in (0, 1)]
    cells = [{"trial": t, "seed": s, "metrics": {"avg_gap": g, "RA": 100, "UA": ua, "TA": 90, "MIA": 20}}
             for t, s, g, ua in [(0, 0, 2.0, 18), (0, 1, 2.0, 4), (1, 0, 0.5, 12), (1, 1, 0.5, 14), (2, 0, 0.0, 10)]]
    ranked = ranking(retrain + cells, [{"ft.lr": 0.01}, {"ft.lr": 0.03}, {"ft.lr": 0.1}], seeds=2)
    # trial 2 has one seed of two: it cannot win on a luckier subset
    assert [r["trial"] for r in ranked] == [0, 1]
    # the paper's gap of means: trial 0's UA errors cancel (mean 11 = Retrain's), trial 1's do not (13 vs 11)
    assert ranked[0]["avg_gap"] == 0 and ranked[1]["avg_gap"] == pytest.approx(0.5)
    assert ranked[0]["seed_gap"] == 2.0  # the mean of per-seed gaps ranks them the other way


def test_every_declared_search_space_names_real_params_with_valid_values():
    installed = discover(env={})
    declared = [e for base in (Method, Augmenter) for e in installed.entries(base) if e.cls.search_space]
    assert {"ft", "neggrad+", "l1-sparse", "salun", "coun", "coun-cl"} <= {e.name for e in declared}
    for entry in declared:
        for param, search in entry.cls.search_space.items():
            for value in search.grid(3):
                entry.cls.Params.model_validate({param: value})  # raises on an unknown name or a bad value


def test_the_memorising_bench_spec_expands_to_the_published_grid():
    from pathlib import Path

    from unlearnkit.spec_input import read_spec_file

    path = Path(__file__).parents[1] / "examples" / "bench" / "fashion-mnist-memorising.yaml"
    spec = BenchSpec.model_validate(read_spec_file(path))
    grid = expand(spec, discover(env={}))
    assert {c.scenario for c in grid.cells} == {"random:0.1", "random:0.5", "class:0", "sequential:0.1x3"}
    assert {c.seed for c in grid.cells} == {0, 1, 2, 3, 4} and "retrain" not in {c.method for c in grid.cells}
    resolved = {c.variant: grid.resolved[c] for c in grid.cells}
    assert resolved["coun"].spec.data.train_subset == 600 and resolved["coun"].spec.train.epochs == 60
    # ft+coun-cl runs CoUn's schedule and its CL term over a batch as large as coun's; a wrapped step costs three
    # plain ones, so it runs about a third of ft's epochs (coun, two views per sample: half of them)
    wrapped, coun = resolved["ft+coun-cl"], resolved["coun"]
    assert wrapped.method.params.schedule == coun.method.params.schedule == "cosine"
    assert wrapped.augmenters[0].params.batch_size == coun.method.params.batch_size == 32
    assert wrapped.augmenters[0].params.crop_padding == coun.method.params.crop_padding == 4
    assert wrapped.augmenters[0].params.lambda_ == coun.method.params.lambda_
    epochs = {name: resolved[name].method.params.epochs for name in ("ft", "ft+coun-cl", "coun")}
    assert epochs == {"ft": 16, "ft+coun-cl": 5, "coun": 8}


def test_the_published_tuning_gave_every_claim_variant_the_same_trials_on_the_tuning_pool():
    """results.md's tables run with examples/bench/fashion-mnist-memorising.tuned.yaml: it must have tuned every
    variant it sets alike, on the tuning pool and on seeds apart from the evaluation seeds, and merge into the spec."""
    from pathlib import Path

    import yaml

    from unlearnkit.bench.session import _bench_spec

    folder = Path(__file__).parents[1] / "examples" / "bench"
    tuned_path = folder / "fashion-mnist-memorising.tuned.yaml"
    tuned = yaml.safe_load(tuned_path.read_text())
    claim = {"coun", *(f"{m}{w}" for m in ("ft", "not", "l1-sparse", "neggrad+", "salun") for w in ("", "+coun-cl"))}
    assert set(tuned["params"]) == set(tuned["tuning"]) == claim
    assert {entry["trials"] for entry in tuned["tuning"].values()} == {12}
    assert tuned["tuned_on"] == {"scenario": "random:0.1", "seeds": [100, 101], "pool": "tuning"}
    spec = _bench_spec(folder / "fashion-mnist-memorising.yaml", {}, [tuned_path], [])
    wrapped = spec.params["ft+coun-cl"]
    assert wrapped["augment"][0]["params"]["lambda"] == tuned["params"]["ft+coun-cl"]["augment"][0]["params"]["lambda"]
    assert wrapped["method"]["params"]["epochs"] == 5  # the spec's budget, kept by the tuning


def test_a_reused_cell_takes_the_trial_number_of_the_grid_reading_it(registry, tmp_path):
    from unlearnkit.bench.grid import Grid, resolve_cells

    store = CellStore(tmp_path / "tune")
    earlier = Grid([Cell("random:0.1", 0, "identity", (), "{}", trial=4)])
    resolve_cells(earlier, TINY, registry)
    run_grid(earlier, store)
    later = Grid([Cell("random:0.1", 0, "identity", (), "{}", trial=0)])
    resolve_cells(later, TINY, registry)
    outcome = run_grid(later, store)
    assert outcome.computed == 0
    (cell,) = [r for r in outcome.records if r["kind"] == "unlearned"]
    assert (cell["trial"], cell["variant"]) == (0, "identity #0")


def test_a_param_written_at_its_default_names_the_same_cell(registry):
    from unlearnkit.bench.keys import cell_key

    def key(params, base=TINY):
        spec = BenchSpec(base=base, methods=["ft"], augment=["coun-cl"], scenarios=["random:0.1"], seeds=1,
                         params={"ft+coun-cl": params})
        grid = expand(spec, registry)
        return cell_key(grid.resolved[grid.cells[0]])

    plain = key({})
    assert key({"method": {"params": {"lr": 0.01}}, "augment": [{"name": "coun-cl", "params": {"lambda": 1.0}}]}) == plain
    assert key({"method": {"params": {"lr": 0.02}}}) != plain
    assert key({"augment": [{"name": "coun-cl", "params": {"lambda": 2.0}}]}) != plain
    assert key({}, {**TINY, "compute": {"precision": "auto"}}) == plain  # cells older than `compute` keep their keys
    assert key({}, {**TINY, "compute": {"precision": "bf16"}}) != plain


def test_a_variant_whose_flops_leave_the_budget_band_is_named_per_scenario(tmp_path):
    from unlearnkit.bench.summary import budget_warnings, write_reports

    tables = tabulate(RECORDS)  # ft costs 25% of Retrain's FLOPs, ft+coun-cl 35%
    assert budget_warnings(tables, 0.2, 0.4) == []
    assert budget_warnings(tables, 0.2, 0.3) == [
        "ft+coun-cl (random 10%) costs 35.0% of Retrain's FLOPs, outside the budget of 20-30%"]
    assert [line.split(" costs")[0] for line in budget_warnings(tables, 0.3, 0.5)] == ["ft (random 10%)"]
    write_reports(tmp_path, RECORDS, "# bench\n", {"bench": {"budget": {"low": 0.2, "high": 0.3}}})
    assert "### Outside the budget\n\n- ft+coun-cl (random 10%) costs 35.0%" in (tmp_path / "results.md").read_text()
    with pytest.raises(SpecError, match="budget low 0.4 must be below high 0.2"):
        read_bench_spec({"budget": {"low": 0.4, "high": 0.2}})


@pytest.mark.slow
def test_unlearn_bench_warns_of_each_cell_outside_the_spec_budget(capsys, tmp_path, monkeypatch):
    from tests.test_cli import unlearn

    monkeypatch.chdir(tmp_path)
    argv = ["bench", "--methods", "ft", "--augment", "none", "--scenarios", "random:0.1,class:1", "--seeds", "1",
            "--data", "digits", "--set", "base.data.train_subset=240", "--set", "base.data.test_subset=80",
            "--set", "base.train.epochs=4", "--set", "params.ft.method.params.epochs=1", "--device", "cpu", "--quiet"]
    code, _, err = unlearn(capsys, *argv, "--set", "budget.low=0.5", "--set", "budget.high=0.9", "--out", "b")
    assert code == 0, err
    # one epoch of ft against Retrain's four: a quarter of its FLOPs, under the band, at each scenario
    assert "ft (random 10%) costs 25.0% of Retrain's FLOPs, outside the budget of 50-90%" in err
    assert "ft (class 1) costs 25.0% of Retrain's FLOPs" in err
    code, _, err = unlearn(capsys, *argv, "--set", "budget.low=0.2", "--set", "budget.high=0.3", "--out", "b")
    assert code == 0 and "outside the budget" not in err  # the same folder: a budget changes no cell


def test_the_midsize_spec_is_balanced_in_budget_and_names_the_claim_variants(registry):
    from pathlib import Path

    import yaml

    path = Path(__file__).parents[1] / "examples" / "bench" / "fashion-mnist-midsize.yaml"
    spec = read_bench_spec(yaml.safe_load(path.read_text()))
    assert spec.budget is not None and (spec.budget.low, spec.budget.high) == (0.2, 0.4)
    grid = expand(spec, registry)
    variants = {c.variant for c in grid.cells}
    assert variants == {"coun", *(f"{m}{w}" for m in ("ft", "not", "l1-sparse", "neggrad+", "salun")
                                  for w in ("", "+coun-cl"))}
    assert len(grid.cells) == len(variants) * 3 * 10
    data = grid.resolved[grid.cells[0]].spec.data
    assert (data.train_subset, data.test_subset, data.balanced, data.pool) == (3000, 1000, True, "evaluation")
    # a wrapped variant runs a third of its method's epochs: a wrapped step costs three plain ones
    epochs = {c.variant: grid.resolved[c].method.params.epochs for c in grid.cells}
    assert epochs["ft"] == 3 * epochs["ft+coun-cl"] and epochs["salun"] == 3 * epochs["salun+coun-cl"]
