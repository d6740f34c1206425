"""An audit's result as the user reads it: a table, audit.md, audit.json (every phi, so that every figure can be
recomputed without training) and two pictures (ROC curves on log-log axes, as LiRA draws them, and a histogram
of per-target vulnerability)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from rich.table import Table

from unlearnkit.auditing.epsilon import EpsilonResult, as_record
from unlearnkit.auditing.ulira import RETRAIN, RETRAIN_ALARM, AuditResult, VariantResult, iter_rows
from unlearnkit.bench.grid import scenario_label
from unlearnkit.evaluation.privacy import AttackFigures
from unlearnkit.files import atomic_write_json, atomic_write_text
from unlearnkit.figures import roc_curves, vulnerability_histogram

COLUMNS = ("AUC", "balanced accuracy", "TPR @ 1% FPR", "TPR @ 0.1% FPR")


def _cells(figures: AttackFigures) -> list[str]:
    """Each figure in percent with its 95% interval."""
    return [f"{100 * value:.1f} [{100 * low:.1f}, {100 * high:.1f}]"
            for value, (low, high) in ((figures.auc, figures.auc_ci),
                                       (figures.balanced_accuracy, figures.balanced_accuracy_ci),
                                       (figures.tpr_at_1, figures.tpr_at_1_ci),
                                       (figures.tpr_at_01, figures.tpr_at_01_ci))]


def title(result: AuditResult) -> str:
    design = result.design
    return (f"U-LiRA on {scenario_label(result.scenario)}: {len(design.targets)} targets, K = {design.shadows} shadow "
            f"models (seeds {design.shadow_seed(0)}..{design.shadow_seed(design.shadows - 1)}); percent, 95% bootstrap "
            "intervals over targets; AUC 50 = an attacker cannot tell unlearned from never seen")


def table(result: AuditResult | EpsilonResult) -> Table:
    if isinstance(result, EpsilonResult):
        return epsilon_table(result)
    grid = Table(title=title(result), title_justify="left")
    grid.add_column("variant")
    for column in COLUMNS:
        grid.add_column(column, justify="right")
    grid.add_column("positives / negatives", justify="right")
    for row in iter_rows(result):
        grid.add_row(row.name, *_cells(row.figures), f"{row.figures.positives} / {row.figures.negatives}")
    return grid


def verdict(result: AuditResult | EpsilonResult) -> str | None:
    """The plain warning a broken U-LiRA audit deserves: Retrain must be indistinguishable from never seeing the targets."""
    if isinstance(result, EpsilonResult):
        return None
    retrain = result.row(RETRAIN).figures
    if retrain.auc_ci[0] > RETRAIN_ALARM:
        return (f"the retrain calibration's AUC is {100 * retrain.auc:.1f} (interval from {100 * retrain.auc_ci[0]:.1f}), "
                f"far above 50: models retrained without the targets are told apart from models that never saw them, so "
                f"this audit's other rows cannot be trusted (too few shadow models, or a setting whose training varies "
                f"too much between seeds)")
    return None


def markdown(result: AuditResult, command: str) -> str:
    lines = [f"# unlearn audit\n\nCommand: `{command}`\n\n{title(result)}.\n",
             "| variant | " + " | ".join(COLUMNS) + " | positives / negatives | FLOPs | seconds |",
             "| --- |" + " ---: |" * (len(COLUMNS) + 3)]
    for row in iter_rows(result):
        lines.append(f"| {row.name} | " + " | ".join(_cells(row.figures))
                     + f" | {row.figures.positives} / {row.figures.negatives} | {row.cost.get('flops', 0):.3g} | "
                     f"{row.cost.get('seconds', 0):.0f} |")
    warning = verdict(result)
    if warning:
        lines.append(f"\n**Warning:** {warning}.")
    lines.append(f"\nModels trained by the last invocation: {result.trained}; its wall time: {result.seconds:.0f} s. "
                 "FLOPs and seconds: what the variant's K unlearned models cost (none: nothing; retrain: the K Retrains).")
    lines.append("\nMost exposed targets (their own AUC over the shadow models), per variant: "
                 + "; ".join(f"{row.name}: " + ", ".join(f"#{t} {100 * v:.0f}" for t, v in most_exposed(row, result))
                             for row in iter_rows(result)))
    return "\n".join(lines) + "\n"


def most_exposed(row: VariantResult, result: AuditResult, count: int = 5) -> list[tuple[int, float]]:
    """The targets (training positions) with the highest own AUC."""
    order = np.argsort(-np.nan_to_num(row.vulnerability, nan=-1.0))[:count]
    return [(int(result.design.targets[i]), float(row.vulnerability[i])) for i in order if not np.isnan(row.vulnerability[i])]


def record(result: AuditResult, command: str) -> dict[str, Any]:
    """Everything the figures rest on: targets, membership, seeds, every phi; and the figures themselves."""
    design = result.design
    return {
        "command": command, "scenario": result.scenario, "targets": design.targets.tolist(),
        "shadow_seeds": [design.shadow_seed(k) for k in range(design.shadows)],
        "seen": design.target_members().astype(int).tolist(),  # [K][T]: 1 when shadow k saw (then unlearned) target t
        "variants": {row.name: {"phi": row.phi.tolist(), "figures": row.figures.as_dict(), "cost": row.cost}
                     for row in iter_rows(result)},
    }


def write(result: AuditResult | EpsilonResult, folder: Path, command: str) -> list[Path]:
    if isinstance(result, EpsilonResult):
        files = [folder / "audit.json", folder / "audit.md"]
        atomic_write_json(files[0], {"command": command, **as_record(result)})
        atomic_write_text(files[1], epsilon_markdown(result, command))
        return files
    rows = list(iter_rows(result))
    files = [folder / "audit.json", folder / "audit.md"]
    atomic_write_json(files[0], record(result, command))
    atomic_write_text(files[1], markdown(result, command))
    files.append(roc_curves({row.name: (row.figures.fpr, row.figures.tpr) for row in rows}, title(result), folder / "roc.png"))
    files.append(vulnerability_histogram({row.name: row.vulnerability for row in rows}, folder / "vulnerability.png"))
    return files


# --- the challenge's epsilon score ------------------------------------------------------------------

EPSILON_COLUMNS = ("score", "forget quality F", "median epsilon", "RA / RA*", "TA / TA*")


def epsilon_title(result: EpsilonResult) -> str:
    return (f"Forget quality on {scenario_label(result.scenario)}: {len(result.forget)} forget samples, N = {result.runs} "
            f"runs of each method and {result.runs} Retrains of one Original (seeds {result.seeds[0]}.."
            f"{result.seeds[-1]}); epsilon resolved up to {result.ceiling:.2f}; score = F x RA/RA* x TA/TA* "
            "(1 = indistinguishable from Retrain at its utility)")


def _epsilon_cells(result: EpsilonResult, name: str) -> list[str]:
    row = next(r for r in result.rows if r.name == name)
    retrain = next(r for r in result.rows if r.name == RETRAIN)
    if row.score is None:  # Retrain, every other row's reference: its utility, in percent
        return ["reference", "", "", f"RA {row.ra:.2f}", f"TA {row.ta:.2f}"]
    median = float(np.median(row.eps))
    shown = f"≥ {result.ceiling:.2f}" if median > result.ceiling else f"{median:.2f}"  # beyond what N models resolve
    return [f"{row.score:.3f}", f"{row.forget_quality:.3f}", shown, f"{row.ra / retrain.ra:.3f}", f"{row.ta / retrain.ta:.3f}"]


def epsilon_table(result: EpsilonResult) -> Table:
    grid = Table(title=epsilon_title(result), title_justify="left")
    grid.add_column("variant")
    for column in EPSILON_COLUMNS:
        grid.add_column(column, justify="right")
    for row in result.rows:
        grid.add_row(row.name, *_epsilon_cells(result, row.name))
    return grid


def epsilon_markdown(result: EpsilonResult, command: str) -> str:
    lines = [f"# unlearn audit --kind epsilon\n\nCommand: `{command}`\n\n{epsilon_title(result)}.\n",
             "| variant | " + " | ".join(EPSILON_COLUMNS) + " |", "| --- |" + " ---: |" * len(EPSILON_COLUMNS)]
    lines += [f"| {row.name} | " + " | ".join(_epsilon_cells(result, row.name)) + " |" for row in result.rows]
    lines.append(f"\nModels trained by the last invocation: {result.trained}; its wall time: {result.seconds:.0f} s. "
                 "RA / RA* and TA / TA*: each variant's mean over its runs against the Retrains' mean.")
    return "\n".join(lines) + "\n"
