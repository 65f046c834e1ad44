"""The evaluator registry: `register` adds a function by name (`evals.get` looks it up)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["generation", "loglik", "forced"]


@dataclass(frozen=True)
class Registered:
    name: str
    fn: Callable[..., Any]
    kind: Kind
    higher_is_better: bool = True
    # settled(text, reference, **params): True when no continuation of the answer `text` can
    # change fn's result, so generation may stop there (loop.evaluate); None: only at the end
    settled: Callable[..., bool] | None = None


_REGISTRY: dict[str, Registered] = {}


def register(
    name: str,
    *,
    kind: Kind = "generation",
    higher_is_better: bool = True,
    settled: Callable[..., bool] | None = None,
):
    """Decorator: make `fn` available to recipes as `name`."""

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        _REGISTRY[name] = Registered(name, fn, kind, higher_is_better, settled)
        return fn

    return wrap
