"""Task evaluators, registered by name.

A recipe names evaluators (`json_match`, `exact_match`, …) or gives a user function as
`package.module:function`. Importing this package is cheap: no model code is loaded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["generation", "loglik"]


@dataclass(frozen=True)
class Registered:
    name: str
    fn: Callable[..., Any]
    kind: Kind
    higher_is_better: bool = True


_REGISTRY: dict[str, Registered] = {}


def register(name: str, *, kind: Kind = "generation", higher_is_better: bool = True):
    """Decorator: make `fn` available to recipes as `name`."""

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        _REGISTRY[name] = Registered(name, fn, kind, higher_is_better)
        return fn

    return wrap


def _load_builtins() -> None:
    from evals import builtin  # noqa: F401  (registers on import)


def registered_names() -> list[str]:
    _load_builtins()
    return sorted(_REGISTRY)


def get(name: str) -> Registered:
    """Look up a registered evaluator, or import a user one given as `module:function`."""
    _load_builtins()
    if name in _REGISTRY:
        return _REGISTRY[name]
    if ":" in name:
        import importlib

        module, _, attr = name.partition(":")
        try:
            fn = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise KeyError(f"evaluator {name!r}: cannot import ({exc})") from None
        return Registered(name, fn, "generation")
    raise KeyError(f"unknown evaluator {name!r}; registered: {', '.join(sorted(_REGISTRY))}")
