"""Where records come from: dates, metadata filters (`where`), licenses, and each tier's sources.

Pure functions over Examples and recipe sections; the pool puts the provenance into
meta['source'], meta['license'], meta['date'] and meta['annotator'] (`loop.pool`), and the tiers,
cleaning steps, report and cost table read it from there.

Dates: ISO 8601 (`datetime.fromisoformat`), epoch seconds, or free text read by python-dateutil
(a pandas dependency, so no new install). A date without a timezone is taken as UTC; meta keeps
the normalized ISO form (`2025-03-01`, or `2025-03-01T12:30:00+00:00` with a time).

Licenses: SPDX ids or expressions (`MIT OR Apache-2.0`), compared with the `license-expression`
package (normalized case: `cc-by-4.0` is `CC-BY-4.0`; an OR is allowed when one side is, an AND
when both are); ids it does not know (`LicenseRef-internal`) compare as case-insensitive text.
"""

from __future__ import annotations

import datetime as dt
import difflib
import functools
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from loop.example import Example

PROVENANCE_KEYS = ("source", "license", "date", "annotator")
DATE_BOUNDS = ("after", "before")
UNKNOWN_LICENSE = "unknown"
_UTC = dt.timezone.utc


# ----------------------------------------------------------------------------- dates


def parse_date(value: Any) -> dt.datetime | None:
    """A timezone-aware datetime (UTC when none is given), or None when `value` is not a date."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, dt.datetime):
        out = value
    elif isinstance(value, dt.date):
        out = dt.datetime(value.year, value.month, value.day)
    elif isinstance(value, (int, float)):
        try:
            return dt.datetime.fromtimestamp(float(value), tz=_UTC)
        except (OverflowError, OSError, ValueError):
            return None
    elif isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        try:
            out = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            if text.replace(".", "", 1).isdigit():
                return parse_date(float(text))
            from dateutil import parser as date_parser

            try:
                out = date_parser.parse(text, default=dt.datetime(2000, 1, 1))
            except (ValueError, OverflowError):
                return None
    else:
        return None
    return out.replace(tzinfo=_UTC) if out.tzinfo is None else out.astimezone(_UTC)


def iso_date(when: dt.datetime) -> str:
    """`2025-03-01` for a midnight date, else the full ISO form in UTC."""
    if when.time() == dt.time(0, 0) and when.tzinfo is not None:
        return when.date().isoformat()
    return when.isoformat()


def has_time(value: Any) -> bool:
    return isinstance(value, dt.datetime) or (isinstance(value, str) and "T" in value.strip())


def example_date(ex: Example) -> dt.datetime | None:
    return parse_date(ex.meta.get("date"))


# ----------------------------------------------------------------------------- where


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def check_where(where: Mapping[str, Any], path: str) -> list[str]:
    """Shape errors of a tier's `where` (field path `path`, e.g. `tiers[1].where`)."""
    errors = []
    for key, cond in where.items():
        at = f"{path}.{key}"
        if isinstance(cond, Mapping):
            bad = [k for k in cond if k not in DATE_BOUNDS]
            if bad or not cond:
                errors.append(
                    f"{at}: a mapping takes {', '.join(DATE_BOUNDS)} (dates), got keys {list(cond)}"
                )
                continue
            for bound, value in cond.items():
                if parse_date(value) is None:
                    errors.append(
                        f"{at}.{bound}: expected a date such as 2025-01-01, got {value!r}"
                    )
        elif isinstance(cond, list):
            if not cond or not all(_scalar(v) for v in cond):
                errors.append(f"{at}: expected a non-empty list of values, got {cond!r}")
        elif not _scalar(cond):
            errors.append(f"{at}: expected a value, a list of values or {{after, before}}")
    return errors


def _field_value(ex: Example, key: str) -> Any:
    if key == "format":
        return ex.format
    return ex.meta.get(key)


def _same(a: Any, b: Any) -> bool:
    return a == b or str(a) == str(b)


def matches(ex: Example, where: Mapping[str, Any]) -> bool:
    """Whether `ex` passes every condition of `where` (an empty `where` passes everything).

    `{after: D}` / `{before: D}` compare dates strictly; a bound without a time compares on
    the calendar day (after 2025-01-01 starts on 2025-01-02). A record without the field fails.
    """
    for key, cond in where.items():
        value = _field_value(ex, key)
        if isinstance(cond, Mapping):
            when = parse_date(value)
            if when is None:
                return False
            for bound, raw in cond.items():
                limit = parse_date(raw)
                assert limit is not None  # check_where rejected it
                a, b = (when, limit) if has_time(raw) else (when.date(), limit.date())
                if (bound == "after" and not a > b) or (bound == "before" and not a < b):
                    return False
        elif isinstance(cond, list):
            if not any(_same(value, c) for c in cond):
                return False
        elif value is None or not _same(value, cond):
            return False
    return True


def record_fields(examples: Iterable[Example]) -> dict[str, set[str]]:
    """Every field a `where` can name -> the values records hold (as text, at most 50 kept)."""
    out: dict[str, set[str]] = {"format": set()}
    for ex in examples:
        out["format"].add(ex.format)
        for key, value in ex.meta.items():
            if key in ("flags", "tiers", "held_out") or value is None:
                continue
            seen = out.setdefault(key, set())
            if len(seen) < 50 and _scalar(value):
                seen.add(str(value))
    return out


def where_errors(
    tiers: Sequence[Any], examples: Sequence[Example], *, extra: Mapping[str, Any] | None = None
) -> list[str]:
    """A `where` on a field no record has, or whose value no record holds: errors naming them.

    `tiers`: the recipe's tiers (`tiers[i].where`); `extra`: more field path -> where mappings,
    e.g. {"clean.split.where": {...}}."""
    filters = [(f"tiers[{i}].where", getattr(t, "where", None) or {}) for i, t in enumerate(tiers)]
    filters += [(path, where) for path, where in (extra or {}).items() if where]
    fields = record_fields(examples)
    errors = []
    for path, where in filters:
        for key, cond in where.items():
            at = f"{path}.{key}"
            if key not in fields:
                hint = difflib.get_close_matches(key, list(fields), n=1, cutoff=0.6)
                errors.append(
                    f"{at}: no record has a field {key!r}"
                    + (f" (did you mean {hint[0]!r}?)" if hint else "")
                    + f"; fields the records have: {', '.join(sorted(fields))}"
                )
                continue
            if isinstance(cond, Mapping):
                continue
            wanted = cond if isinstance(cond, list) else [cond]
            held = fields[key]
            if len(held) < 50 and not any(str(w) in held for w in wanted):
                errors.append(
                    f"{at}: no record has {key} = {cond!r}; values found: "
                    + ", ".join(sorted(held)[:20])
                )
    return errors


# ----------------------------------------------------------------------------- licenses


def _licensing():
    from license_expression import get_spdx_licensing

    return get_spdx_licensing()


@functools.lru_cache(maxsize=4096)
def normalize_license(text: str) -> str:
    """The SPDX spelling of a license id or expression (`cc-by-4.0` -> `CC-BY-4.0`)."""
    try:
        return str(_licensing().parse(text, validate=False).render())
    except Exception:  # license-expression raises several types on bad syntax
        return text.strip()


def license_allowed(text: str | None, allow: Sequence[str]) -> bool:
    """Whether a license expression is satisfied by the allowed ids."""
    if not text:
        return False
    return _allowed(str(text), tuple(allow))


@functools.lru_cache(maxsize=4096)
def _allowed(text: str, allow: tuple[str, ...]) -> bool:
    from license_expression import AND, OR, LicenseSymbol

    allowed = {normalize_license(a).lower() for a in allow}
    try:
        expr = _licensing().parse(text, validate=False)
    except Exception:
        return text.strip().lower() in allowed

    def ok(node) -> bool:
        if isinstance(node, LicenseSymbol):
            return str(node.key).lower() in allowed
        if isinstance(node, OR):
            return any(ok(a) for a in node.args)
        if isinstance(node, AND):
            return all(ok(a) for a in node.args)
        return str(node).lower() in allowed

    return expr is not None and ok(expr)


def license_problems(recipe: Any) -> list[str]:
    """The pool sources whose declared license `licenses.allow` does not accept (field paths)."""
    allow = recipe.licenses.allow
    if not allow:
        return []
    accepted = ", ".join(allow)
    out = []
    for i, src in enumerate(recipe.pool.sources):
        if not src.license:
            if recipe.pool.fields.license:
                continue  # each record says; checked when the pool is read
            out.append(
                f"pool.sources[{i}].license ({src.name or src.path}): no license given; "
                f"licenses.allow accepts {accepted}"
            )
        elif not license_allowed(src.license, allow):
            out.append(
                f"pool.sources[{i}].license ({src.name or src.path}): {src.license!r} is not in "
                f"licenses.allow ({accepted})"
            )
    if recipe.pool.paths and not recipe.pool.fields.license:
        out.append(
            f"pool.paths: records read from plain paths have no license; licenses.allow accepts "
            f"{accepted} (give them as pool.sources with a license, or map pool.fields.license)"
        )
    return out


def record_license_problems(recipe: Any, examples: Sequence[Example]) -> list[str]:
    """Records whose own license (pool.fields.license) the allow-list refuses, by license."""
    allow = recipe.licenses.allow
    if not allow or not recipe.pool.fields.license:
        return []
    bad: Counter[str] = Counter()
    first: dict[str, str] = {}
    for ex in examples:
        lic = ex.meta.get("license")
        if not license_allowed(lic, allow):
            key = str(lic) if lic else "(none)"
            bad[key] += 1
            first.setdefault(key, ex.source)
    return [
        f"pool.fields.license: {n} record(s) with license {lic} (e.g. {first[lic]}) are not in "
        f"licenses.allow ({', '.join(allow)})"
        for lic, n in bad.most_common()
    ]


# ----------------------------------------------------------------------------- tiers


@dataclass(frozen=True)
class TierSources:
    """The data behind one tier: examples per source and per license, and the cost per example."""

    tier: str
    n: int
    sources: dict[str, int]
    licenses: dict[str, int]
    cost_per_example: float | None  # mean over the tier's examples; None: some have no cost


def source_costs(pool_cfg: Any) -> dict[str, float]:
    """Source name -> cost per example, from pool.sources."""
    return {
        source_name(s): s.cost_per_example
        for s in pool_cfg.sources
        if s.cost_per_example is not None
    }


def source_name(spec: Any) -> str:
    """A source's name: its `name`, else the file stem of its path."""
    if spec.name:
        return spec.name
    from pathlib import Path

    name = Path(spec.path).name
    for suffix in (".gz", ".bz2", ".zst", ".zstd"):
        name = name.removesuffix(suffix)
    return name.rsplit(".", 1)[0] if "." in name else name


def tier_sources(name: str, pool: Sequence[Example], costs: Mapping[str, float]) -> TierSources:
    srcs = Counter(str(ex.meta.get("source") or "(unnamed)") for ex in pool)
    lics = Counter(
        normalize_license(str(ex.meta["license"])) if ex.meta.get("license") else UNKNOWN_LICENSE
        for ex in pool
    )
    cost = None
    if pool and all(s in costs for s in srcs):
        cost = sum(costs[s] * n for s, n in srcs.items()) / len(pool)
    return TierSources(name, len(pool), dict(srcs.most_common()), dict(lics.most_common()), cost)
