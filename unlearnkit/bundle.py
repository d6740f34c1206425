"""The result bundle: results.json, results.md, the forget indices, the unlearned weights and the event log.

Sequential forgetting adds each step's metrics (results.json `steps`, one table per step in
results.md) and the indices of every request (forget_requests.json); the rest describes its last step.

It is assembled in a hidden sibling folder named `.NAME.incomplete-*` and renamed into place only
when every file is written, so an interrupted run never leaves a folder that looks complete, and
an existing bundle is replaced (with overwrite) only by a complete one.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import uuid
from pathlib import Path
from typing import Any

from unlearnkit.checkpoint import save_model
from unlearnkit.errors import UnlearnkitError, few
from unlearnkit.files import atomic_write_text, check_writable, write_error
from unlearnkit.models import user_network
from unlearnkit.report import describe_run, markdown_table
from unlearnkit.sequence import RunResult

#: the layout of results.json; a bundle of a newer format is refused by the commands that read bundles
FORMAT = 1
RESULTS = "results.json"
WEIGHTS = "unlearned.safetensors"
FORGET = "forget_indices.txt"
REQUESTS = "forget_requests.json"
SUMMARY = "results.md"
#: one JSON object a line: each training's loss terms and each evaluation, in order (unlearnkit.events)
EVENTS = "events.jsonl"
#: what a bundle folder holds: the files write_bundle writes, and the pictures `unlearn plot` adds by default
CONTENTS = {RESULTS, WEIGHTS, FORGET, REQUESTS, SUMMARY, EVENTS, "plots"}


def check_destination(out: Path, overwrite: bool) -> None:
    """Refuse, before any work, a bundle folder that cannot be written, or whose files a bundle would replace.

    An empty folder is written into; an existing bundle is replaced only with `overwrite`; any other
    folder or file is never replaced, so that --overwrite cannot delete a user's files.
    """
    out = Path(out)
    check_writable(out.parent, f"the result bundle {out}", "Choose another --out.")  # it is staged beside `out`
    if not (out.exists() or out.is_symlink()):
        return
    if not out.is_dir():
        raise UnlearnkitError(f"output path {out} is a file, not a result bundle folder",
                              "Choose another --out; --overwrite replaces only a result bundle.")
    try:
        entries = sorted(p.name for p in out.iterdir())
    except OSError as exc:
        raise UnlearnkitError(f"cannot read output folder {out}: {exc.strerror}", "Choose another --out.") from None
    if not entries:
        return
    reason = _not_a_bundle(out, entries)
    if reason is not None:
        raise UnlearnkitError(f"output folder {out} is not a result bundle: {reason}",
                              "Choose another --out; --overwrite replaces only a bundle that unlearn run wrote, "
                              "so that no other file is lost.")
    if not overwrite:
        raise UnlearnkitError(f"output folder {out} already holds a result bundle",
                              "Choose another --out, or pass --overwrite to replace it once the new bundle is complete.")


def contents_checksum(results: dict[str, Any]) -> str:
    """A digest of results.json's contents but itself: a file edited by hand no longer matches it."""
    content = json.dumps({k: v for k, v in results.items() if k != "checksum"}, sort_keys=True)
    return hashlib.sha256(content.encode()).hexdigest()


def _not_a_bundle(out: Path, entries: list[str]) -> str | None:
    """Why the folder `out` (holding `entries`) is not a bundle write_bundle wrote; None when it is one."""
    others = [name for name in entries if name not in CONTENTS]
    if others:
        return "it holds " + few(others)
    try:
        results = json.loads((out / RESULTS).read_text())
    except (OSError, ValueError):  # absent, unreadable, not JSON
        return f"it has no readable {RESULTS}"
    if not (isinstance(results, dict) and "unlearnkit" in results and results.get("weights") == WEIGHTS):
        return f"its {RESULTS} was not written by unlearnkit"
    return None


def write_bundle(result: RunResult, out: Path, overwrite: bool = False, command: str | None = None) -> Path:
    """Assemble the bundle in a hidden staging folder and move it into place only when complete.

    A write that fails (a full disk, say) is one error naming the file; the staging folder is
    removed and an existing bundle at `out` is left as it was.
    """
    out = Path(out)
    check_destination(out, overwrite)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = out.parent / f".{out.name}.incomplete-{uuid.uuid4().hex[:8]}"
        staging.mkdir()
    except OSError as exc:
        raise write_error(out, exc) from None
    try:
        _stage(result, staging, command)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if out.exists():
        retired = out.parent / f".{out.name}.replaced-{uuid.uuid4().hex[:8]}"
        out.rename(retired)
        staging.rename(out)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        staging.rename(out)
    return out


def _stage(result: RunResult, staging: Path, command: str | None) -> None:
    """Every file of the bundle, each written whole and flushed (unlearnkit.files), results.json last."""
    spec_json = result.spec.model_dump(mode="json")
    atomic_write_text(staging / FORGET, "\n".join(str(int(i)) for i in result.split.forget) + "\n")
    atomic_write_text(staging / EVENTS, "".join(json.dumps(event) + "\n" for event in result.events))
    sequential = bool(result.split.requests)
    if sequential:
        atomic_write_text(staging / REQUESTS, json.dumps([r.tolist() for r in result.split.requests]) + "\n")
    save_model(
        staging / WEIGHTS,
        user_network(result.unlearned),  # an adapted model is saved with its own keys (torchvision's, say)
        {"method": result.method, "spec": json.dumps(spec_json), "metrics": json.dumps(result.metrics["unlearned"])},
    )
    atomic_write_text(
        staging / SUMMARY,
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
        "format": FORMAT,
        "command": command,  # as typed (unlearn run ...), or None for unlearnkit.unlearn
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
        "events": EVENTS,
        "metrics": result.metrics,
        "sources": result.sources,
        **({"steps": [{"step": s.step, "forget_count": len(s.split.forget), "retain_count": len(s.split.retain),
                       "metrics": s.metrics, "sources": s.sources} for s in result.steps]} if sequential else {}),
        "environment": result.environment,
        "weights": WEIGHTS,
    }
    results["checksum"] = contents_checksum(results)
    # results.json is written last: its presence marks a finished bundle even inside the staging folder
    atomic_write_text(staging / RESULTS, json.dumps(results, indent=2) + "\n")
