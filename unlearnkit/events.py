"""A run's event log: the loss terms each training logs (at each epoch's end, and every `log_every` steps when
asked), each model's evaluation and, with `eval_every`, the unlearned model's every that many epochs, in the
order they happen. A bundle keeps it as events.jsonl; a command's
trackers receive each event as it happens (`listeners`)."""

from __future__ import annotations

from typing import Any, Callable, Mapping

from unlearnkit.engine.train import Logged, OnLog

Event = dict[str, Any]


class EventLog:
    """Events in order, each handed to every listener as it is added."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.listeners: list[Callable[[Event], None]] = []

    def training(self, model: str, forget_step: int | None) -> OnLog:
        """What the training of `model` (original, retrain, unlearned; at a step of sequential forgetting) logs to."""

        def record(logged: Logged) -> None:
            self.add({"event": "epoch" if logged.epoch_end else "steps", **_model(model, forget_step),
                      "epoch": logged.epoch, "step": logged.step, "lr": logged.lr, "terms": logged.terms})

        return record

    def evaluation(self, model: str, forget_step: int | None, metrics: Mapping[str, Any],
                   epoch: int | None = None) -> None:
        """A model's metrics: at the end of its training's `epoch` (`eval_every`), or as it is reported (no epoch)."""
        at = {} if epoch is None else {"epoch": epoch}
        self.add({"event": "evaluation", **_model(model, forget_step), **at, "metrics": dict(metrics)})

    def add(self, event: Event) -> None:
        self.events.append(event)
        for listener in self.listeners:
            listener(event)

    def take(self) -> list[Event]:
        """The events so far, leaving the log empty (a bench worker's cells share one)."""
        taken, self.events = self.events, []
        return taken


def _model(model: str, forget_step: int | None) -> dict[str, Any]:
    return {"model": model} if forget_step is None else {"model": model, "forget_step": forget_step}
