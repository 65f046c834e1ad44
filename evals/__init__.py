"""Task evaluators, registered by name.

A recipe names evaluators (`json_match`, `exact_match`, …) or gives a user function as
`package.module:function`. Importing this package is cheap: no model code is loaded.

Calling convention (loop.evaluate calls every evaluator once per sampled validation example):

- generation evaluators (`kind="generation"`, the default) score the model's greedy answer:
  `fn(prediction: str, reference: str, **params) -> float | dict`. `reference` is the example's
  assistant answer. A function that also declares a parameter named `example` receives the
  `loop.example.Example` as `example=`.
- teacher-forced evaluators (`kind="forced"`) generate nothing and run no extra pass:
  `fn(would_write: bool, **params)`, where `would_write` says whether greedy decoding would write
  the example's reference answer exactly, read from the validation-loss pass (`greedy_match`).
- log-likelihood evaluators (`kind="loglik"`) generate nothing:
  `fn(score, example, **params) -> float | dict`, where `score(texts: list[str])` returns, for each
  text, `(summed log-probability, token count)` of that text as the assistant's whole answer to the
  example's prompt.

`params` are the recipe's `eval.evaluators[].params`, passed as keyword arguments and checked
against the signature before any model runs.

Return value: a float in [0, 1] (the score), or a dict with the score under `"score"` and optional
sub-metrics: other numeric values become `eval.<name>.<key>` (e.g. `json_match` returns
`{"score", "valid", "field_acc"}`), string values are kept in the per-example predictions only.
Metrics are means over the sample: `eval.<name>` is the mean score. `<name>` is the spec's `label`,
else the registered name, else the function name of `module:function`.

Registering: decorate with `@register("name", kind=...)`; a `module:function` user evaluator is a
generation evaluator unless the function has an attribute `evaluator_kind = "loglik"`. Raise
ValueError for a bad reference or example (the caller adds which example it was).
"""

from __future__ import annotations

from evals.registry import _REGISTRY, Kind, Registered, register

__all__ = ["Kind", "Registered", "get", "register", "registered_names"]


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
        except Exception as exc:  # the user's module fails on import in some other way
            raise KeyError(
                f"evaluator {name!r}: cannot import ({type(exc).__name__}: {exc})"
            ) from None
        kind = getattr(fn, "evaluator_kind", "generation")
        if kind not in ("generation", "loglik", "forced"):
            raise KeyError(
                f"evaluator {name!r}: evaluator_kind must be generation, loglik or forced, got {kind!r}"
            )
        return Registered(name, fn, kind)
    raise KeyError(f"unknown evaluator {name!r}; registered: {', '.join(sorted(_REGISTRY))}")
