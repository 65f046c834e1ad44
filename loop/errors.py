"""User errors: bad input that loop explains in one message; never a bug in loop.

`loop` (`loop/cli.py`, `main`) prints a `UserError`'s message and exits with status 2, without a
traceback (`loop --debug ...` shows it). Any other exception that escapes a command is a bug in
loop: it keeps its traceback, with a line saying so, and exits with status 70. A cell that fails
mid-sweep is neither: it is recorded FAILED in the store and the sweep goes on.

Every message names what to fix: the recipe field (`subsets.sizes[2]: ...`), the file and line
(`pool.jsonl:12: ...`), the command-line flag (`--tier: ...`) or the environment variable
(`MLFLOW_TRACKING_URI: ...`), what was expected and what was given.

| error            | raised for                                                     | by |
|------------------|----------------------------------------------------------------|----|
| RecipeError      | the recipe file: YAML, fields, cross-field checks, sizes       | recipe, driver |
| PoolError        | the pool: missing, a folder, binary, unreadable records        | pool |
| DataError        | data that cannot support the recipe (cleaning kept too few)    | clean, tiers |
| ModelError       | a `model.name` that cannot be found or loaded                  | models |
| EvaluatorError   | an evaluator that cannot be imported or called with its params | evals, evaluate |
| StoreError       | a tracking store or server backend URI that cannot be used     | track, server |
| ArgumentError    | a command-line argument the parser could not judge alone       | cli, driver |
| ReviewError      | a review file for `loop review import`                         | review |
| CurveInputError  | the CSV given to `loop curve`                                  | curves |

All but ModelError are ValueErrors too (ModelError is an OSError, as transformers' own
loading errors are), so code that catches the built-in kinds keeps working.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any


class UserError(Exception):
    """Base of every error caused by the user's input rather than by loop."""


class RecipeError(UserError, ValueError):
    """Every problem found in one recipe, one per line."""

    def __init__(self, source: str, errors: list[str]):
        self.source = source
        self.errors = errors
        super().__init__(
            f"{source}: {len(errors)} error(s)\n" + "\n".join(f"  {e}" for e in errors)
        )


class PoolError(UserError, ValueError):
    """The pool could not be loaded; `problems` holds every problem found (`pool.Problem`s)."""

    def __init__(self, problems: Iterable[Any], hint: str = "", *, shown: int = 50):
        self.problems = tuple(problems)
        by_reason = Counter(p.reason for p in self.problems)
        head = f"{len(self.problems)} problem(s) reading the pool (" + ", ".join(
            f"{reason} {n}" for reason, n in by_reason.most_common()
        )
        lines = [p.message for p in self.problems[:shown]]
        if len(self.problems) > shown:
            lines.append(f"... and {len(self.problems) - shown} more")
        if hint:
            lines.append(hint)
        super().__init__(head + ")\n" + "\n".join(f"  {line}" for line in lines))


class DataError(UserError, ValueError):
    """The data, as the recipe cleans and splits it, cannot support the sweep."""


class ModelError(UserError, OSError):
    """`model.name` names no model that can be found or loaded."""


class EvaluatorError(UserError, ValueError):
    """An evaluator that cannot be imported, or not called with the recipe's params."""


class StoreError(UserError, ValueError):
    """A tracking store (or server backend) URI that cannot be used; never shows a password."""


class ArgumentError(UserError, ValueError):
    """A command-line argument that is wrong in a way only the command can tell."""


class ReviewError(UserError, ValueError):
    """A review file that cannot be imported; the message names file and line."""


class CurveInputError(UserError, ValueError):
    """A curve input file that cannot be used; the message names file, line and column."""

    def __init__(self, message: str, *, path: str = "", line: int | None = None, column: str = ""):
        super().__init__(message)
        self.path = path
        self.line = line
        self.column = column
