"""`unlearn plot`: a result bundle's original, Retrain and unlearned models in representation space, and its
training curves.

Each model's penultimate features of a sample of retain and forget training images are
projected to 2-D (PCA and/or t-SNE, each model in its own space), as in CoUn's Figures 1 and 3.
A bundle with an event log (events.jsonl) also gets curves.png: each loss term by epoch, and each metric the
unlearned model was measured on during its training (`eval_every`).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from unlearnkit.checkpoint import load_model
from unlearnkit.errors import UnlearnkitError
from unlearnkit.evaluation.representation import premise_agreement, project
from unlearnkit.evaluation.subject import Subject
from unlearnkit.figures import representation, training_curves
from unlearnkit.files import check_writable
from unlearnkit.models import user_network
from unlearnkit.plugins import Registry
from unlearnkit.progress import SILENT, Progress
from unlearnkit.protocol import ProtocolRun
from unlearnkit.references import reference_model
from unlearnkit.resolve import resolve

TITLES = {"pca": "PCA", "tsne": "t-SNE"}


def read_bundle(folder: Path) -> dict:
    path = Path(folder) / "results.json"
    try:
        return json.loads(path.read_text())
    except OSError:
        raise UnlearnkitError(f"{folder} is not a result bundle (no readable results.json)",
                              "Give the folder `unlearn run` wrote (its --out).") from None
    except ValueError:
        raise UnlearnkitError(f"{path} is not valid JSON; the bundle is damaged", "Run `unlearn run` again.") from None


def plot_bundle(
    folder: Path, out: Path, projections: list[str], samples: int, progress: Progress = SILENT,
    registry: Registry | None = None,
) -> tuple[list[Path], dict[str, float]]:
    """Write one PNG per projection (pca, tsne); returns the files and each model's premise agreement (percent)."""
    unknown = [p for p in projections if p not in TITLES]
    if unknown:
        raise UnlearnkitError(f"--projection {unknown[0]} is not one of pca, tsne")
    folder = Path(folder)
    results = read_bundle(folder)
    check_writable(Path(out), f"the pictures in {out}", "Choose another --out.")  # before the models are computed
    run, subjects = _bundle_subjects(folder, results, registry, progress)
    predictions = subjects["Retrain"].outputs("forget")[0].argmax(1)
    premise = {name: premise_agreement(s.features("retain"), s.features("forget")[0], predictions)
               for name, s in subjects.items()}
    files = _draw(run, subjects, premise, projections, samples, Path(out))
    events = read_events(folder, results)
    if events:
        measured = any(e.get("event") == "evaluation" and "epoch" in e for e in events)
        files.append(training_curves(events, f"{results['method']} on {run.spec.data.name} ({run.spec.model.name}): "
                                     "mean loss terms" + (" and measurements" if measured else "") + " per epoch",
                                     Path(out) / "curves.png"))
    return files, premise


def read_events(folder: Path, results: dict) -> list[dict]:
    """The bundle's event log; empty for a bundle written before it had one."""
    path = Path(folder) / results.get("events", "")
    if "events" not in results or not path.is_file():
        return []
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except ValueError:
        raise UnlearnkitError(f"{path} is not one JSON object a line; the bundle is damaged",
                              "Run `unlearn run` again.") from None


def _bundle_subjects(folder: Path, results: dict, registry: Registry | None,
                     progress: Progress) -> tuple[ProtocolRun, dict[str, Subject]]:
    """The bundle's run set up again, and its three models (Original, Retrain, the method's) as subjects."""
    from unlearnkit.plugins import installed

    try:
        spec, method, weights = results["spec"], results["method"], folder / results["weights"]
        recorded = torch.tensor([int(v) for v in (folder / results["split"]["forget_indices"]).read_text().split()])
    except (KeyError, TypeError, OSError, ValueError) as exc:
        raise UnlearnkitError(f"the bundle {folder} is incomplete or damaged ({type(exc).__name__}: {exc})",
                              "Run `unlearn run` again to write a complete bundle.") from None
    run = ProtocolRun(resolve(spec, registry or installed(), str(folder / "results.json")), progress=progress)
    if not torch.equal(recorded.sort().values, run.split.forget.sort().values):
        raise UnlearnkitError(f"the forget set drawn from {folder}'s spec differs from its forget_indices.txt",
                              "The data set changed since the run; run `unlearn run` again.")
    original, _, _ = reference_model(run, "original")
    retrain, _, _ = reference_model(run, "retrain")
    unlearned = run.workload.new_model().to(run.device)
    load_model(weights, user_network(unlearned))
    return run, {name: run.subject(name, model, {"flops": None, "seconds": None})
                 for name, model in (("Original", original), ("Retrain", retrain), (method, unlearned))}


def _draw(run: ProtocolRun, subjects: dict[str, Subject], premise: dict[str, float], projections: list[str],
          samples: int, out: Path) -> list[Path]:
    """Each projection of a sample of retain and forget features, one panel per model; `out` is made if need be."""
    generator = torch.Generator().manual_seed(0)
    pick_retain = torch.randperm(len(run.split.retain), generator=generator)[:samples]
    pick_forget = torch.randperm(len(run.split.forget), generator=generator)[: max(samples // 3, 1)]
    labels = torch.cat([subjects["Retrain"].features("retain")[1][pick_retain],
                        subjects["Retrain"].features("forget")[1][pick_forget]]).numpy()
    is_forget = torch.cat([torch.zeros(len(pick_retain), dtype=torch.bool), torch.ones(len(pick_forget), dtype=torch.bool)])
    points = {name: torch.cat([s.features("retain")[0][pick_retain], s.features("forget")[0][pick_forget]])
              for name, s in subjects.items()}
    spec = run.spec
    scenario = {
        "random": f"random {spec.forget.fraction:.0%}",
        "class": f"class {', '.join(map(str, spec.forget.classes))}",
        "sequential": f"sequential {spec.forget.fraction:.0%} x{spec.forget.steps} (after the last step)",
    }.get(spec.forget.kind, "given indices")
    files = []
    with run.progress.task("projecting", len(projections) * len(points)) as advance:
        for how in projections:
            panels = []
            for name, features in points.items():
                panels.append((f"{name} (premise {premise[name]:.1f}%)", project(features, how, seed=spec.seed)))
                advance()
            title = (f"{TITLES[how]} of penultimate features: {spec.data.name}, {spec.model.name}, {scenario} forgetting "
                     f"({len(pick_retain)} retain, {len(pick_forget)} forget samples)")
            files.append(representation(panels, labels, is_forget.numpy(), run.workload.classes, title, out / f"{how}.png"))
    return files
