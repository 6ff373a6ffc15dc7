"""A module imported on first use, and objects named by import string, so that declaring a family (its args, its task) costs no model library.

Validating a config imports every family's module; with `torch = lazy("torch")` at the top, those
modules import torch only when a runner first touches it, on a replica, never in the gateway, the
planner's CLI or `load_app_args`.
"""

from __future__ import annotations

import importlib
from types import ModuleType


class LazyModule:
    """Stands for a module by name; the first attribute read imports it (then Python's module cache)."""

    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attr: str):
        return getattr(self.module(), attr)

    def module(self) -> ModuleType:
        return importlib.import_module(self._name)

    def __repr__(self) -> str:
        return f"<lazy module {self._name!r}>"


def lazy(name: str) -> LazyModule:
    return LazyModule(name)


def import_attr(path: str):
    """The object a "module:attribute" string names (a family's declaration, a task's deployment)."""
    module, _, attribute = path.partition(":")
    if not module or not attribute:
        raise ValueError(f"{path!r} is not a 'module:attribute' import string")
    return getattr(importlib.import_module(module), attribute)
