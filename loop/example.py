"""The canonical example every source format becomes (see DESIGN.md)."""

from __future__ import annotations

import hashlib
import json
import unicodedata
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec

Role = Literal["system", "user", "assistant"]
ROLES: tuple[str, ...] = ("system", "user", "assistant")
Format = Literal["instruction", "chat", "completion"]


@dataclass(frozen=True)
class Message:
    role: str
    content: str


@dataclass(frozen=True)
class Example:
    """One training record.

    `id` is a content hash of the normalized messages, so the same conversation read from a
    JSONL file or a Parquet file gets the same id.
    """

    id: str
    messages: tuple[Message, ...]
    source: str  # "file.jsonl:12" or "dataset[row]"
    format: str  # instruction | chat | completion
    meta: dict[str, Any] = field(default_factory=dict, compare=False)
    scores: dict[str, float] = field(default_factory=dict, compare=False)
    tier: str | None = None
    split: str | None = None

    @property
    def prompt(self) -> tuple[Message, ...]:
        """Every message before the final assistant answer."""
        return self.messages[:-1]

    @property
    def answer(self) -> str:
        return self.messages[-1].content

    @property
    def user_text(self) -> str:
        """All user turns joined: what dedup and filters look at on the prompt side."""
        return "\n".join(m.content for m in self.messages if m.role == "user")

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "messages": [{"role": m.role, "content": m.content} for m in self.messages],
            "source": self.source,
            "format": self.format,
            "meta": self.meta,
            "scores": self.scores,
            "tier": self.tier,
            "split": self.split,
        }

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Example:
        return Example(
            id=d["id"],
            messages=tuple(Message(m["role"], m["content"]) for m in d["messages"]),
            source=d.get("source", ""),
            format=d.get("format", "chat"),
            meta=dict(d.get("meta") or {}),
            scores=dict(d.get("scores") or {}),
            tier=d.get("tier"),
            split=d.get("split"),
        )


def normalize_text(text: str) -> str:
    """NFC + trimmed: what the content id is computed over."""
    return unicodedata.normalize("NFC", text).strip()


def content_id(messages: tuple[Message, ...] | list[Message]) -> str:
    """Stable 16-hex-digit id: sha256 of the normalized (role, content) list, written as compact
    JSON with non-ASCII characters as UTF-8 (the ids are pinned in tests/test_pool_ids.py)."""
    normalize = unicodedata.normalize  # normalize_text, inlined: one call less per message
    pairs = [[m.role, normalize("NFC", m.content).strip()] for m in messages]
    try:
        # msgspec writes, for every str, the bytes json.dumps(pairs, ensure_ascii=False,
        # separators=(",", ":")).encode("utf-8") writes (tests/test_pool_fast.py checks every code
        # point), about 6x faster: json.dumps builds a new encoder per call with those options
        # (benchmarks/results/figures/pool_load_100k.txt).
        payload = msgspec.json.encode(pairs)
    except (UnicodeEncodeError, TypeError):
        # A lone surrogate (or a role that is not a str): the json module's own path, which
        # fails, or succeeds, exactly as it always did.
        payload = json.dumps(pairs, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return hashlib.sha256(payload).hexdigest()[:16]


def make_example(
    messages: list[Message] | tuple[Message, ...],
    *,
    source: str,
    format: str,
    meta: dict[str, Any] | None = None,
) -> Example:
    msgs = tuple(messages)
    return Example(
        id=content_id(msgs), messages=msgs, source=source, format=format, meta=dict(meta or {})
    )


def write_jsonl(examples: list[Example], path: str | Any) -> None:
    from pathlib import Path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for ex in examples:
            f.write(json.dumps(ex.to_dict(), ensure_ascii=False) + "\n")


def read_jsonl(path: str | Any) -> list[Example]:
    from pathlib import Path

    with Path(path).open(encoding="utf-8") as f:
        return [Example.from_dict(json.loads(line)) for line in f if line.strip()]
