"""YAML recipe -> frozen dataclasses, with every error collected and named by field path.

A recipe is data. `load_recipe` reads it, `parse_recipe` validates a dict: unknown keys, wrong types,
out-of-range values and cross-field problems are all collected into one `RecipeError` whose lines
read like `subsets.sizes[2]: must be within (0, 4213] (training pool size), got 6000`.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from loop.errors import RecipeError  # defined with every user error

# --------------------------------------------------------------------------------------------
# Sections. Field metadata `ge/gt/le/lt` are range checks; `doc` feeds `loop recipe --help`-style
# references in the README.
# --------------------------------------------------------------------------------------------


def _f(default: Any = dataclasses.MISSING, *, doc: str = "", **checks: float) -> Any:
    meta = {"doc": doc, **checks}
    if isinstance(default, dict):
        return field(default_factory=lambda: dict(default), metadata=meta)
    if default is dataclasses.MISSING:
        return field(metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class FieldMap:
    """Source field names for each canonical role (e.g. Dolly: instruction/context/response)."""

    instruction: str = _f("instruction", doc="instruction-format prompt field")
    input: str = _f("input", doc="instruction-format optional input field")
    output: str = _f("output", doc="instruction-format answer field")
    messages: str = _f("messages", doc="chat-format list of {role, content}")
    prompt: str = _f("prompt", doc="completion-format prompt field")
    completion: str = _f("completion", doc="completion-format answer field")
    system: str = _f("system", doc="optional system prompt field (instruction/completion formats)")
    answer: str | None = _f(
        None,
        doc="answer field beside a prompt given as messages, e.g. {messages: input, answer: ideal}",
    )
    conversations: str = _f("conversations", doc="ShareGPT-format list of {from, value} turns")
    # Provenance: per-record fields kept in meta under the canonical names source/license/...
    source: str | None = _f(
        None, doc="per-record field naming the record's source (meta['source'])"
    )
    license: str | None = _f(None, doc="per-record field holding the record's license")
    date: str | None = _f(
        None, doc="per-record date field (ISO 8601, epoch seconds or text; read as UTC)"
    )
    annotator: str | None = _f(None, doc="per-record field naming who wrote or labelled it")


SHAREGPT_ROLES = {
    "system": "system",
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "chatgpt": "assistant",
    "bing": "assistant",
    "bard": "assistant",
}


@dataclass(frozen=True)
class ShareGPTConfig:
    """How ShareGPT turns are read (LLaMA-Factory's role_tag / content_tag / *_tag settings)."""

    role_key: str = _f("from", doc="key of a turn's speaker")
    content_key: str = _f("value", doc="key of a turn's text")
    roles: dict[str, str] = _f(
        SHAREGPT_ROLES, doc="speaker -> system|user|assistant; other speakers are errors"
    )


@dataclass(frozen=True)
class SourceSpec:
    """One pool source with its provenance: every record read from it carries these in meta."""

    path: str = _f(doc="file or glob, like an entry of pool.paths")
    name: str | None = _f(None, doc="source name, kept in meta['source'] (default: the file stem)")
    license: str | None = _f(None, doc="SPDX license id or expression, e.g. CC-BY-4.0")
    cost_per_example: float | None = _f(
        None, doc="what one example of this source costs (any currency), for the cost table", ge=0
    )
    date: str | None = _f(None, doc="date of every record of this source unless a record has one")
    annotator: str | None = _f(None, doc="who wrote or labelled this source's records")


@dataclass(frozen=True)
class PoolConfig:
    paths: tuple[str, ...] = _f(
        (), doc="files or globs (JSONL, JSON, CSV, Parquet), relative to the working directory"
    )
    sources: tuple[SourceSpec, ...] = _f(
        (), doc="files with provenance: {path, name, license, cost_per_example}; beside paths"
    )
    hf_dataset: str | None = _f(None, doc="Hugging Face dataset name or local save_to_disk folder")
    hf_split: str = _f("train", doc="split of hf_dataset")
    hf_config: str | None = _f(None, doc="config name of hf_dataset")
    format: Literal["auto", "instruction", "chat", "completion", "sharegpt"] = _f(
        "auto", doc="record format; auto detects it per record"
    )
    fields: FieldMap = _f(FieldMap(), doc="custom field names")
    sharegpt: ShareGPTConfig = _f(ShareGPTConfig(), doc="ShareGPT speaker and text keys")
    task_field: str | None = _f(
        None, doc="field holding a task/category label (kept in meta['task'])"
    )
    system_prompt: str | None = _f(None, doc="system message prepended to every example")
    on_error: Literal["fail", "skip"] = _f(
        "fail", doc="a bad record stops the load, or is skipped and counted"
    )
    limit: int | None = _f(None, doc="read at most this many records", gt=0)


@dataclass(frozen=True)
class ExactDedupConfig:
    lowercase: bool = _f(True, doc="compare case-insensitively")
    collapse_whitespace: bool = _f(True, doc="treat runs of whitespace as one space")
    unicode: Literal["NFC", "NFKC", "none"] = _f("NFKC", doc="Unicode normalization")
    on: Literal["prompt", "full"] = _f("full", doc="key: the prompt only, or prompt + answer")


@dataclass(frozen=True)
class NearDedupConfig:
    threshold: float = _f(
        0.8,
        doc="estimated Jaccard similarity at or above which two records are duplicates",
        gt=0,
        le=1,
    )
    num_perm: int = _f(128, doc="MinHash permutations", ge=16, le=1024)
    shingle: Literal["word", "char"] = _f("word", doc="shingle unit")
    ngram: int = _f(3, doc="shingle size", ge=1, le=20)
    on: Literal["prompt", "full"] = _f(
        "full", doc="text hashed: the prompt only, or prompt + answer"
    )
    shared_text: Literal["drop", "keep"] = _f(
        "drop",
        doc="drop: compare without what most records share (system prompt, template lines)",
    )
    minimal_pairs: Literal["keep", "drop"] = _f(
        "keep", doc="near-identical prompts whose answers differ: kept (and counted) or dropped"
    )
    answer_similarity: float = _f(
        0.9, doc="answers below this similarity differ (a minimal pair, kept)", gt=0, le=1
    )


@dataclass(frozen=True)
class SemanticDedupConfig:
    threshold: float = _f(
        0.92, doc="cosine similarity at or above which prompts are duplicates", gt=0, le=1
    )
    batch_size: int = _f(64, doc="embedding batch size", ge=1)
    max_chars: int = _f(
        512, doc="prompt characters embedded (MiniLM reads at most 256 tokens)", ge=16
    )
    exact_search_max: int = _f(
        20000, doc="pools up to this size use exact search; larger use an IVF index", ge=1
    )
    shared_text: Literal["drop", "keep"] = _f(
        "drop", doc="drop: embed without what most records share (template lines)"
    )
    minimal_pairs: Literal["keep", "drop"] = _f(
        "keep", doc="similar prompts whose answers differ: kept (and counted) or dropped"
    )
    answer_similarity: float = _f(
        0.9, doc="answers below this similarity differ (a minimal pair, kept)", gt=0, le=1
    )


@dataclass(frozen=True)
class LengthConfig:
    min_answer_tokens: int | None = _f(
        None,
        doc="drop answers shorter than this many tokens (unset: derived from the pool's answer lengths)",
        ge=0,
    )
    max_answer_tokens: int | None = _f(
        None,
        doc="drop answers longer than this many tokens (unset: derived from the pool; 0: no bound)",
        ge=0,
    )
    max_tokens: int | None = _f(
        None, doc="drop examples longer than this (default: train.max_length)", gt=0
    )


@dataclass(frozen=True)
class FormatConfig:
    answer_format: Literal["auto", "json", "none"] = _f(
        "auto", doc="declared answer format; auto: json when most answers are JSON, else none"
    )
    schema: Literal["flag", "drop", "ignore"] = _f(
        "flag", doc="key sets that differ from the task's dominant schema"
    )


@dataclass(frozen=True)
class PiiConfig:
    policy: Literal["anonymize", "drop", "flag"] = _f(
        "anonymize", doc="what to do with a record holding PII"
    )
    kinds: tuple[str, ...] = _f(("email", "phone", "ip", "credit_card"), doc="detectors to run")
    patterns: dict[str, str] = _f({}, doc="extra named regexes, e.g. {employee_id: 'EMP-\\d{6}'}")
    phone_region: str = _f("US", doc="default region for numbers without a country code")


@dataclass(frozen=True)
class HarmfulConfig:
    policy: Literal["drop", "flag"] = _f("drop", doc="what to do with a harmful record")
    extra_terms: tuple[str, ...] = _f((), doc="extra phrases to treat as harmful")


@dataclass(frozen=True)
class ContradictionsConfig:
    policy: Literal["keep_one", "drop_all", "flag", "newest"] = _f(
        "keep_one",
        doc="same prompt, materially different answers; newest: keep the latest-dated answer",
    )
    similarity: float = _f(0.9, doc="answers below this similarity count as different", gt=0, le=1)


@dataclass(frozen=True)
class CopyrightConfig:
    policy: Literal["drop", "flag"] = _f("drop", doc="what to do with a record that matches")
    notices: bool = _f(True, doc="look for copyright notices and license headers")
    extra_notices: tuple[str, ...] = _f((), doc="extra regexes that count as a notice")
    protected: str | None = _f(
        None, doc="folder of protected reference texts (.txt, .md) to find verbatim copies of"
    )
    min_span_words: int = _f(
        13, doc="a shared run of at least this many words is a verbatim copy", ge=4, le=200
    )


@dataclass(frozen=True)
class DeprecatedTerm:
    pattern: str = _f(doc="a phrase (whole words, any case), or a regex with regex: true")
    replacement: str | None = _f(None, doc="what to use instead, shown in review")
    regex: bool = _f(False, doc="pattern is a regular expression")


@dataclass(frozen=True)
class FreshnessConfig:
    not_before: str | None = _f(None, doc="records dated before this date (ISO 8601) are old")
    max_age_days: int | None = _f(None, doc="records older than this many days are old", gt=0)
    as_of: str | None = _f(None, doc="the date max_age_days counts back from (default: today)")
    policy: Literal["drop", "flag"] = _f("drop", doc="what to do with an old record")
    undated: Literal["keep", "drop", "flag"] = _f("keep", doc="records without a date")
    deprecated: tuple[DeprecatedTerm, ...] = _f(
        (), doc="terms or patterns that mark outdated content, with a replacement hint"
    )
    deprecated_policy: Literal["flag", "drop"] = _f(
        "flag", doc="what to do with a record that mentions a deprecated term"
    )


@dataclass(frozen=True)
class QualityConfig:
    weights: dict[str, float] = _f({}, doc="signal -> weight; default: every signal weighs 1")
    model_loss: bool = _f(
        False, doc="add the base model's per-token loss on the answer as a signal (slow)"
    )


@dataclass(frozen=True)
class SplitConfig:
    validation: float = _f(
        0.1, doc="fraction of the cleaned pool held out for validation", ge=0.05, le=0.3
    )
    max_validation: int | None = _f(None, doc="cap on validation examples", gt=0)
    stratify_by: str | None = _f(None, doc="meta field to stratify on (e.g. task)")
    seed: int = _f(0, doc="split seed", ge=0)
    where: dict[str, Any] = _f(
        {},
        doc="hold out validation only from records matching this, e.g. {source: expert} "
        "(fraction of those records)",
    )


# The names the clean steps know, here so that a recipe is checked without loading the steps.
QUALITY_SIGNALS: tuple[str, ...] = (
    "length",
    "repetition",
    "overlap",
    "format",
    "charset",
    "ending",
)
OPTIONAL_QUALITY_SIGNALS: tuple[str, ...] = ("model_loss",)
PII_KINDS: tuple[str, ...] = ("email", "phone", "ip", "credit_card")
RAW_TIER = "raw"  # the tier that is the pool before cleaning

CLEAN_STEPS: tuple[str, ...] = (
    "exact_dedup",
    "near_dedup",
    "semantic_dedup",
    "length",
    "format",
    "pii",
    "harmful",
    "contradictions",
    "quality",
    "copyright",
    "freshness",
)


@dataclass(frozen=True)
class CleanConfig:
    steps: tuple[str, ...] = _f(
        (
            "exact_dedup",
            "near_dedup",
            "length",
            "format",
            "pii",
            "harmful",
            "contradictions",
            "quality",
        ),
        doc=f"steps in order; any of {', '.join(CLEAN_STEPS)}",
    )
    exact_dedup: ExactDedupConfig = _f(ExactDedupConfig())
    near_dedup: NearDedupConfig = _f(NearDedupConfig())
    semantic_dedup: SemanticDedupConfig = _f(SemanticDedupConfig())
    length: LengthConfig = _f(LengthConfig())
    format: FormatConfig = _f(FormatConfig())
    pii: PiiConfig = _f(PiiConfig())
    harmful: HarmfulConfig = _f(HarmfulConfig())
    contradictions: ContradictionsConfig = _f(ContradictionsConfig())
    quality: QualityConfig = _f(QualityConfig())
    copyright: CopyrightConfig = _f(CopyrightConfig())
    freshness: FreshnessConfig = _f(FreshnessConfig())
    split: SplitConfig = _f(SplitConfig())
    review: str | None = _f(
        None, doc="file of review decisions (from `loop review import`) to honour"
    )
    max_drop: float = _f(
        0.5,
        doc="a step that would remove more than this share of its input stops the cleaning",
        gt=0,
        le=1,
    )


@dataclass(frozen=True)
class TierSpec:
    name: str = _f(doc="tier name; `raw` means the pool before cleaning")
    top: float | None = _f(
        None, doc="the top fraction of the cleaned pool by quality score", gt=0, le=1
    )
    min_score: float | None = _f(
        None, doc="or: every cleaned example scoring at least this", ge=0, le=1
    )
    where: dict[str, Any] = _f(
        {},
        doc="metadata filter: {field: value}, {field: [values]} or {date: {after: D, before: D}}; "
        "top/min_score then rank within it",
    )
    select: Literal["random", "ifd", "length", "diversity", "quality"] = _f(
        "random",
        doc="which examples size n takes: random (seeded), or the top n of a ranking: ifd "
        "(instruction-following difficulty), length (longest answers), diversity (k-center "
        "greedy on prompt embeddings), quality (heuristic score); see loop/select.py",
    )
    select_model: str | None = _f(
        None, doc="select: ifd only: the model that scores IFD (default: model.name)"
    )


@dataclass(frozen=True)
class SelectionConfig:
    """Settings of the ranking selection methods (tiers with `select:` other than random)."""

    batch_size: int = _f(16, doc="IFD scoring batch size (sequences per forward pass)", ge=1)
    max_length: int | None = _f(
        None, doc="IFD: tokens per scored sequence (default: train.max_length)", ge=16
    )
    min_answer_tokens: int = _f(
        3,
        doc="IFD: answers with fewer tokens than this get no IFD (the ratio of one or two "
        "tokens' losses is noise) and rank after every scored example",
        ge=1,
    )
    diversity_greedy_max: int = _f(
        10000,
        doc="diversity: greedy k-center picks (one pass over the embeddings each); later "
        "prompts follow by distance to those picks",
        ge=1,
    )


@dataclass(frozen=True)
class Ladder:
    start: int = _f(doc="first size", gt=0)
    max: int = _f(doc="largest size (included when the ladder lands on it)", gt=0)
    factor: float = _f(2.0, doc="growth factor", gt=1)


@dataclass(frozen=True)
class AdaptiveConfig:
    max_rounds: int = _f(6, doc="rounds at most, the first (the `sizes` ladder) included", ge=1)
    metric: str | None = _f(
        None,
        doc="metric whose decision steers the rounds (default: first eval.* metric, else val_loss)",
    )
    budget_tokens: int | None = _f(
        None,
        doc="training tokens for the whole sweep, estimated before each cell; never exceeded",
        gt=0,
    )
    budget_hours: float | None = _f(
        None, doc="wall time: no new round starts once it is spent", gt=0
    )
    max_size: int | None = _f(
        None, doc="largest size to run (default: the tier's training pool)", gt=0
    )
    add_seeds: int = _f(
        1, doc="seeds added at the noisiest sizes when a tier is inconclusive", ge=1, le=8
    )


@dataclass(frozen=True)
class SubsetsConfig:
    sizes: tuple[int, ...] | Ladder = _f(
        Ladder(start=32, factor=2.0, max=256),
        doc="a list of sizes, or {start, factor, max} (adaptive: the first round's sizes)",
    )
    strategy: Literal["grid", "adaptive"] = _f(
        "grid", doc="grid: every size; adaptive: next sizes chosen from the curve after each round"
    )
    adaptive: AdaptiveConfig = _f(AdaptiveConfig())
    seeds: tuple[int, ...] = _f((0,), doc="one seeded permutation per tier and seed", ge=0)
    stratify_by: str | None = _f(None, doc="meta field whose mix each subset keeps")
    on_too_small: Literal["error", "cap"] = _f(
        "error", doc="a tier smaller than a size: error, or cap the size"
    )


@dataclass(frozen=True)
class ModelConfig:
    name: str = _f(
        "smollm2-135m-instruct", doc="packaged default, hub id, local folder, or tiny-random"
    )
    revision: str | None = _f(None, doc="hub revision")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = _f(
        "auto", doc="auto: bf16 on GPU, fp32 on CPU"
    )
    chat_template: str | None = _f(None, doc="Jinja chat template for models without one")


@dataclass(frozen=True)
class LoraConfig:
    r: int = _f(16, doc="LoRA rank", ge=1, le=1024)
    alpha: float = _f(32, doc="LoRA alpha", gt=0)
    dropout: float = _f(0.05, doc="LoRA dropout", ge=0, lt=1)
    target_modules: str | tuple[str, ...] = _f("all-linear", doc="module names, or all-linear")


@dataclass(frozen=True)
class BudgetConfig:
    policy: Literal["epochs", "min_steps"] = _f(
        "min_steps",
        doc="epochs: fixed passes; min_steps: epochs, but never fewer optimizer steps than min_steps",
    )
    epochs: float = _f(2.0, doc="passes over the subset", gt=0)
    min_steps: int = _f(30, doc="floor on optimizer steps (min_steps policy)", ge=1)


@dataclass(frozen=True)
class TrainConfig:
    learning_rate: float = _f(2e-4, doc="peak learning rate", gt=0, le=1)
    batch_size: int = _f(8, doc="micro-batch size per device", ge=1)
    grad_accum: int = _f(1, doc="gradient accumulation steps", ge=1)
    max_length: int = _f(512, doc="tokens per example (longer ones are truncated)", ge=16)
    budget: BudgetConfig = _f(BudgetConfig())
    warmup_ratio: float = _f(0.05, doc="linear warm-up fraction", ge=0, lt=1)
    weight_decay: float = _f(0.0, doc="AdamW weight decay", ge=0)
    scheduler: Literal["linear", "cosine", "constant"] = _f("linear", doc="learning-rate schedule")
    logging_steps: int = _f(5, doc="log train_loss every this many steps", ge=1)
    eval_steps: int | None = _f(
        None, doc="log val_loss every this many steps (default: only at the end)", ge=1
    )
    completion_as_text: bool = _f(
        False, doc="completion format: train as plain continuation, no chat template"
    )


@dataclass(frozen=True)
class EvaluatorSpec:
    name: str = _f(doc="registered evaluator name or a dotted path module:function")
    params: dict[str, Any] = _f({}, doc="evaluator parameters")
    label: str | None = _f(
        None, doc="metric name eval.<label> (default: the registered or function name)"
    )

    @property
    def metric_label(self) -> str:
        """What follows `eval.` in the metric's name: the label, else the registered name, else
        the function name of `module:function`."""
        return self.label or self.name.rpartition(":")[2]

    @property
    def metric(self) -> str:
        return f"eval.{self.metric_label}"


@dataclass(frozen=True)
class EvalConfig:
    evaluators: tuple[EvaluatorSpec, ...] | Literal["auto"] = _f(
        (),
        doc="task-accuracy evaluators; `auto`: chosen from the pool's answers as `loop init` "
        "chooses them (printed when the recipe is read); none: validation loss only",
    )
    samples: int | None = _f(
        None, doc="generation metrics on a fixed seeded sample of this many validation items", gt=0
    )
    max_new_tokens: int = _f(128, doc="generation length limit", ge=1)
    batch_size: int = _f(16, doc="generation / scoring batch size", ge=1)
    seed: int = _f(0, doc="seed of the generation sample", ge=0)


@dataclass(frozen=True)
class TrackingConfig:
    uri: str | None = _f(
        None, doc="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else mlruns/ here)"
    )
    experiment: str | None = _f(None, doc="experiment name (default: the recipe name)")
    heartbeat_seconds: float = _f(
        30.0,
        doc="a running cell's heartbeat in the store; 3 missed beats mean its driver died",
        gt=0,
    )
    log_raw_records: bool = _f(
        False,
        doc="also copy the raw and cleaned pools and the unmasked dropped records to the store "
        "(personal data included); default: counts, a profile and PII-masked records only",
    )


@dataclass(frozen=True)
class ExecutorConfig:
    kind: Literal["local", "ray"] = _f(
        "local", doc="local: cells one after another here; ray: cells as Ray tasks, in parallel"
    )
    address: str | None = _f(
        None,
        doc="Ray cluster to join (auto, host:port, ray://...); default $RAY_ADDRESS, else a local one",
    )
    num_cpus: float | None = _f(None, doc="CPUs per cell (default 1; its torch threads)", gt=0)
    num_gpus: float | None = _f(
        None,
        doc="GPUs per cell (default: 1 on a GPU cluster, else 0); above 1: data-parallel cell",
        ge=0,
    )
    workers: int | None = _f(
        None,
        doc="cells at once on a local Ray instance (no address); default 2",
        ge=1,
    )
    max_retries: int = _f(3, doc="Ray retries of a cell whose worker died", ge=0)


@dataclass(frozen=True)
class SaturationConfig:
    epsilon: float | None = _f(
        None,
        doc="gain from doubling below which data stops paying (default: 1 point / 1% of loss)",
        gt=0,
    )
    targets: dict[str, tuple[float, ...]] = _f(
        {},
        doc="scores to price per metric, e.g. {eval.exact_match: [0.8]} (default: each tier's "
        "best fitted score)",
    )
    confidence: float = _f(0.9, doc="confidence that the gain is below epsilon", gt=0.5, lt=1)
    metrics: tuple[str, ...] = _f(
        (), doc="metrics analysed (default: val_loss and every eval.* metric)"
    )


@dataclass(frozen=True)
class LicensesConfig:
    allow: tuple[str, ...] = _f((), doc="SPDX license ids the data may carry (empty: no check)")
    policy: Literal["refuse", "warn"] = _f(
        "refuse", doc="a source with another or no license: refused at validate, or a warning"
    )


@dataclass(frozen=True)
class Recipe:
    name: str = _f(doc="experiment name")
    description: str = _f("", doc="free text")
    pool: PoolConfig = _f(PoolConfig())
    licenses: LicensesConfig = _f(LicensesConfig())
    clean: CleanConfig = _f(CleanConfig())
    tiers: tuple[TierSpec, ...] = _f((TierSpec(name="all", top=1.0),), doc="quality tiers")
    selection: SelectionConfig = _f(SelectionConfig())
    subsets: SubsetsConfig = _f(SubsetsConfig())
    model: ModelConfig = _f(ModelConfig())
    lora: LoraConfig = _f(LoraConfig())
    train: TrainConfig = _f(TrainConfig())
    eval: EvalConfig = _f(EvalConfig())
    tracking: TrackingConfig = _f(TrackingConfig())
    saturation: SaturationConfig = _f(SaturationConfig())
    executor: ExecutorConfig = _f(ExecutorConfig())
    path: str = field(default="", metadata={"internal": True})  # where it was read from

    @property
    def sizes(self) -> tuple[int, ...]:
        return ladder_sizes(self.subsets.sizes)

    @property
    def experiment(self) -> str:
        return self.tracking.experiment or self.name


# --------------------------------------------------------------------------------------------
# Generic validation over the dataclass type hints.
# --------------------------------------------------------------------------------------------

_MISSING = object()


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if tp is type(None):
        return "null"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is tuple:
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    if origin is dict:
        return "a mapping"
    if dataclasses.is_dataclass(tp):
        return "a mapping with keys " + ", ".join(f.name for f in _public_fields(tp))
    return {int: "an integer", float: "a number", str: "a string", bool: "true/false"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def _public_fields(cls: Any) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if not f.metadata.get("internal")]


def _given(value: Any) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _check_range(value: float, meta: dict, path: str, errors: list[str]) -> None:
    lo, lo_open = (meta["gt"], True) if "gt" in meta else (meta.get("ge"), False)
    hi, hi_open = (meta["lt"], True) if "lt" in meta else (meta.get("le"), False)
    bad = (lo is not None and (value <= lo if lo_open else value < lo)) or (
        hi is not None and (value >= hi if hi_open else value > hi)
    )
    if bad:
        left = "(" if lo_open else "["
        right = ")" if hi_open else "]"
        lo_s = "-inf" if lo is None else f"{lo:g}"
        hi_s = "inf" if hi is None else f"{hi:g}"
        if lo is None:
            left = "("
        if hi is None:
            right = ")"
        errors.append(f"{path}: must be within {left}{lo_s}, {hi_s}{right}, got {_given(value)}")


def _convert(tp: Any, value: Any, path: str, errors: list[str], meta: dict) -> Any:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        # Pick the member by the shape of the value, so errors speak about the right one.
        for arg in args:
            if arg is type(None):
                continue
            if _shape_matches(arg, value):
                return _convert(arg, value, path, errors, meta)
        errors.append(f"{path}: expected {_type_name(tp)}, got {_given(value)}")
        return _MISSING
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            hint = _suggest(str(value), [str(a) for a in allowed])
            errors.append(
                f"{path}: must be one of {', '.join(repr(a) for a in allowed)}, got {_given(value)}{hint}"
            )
            return _MISSING
        return value
    if origin is tuple:
        (item_tp, *_rest) = typing.get_args(tp)
        if (
            isinstance(value, (str, int, float))
            and not isinstance(value, bool)
            and item_tp in (str, int)
        ):
            value = [value]  # a single item where a list is expected is fine
        if not isinstance(value, (list, tuple)):
            errors.append(f"{path}: expected {_type_name(tp)}, got {_given(value)}")
            return _MISSING
        out = [_convert(item_tp, v, f"{path}[{i}]", errors, meta) for i, v in enumerate(value)]
        return _MISSING if any(v is _MISSING for v in out) else tuple(out)
    if origin is dict:
        if not isinstance(value, dict):
            errors.append(f"{path}: expected a mapping, got {_given(value)}")
            return _MISSING
        _k, v_tp = typing.get_args(tp)
        return {str(k): _convert(v_tp, v, f"{path}.{k}", errors, {}) for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            errors.append(f"{path}: expected {_type_name(tp)}, got {_given(value)}")
            return _MISSING
        return _build(tp, value, path, errors)
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            errors.append(f"{path}: expected true/false, got {_given(value)}")
            return _MISSING
        return value
    if tp in (int, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if tp is int and ok and (not math.isfinite(value) or float(value) != int(value)):
            ok = False
        if isinstance(value, str) and tp is float:
            # YAML reads 2e-4 as a string (YAML 1.1); accept what Python reads as a float.
            try:
                value, ok = float(value), True
            except ValueError:
                ok = False
        if not ok or (isinstance(value, float) and not math.isfinite(value)):
            errors.append(f"{path}: expected {_type_name(tp)}, got {_given(value)}")
            return _MISSING
        value = tp(value)
        _check_range(value, meta, path, errors)
        return value
    if tp is str:
        if not isinstance(value, str):
            errors.append(f"{path}: expected a string, got {_given(value)}")
            return _MISSING
        return value
    raise TypeError(f"unsupported recipe type {tp!r} at {path}")


def _shape_matches(tp: Any, value: Any) -> bool:
    origin = typing.get_origin(tp)
    if origin is tuple:
        return isinstance(value, (list, tuple))
    if origin is dict or dataclasses.is_dataclass(tp):
        return isinstance(value, dict)
    if origin is Literal:
        return True
    if tp is str:
        return isinstance(value, str)
    if tp in (int, float):
        return isinstance(value, (int, float, str)) and not isinstance(value, bool)
    if tp is bool:
        return isinstance(value, bool)
    return True


def _suggest(given: str, allowed: list[str]) -> str:
    close = difflib.get_close_matches(given, allowed, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _build(cls: Any, data: dict, path: str, errors: list[str]) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in _public_fields(cls)}
    kwargs: dict[str, Any] = {}
    for key in data:
        if key not in fields:
            where = f"{path}.{key}" if path else str(key)
            hint = _suggest(str(key), list(fields))
            errors.append(f"{where}: unknown key{hint}; allowed: {', '.join(fields)}")
    for name, f in fields.items():
        where = f"{path}.{name}" if path else name
        if name in data:
            value = _convert(hints[name], data[name], where, errors, dict(f.metadata))
            if value is not _MISSING:
                kwargs[name] = value
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            errors.append(f"{where}: required ({_type_name(hints[name])}), not given")
    try:
        return cls(**kwargs)
    except TypeError:
        return _MISSING  # a required field already reported


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


class RecipeLoader(yaml.SafeLoader):
    """PyPI's SafeLoader with YAML 1.2 booleans: only true/false are booleans.

    YAML 1.1 also reads on/off/yes/no/y/n as booleans, keys included, so the documented
    `near_dedup: {on: prompt}` would arrive as `{True: 'prompt'}`.
    """


RecipeLoader.yaml_implicit_resolvers = {
    # YAML 1.2 has no timestamp type either: `not_before: 2025-01-01` stays the text it reads as
    first: [
        (tag, regexp)
        for tag, regexp in resolvers
        if tag not in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:timestamp")
    ]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
RecipeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)


def load_yaml(text: str) -> Any:
    """Parse recipe YAML (YAML 1.2 booleans; see RecipeLoader)."""
    return yaml.load(text, Loader=RecipeLoader)  # noqa: S506 (a SafeLoader subclass)


def ladder_sizes(sizes: tuple[int, ...] | Ladder) -> tuple[int, ...]:
    """The sorted, de-duplicated list of sizes a recipe asks for."""
    if isinstance(sizes, Ladder):
        out, n = [], float(sizes.start)
        while round(n) <= sizes.max:
            out.append(int(round(n)))
            n *= sizes.factor
        return tuple(sorted(set(out)))
    return tuple(sorted(set(sizes)))


def parse_recipe(data: Any, *, source: str = "<recipe>", pool_size: int | None = None) -> Recipe:
    """Validate a recipe dict. `pool_size` (training pool size) enables the size checks."""
    errors: list[str] = []
    if not isinstance(data, dict):
        raise RecipeError(
            source, [f"(top level): expected a mapping of sections, got {_given(data)}"]
        )
    recipe = _build(Recipe, data, "", errors)
    if recipe is not _MISSING:
        errors.extend(_cross_checks(recipe, pool_size))
    if errors:
        raise RecipeError(source, errors)
    return dataclasses.replace(recipe, path=source)


def load_recipe(path: str | Path, *, pool_size: int | None = None) -> Recipe:
    """Read and validate a YAML recipe file; raises RecipeError naming every problem."""
    path = Path(path)
    if not path.is_file():
        what = "is a folder, expected a YAML file" if path.is_dir() else "file not found"
        raise RecipeError(str(path), [what])
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=RecipeLoader)  # noqa: S506
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise RecipeError(
            str(path), [f"{where}not valid YAML ({getattr(exc, 'problem', exc)})"]
        ) from None
    except UnicodeDecodeError as exc:
        raise RecipeError(
            str(path), [f"not UTF-8 text ({exc.reason} at byte {exc.start})"]
        ) from None
    return parse_recipe(data, source=str(path), pool_size=pool_size)


def validate(r: Recipe) -> None:
    """Raise RecipeError when a recipe built in code (not read by `parse_recipe`) has a
    cross-field problem: the same checks `loop validate` runs."""
    errors = _cross_checks(r, None)
    if errors:
        raise RecipeError(r.path or r.name, errors)


def _cross_checks(r: Recipe, pool_size: int | None) -> list[str]:
    """Every check that looks at more than one field; the stages assume these hold."""
    return [
        *_check_steps(r),
        *_check_tiers(r),
        *_check_provenance(r),
        *_check_quality_weights(r.clean.quality),
        *_check_pii(r.clean.pii),
        *_check_subsets(r, pool_size),
        *_check_evaluators(r),
        *_check_steering_metric(r),
    ]


def _check_steps(r: Recipe) -> list[str]:
    errors = []
    for i, step in enumerate(r.clean.steps):
        if step not in CLEAN_STEPS:
            errors.append(
                f"clean.steps[{i}]: unknown step {step!r}{_suggest(step, list(CLEAN_STEPS))}; "
                f"allowed: {', '.join(CLEAN_STEPS)}"
            )
    if len(set(r.clean.steps)) != len(r.clean.steps):
        errors.append(f"clean.steps: each step at most once, got {list(r.clean.steps)}")
    if not r.pool.paths and not r.pool.sources and not r.pool.hf_dataset:
        errors.append(
            "pool: give `paths` (files or globs), `sources` or `hf_dataset`, got none of them"
        )
    return errors


def _check_provenance(r: Recipe) -> list[str]:
    """Sources, licenses, tier filters and the copyright/freshness settings."""
    from loop import provenance

    errors = []
    costs: dict[str, set[float | None]] = {}
    for src in r.pool.sources:
        costs.setdefault(provenance.source_name(src), set()).add(src.cost_per_example)
    for name, seen in costs.items():
        if len(seen) > 1:
            errors.append(
                f"pool.sources: source {name!r} is given more than once with different "
                f"cost_per_example ({', '.join(str(c) for c in seen)})"
            )
    for i, src in enumerate(r.pool.sources):
        if src.date is not None and provenance.parse_date(src.date) is None:
            errors.append(
                f"pool.sources[{i}].date: expected a date such as 2025-01-01, got {src.date!r}"
            )
    if r.licenses.policy == "refuse":
        errors += provenance.license_problems(r)
    for i, t in enumerate(r.tiers):
        if t.where and t.name == RAW_TIER:
            errors.append(f"tiers[{i}]: the `raw` tier is the uncleaned pool; it takes no where")
        errors += provenance.check_where(t.where, f"tiers[{i}].where")
    errors += provenance.check_where(r.clean.split.where, "clean.split.where")
    for i, pattern in enumerate(r.clean.copyright.extra_notices):
        try:
            re.compile(pattern)
        except re.error as exc:
            errors.append(
                f"clean.copyright.extra_notices[{i}]: not a valid regex ({exc}), got {pattern!r}"
            )
    fr = r.clean.freshness
    for name in ("not_before", "as_of"):
        value = getattr(fr, name)
        if value is not None and provenance.parse_date(value) is None:
            errors.append(
                f"clean.freshness.{name}: expected a date such as 2025-01-01, got {value!r}"
            )
    for i, term in enumerate(fr.deprecated):
        if term.regex:
            try:
                re.compile(term.pattern)
            except re.error as exc:
                errors.append(
                    f"clean.freshness.deprecated[{i}].pattern: not a valid regex ({exc}), "
                    f"got {term.pattern!r}"
                )
        elif not term.pattern.strip():
            errors.append(f"clean.freshness.deprecated[{i}].pattern: expected a phrase, got ''")
    if (
        "freshness" in r.clean.steps
        and fr.not_before is None
        and fr.max_age_days is None
        and not fr.deprecated
        and fr.undated == "keep"
    ):
        errors.append(
            "clean.freshness: the step is in clean.steps but checks nothing; set not_before, "
            "max_age_days, deprecated or undated"
        )
    for metric, values in r.saturation.targets.items():
        if not values:
            errors.append(f"saturation.targets.{metric}: at least one score, got []")
    return errors


def needs_quality(t: TierSpec) -> bool:
    """Whether a tier selects by quality score (and so needs the `quality` clean step)."""
    return t.name != RAW_TIER and (
        t.min_score is not None or (t.top or 1.0) < 1.0 or t.select == "quality"
    )


def reference_tier(r: Recipe) -> str | None:
    """The tier selection methods are compared with: when a tier is ranked, the tier named
    `random` if it draws at random, else the first random-draw tier without top/min_score/where
    (the cleaned pool as it is). None when no tier is ranked or none is such a draw."""
    if not any(is_ranked(t) for t in r.tiers):
        return None
    plain = [
        t
        for t in r.tiers
        if t.name != RAW_TIER and not is_ranked(t) and not needs_quality(t) and not t.where
    ]
    named = [t for t in plain if t.name == "random"]
    chosen = named or plain
    return chosen[0].name if chosen else None


def is_ranked(t: TierSpec) -> bool:
    """Whether size n of the tier is the top n of a ranking (not a seeded random draw)."""
    return t.select != "random"


def _check_tiers(r: Recipe) -> list[str]:
    errors = []
    names = [t.name for t in r.tiers]
    if len(set(names)) != len(names):
        errors.append(f"tiers: names must be unique, got {names}")
    if not r.tiers:
        errors.append("tiers: at least one tier is required, got []")
    for i, t in enumerate(r.tiers):
        if t.name == RAW_TIER and (t.top is not None or t.min_score is not None):
            errors.append(
                f"tiers[{i}]: the `raw` tier is the uncleaned pool; it takes no top/min_score"
            )
        if t.name != RAW_TIER and t.top is not None and t.min_score is not None:
            errors.append(f"tiers[{i}]: give `top` or `min_score`, not both")
        if t.name != RAW_TIER and not t.name.replace("_", "").replace("-", "").isalnum():
            errors.append(f"tiers[{i}].name: letters, digits, - and _ only, got {t.name!r}")
        if t.name == RAW_TIER and t.select != "random":
            errors.append(
                f"tiers[{i}].select: the `raw` tier is the uncleaned pool, drawn at random; "
                f"got {t.select!r}"
            )
        if t.select_model is not None and t.select != "ifd":
            errors.append(
                f"tiers[{i}].select_model: only tiers with select: ifd score with a model, "
                f"got select {t.select!r}"
            )
        if t.select_model is not None and not t.select_model.strip():
            errors.append(f"tiers[{i}].select_model: expected a model name, got ''")
        if needs_quality(t) and "quality" not in r.clean.steps:
            field_name = (
                "min_score"
                if t.min_score is not None
                else "select"
                if t.select == "quality" and (t.top or 1.0) >= 1.0
                else "top"
            )
            errors.append(
                f"tiers[{i}].{field_name} ({t.name}): selects by quality score, which needs "
                f"`quality` in clean.steps; got clean.steps {list(r.clean.steps)}"
            )
    return errors


def _check_quality_weights(cfg: QualityConfig) -> list[str]:
    allowed = QUALITY_SIGNALS + (OPTIONAL_QUALITY_SIGNALS if cfg.model_loss else ())
    errors = [
        f"clean.quality.weights.{name}: unknown signal{_suggest(name, list(allowed))}; "
        f"allowed: {', '.join(allowed)}"
        for name in cfg.weights
        if name not in allowed
    ]
    errors += [
        f"clean.quality.weights.{name}: must be >= 0, got {w:g}"
        for name, w in cfg.weights.items()
        if w < 0
    ]
    if cfg.weights and not any(cfg.weights.get(s, 1.0) > 0 for s in allowed):
        errors.append(
            f"clean.quality.weights: at least one signal needs a weight > 0, got {cfg.weights}"
        )
    return errors


def _check_pii(cfg: PiiConfig) -> list[str]:
    import re

    errors = [
        f"clean.pii.kinds: unknown kind {k!r}{_suggest(k, list(PII_KINDS))}; "
        f"allowed: {', '.join(PII_KINDS)}"
        for k in cfg.kinds
        if k not in PII_KINDS
    ]
    for name, pattern in cfg.patterns.items():
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name):
            errors.append(
                f"clean.pii.patterns.{name}: name must be a letter then letters, digits and _, "
                f"got {name!r}"
            )
            continue
        try:
            re.compile(pattern)
        except re.error as exc:
            errors.append(f"clean.pii.patterns.{name}: not a valid regex ({exc}), got {pattern!r}")
    return errors


def _check_subsets(r: Recipe, pool_size: int | None) -> list[str]:
    errors = []
    sizes = r.subsets.sizes
    if isinstance(sizes, Ladder) and sizes.max < sizes.start:
        errors.append(f"subsets.sizes.max: must be >= start ({sizes.start}), got {sizes.max}")
    if isinstance(sizes, tuple):
        if not sizes:
            errors.append("subsets.sizes: at least one size, got []")
        for i, n in enumerate(sizes):
            if n <= 0:
                errors.append(f"subsets.sizes[{i}]: must be > 0, got {n}")
        if len(set(sizes)) != len(sizes):
            errors.append(f"subsets.sizes: each size at most once, got {list(sizes)}")
    seeds = r.subsets.seeds
    if not seeds:
        errors.append("subsets.seeds: at least one seed, got []")
    if len(set(seeds)) != len(seeds):
        errors.append(f"subsets.seeds: each seed at most once, got {list(seeds)}")
    if pool_size is not None and r.subsets.on_too_small == "error":
        too_big = [n for n in ladder_sizes(sizes) if n > pool_size]
        if too_big:
            errors.append(
                f"subsets.sizes: must be within (0, {pool_size}] (training pool size), got {too_big}"
            )
    return errors


def _check_evaluators(r: Recipe) -> list[str]:
    import evals  # light import: the registry, no model code

    errors: list[str] = []
    if r.eval.evaluators == "auto":
        return errors  # chosen from the pool (loop.prepare.resolve_evaluators), then checked
    known = evals.registered_names()
    for i, ev in enumerate(r.eval.evaluators):
        where = f"eval.evaluators[{i}].name"
        if ":" in ev.name:
            try:
                evals.get(ev.name)  # imports the user's module, as evaluation will
            except KeyError as exc:
                errors.append(
                    f"{where}: {exc.args[0]}; expected a registered name or an importable "
                    f"module:function, got {ev.name!r}"
                )
        elif ev.name not in known:
            errors.append(
                f"{where}: unknown evaluator {ev.name!r}{_suggest(ev.name, known)}; "
                f"registered: {', '.join(known)}, or a dotted path module:function"
            )
    labels = [ev.metric_label for ev in r.eval.evaluators]
    repeated = sorted({x for x in labels if labels.count(x) > 1})
    if repeated:
        errors.append(
            f"eval.evaluators: metric names must differ (set `label`), got {repeated} "
            "more than once"
        )
    return errors


def _check_steering_metric(r: Recipe) -> list[str]:
    metric = r.subsets.adaptive.metric
    allowed = analysed_metrics(r)
    if metric is None or metric in allowed:
        return []
    return [
        f"subsets.adaptive.metric: must be one of {', '.join(allowed)} (the metrics the "
        f"sweep analyses), got {metric!r}{_suggest(metric, allowed)}"
    ]


def to_dict(obj: Any) -> Any:
    """Plain JSON-able form of a recipe (or any section)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in _public_fields(obj)}
    if isinstance(obj, (tuple, list)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def stable_dict(obj: Any) -> Any:
    """`to_dict` without the fields left at their defaults: what digests hash, so a field added
    to a section later (at its default) keeps every existing digest, and the cells and cleaning
    results stored under it."""
    if dataclasses.is_dataclass(obj):
        out = {}
        for f in _public_fields(obj):
            value = getattr(obj, f.name)
            if f.default is not dataclasses.MISSING:
                default = f.default
            elif f.default_factory is not dataclasses.MISSING:
                default = f.default_factory()
            else:
                default = dataclasses.MISSING
            if default is not dataclasses.MISSING and value == default:
                continue
            out[f.name] = stable_dict(value)
        return out
    if isinstance(obj, (tuple, list)):
        return [stable_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: stable_dict(v) for k, v in obj.items()}
    return obj


# Sections whose change does not change any number a cell produces.
# Fields that change where or in which order cells run, not what a cell measures: a grid and an
# adaptive sweep of the same recipe share finished cells, and so do local and Ray runs.
_COSMETIC = ("name", "description", "tracking", "saturation", "executor", "licenses")


def recipe_digest(r: Recipe) -> str:
    """Hash of everything that changes results; cosmetic fields (name, tracking, …) excluded."""
    d = stable_dict(r)
    for key in _COSMETIC:
        d.pop(key, None)
    # Changing the generation batch size changes nothing measured.
    d.get("eval", {}).pop("batch_size", None)
    d.get("selection", {}).pop("batch_size", None)
    if not any(is_ranked(t) for t in r.tiers):
        d.pop("selection", None)  # settings of rankings no tier uses
    for key in ("strategy", "adaptive", "sizes", "seeds"):  # which cells run, not what one measures
        d.get("subsets", {}).pop(key, None)
    d = {k: v for k, v in d.items() if v != {}}  # a section left with nothing is at its defaults
    blob = json.dumps(d, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


# --------------------------------------------------------------------------------------------
# Cells
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    tier: str
    size: int
    seed: int

    @property
    def id(self) -> str:
        return cell_id(self.tier, self.size, self.seed)


def cell_id(tier: str, size: int, seed: int) -> str:
    """A cell's stable id (`<tier>-n<size>-s<seed>`): run names, tags and manifest files."""
    return f"{tier}-n{size}-s{seed}"


VAL_LOSS = "val_loss"


def is_curve_metric(name: str) -> bool:
    """A metric the curves analyse: `val_loss` or `eval.<label>` (not `eval.<label>.<sub>`, not a
    counter such as `train_tokens`)."""
    return name == VAL_LOSS or (name.startswith("eval.") and name.count(".") == 1)


def analysed_metrics(r: Recipe) -> list[str]:
    """The metrics a sweep of `r` analyses, in recipe order (`saturation.metrics` narrows them)."""
    known = [VAL_LOSS] + [e.metric for e in r.eval.evaluators if isinstance(e, EvaluatorSpec)]
    wanted = set(r.saturation.metrics)
    return [m for m in known if not wanted or m in wanted]


def expand_cells(r: Recipe, sizes: tuple[int, ...] | None = None) -> list[Cell]:
    """Every (tier, size, seed), small sizes first so curves fill in early."""
    sizes = sizes if sizes is not None else r.sizes
    order = {t.name: i for i, t in enumerate(r.tiers)}
    cells = [Cell(t.name, n, s) for t in r.tiers for n in sizes for s in r.subsets.seeds]
    return sorted(cells, key=lambda c: (c.size, r.subsets.seeds.index(c.seed), order[c.tier]))


def reference_rows(cls: Any = Recipe, prefix: str = "") -> list[tuple[str, str, str, str]]:
    """(field path, type, default, doc) for every recipe field: the README's recipe reference."""
    rows = []
    hints = typing.get_type_hints(cls)
    for f in _public_fields(cls):
        tp = hints[f.name]
        path = f"{prefix}{f.name}"
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = "(required)"
        if dataclasses.is_dataclass(tp):
            rows.extend(reference_rows(tp, path + "."))
            continue
        members = (
            typing.get_args(tp) if typing.get_origin(tp) in (Union, types.UnionType) else (tp,)
        )
        listed = [
            m
            for m in members
            if typing.get_origin(m) is tuple and dataclasses.is_dataclass(typing.get_args(m)[0])
        ]
        if listed:  # a list of sections (maybe also a word such as `auto`)
            kind = " or ".join(
                "list" if m in listed else " or ".join(map(repr, typing.get_args(m)))
                for m in members
            )
            rows.append(
                (path, kind, json.dumps(to_dict(default), default=str), f.metadata.get("doc", ""))
            )
            rows.extend(reference_rows(typing.get_args(listed[0])[0], path + "[]."))
            continue
        shown = json.dumps(to_dict(default), default=str) if default != "(required)" else default
        rows.append((path, _type_name(tp), shown, f.metadata.get("doc", "")))
    return rows
