"""Errors a user can cause and fix. The CLI prints them as one message, no traceback."""

from __future__ import annotations


def few(names: list[str]) -> str:
    """The first three of `names` for a message, and how many more: 'a, b, c and 2 more'."""
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


class UnlearnkitError(Exception):
    """A mistake in what the user asked for, with a hint on what to do instead."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n{self.hint}"


class SpecError(UnlearnkitError):
    """A run spec that does not validate. `lines` holds one 'field: problem' per error."""

    def __init__(self, lines: list[str], source: str = "spec"):
        self.lines = lines
        super().__init__(
            f"invalid {source}:\n" + "\n".join(f"  {line}" for line in lines),
            "Fix the fields above; `unlearn schema` prints every accepted field.",
        )


class UnknownPluginError(UnlearnkitError):
    pass


class DataNotFoundError(UnlearnkitError):
    pass


class CheckpointError(UnlearnkitError):
    pass


class PluginError(UnlearnkitError):
    """A plugin broke a rule of the host (a duplicate name, a malformed entry)."""


class PluginFault(UnlearnkitError):
    """A plugin's own code raised while the core called it: the plugin's fault, not the user's (the CLI exits 1).

    The plugin's exception is the `__cause__`; `plugin` is its entry-point name, `distribution` its package.
    """

    def __init__(self, message: str, hint: str | None, plugin: str, distribution: str | None):
        super().__init__(message, hint)
        self.plugin = plugin
        self.distribution = distribution
