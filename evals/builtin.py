"""Built-in evaluators (registered on import)."""

from __future__ import annotations

from evals import register


@register("exact_match")
def exact_match(prediction: str, reference: str) -> float:
    return float(prediction.strip() == reference.strip())
