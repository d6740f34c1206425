"""CoUn (Khalil, Setayesh, Li, NeurIPS 2025): the CL augmenter `coun-cl` and the method `coun`."""

from typing import Callable

from unlearnkit import hookimpl
from unlearnkit_coun.contrastive import ContrastiveAugmenter, cross_view_infonce
from unlearnkit_coun.method import CoUn


@hookimpl
def register_augmenters(register: Callable[[type], None]) -> None:
    register(ContrastiveAugmenter)


@hookimpl
def register_methods(register: Callable[[type], None]) -> None:
    register(CoUn)


__all__ = ["CoUn", "ContrastiveAugmenter", "cross_view_infonce"]
