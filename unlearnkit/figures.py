"""PNG figures: the CL-integration bar chart, representation-space scatter plots, a run's training curves, and an
audit's ROC curves and vulnerability histogram (matplotlib, Agg)."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from unlearnkit.files import atomic_path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    return plt


def cl_integration(effects: dict, path: Path) -> Path:
    """Grouped bars, one colour per scenario: each method's Avg Gap difference (the paper's gap of seed means) when
    the CL module wraps it, with its paired seed-bootstrap 95% interval as an error bar and * above the bars whose
    Holm-adjusted test rejects 0 (`effects`: scenario -> method -> Interval, bench.statistics)."""
    from unlearnkit.bench.grid import scenario_label

    plt = _pyplot()
    methods = list(dict.fromkeys(m for per in effects.values() for m in per))
    width = 0.8 / max(len(effects), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(methods) + 2) + 2.2, 4.4))
    x = np.arange(len(methods))
    for i, (scenario, per) in enumerate(effects.items()):
        means = np.array([per[m].mean if m in per else np.nan for m in methods])
        # one seed gives no interval: no error bar
        low = np.array([per[m].mean - per[m].low if m in per and per[m].n > 1 else 0.0 for m in methods])
        high = np.array([per[m].high - per[m].mean if m in per and per[m].n > 1 else 0.0 for m in methods])
        where = x + (i - (len(effects) - 1) / 2) * width
        ax.bar(where, means, width, yerr=np.vstack([low, high]), capsize=2, error_kw={"linewidth": 0.8},
               label=scenario_label(scenario))
        for at, m in zip(where, methods):
            if m in per and per[m].significant:
                ax.annotate("*", (at, per[m].high if per[m].mean >= 0 else per[m].low), ha="center",
                            va="bottom" if per[m].mean >= 0 else "top")
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(x, methods, rotation=30, ha="right")
    ax.set_ylabel("Avg Gap difference, wrapped − unwrapped (points)")
    ax.set_title("Effect of the CL module on each method's Avg Gap to Retrain\n(paired seed bootstrap, 95% CI; "
                 "* Holm-adjusted p < 0.05; below 0: closer to Retrain)", fontsize=10)
    # beside the axes: inside, it hides the bars of whichever method it lands on
    ax.legend(title="forget", fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    return _save(fig, Path(path))


def representation(
    panels: Sequence[tuple[str, np.ndarray]],
    labels: np.ndarray,
    forget: np.ndarray,
    class_names: Sequence[str],
    title: str,
    path: Path,
) -> Path:
    """One scatter per model (same points in each): retain samples as dots, forget samples as outlined
    triangles, coloured by true class."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 4.6), squeeze=False)
    colours = plt.get_cmap("tab10" if len(class_names) <= 10 else "tab20")
    for ax, (name, xy) in zip(axes[0], panels):
        keep = ~forget
        ax.scatter(xy[keep, 0], xy[keep, 1], c=colours(labels[keep] % colours.N), s=4, alpha=0.45, linewidths=0)
        ax.scatter(xy[forget, 0], xy[forget, 1], c=colours(labels[forget] % colours.N), s=26, marker="^",
                   edgecolors="black", linewidths=0.6)
        ax.set_title(name, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    handles = [plt.Line2D([], [], marker="o", linestyle="", color=colours(i % colours.N), label=str(n))
               for i, n in enumerate(class_names)]
    handles.append(plt.Line2D([], [], marker="^", linestyle="", color="white", markeredgecolor="black", label="forget"))
    fig.legend(handles=handles, loc="center right", fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0, 0.9, 0.95))
    return _save(fig, Path(path))


#: what a measurement during training holds that is not drawn over epochs: what the model had cost so far
UNDRAWN = ("flops", "seconds")


def training_curves(events: Sequence[dict[str, Any]], title: str, path: Path) -> Path:
    """One panel per loss term, x = epoch: a line per model trained (original, retrain, the unlearned model, at
    each step of sequential forgetting), from a run's event log (unlearnkit.events); then, when the unlearned model
    was measured during its training (`eval_every`), one panel per metric measured, the epoch `keep` kept dashed."""
    lines: dict[str, dict[str, list[tuple[int, float]]]] = {}  # term -> model -> (epoch, mean)
    measured: dict[str, dict[str, list[tuple[int, float]]]] = {}  # metric -> model -> (epoch, value)
    kept: dict[str, float] = {}  # model -> the epoch whose weights were kept
    for event in events:
        model = event["model"] + (f", step {event['forget_step']}" if event.get("forget_step") else "")
        if event.get("event") == "epoch":
            for term, value in event["terms"].items():
                lines.setdefault(term, {}).setdefault(model, []).append((event["epoch"], value))
        elif event.get("event") == "evaluation" and "epoch" in event:
            for metric, value in event["metrics"].items():
                if metric not in UNDRAWN and isinstance(value, (int, float)):
                    measured.setdefault(metric, {}).setdefault(model, []).append((event["epoch"], value))
        elif event.get("event") == "evaluation" and event["metrics"].get("kept_epoch") is not None:
            kept[model] = event["metrics"]["kept_epoch"]
    panels: list[tuple[str, dict[str, list[tuple[int, float]]], dict[str, float]]]
    panels = [(term, per, {}) for term, per in lines.items()]
    panels += [(f"{metric} (measured)", per, kept) for metric, per in measured.items()]
    plt = _pyplot()
    columns = min(max(len(panels), 1), 4)
    rows = max(-(-len(panels) // columns), 1)
    fig, axes = plt.subplots(rows, columns, figsize=(4.4 * columns, 3.6 * rows), squeeze=False)
    colours: dict[str, str] = {}  # each model one colour in every panel
    for ax, (name, per_model, marks) in zip(axes.flat, panels):
        for model, points in per_model.items():
            colour = colours.setdefault(model, f"C{len(colours) % 10}")
            ax.plot(*zip(*points), marker="o", markersize=2.5, linewidth=1.2, label=model, color=colour)
            if model in marks:
                ax.axvline(marks[model], color=colour, linestyle="--", linewidth=0.8)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, Path(path))


def roc_curves(curves: dict[str, tuple[np.ndarray, np.ndarray]], title: str, path: Path) -> Path:
    """One ROC curve per audited variant on log-log axes, as LiRA draws them: what matters is the true-positive
    rate at a low false-positive rate, where an attacker is confident."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.6, 5.0))
    floor = 1e-4
    colours = plt.get_cmap("tab20")  # twenty distinct colours: a dozen audited variants stay apart
    methods = [name for name in curves if name not in ("none", "retrain")]
    for name, (fpr, tpr) in curves.items():
        style = {"linestyle": "--", "color": "grey"} if name == "retrain" else {"linestyle": ":", "color": "black"} \
            if name == "none" else {"color": colours(methods.index(name) % colours.N)}
        ax.plot(np.maximum(fpr, floor), np.maximum(tpr, floor), label=name, linewidth=1.2, **style)
    ax.plot([floor, 1], [floor, 1], color="lightgrey", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(floor, 1)
    ax.set_ylim(floor, 1)
    ax.set_xlabel("false positive rate (never seen, called unlearned)")
    ax.set_ylabel("true positive rate (unlearned, called unlearned)")
    ax.set_title("\n".join(textwrap.wrap(title, 70)), fontsize=8)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, Path(path))


def vulnerability_histogram(values: dict[str, np.ndarray], path: Path) -> Path:
    """Per-target vulnerability (each target's own AUC over the shadow models), one histogram per variant."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.0, 4.0))
    bins = np.linspace(0, 1, 21)
    for name, vulnerability in values.items():
        ax.hist(vulnerability[~np.isnan(vulnerability)], bins=bins, histtype="step", linewidth=1.2, label=name)
    ax.axvline(0.5, color="black", linewidth=0.8)
    ax.set_xlabel("a target's own AUC (0.5: unlearned and never seen look alike)")
    ax.set_ylabel("targets")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, Path(path))


def _save(fig, path: Path) -> Path:
    """The figure as a PNG, whole or not at all (a full disk leaves the previous picture and says so)."""
    try:
        with atomic_path(path) as temporary:
            fig.savefig(temporary, dpi=130, format="png")
    finally:
        _pyplot().close(fig)
    return path
