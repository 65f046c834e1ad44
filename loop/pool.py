"""Read a raw pool (JSONL, JSON, CSV, Parquet, Hugging Face datasets) into canonical Examples.

Every record becomes one `Example` (DESIGN.md, "The canonical example"). Every record that cannot be
read becomes a `Problem` whose message names the file, the line or row, the field and what was
expected. With `on_error: fail` any problem stops the load and all of them are listed; with `skip`
the bad records are left out and counted by reason code. A missing file, a glob that matches
nothing, an unsupported extension or a dataset that cannot be opened is always an error.

Reason codes:
  always errors   missing_file, no_match, not_a_file, unknown_extension, dataset_error, no_input,
                  no_examples
  whole file      empty_file, bad_document, bad_file, missing_column
  one record      not_utf8, bad_json, not_object, bad_row, unknown_format, missing_field, bad_type,
                  empty_prompt, empty_answer, bad_messages, unknown_role, no_final_assistant,
                  bad_date (a date in the field pool.fields.date names that cannot be read),
                  bad_text (a message holding a lone surrogate escape, which UTF-8 cannot write)
"""

from __future__ import annotations

import contextlib
import csv
import gc
import glob
import hashlib
import io
import json
import os
import reprlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, BinaryIO

import msgspec

from loop.errors import PoolError  # defined with every user error
from loop.example import ROLES, Example, Message, content_id
from loop.recipe import FieldMap, PoolConfig, ShareGPTConfig, SourceSpec

Progress = Callable[[str, int], None]
"""progress(file, records read so far), called every PROGRESS_EVERY records and after each file."""

PROGRESS_EVERY = 10_000
SHOWN_PROBLEMS = 50
EXTENSIONS = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
}
# Compressed files: the suffix before the compression suffix names the format (data.jsonl.gz).
COMPRESSIONS = {".gz": "gzip", ".gzip": "gzip", ".bz2": "bz2", ".zst": "zstd", ".zstd": "zstd"}
FATAL_REASONS = frozenset(
    {"missing_file", "no_match", "not_a_file", "unknown_extension", "dataset_error", "no_input"}
)
_BOM = b"\xef\xbb\xbf"
# 1 MiB reads: with the default 8 KiB buffer (one read call per ~16 lines of a typical pool) the
# next line cost twice as much (benchmarks/results/figures/pool_load_100k.txt).
_READ_BUFFER = 1 << 20
_ABSENT = object()
_RAW_RECORDS = "raw records"  # internal format: rows as read, no column check (sample_records)
_repr = reprlib.Repr()
_repr.maxstring = 60
_repr.maxother = 60


@dataclass(frozen=True)
class Problem:
    """One thing that could not be read. `message` starts with `source`."""

    source: str  # "file.jsonl:12", "file.csv:row 3", "file.parquet[7]", "dataset[7]" or "file"
    reason: str  # a reason code (module docstring)
    message: str


@dataclass(frozen=True)
class PoolLoad:
    """What a load produced; nothing read is unaccounted for."""

    examples: tuple[Example, ...]
    problems: tuple[Problem, ...]
    counts_by_format: dict[str, int]  # format -> examples loaded
    skipped_by_reason: dict[str, int]  # reason -> records skipped (a file with none counts once)
    files: tuple[str, ...]  # files (and dataset) read, as shown in sources
    records: int  # records read, good and bad


class _Bad(Exception):
    """A problem found while reading; `records` is how many records it stands for."""

    def __init__(self, reason: str, detail: str, records: int = 1):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.records = records


@dataclass(frozen=True)
class _Source:
    shown: str
    kind: str  # jsonl | json | csv | tsv | parquet | hf
    path: Path | None = None
    compression: str | None = None  # gzip | bz2 | zstd
    spec: SourceSpec | None = None  # pool.sources entry: name, license, date for every record


def _open(path: Path, compression: str | None) -> BinaryIO:
    """The file's bytes, decompressed on the fly (a stream: a large file is never held whole)."""
    if compression == "gzip":
        import gzip

        return gzip.open(path, "rb")  # type: ignore[return-value]
    if compression == "bz2":
        import bz2

        return bz2.open(path, "rb")  # type: ignore[return-value]
    if compression == "zstd":
        import zstandard

        raw = path.open("rb")
        reader = zstandard.ZstdDecompressor().stream_reader(raw, closefd=True)
        return io.BufferedReader(reader)  # type: ignore[arg-type]
    return path.open("rb", buffering=_READ_BUFFER)


def _decompress_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [OSError, EOFError]
    with contextlib.suppress(ImportError):
        import zstandard

        errors.append(zstandard.ZstdError)
    return tuple(errors)


def _kind_of(path: Path) -> tuple[str | None, str | None, str]:
    """(format, compression, suffix shown in errors) from a file name."""
    suffixes = [x.lower() for x in path.suffixes]
    compression = COMPRESSIONS.get(suffixes[-1]) if suffixes else None
    if compression is not None:
        inner = suffixes[-2] if len(suffixes) >= 2 else ""
        kind = EXTENSIONS.get(inner)
        if kind == "parquet":
            kind = None  # Parquet compresses inside the file
        return kind, compression, "".join(suffixes[-2:])
    return EXTENSIONS.get(path.suffix.lower()), None, path.suffix


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def load_pool(
    cfg: PoolConfig, *, base_dir: Path | None = None, progress: Progress | None = None
) -> PoolLoad:
    """Read every file / dataset named by `cfg` into Examples; raises PoolError on problems.

    With `on_error: fail` any problem raises (all of them listed); with `skip` bad records are
    counted in `skipped_by_reason`. A load that yields no example at all always raises.
    """
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    sources, fatal = _resolve(cfg, base)
    if fatal:
        raise PoolError(fatal)
    result = _read(cfg, sources, base, progress, samples=None)
    fatal = [p for p in result.problems if p.reason in FATAL_REASONS]
    if fatal:  # a dataset that cannot be opened is never "skipped"
        raise PoolError(fatal)
    if result.problems and cfg.on_error == "fail":
        raise PoolError(
            result.problems, hint="set pool.on_error: skip to leave these records out (counted)"
        )
    if not result.examples:
        raise PoolError(
            [*result.problems, Problem("pool", "no_examples", "pool: no example could be read")]
        )
    return result


def inspect_paths(
    paths: list[str],
    cfg: PoolConfig | None = None,
    n_samples: int = 3,
    *,
    base_dir: Path | None = None,
) -> PoolLoad:
    """Read `paths` (or `cfg`'s sources when `paths` is empty) and report without raising.

    `examples` holds the first `n_samples` normalized examples of each format; `counts_by_format`
    and `problems` cover every record. Missing files are problems here, not exceptions.
    """
    cfg = cfg or PoolConfig()
    if paths:
        cfg = replace(cfg, paths=tuple(paths), hf_dataset=None)
    cfg = replace(cfg, on_error="skip")
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    sources, fatal = _resolve(cfg, base)
    result = _read(cfg, sources, base, None, samples=n_samples)
    if not fatal:
        return result
    skipped = Counter(result.skipped_by_reason)
    skipped.update(p.reason for p in fatal)
    return replace(result, problems=(*fatal, *result.problems), skipped_by_reason=dict(skipped))


def sample_records(
    paths: list[str], n: int = 200, *, base_dir: Path | None = None
) -> tuple[list[tuple[str, dict]], list[Problem]]:
    """Up to `n` raw records (source, record) from each file, as read, before any field mapping;
    the problems met on the way (a missing file, an unreadable line) are returned, not raised."""
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    cfg = PoolConfig(paths=tuple(paths), on_error="skip")
    sources, problems = _resolve(cfg, base)
    out: list[tuple[str, dict]] = []
    for src in sources:
        items = _iter_source(src, replace(cfg, format=_RAW_RECORDS), base)
        taken = 0
        try:
            for where, value in items:
                if isinstance(value, _Bad):
                    problems.append(Problem(where, value.reason, f"{where}: {value.detail}"))
                    continue
                if isinstance(value, dict):
                    out.append((where, value))
                    taken += 1
                if taken >= n:
                    break
        finally:
            items.close()
    return out, problems


# Bytes read from the start of each file by `check_sources`: enough to tell text from binary.
_SNIFF_BYTES = 65536


def check_sources(cfg: PoolConfig, *, base_dir: Path | None = None) -> tuple[list[str], list[str]]:
    """(errors, notes) about the pool's sources, found without reading it whole.

    Errors: a path or glob that finds no file, a folder, an unsupported extension, a file that
    cannot be opened, an empty file, a binary file where text is expected (a NUL byte or bytes
    that are not UTF-8 in its first 64 KB), a Parquet file without the Parquet magic bytes.
    Notes: a dataset name that is not a local folder (it needs the Hugging Face Hub).
    """
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    sources, fatal = _resolve(cfg, base)
    index = {pattern: f"pool.paths[{i}]" for i, pattern in enumerate(cfg.paths)}
    index.update({s.path: f"pool.sources[{i}].path" for i, s in enumerate(cfg.sources)})
    errors: list[str] = []

    def field(shown: str) -> str:
        return index.get(shown, "pool.paths")

    for p in fatal:
        errors.append(f"{field(p.source) if p.reason != 'no_input' else 'pool'}: {p.message}")
    notes: list[str] = []
    for src in sources:
        if src.kind == "hf":
            local = Path(os.path.expanduser(src.shown))
            local = local if local.is_absolute() else base / local
            if not local.exists():
                notes.append(
                    f"pool.hf_dataset: {src.shown!r} is not a local folder; it needs the "
                    "Hugging Face Hub (downloaded on first use)"
                )
            continue
        problem, fatal_problem = _sniff(src)
        if problem and (fatal_problem or cfg.on_error == "fail"):
            errors.append(f"{field(src.shown)}: {src.shown}: {problem}")
        elif problem:
            notes.append(f"{field(src.shown)}: {src.shown}: {problem}; those records are skipped")
    return errors, notes


def _sniff(src: _Source) -> tuple[str | None, bool]:
    """(why `src` cannot be read as a pool file of its kind, judged from its first bytes, or
    None; whether that stops the whole file rather than some of its records)."""
    try:
        with _open(src.path or Path(""), src.compression) as f:  # decompressed: the text inside
            head = f.read(_SNIFF_BYTES)
    except _decompress_errors() as exc:
        if src.compression is not None and not isinstance(exc, FileNotFoundError):
            return f"not a readable {src.compression} file ({type(exc).__name__}: {exc})", True
        return f"cannot be read ({getattr(exc, 'strerror', None) or exc})", True
    if not head:
        return "empty file; expected records", True
    if src.kind == "parquet":
        ok = head[:4] == b"PAR1"
        return (None if ok else "not a Parquet file (no PAR1 magic bytes at the start)"), True
    if b"\x00" in head:
        return f"binary file (NUL bytes); expected {src.kind.upper()} text in UTF-8", True
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        cut = len(head) == _SNIFF_BYTES and exc.start >= len(head) - 4  # a character cut in two
        if not cut:
            line = head.count(b"\n", 0, exc.start) + 1
            return (
                f"line {line}: byte 0x{head[exc.start]:02x} is not UTF-8; expected UTF-8 text",
                src.kind == "json",  # one document: the whole file fails; else that record
            )
    return None, False


def pool_digest(examples: Iterable[Example]) -> str:
    """sha256 (hex) over the sorted example ids: the same pool in any order gives the same digest."""
    blob = "\n".join(sorted(ex.id for ex in examples))
    return hashlib.sha256(blob.encode("ascii")).hexdigest()


def count_records(cfg: PoolConfig, *, base_dir: Path | None = None) -> int:
    """Records in the pool (good or bad, capped by `limit`), without normalizing them."""
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    sources, fatal = _resolve(cfg, base)
    if fatal:
        raise PoolError(fatal)
    total = 0
    for src in sources:
        if src.kind == "jsonl" and src.path is not None:
            try:
                with _open(src.path, src.compression) as f:
                    total += sum(1 for raw in f if raw and not raw.isspace())
            except _decompress_errors():
                pass  # the records read before the damage count; load_pool reports it
        elif src.kind == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            # An unreadable file holds no records; load_pool reports it.
            with contextlib.suppress(pa.ArrowException, OSError):
                total += pq.ParquetFile(src.path).metadata.num_rows
        elif src.kind == "hf":
            try:
                total += len(_open_hf(cfg, base))
            except _Bad as bad:
                raise PoolError(
                    [Problem(src.shown, bad.reason, f"{src.shown}: {bad.detail}")]
                ) from None
        else:
            for _src, value in _iter_source(src, cfg, base):
                total += value.records if isinstance(value, _Bad) else 1
        if cfg.limit is not None and total >= cfg.limit:
            return cfg.limit
    return total


# --------------------------------------------------------------------------------------------
# Finding the sources
# --------------------------------------------------------------------------------------------


def _stem(path: Path) -> str:
    from loop.provenance import source_name

    return source_name(SourceSpec(path=path.name))


def _has_magic(pattern: str) -> bool:
    return any(c in pattern for c in "*?[")


def _resolve(cfg: PoolConfig, base: Path) -> tuple[list[_Source], list[Problem]]:
    """Expand paths and globs against `base`; every problem here is fatal."""
    sources: list[_Source] = []
    fatal: list[Problem] = []
    seen: set[Path] = set()
    expected = (
        "expected a file or glob of "
        + ", ".join(sorted(set(EXTENSIONS)))
        + " files (JSONL, JSON, CSV, TSV also as .gz, .bz2, .zst)"
    )
    patterns = [(p, None) for p in cfg.paths] + [(s.path, s) for s in cfg.sources]
    for pattern, spec in patterns:
        expanded = os.path.expanduser(pattern)
        if _has_magic(expanded):
            if os.path.isabs(expanded):
                found = [(Path(m), m) for m in sorted(glob.glob(expanded, recursive=True))]
            else:
                matches = sorted(glob.glob(expanded, root_dir=base, recursive=True))
                found = [(base / m, m) for m in matches]
            found = [(full, shown) for full, shown in found if full.is_file()]
            if not found:
                fatal.append(
                    Problem(
                        pattern,
                        "no_match",
                        f"{pattern}: no file matches (searched in {base}); {expected}",
                    )
                )
                continue
        else:
            full = Path(expanded) if os.path.isabs(expanded) else base / expanded
            if not full.exists():
                fatal.append(
                    Problem(
                        pattern,
                        "missing_file",
                        f"{pattern}: file not found (looked for {full}); {expected}",
                    )
                )
                continue
            if not full.is_file():
                fatal.append(
                    Problem(pattern, "not_a_file", f"{pattern}: is a directory; {expected}")
                )
                continue
            found = [(full, pattern)]
        for full, shown in found:
            key = full.resolve()
            if key in seen:
                continue
            seen.add(key)
            kind, compression, suffix = _kind_of(full)
            if kind is None:
                fatal.append(
                    Problem(
                        shown,
                        "unknown_extension",
                        f"{shown}: unsupported file type {suffix or '(no extension)'!r}; {expected}",
                    )
                )
                continue
            own = spec
            if spec is not None and not spec.name and _has_magic(expanded):
                own = replace(spec, name=_stem(full))  # each file of a glob names itself
            sources.append(_Source(shown, kind, full, compression, own))
    if cfg.hf_dataset:
        sources.append(_Source(cfg.hf_dataset, "hf"))
    if not cfg.paths and not cfg.sources and not cfg.hf_dataset:
        fatal.append(
            Problem(
                "pool", "no_input", "pool: give `paths` (files or globs), `sources` or `hf_dataset`"
            )
        )
    return sources, fatal


# --------------------------------------------------------------------------------------------
# Reading and normalizing
# --------------------------------------------------------------------------------------------


def _read(
    cfg: PoolConfig,
    sources: list[_Source],
    base: Path,
    progress: Progress | None,
    samples: int | None,
) -> PoolLoad:
    """Read every source; `samples` keeps only the first n examples of each format."""
    with _collector_paused():
        return _read_sources(cfg, sources, base, progress, samples)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off while a pool loads; what the load made filed as old.

    Parsed records and Examples hold no reference cycles, so the collector finds nothing to free,
    yet each of its passes walks every object still alive and the Examples pile up: with it on, a
    100k-record load spent half its time in it. Switching it back on would start one pass over
    everything made meanwhile (0.28 s per 100k records; both in benchmarks/results/figures/pool_load_100k.txt);
    freeze + unfreeze files those objects in the oldest generation without that pass. Skipped
    where the program froze objects of its own, which unfreeze would thaw. The switch is one per
    process, so other threads' garbage waits for the end of the load too.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        if gc.get_freeze_count() == 0:
            gc.freeze()
            gc.unfreeze()
        gc.enable()


def _read_sources(
    cfg: PoolConfig,
    sources: list[_Source],
    base: Path,
    progress: Progress | None,
    samples: int | None,
) -> PoolLoad:
    examples: list[Example] = []
    problems: list[Problem] = []
    counts: Counter[str] = Counter()
    skipped: Counter[str] = Counter()
    files: list[str] = []
    records = 0
    limit = cfg.limit
    for src in sources:
        if limit is not None and records >= limit:
            break
        tabular = src.kind in ("csv", "tsv", "parquet", "hf")
        fm = cfg.fields
        mapped = (fm.source, fm.license, fm.date, fm.annotator)
        # provenance to add: a source entry or a mapped field (most pools have neither)
        provenance = src.spec is not None or any(name is not None for name in mapped)
        items = _iter_source(src, cfg, base)
        files.append(src.shown)
        try:
            for where, value in items:
                if limit is not None and records >= limit:
                    break
                if isinstance(value, _Bad):
                    records += value.records
                    skipped[value.reason] += max(value.records, 1)
                    problems.append(Problem(where, value.reason, f"{where}: {value.detail}"))
                    continue
                records += 1
                try:
                    if not isinstance(value, dict):
                        raise _Bad(
                            "not_object",
                            f"expected a JSON object (one record), got {_kind(value)} "
                            f"{_repr.repr(value)}",
                        )
                    ex = _to_example(value, where, cfg, tabular)
                    if provenance:
                        ex = _with_provenance(ex, value, cfg, src)
                except _Bad as bad:
                    skipped[bad.reason] += 1
                    problems.append(Problem(where, bad.reason, f"{where}: {bad.detail}"))
                    continue
                counts[ex.format] += 1
                if samples is None or counts[ex.format] <= samples:
                    examples.append(ex)
                if progress is not None and records % PROGRESS_EVERY == 0:
                    progress(src.shown, records)
        finally:
            items.close()
        if progress is not None:
            progress(src.shown, records)
    return PoolLoad(
        examples=tuple(examples),
        problems=tuple(problems),
        counts_by_format=dict(counts),
        skipped_by_reason=dict(skipped),
        files=tuple(files),
        records=records,
    )


def _iter_source(src: _Source, cfg: PoolConfig, base: Path) -> Iterator[tuple[str, Any]]:
    """(source, record) pairs; a `_Bad` in place of the record is a problem found reading."""
    if src.kind == "hf" or src.path is None:
        return _read_hf(src.shown, cfg, base)
    if src.kind == "jsonl":
        return _read_jsonl(src.path, src.shown, src.compression)
    if src.kind == "json":
        return _read_json(src.path, src.shown, src.compression)
    if src.kind == "parquet":
        return _read_parquet(src.path, src.shown, cfg)
    return _read_csv(src.path, src.shown, cfg, "\t" if src.kind == "tsv" else ",", src.compression)


def _read_jsonl(
    path: Path, shown: str, compression: str | None = None
) -> Iterator[tuple[str, Any]]:
    with _open(path, compression) as f:
        yield from _jsonl_lines(f, shown, compression)


def _damaged(compression: str | None, exc: BaseException) -> str:
    return f"the {compression} stream is damaged from here on ({type(exc).__name__}: {exc})"


def _lines(f: BinaryIO, shown: str, compression: str | None) -> Iterator[tuple[int, bytes | _Bad]]:
    """(line number, bytes) per line; a damaged compressed stream ends with one `_Bad`."""
    if compression is None:  # a plain file's read errors propagate: no generator in between
        return enumerate(f, 1)
    return _stream_lines(f, compression)


def _stream_lines(f: BinaryIO, compression: str) -> Iterator[tuple[int, bytes | _Bad]]:
    lineno = 0
    it = iter(f)
    while True:
        try:
            raw = next(it)
        except StopIteration:
            return
        except _decompress_errors() as exc:
            yield lineno + 1, _Bad("bad_file", _damaged(compression, exc), 0)
            return
        lineno += 1
        yield lineno, raw


def _jsonl_lines(
    f: BinaryIO, shown: str, compression: str | None = None
) -> Iterator[tuple[str, Any]]:
    """One record per line, streamed: a 50 MB line is held once as bytes and once as text."""
    any_line = False
    for lineno, raw in _lines(f, shown, compression):
        if isinstance(raw, _Bad):
            yield f"{shown}:{lineno}", raw
            return
        if lineno == 1 and raw.startswith(_BOM):
            raw = raw[3:]
        if not raw or raw.isspace():
            continue
        any_line = True
        where = f"{shown}:{lineno}"
        try:
            # msgspec reads a line about 4x faster than decode + json.loads (benchmarks/results/
            # figures/pool_load_100k.txt) and gives the same values, ints of any size included;
            # what it refuses (bad JSON, bad UTF-8, NaN, lone surrogates) goes to the json module
            # below, which reads it or says what is wrong.
            value = msgspec.json.decode(raw)
        except (msgspec.DecodeError, RecursionError):
            pass
        else:
            yield where, value
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield where, _Bad("not_utf8", _utf8_detail(raw, exc))
            continue
        try:
            yield where, json.loads(text)
        except json.JSONDecodeError as exc:
            yield (
                where,
                _Bad(
                    "bad_json",
                    f"not valid JSON ({exc.msg} at column {exc.colno}); expected one JSON object per line",
                ),
            )
    if not any_line:
        yield shown, _Bad("empty_file", "the file is empty; expected one JSON object per line", 0)


def _read_json(path: Path, shown: str, compression: str | None = None) -> Iterator[tuple[str, Any]]:
    try:
        with _open(path, compression) as f:
            data = f.read()
    except _decompress_errors() as exc:
        if compression is None:
            raise
        yield shown, _Bad("bad_file", _damaged(compression, exc), 0)
        return
    if data.startswith(_BOM):
        data = data[3:]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        yield f"{shown}:{line}", _Bad("not_utf8", _utf8_detail(data, exc, line_start=True), 0)
        return
    expected = 'expected an array of records or {"data": [...]}'
    if not text.strip():
        yield shown, _Bad("empty_file", f"the file is empty; {expected}", 0)
        return
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data" and text.lstrip().startswith("{"):
            del text  # one object per line under a .json name: JSON Lines
            yield from _jsonl_lines(io.BytesIO(data), shown)
            return
        yield (
            f"{shown}:{exc.lineno}",
            _Bad("bad_json", f"not valid JSON ({exc.msg} at column {exc.colno}); {expected}", 0),
        )
        return
    del text, data
    if isinstance(doc, dict) and isinstance(doc.get("data"), list):
        items = doc["data"]
    elif isinstance(doc, list):
        items = doc
    else:
        got = f"an object with keys {sorted(doc)[:10]}" if isinstance(doc, dict) else _kind(doc)
        yield shown, _Bad("bad_document", f"{expected}, got {got}", 0)
        return
    if not items:
        yield shown, _Bad("empty_file", f"the file holds no records; {expected}", 0)
        return
    for i, item in enumerate(items):
        yield f"{shown}[{i}]", item


def _read_csv(
    path: Path, shown: str, cfg: PoolConfig, delimiter: str, compression: str | None = None
) -> Iterator[tuple[str, Any]]:
    """One record per row; `row N` is the file line the row starts on (the header is line 1)."""
    # Answers longer than csv's default 128 KiB field limit are legitimate.
    csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))
    bad_lines: dict[int, str] = {}

    damage: list[_Bad] = []
    with _open(path, compression) as f:

        def lines() -> Iterator[str]:
            # Bytes split on b"\n" only, so CRLF and quoted newlines reach csv as with newline="".
            for lineno, raw in _lines(f, shown, compression):
                if isinstance(raw, _Bad):
                    damage.append(raw)
                    return
                if lineno == 1 and raw.startswith(_BOM):
                    raw = raw[3:]
                try:
                    yield raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    bad_lines[lineno] = _utf8_detail(raw, exc)
                    yield raw.decode("utf-8", "replace")

        reader = csv.reader(lines(), delimiter=delimiter)
        prev, rows = 0, 0
        header: list[str] | None = None
        column_problem: str | None = None
        try:
            for row in reader:
                start, prev = prev + 1, reader.line_num
                if not row:
                    continue
                bad = next((bad_lines[n] for n in range(start, prev + 1) if n in bad_lines), None)
                if header is None:
                    if bad is not None:
                        yield f"{shown}:row {start}", _Bad("not_utf8", f"header: {bad}", 0)
                        return
                    header = [h.strip() for h in row]
                    column_problem = _column_problem(header, cfg)
                    continue
                rows += 1
                if column_problem is not None:
                    continue  # counted; the file is reported once below
                where = f"{shown}:row {start}"
                if bad is not None:
                    yield where, _Bad("not_utf8", bad)
                elif len(row) != len(header):
                    yield (
                        where,
                        _Bad(
                            "bad_row",
                            f"expected {len(header)} columns as in the header, got {len(row)}",
                        ),
                    )
                else:
                    yield where, dict(zip(header, row, strict=True))
        except csv.Error as exc:
            yield f"{shown}:row {prev + 1}", _Bad("bad_row", f"unreadable CSV from here on ({exc})")
            return
        if damage:
            yield f"{shown}:row {prev + 1}", damage[0]
            return
        if header is None:
            yield (
                shown,
                _Bad("empty_file", "the file is empty; expected a header row and data rows", 0),
            )
        elif column_problem is not None:
            yield f"{shown}:row 1", _Bad("missing_column", column_problem, rows)
        elif rows == 0:
            yield (
                shown,
                _Bad("empty_file", "no data rows under the header; expected one record per row", 0),
            )


def _read_parquet(path: Path, shown: str, cfg: PoolConfig) -> Iterator[tuple[str, Any]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        yield shown, _Bad("bad_file", f"not a readable Parquet file ({exc})", 0)
        return
    n = pf.metadata.num_rows
    if n == 0:
        yield shown, _Bad("empty_file", "the file holds no rows; expected one record per row", 0)
        return
    column_problem = _column_problem(pf.schema_arrow.names, cfg)
    if column_problem is not None:
        yield shown, _Bad("missing_column", column_problem, n)
        return
    i = 0
    try:
        for batch in pf.iter_batches(batch_size=2048):
            for row in batch.to_pylist():
                yield f"{shown}[{i}]", row
                i += 1
    except (pa.ArrowException, OSError) as exc:
        yield f"{shown}[{i}]", _Bad("bad_file", f"unreadable from this row on ({exc})", n - i)


def _open_hf(cfg: PoolConfig, base: Path) -> Any:
    """The `datasets.Dataset` named by cfg: a save_to_disk folder, or a name for load_dataset."""
    import datasets

    name = cfg.hf_dataset or ""
    local = Path(os.path.expanduser(name))
    local = local if local.is_absolute() else base / local
    try:
        if local.is_dir() and (
            (local / "state.json").is_file() or (local / "dataset_dict.json").is_file()
        ):
            ds = datasets.load_from_disk(str(local))
            if isinstance(ds, datasets.DatasetDict):
                if cfg.hf_split not in ds:
                    raise _Bad(
                        "dataset_error",
                        f"hf_split: expected one of {sorted(ds)}, got {cfg.hf_split!r}",
                        0,
                    )
                ds = ds[cfg.hf_split]
            return ds
        target = str(local) if local.exists() else name
        return datasets.load_dataset(target, cfg.hf_config, split=cfg.hf_split)
    except _Bad:
        raise
    except Exception as exc:  # the hub, the network and the loaders raise many kinds
        raise _Bad(
            "dataset_error",
            f"cannot open dataset (config {cfg.hf_config!r}, split {cfg.hf_split!r}): "
            f"{type(exc).__name__}: {exc}",
            0,
        ) from exc


def _read_hf(name: str, cfg: PoolConfig, base: Path) -> Iterator[tuple[str, Any]]:
    try:
        ds = _open_hf(cfg, base)
    except _Bad as bad:
        yield name, bad
        return
    if len(ds) == 0:
        yield name, _Bad("empty_file", f"split {cfg.hf_split!r} holds no rows", 0)
        return
    cols = list(ds.column_names)
    column_problem = _column_problem(cols, cfg)
    if column_problem is not None:
        yield name, _Bad("missing_column", column_problem, len(ds))
        return
    i = 0
    for batch in ds.iter(batch_size=1000):
        for values in zip(*(batch[c] for c in cols), strict=True):
            yield f"{name}[{i}]", dict(zip(cols, values, strict=True))
            i += 1


def _column_problem(columns: list[str], cfg: PoolConfig) -> str | None:
    """A table whose header cannot hold any record of the wanted format(s)."""
    if cfg.format == _RAW_RECORDS:
        return None
    fm = cfg.fields
    need = {
        "instruction": (fm.instruction, fm.output),
        "chat": (fm.messages,),
        "completion": (fm.prompt, fm.completion),
        "sharegpt": (fm.conversations,),
    }
    formats = list(need) if cfg.format == "auto" else [cfg.format]
    have = set(columns)
    if any(all(c in have for c in need[f]) for f in formats):
        return None
    wanted = " or ".join(" + ".join(f"`{c}`" for c in need[f]) + f" ({f} format)" for f in formats)
    return f"missing columns: expected {wanted}; the header has {list(columns)}"


def _has(rec: dict, key: str) -> bool:
    value = rec.get(key)
    return value is not None and not (isinstance(value, str) and value == "")


def _detect(rec: dict, fm: FieldMap) -> str | None:
    if _has(rec, fm.messages):  # beside conversations too
        return "chat"
    if _has(rec, fm.conversations):
        return "sharegpt"
    if _has(rec, fm.instruction) or _has(rec, fm.output):
        return "instruction"
    if _has(rec, fm.prompt) or _has(rec, fm.completion):
        return "completion"
    return None


def _to_example(rec: dict, where: str, cfg: PoolConfig, tabular: bool) -> Example:
    fm = cfg.fields
    fmt = cfg.format if cfg.format != "auto" else _detect(rec, fm)
    if fmt is None:
        raise _Bad(
            "unknown_format",
            f"cannot tell the record's format: expected field `{fm.messages}` (chat), "
            f"`{fm.conversations}` (ShareGPT), `{fm.instruction}` + `{fm.output}` (instruction) "
            f"or `{fm.prompt}` + `{fm.completion}` (completion); got fields {list(rec)[:12]} "
            "(map yours with pool.fields, or run `loop init` on the file)",
        )
    used: tuple[str, ...]
    if fmt == "sharegpt":
        messages = _sharegpt_messages(
            rec.get(fm.conversations, _ABSENT), fm.conversations, cfg, tabular
        )
        messages = _with_system(messages, rec, fm, cfg)
        _require_final_answer(messages, fm.conversations)
        used, fmt = (fm.conversations, fm.system), "chat"
    elif fmt == "chat":
        open_ended = fm.answer is not None and rec.get(fm.answer) is not None
        messages = _chat_messages(rec.get(fm.messages, _ABSENT), fm.messages, tabular)
        if open_ended:
            assert fm.answer is not None
            if messages[-1].role == "assistant":
                raise _Bad(
                    "bad_messages",
                    f"field `{fm.messages}` ends with an assistant turn and field `{fm.answer}` "
                    "gives an answer too; expected one of the two",
                )
            answer = _text(rec, fm.answer, "the answer", required=True, numbers=True)
            messages.append(Message("assistant", answer))
        elif fm.answer is not None and messages[-1].role != "assistant":
            got = "null" if fm.answer in rec else "no such field"
            raise _Bad(
                "missing_field",
                f"field `{fm.answer}`: expected the answer to the messages in `{fm.messages}`, got {got}",
            )
        _require_final_answer(messages, fm.messages, answer_field=fm.answer)
        if cfg.system_prompt and messages[0].role != "system":
            messages.insert(0, Message("system", cfg.system_prompt))
        used = (fm.messages,) if fm.answer is None else (fm.messages, fm.answer)
    elif fmt == "completion" and isinstance(_maybe_json(rec.get(fm.prompt), tabular), list):
        # TRL's conversational prompt-completion: the prompt is a list of messages and the
        # completion a list of (assistant) messages or a string.
        messages = _chat_messages(_maybe_json(rec[fm.prompt], tabular), fm.prompt, False)
        if messages[-1].role == "assistant":
            raise _Bad(
                "bad_messages",
                f"field `{fm.prompt}[{len(messages) - 1}].role`: expected the prompt to end before "
                "the answer (a system or user turn), got 'assistant'",
            )
        completion = _maybe_json(rec.get(fm.completion, _ABSENT), tabular)
        if isinstance(completion, list):
            turns = _chat_messages(completion, fm.completion, False)
            if any(m.role != "assistant" for m in turns):
                i = next(i for i, m in enumerate(turns) if m.role != "assistant")
                raise _Bad(
                    "bad_messages",
                    f"field `{fm.completion}[{i}].role`: expected 'assistant' (the completion), "
                    f"got {turns[i].role!r}",
                )
            messages += turns
        else:
            messages.append(
                Message("assistant", _text(rec, fm.completion, "the completion", required=True))
            )
        messages = _with_system(messages, rec, fm, cfg)
        _require_final_answer(messages, fm.completion)
        used, fmt = (fm.prompt, fm.completion, fm.system), "chat"
    else:
        if fmt == "instruction":
            user_key, answer_key = fm.instruction, fm.output
            user = _text(rec, user_key, "the instruction", required=True)
            extra = _text(rec, fm.input, "the optional input", required=False)
            if extra.strip():
                user = f"{user}\n\n{extra}"
            used = (fm.instruction, fm.input, fm.output, fm.system)
        else:
            user_key, answer_key = fm.prompt, fm.completion
            user = _text(rec, user_key, "the prompt", required=True)
            used = (fm.prompt, fm.completion, fm.system)
        answer = _text(rec, answer_key, "the answer", required=True, numbers=True)
        if not user.strip():
            raise _Bad(
                "empty_prompt", f"field `{user_key}`: expected a non-empty string, got {user!r}"
            )
        if not answer.strip():
            raise _Bad(
                "empty_answer", f"field `{answer_key}`: expected a non-empty answer, got {answer!r}"
            )
        system = _text(rec, fm.system, "the system prompt", required=False)
        if not system.strip():
            system = cfg.system_prompt or ""
        messages = [Message("user", user), Message("assistant", answer)]
        if system:
            messages.insert(0, Message("system", system))
    task = cfg.task_field
    meta = dict(rec)  # less the fields used and the task label, in the record's order
    for key in used:
        meta.pop(key, None)
    meta.pop(task, None)
    if task is not None and rec.get(task) is not None:
        meta["task"] = rec[task]
    if tabular:
        meta = {k: _plain(v) for k, v in meta.items()}
    msgs = tuple(messages)  # make_example, less the copy of the meta dict made just above
    try:
        cid = content_id(msgs)
    except UnicodeEncodeError as exc:  # a JSON escape such as "\ud800" without its pair
        raise _Bad("bad_text", _surrogate_detail(msgs, used, exc)) from None
    return Example(cid, msgs, where, fmt, meta)


def _surrogate_detail(msgs: tuple[Message, ...], used: tuple[str, ...], exc: Exception) -> str:
    """Which message holds the character UTF-8 cannot write, and where in it."""
    for i, m in enumerate(msgs):
        for j, ch in enumerate(m.content):
            if "\ud800" <= ch <= "\udfff":
                return (
                    f"message {i} ({m.role}, from field `{'`/`'.join(k for k in used if k)}`) "
                    f"holds a lone surrogate {ch!r} at character {j}: not Unicode text; expected "
                    "a JSON escape \\ud800-\\udbff followed by its low half, or the character itself"
                )
    return f"a message cannot be written as UTF-8 ({exc})"


def _with_provenance(ex: Example, rec: dict, cfg: PoolConfig, src: _Source) -> Example:
    """meta['source'/'license'/'date'/'annotator']: a record's mapped field, else its source's.

    A mapped field (pool.fields.date: created_at) moves to the canonical key; a date is
    normalized to ISO 8601 in UTC, and a mapped date that cannot be read is a bad record.
    """
    from loop import provenance

    fm = cfg.fields
    meta = dict(ex.meta)
    spec = src.spec
    if spec is not None:  # the recipe's word beats a record field that happens to share the name
        given = {"source": provenance.source_name(spec)}
        given.update({k: getattr(spec, k) for k in ("license", "date", "annotator")})
        for key, value in given.items():
            if value is None:
                continue
            if key in meta and meta[key] != value and getattr(fm, key) is None:
                meta[f"record_{key}"] = meta[key]
            meta[key] = value
    for key in provenance.PROVENANCE_KEYS:
        field_name = getattr(fm, key)
        if field_name is None:
            continue
        value = rec.get(field_name)
        if field_name != key:
            meta.pop(field_name, None)
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        if key == "date":
            when = provenance.parse_date(value)
            if when is None:
                raise _Bad(
                    "bad_date",
                    f"field `{field_name}`: expected a date (ISO 8601 such as 2025-03-01, epoch "
                    f"seconds, or text such as 'March 1, 2025'), got {_repr.repr(value)}",
                )
            value = provenance.iso_date(when)
        meta[key] = _plain(value) if not isinstance(value, str) else value
    if "date" in meta and (spec is not None and spec.date is not None or fm.date is not None):
        when = provenance.parse_date(meta["date"])
        if when is not None:
            meta["date"] = provenance.iso_date(when)
    if meta == ex.meta:
        return ex
    return replace(ex, meta=meta)


def _maybe_json(value: Any, tabular: bool) -> Any:
    """A CSV cell holding a list as JSON text, parsed; anything else as it is."""
    if tabular and isinstance(value, str) and value.lstrip().startswith("["):
        with contextlib.suppress(json.JSONDecodeError):
            return json.loads(value)
    return value


def _with_system(
    messages: list[Message], rec: dict, fm: FieldMap, cfg: PoolConfig
) -> list[Message]:
    """A `system` field beside the turns (ShareGPT), else the recipe's system_prompt, first."""
    if messages and messages[0].role == "system":
        return messages
    system = _text(rec, fm.system, "the system prompt", required=False)
    if not system.strip():
        system = cfg.system_prompt or ""
    return [Message("system", system), *messages] if system else messages


def _require_final_answer(
    messages: list[Message], key: str, *, answer_field: str | None = None
) -> None:
    last = messages[-1]
    if last.role != "assistant":
        hint = (
            ""
            if answer_field
            else "; if the answer sits in another field, name it in pool.fields.answer"
        )
        raise _Bad(
            "no_final_assistant",
            f"field `{key}`: expected the conversation to end with an assistant turn, "
            f"the last turn ({key}[{len(messages) - 1}]) is {last.role!r}{hint}",
        )
    if not last.content.strip():
        raise _Bad(
            "empty_answer",
            f"field `{key}[{len(messages) - 1}].content`: expected a non-empty answer, got {last.content!r}",
        )


def _text(rec: dict, key: str, what: str, *, required: bool, numbers: bool = False) -> str:
    value = rec.get(key)
    if isinstance(value, str):  # the common case first
        return value
    if value is None:
        if required:
            got = "null" if key in rec else "no such field"
            raise _Bad("missing_field", f"field `{key}`: expected a string ({what}), got {got}")
        return ""
    if numbers and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)  # a class label given as a number
    if not isinstance(value, str):
        raise _Bad(
            "bad_type",
            f"field `{key}`: expected a string ({what}), got {_kind(value)} {_repr.repr(value)}",
        )
    return value


def _content(content: Any, at: str) -> str:
    """A message's text: a string, or OpenAI-style parts [{"type": "text", "text": ...}, ...]."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and content:
        texts = []
        for j, part in enumerate(content):
            where = f"{at}[{j}]"
            if not isinstance(part, dict):
                raise _Bad(
                    "bad_type",
                    f"field `{where}`: expected a content part {{type, text}}, got {_kind(part)} "
                    f"{_repr.repr(part)}",
                )
            kind = part.get("type", "text")
            if kind not in ("text", "input_text", "output_text"):
                raise _Bad(
                    "bad_type",
                    f"field `{where}.type`: expected 'text' (only text parts are read), got "
                    f"{_repr.repr(kind)}",
                )
            text = part.get("text")
            if not isinstance(text, str):
                got = "nothing" if text is None else f"{_kind(text)} {_repr.repr(text)}"
                raise _Bad("bad_type", f"field `{where}.text`: expected a string, got {got}")
            texts.append(text)
        return "\n".join(texts)
    raise _Bad(
        "bad_type",
        f"field `{at}`: expected a string or a list of text parts, got {_kind(content)} "
        f"{_repr.repr(content)}",
    )


def _turns(value: Any, key: str, tabular: bool) -> list[Any]:
    shape = "a non-empty list of {role, content} objects"
    if value is _ABSENT or value is None:
        got = "no such field" if value is _ABSENT else "null"
        raise _Bad("missing_field", f"field `{key}`: expected {shape}, got {got}")
    if tabular and isinstance(value, str):  # CSV cells hold the list as JSON text
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise _Bad(
                "bad_messages",
                f"field `{key}`: expected {shape} as JSON text, got invalid JSON ({exc.msg})",
            ) from None
    if not isinstance(value, list) or not value:
        raise _Bad(
            "bad_messages",
            f"field `{key}`: expected {shape}, got {_kind(value)} {_repr.repr(value)}",
        )
    return value


def _chat_messages(value: Any, key: str, tabular: bool) -> list[Message]:
    """{role, content} turns as Messages; the caller checks how the conversation ends."""
    out: list[Message] = []
    for i, m in enumerate(_turns(value, key, tabular)):
        if isinstance(m, dict):  # the common turn, read without naming its fields
            role, content = m.get("role"), m.get("content")
            if isinstance(content, str) and role in ROLES:
                out.append(Message(role, content))
                continue
        out.append(_chat_message(m, f"{key}[{i}]"))
    return out


def _chat_message(m: Any, at: str) -> Message:
    """One {role, content} turn at `at` (field `messages[2]`), or the reason it is not one."""
    if not isinstance(m, dict):
        raise _Bad(
            "bad_messages",
            f"field `{at}`: expected an object with `role` and `content`, got {_kind(m)} {_repr.repr(m)}",
        )
    role = m.get("role")
    if role is None:
        raise _Bad(
            "missing_field",
            f"field `{at}.role`: expected one of {', '.join(ROLES)}, got nothing",
        )
    if role not in ROLES:
        raise _Bad(
            "unknown_role",
            f"field `{at}.role`: expected one of {', '.join(ROLES)}, got {_repr.repr(role)}",
        )
    content = m.get("content")
    if content is None:
        raise _Bad("missing_field", f"field `{at}.content`: expected a string, got nothing")
    return Message(role, _content(content, f"{at}.content"))


def _sharegpt_messages(value: Any, key: str, cfg: PoolConfig, tabular: bool) -> list[Message]:
    """ShareGPT turns ({from, value} by default) as Messages, speakers mapped by pool.sharegpt."""
    sg = cfg.sharegpt
    out: list[Message] = []
    for i, m in enumerate(_turns(value, key, tabular)):
        if isinstance(m, dict):  # the common turn, read without naming its fields
            speaker, content = m.get(sg.role_key), m.get(sg.content_key)
            role = sg.roles.get(str(speaker)) if speaker is not None else None
            if isinstance(content, str) and role in ROLES:
                out.append(Message(role, content))
                continue
        out.append(_sharegpt_message(m, f"{key}[{i}]", sg))
    return out


def _sharegpt_message(m: Any, at: str, sg: ShareGPTConfig) -> Message:
    """One ShareGPT turn at `at` (field `conversations[2]`), or the reason it is not one."""
    if not isinstance(m, dict):
        raise _Bad(
            "bad_messages",
            f"field `{at}`: expected an object with `{sg.role_key}` and `{sg.content_key}`, "
            f"got {_kind(m)} {_repr.repr(m)}",
        )
    speaker = m.get(sg.role_key)
    if speaker is None:
        raise _Bad(
            "missing_field",
            f"field `{at}.{sg.role_key}`: expected one of {', '.join(sg.roles)}, got nothing",
        )
    role = sg.roles.get(str(speaker))
    if role not in ROLES:
        raise _Bad(
            "unknown_role",
            f"field `{at}.{sg.role_key}`: expected one of {', '.join(sg.roles)}, got "
            f"{_repr.repr(speaker)} (map it in pool.sharegpt.roles)",
        )
    content = m.get(sg.content_key)
    if content is None:
        raise _Bad(
            "missing_field",
            f"field `{at}.{sg.content_key}`: expected a string, got nothing",
        )
    return Message(role, _content(content, f"{at}.{sg.content_key}"))


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _plain(value: Any) -> Any:
    """JSON-able copy of a Parquet / Arrow value (dates, decimals, bytes become strings)."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _utf8_detail(raw: bytes, exc: UnicodeDecodeError, line_start: bool = False) -> str:
    pos = exc.start
    col = pos - (raw.rfind(b"\n", 0, pos) + 1) + 1 if line_start else pos + 1
    return f"byte 0x{raw[pos]:02x} at column {col} is not UTF-8; expected UTF-8 text"
