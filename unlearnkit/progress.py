"""Progress bars for long work (rich), and a silent stand-in for tests and scripts."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator, Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import (
    Progress as RichProgress,
)

if TYPE_CHECKING:  # the CLI imports this module; torch loads only when training does
    import torch


class Advance(Protocol):
    """Called once per step, with the step's loss when there is one."""

    def __call__(self, loss: torch.Tensor | None = None) -> None: ...


def _ignore(loss: torch.Tensor | None = None) -> None:
    """The silent stand-in's `advance`."""


class Progress:
    """One bar per task. `task(label, total)` yields `advance(loss)`, called once per step."""

    def __init__(self, console: Console | None = None, enabled: bool = True):
        self._bars = None
        if enabled:
            self._bars = RichProgress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[info]}"),
                console=console,
                transient=True,
            )

    def __enter__(self) -> Progress:
        if self._bars:
            self._bars.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._bars:
            self._bars.stop()

    @contextmanager
    def task(self, label: str, total: int) -> Iterator[Advance]:
        if self._bars is None:
            yield _ignore
            return
        bars = self._bars
        task = bars.add_task(label, total=total, info="")
        done = 0

        def advance(loss: torch.Tensor | None = None) -> None:
            nonlocal done
            done += 1
            # reading a loss synchronises an accelerator: only now and then
            info = f"loss {loss.item():.3f}" if loss is not None and (done % 10 == 0 or done == total) else None
            if info:
                bars.update(task, advance=1, info=info)
            else:
                bars.update(task, advance=1)

        try:
            yield advance
        finally:
            bars.remove_task(task)


SILENT = Progress(enabled=False)


@dataclass
class Reporter:
    """Where a command's work speaks: results to `out`, notes, warnings and progress to `err`.

    `quiet`: no progress bars and no per-cell (or per-reference) lines.
    """

    out: Console
    err: Console
    quiet: bool = False

    def progress(self) -> Progress:
        return Progress(console=self.err, enabled=not self.quiet and self.err.is_terminal)

    def log(self, line: str) -> None:
        """A line about work done (a cached reference, a finished cell), dimmed; none when quiet."""
        if not self.quiet:
            self.err.print(f"[dim]{line}[/]", highlight=False)

    def warn(self, line: str) -> None:
        self.err.print(f"[bold yellow]warning:[/] {line}", highlight=False, soft_wrap=True)
