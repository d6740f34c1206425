"""`--track mlflow`: runs logged to an MLflow tracking store, by default a SQLite file in the command's output folder
(no server to start), so that `mlflow ui` compares them; a bench or a tuning is a run with a child run per cell."""

from __future__ import annotations

import logging
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

from pydantic import Field

from unlearnkit.api import Tracker, TrackerParams
from unlearnkit.trackers.checks import check_folder, check_server, library

#: MLflow's limits: entries of one log_batch call, and the length of a param's value
BATCH, VALUE = 100, 6000
STATUS = {"finished": "FINISHED", "failed": "FAILED", "interrupted": "KILLED"}


class MLflowParams(TrackerParams):
    uri: str | None = Field(None, description="an MLflow tracking URI: http(s)://HOST:PORT, sqlite:///PATH or a folder; "
                                              "default: sqlite:///OUT/mlflow.db, files in OUT/mlartifacts")
    experiment: str = Field("unlearnkit", min_length=1, description="the MLflow experiment the runs are logged in")


@contextmanager
def _quiet() -> Iterator[None]:
    """MLflow's database set-up lines and its libraries' deprecation warnings are not the user's business."""
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


class MLflow(Tracker):
    """MLflow: each run's params, metrics as it trains and is evaluated, and its files; a bench's cells as child runs."""

    name = "mlflow"
    Params = MLflowParams

    def __init__(self, params: MLflowParams | None = None):
        super().__init__(params)
        self.uri = ""
        self.artifacts: str | None = None  # where the experiment keeps files, when the store is ours to lay out
        self.client: Any = None
        self.experiment = ""
        self.open: list[str] = []  # run ids, the innermost last

    def prepare(self, folder: Path) -> str:
        library("mlflow", self.name, "mlflow")
        uri = self.params.uri if isinstance(self.params, MLflowParams) else None
        self.uri = uri or f"sqlite:///{(Path(folder) / 'mlflow.db').resolve()}"
        scheme, sep, rest = self.uri.partition("://")
        if not sep:  # a folder: MLflow's file store, which keeps the files beside the runs
            check_folder(Path(self.uri), f"the MLflow store {self.uri}")
        elif scheme in ("http", "https"):
            check_server(self.uri, "the MLflow tracking server")
        elif scheme == "sqlite":
            database = Path(rest[1:] if rest.startswith("/") else rest)
            check_folder(database.parent, f"the MLflow store {database}")
            self.artifacts = (database.parent.resolve() / "mlartifacts").as_uri()
        elif scheme == "file":
            check_folder(Path(rest), f"the MLflow store {rest}")
        return f"mlflow: mlflow ui --backend-store-uri {self.uri}"

    def start(self, name: str, parent: str | None, tags: Mapping[str, str]) -> None:
        with _quiet():
            if self.client is None:
                from mlflow.tracking import MlflowClient

                self.client = MlflowClient(self.uri)
                experiment = self.params.experiment if isinstance(self.params, MLflowParams) else "unlearnkit"
                found = self.client.get_experiment_by_name(experiment)
                self.experiment = found.experiment_id if found else self.client.create_experiment(
                    experiment, artifact_location=self.artifacts)
            tags = {**tags, **({"mlflow.parentRunId": self.open[-1]} if parent is not None and self.open else {})}
            self.open.append(self.client.create_run(self.experiment, run_name=name, tags=tags).info.run_id)

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        entries = [Param(key, str(value)[:VALUE]) for key, value in params.items()]
        with _quiet():
            for i in range(0, len(entries), BATCH):
                self.client.log_batch(self.open[-1], params=entries[i:i + BATCH])

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        entries = [Metric(key, value, now, step) for key, value in metrics.items()]
        with _quiet():
            for i in range(0, len(entries), BATCH):
                self.client.log_batch(self.open[-1], metrics=entries[i:i + BATCH])

    def log_artifact(self, path: Path) -> None:
        with _quiet():
            self.client.log_artifact(self.open[-1], str(path))

    def end(self, status: str) -> None:
        with _quiet():
            self.client.set_terminated(self.open.pop(), STATUS.get(status, "FINISHED"))
