"""Packages that import their modules on first use: ``__getattr__ = lazy_exports(...)``.

A command such as ``sandbox query`` then loads only the modules it touches (no X.509 stack,
query engine or training stack for a firm's query).

>>> get = lazy_exports("demo", {"sqrt": "math"})
>>> get("sqrt")(9.0)
3.0
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib import import_module
from typing import Any


def lazy_exports(package: str, where: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports ``where[name]`` (a module path) on first use."""

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(import_module(module), name)

    return __getattr__
