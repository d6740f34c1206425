"""The first-party trackers, registered through unlearnkit's own entry point as any plugin's are: `mlflow` and
`tensorboard`. Each imports its library only when it runs (the extras unlearnkit[mlflow], unlearnkit[tensorboard])."""

from __future__ import annotations

from unlearnkit.hookspecs import hookimpl
from unlearnkit.trackers.mlflow import MLflow
from unlearnkit.trackers.tensorboard import TensorBoard


@hookimpl
def register_trackers(register):
    register(MLflow)
    register(TensorBoard)
