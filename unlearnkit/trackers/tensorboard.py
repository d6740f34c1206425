"""`--track tensorboard`: each run's metrics as TensorBoard event files, by default in OUT/tensorboard/RUN (a
bench's cells in OUT/tensorboard/BENCH/CELL), read with `tensorboard --logdir OUT/tensorboard`."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Mapping

from unlearnkit.api import Tracker, TrackerParams
from unlearnkit.trackers.checks import check_folder, library


class TensorBoard(Tracker):
    """TensorBoard: each run's metrics as scalars, its params and text files as text, its PNG figures as images."""

    name = "tensorboard"

    def __init__(self, params: TrackerParams | None = None):
        super().__init__(params)
        self.root = Path()
        self.open: list[tuple[Path, Any]] = []  # (folder, SummaryWriter), the innermost last

    def prepare(self, folder: Path) -> str:
        library("tensorboard", self.name, "tensorboard")
        uri = self.params.uri if isinstance(self.params, TrackerParams) else None
        self.root = Path(uri) if uri else Path(folder) / "tensorboard"
        check_folder(self.root, f"TensorBoard's event files in {self.root}")
        return f"tensorboard: tensorboard --logdir {self.root}"

    def start(self, name: str, parent: str | None, tags: Mapping[str, str]) -> None:
        from torch.utils.tensorboard import SummaryWriter

        folder = (self.open[-1][0] if parent is not None and self.open else self.root) / _safe(name)
        writer = SummaryWriter(log_dir=str(folder))
        if tags:
            writer.add_text("tags", _table(tags))
        self.open.append((folder, writer))

    def log_params(self, params: Mapping[str, Any]) -> None:
        self.open[-1][1].add_text("params", _table(params))

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        writer = self.open[-1][1]
        for key, value in metrics.items():
            writer.add_scalar(key, value, step)

    def log_artifact(self, path: Path) -> None:
        writer = self.open[-1][1]
        if path.suffix == ".png":
            from torchvision.io import decode_png, read_file

            writer.add_image(path.stem, decode_png(read_file(str(path)))[:3])
        elif path.suffix in (".md", ".txt") and path.stat().st_size < 100_000:
            writer.add_text(path.name, path.read_text())

    def end(self, status: str) -> None:
        folder, writer = self.open.pop()
        writer.add_text("status", status)
        writer.close()


def _safe(name: str) -> str:
    """A run's name as one folder name: "ft, random 10%, seed 0" -> ft_random_10_seed_0."""
    return re.sub(r"[^\w.+#-]+", "_", name).strip("_") or "run"


def _table(values: Mapping[str, Any]) -> str:
    """A markdown table, as TensorBoard's text tab renders it."""
    return "| key | value |\n| --- | --- |\n" + "".join(f"| {k} | {json.dumps(v) if not isinstance(v, str) else v} |\n"
                                                      for k, v in values.items())
