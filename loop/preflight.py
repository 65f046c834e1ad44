"""What can be known about a recipe before anything runs, beyond the recipe file itself.

`loop validate`, `loop plan` and `loop sweep` call `check` first. The recipe's own fields and their
cross-field rules are `loop/recipe.py`'s; here each stage judges its own input without reading
data or loading a model: the pool's files (`pool.check_sources`), the model name
(`models.check_name`) and the tracking store (`server.check_store`); a tier filtered by `where`
is checked against the fields the records have, which reads the pool's records (not cleaned).
Every error is collected into one RecipeError naming the field; notes (a model or dataset that
needs the Hub) are returned for the caller to print.
"""

from __future__ import annotations

from loop.errors import RecipeError
from loop.recipe import Recipe


def check(recipe: Recipe, *, probe_store: bool = True) -> list[str]:
    """Notes about `recipe`; raises RecipeError listing every problem found.

    `probe_store`: ask a tracking server (an http(s) URI) whether it answers.
    """
    from loop import models, pool, server

    errors: list[str] = []
    notes: list[str] = []
    for found_errors, found_notes in (
        pool.check_sources(recipe.pool),
        models.check_name(recipe.model),
    ):
        errors += found_errors
        notes += found_notes
    errors += server.check_store(recipe.tracking.uri, probe=probe_store)
    protected = recipe.clean.copyright.protected
    if "copyright" in recipe.clean.steps and protected is not None:
        from pathlib import Path

        if not Path(protected).is_dir():
            errors.append(
                f"clean.copyright.protected: {protected} is not a folder (expected the folder "
                "of protected reference texts)"
            )
    if recipe.licenses.policy == "warn":
        from loop import provenance

        notes += [f"{p} (licenses.policy: warn)" for p in provenance.license_problems(recipe)]
    filters = any(t.where for t in recipe.tiers) or recipe.clean.split.where
    record_licenses = recipe.licenses.allow and recipe.pool.fields.license
    if not errors and (filters or record_licenses):
        found, found_notes = _record_checks(recipe)
        errors += found
        notes += found_notes
    if errors:
        raise RecipeError(recipe.path or recipe.name, errors)
    return notes


def _record_checks(recipe: Recipe) -> tuple[list[str], list[str]]:
    """A `where` needs the records' fields, a per-record license their licenses: the one check
    here that reads the pool (records only, no cleaning), and only when one of them is asked."""
    from loop import pool, provenance
    from loop.errors import PoolError

    try:
        examples = pool.load_pool(recipe.pool).examples
    except PoolError:
        return [], []  # the pool's own problems are reported when it is read
    errors = provenance.where_errors(
        recipe.tiers, examples, extra={"clean.split.where": recipe.clean.split.where}
    )
    licenses = provenance.record_license_problems(recipe, examples)
    if recipe.licenses.policy == "refuse":
        return errors + licenses, []
    return errors, [f"{p} (licenses.policy: warn)" for p in licenses]
