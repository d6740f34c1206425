"""The hooks a plugin may implement. Each receives a `register` callable.

A plugin module (the target of an entry point in the group ``unlearnkit``) looks like::

    from unlearnkit import hookimpl

    @hookimpl
    def register_methods(register):
        register(MyMethod)
"""

from __future__ import annotations

from typing import Callable

import pluggy

PROJECT = "unlearnkit"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_methods(register: Callable[[type], None]) -> None:
    """Register unlearning methods: subclasses of `unlearnkit.Method`."""


@hookspec
def register_augmenters(register: Callable[[type], None]) -> None:
    """Register representation augmenters: subclasses of `unlearnkit.Augmenter`."""


@hookspec
def register_evaluators(register: Callable[[type], None]) -> None:
    """Register evaluators: subclasses of `unlearnkit.Evaluator`."""


@hookspec
def register_models(register: Callable[[type], None]) -> None:
    """Register model architectures: subclasses of `unlearnkit.Architecture`."""


@hookspec
def register_datasets(register: Callable[[type], None]) -> None:
    """Register data sets: subclasses of `unlearnkit.DataSource`."""


@hookspec
def register_trackers(register: Callable[[type], None]) -> None:
    """Register trackers: subclasses of `unlearnkit.Tracker`."""
