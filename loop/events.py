"""Progress events: what the stages report while they work; `loop/cli.py` turns them into a
progress bar or plain log lines."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Event:
    kind: str  # message | cell_start | step | cell_done | cell_failed
    cell: str | None = None
    done: int = 0
    total: int = 0
    step: int = 0
    max_steps: int = 0
    message: str = ""
    metrics: dict[str, float] | None = None
    eta_s: float | None = None  # cell_done: the calibrated estimate of the time still to run


Progress = Callable[[Event], None]


def silent(_: Event) -> None:
    return None


def say(progress: Progress, message: str) -> None:
    progress(Event("message", message=message))
