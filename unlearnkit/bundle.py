"""The result bundle: results.json, results.md, the forget indices and the unlearned weights.

Sequential forgetting adds each step's metrics (results.json `steps`, one table per step in
results.md) and the indices of every request (forget_requests.json); the rest describes its last step.

It is assembled in a hidden sibling folder named `.NAME.incomplete-*` and renamed into place only
when every file is written, so an interrupted run never leaves a folder that looks complete, and
an existing bundle is replaced (with overwrite) only by a complete one.
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

from unlearnkit.checkpoint import save_model
from unlearnkit.errors import UnlearnkitError
from unlearnkit.models import user_network
from unlearnkit.pipeline import RunResult
from unlearnkit.report import describe_run, markdown_table

RESULTS = "results.json"
WEIGHTS = "unlearned.safetensors"
FORGET = "forget_indices.txt"
REQUESTS = "forget_requests.json"


def check_destination(out: Path, overwrite: bool) -> None:
    """Refuse, before any work, to write over an existing folder unless asked to."""
    if out.exists() and not overwrite and (not out.is_dir() or any(out.iterdir())):
        raise UnlearnkitError(
            f"output folder {out} already exists and is not empty",
            "Choose another --out, or pass --overwrite to replace it once the new bundle is complete.",
        )


def write_bundle(result: RunResult, out: Path, overwrite: bool = False) -> Path:
    out = Path(out)
    check_destination(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.incomplete-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    spec_json = result.spec.model_dump(mode="json")
    (staging / FORGET).write_text("\n".join(str(int(i)) for i in result.split.forget) + "\n")
    sequential = bool(result.split.requests)
    if sequential:
        (staging / REQUESTS).write_text(json.dumps([r.tolist() for r in result.split.requests]) + "\n")
    save_model(
        staging / WEIGHTS,
        user_network(result.unlearned),  # an adapted model is saved with its own keys (torchvision's, say)
        {"method": result.method, "spec": json.dumps(spec_json), "metrics": json.dumps(result.metrics["unlearned"])},
    )
    (staging / "results.md").write_text(
        f"# {result.method} on {result.spec.data.name}\n\n"
        + describe_run(
            [
                ("forget", f"{result.spec.forget.kind}, {len(result.split.forget)} of "
                 f"{len(result.split.forget) + len(result.split.retain)} training samples"
                 + (f" in {len(result.split.requests)} requests" if sequential else "")),
                ("model", result.spec.model.name),
                ("seed", str(result.spec.seed)),
                ("original", result.sources["original"]),
                ("retrain", result.sources.get("retrain", "not trained (retrain: false)")),
            ]
        )
        + "\n\n"
        + ("".join(f"## Step {s.step}: forgot {len(s.split.forget)}, retained {len(s.split.retain)}\n\n"
                   + markdown_table(s.metrics, result.method) + "\n" for s in result.steps)
           if sequential else markdown_table(result.metrics, result.method))
    )
    results = {
        "unlearnkit": result.environment.get("unlearnkit"),
        "method": result.method,
        "spec": spec_json,
        "split": {
            "kind": result.spec.forget.kind,
            "forget_count": len(result.split.forget),
            "retain_count": len(result.split.retain),
            "classes": list(result.split.classes),
            "forget_indices": FORGET,
            **({"requests": REQUESTS} if sequential else {}),
        },
        "metrics": result.metrics,
        "sources": result.sources,
        **({"steps": [{"step": s.step, "forget_count": len(s.split.forget), "retain_count": len(s.split.retain),
                       "metrics": s.metrics, "sources": s.sources} for s in result.steps]} if sequential else {}),
        "environment": result.environment,
        "weights": WEIGHTS,
    }
    # results.json is written last: its presence marks a finished bundle even inside the staging folder
    (staging / RESULTS).write_text(json.dumps(results, indent=2) + "\n")
    if out.exists():
        retired = out.parent / f".{out.name}.replaced-{uuid.uuid4().hex[:8]}"
        out.rename(retired)
        staging.rename(out)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        staging.rename(out)
    return out
