from __future__ import annotations

import random
import sys

import pytest
import torch

import evals
from loop.evaluate import (
    build_evaluators,
    evaluate,
    generate,
    known_answer,
    sample_answers,
    sample_for_generation,
    settled_check,
    validation_item_losses,
    validation_loss,
)
from loop.example import Message, make_example
from loop.models import IGNORE_INDEX, build_tiny_model, encode_example, prompt_ids, stop_token_ids
from loop.recipe import EvalConfig, EvaluatorSpec


def _ex(user: str, answer: str, i: int = 0, **meta):
    return make_example(
        [Message("user", user), Message("assistant", answer)],
        source=f"v.jsonl:{i}",
        format="chat",
        meta=meta,
    )


def test_sample_is_seeded_fixed_and_in_validation_order(short_task):
    val = short_task(30)
    cfg = EvalConfig(samples=10, seed=3)
    a, b = sample_for_generation(val, cfg), sample_for_generation(list(val), cfg)
    assert a == b and len(a) == 10
    positions = [val.index(x) for x in a]
    assert positions == sorted(positions)
    assert sample_for_generation(val, EvalConfig(samples=10, seed=4)) != a
    assert sample_for_generation(val, EvalConfig()) == val
    assert sample_for_generation(val, EvalConfig(samples=99)) == val
    # nested: a larger sample holds every smaller one (re-scoring on more items adds items)
    big = short_task(200)
    small, large = (
        {e.id for e in sample_for_generation(big, EvalConfig(samples=k, seed=1))} for k in (10, 40)
    )
    assert small < large


def test_validation_loss_counts_answer_tokens_only(tiny_base):
    tok, model = tiny_base.tokenizer, tiny_base.model
    val = [_ex("what is two plus two, please?", "4", 0), _ex("hi", "hello there", 1)]
    got = validation_loss(model, tok, val, max_length=None, batch_size=2)
    # by hand: the model's own mean cross-entropy over the labelled (answer) tokens
    total, count = 0.0, 0
    with torch.no_grad():
        for ex in val:
            ids, labels = encode_example(tok, ex, max_length=None)
            out = model(input_ids=torch.tensor([ids]), labels=torch.tensor([labels]))
            n = sum(t != IGNORE_INDEX for t in labels[1:])
            total, count = total + out.loss.item() * n, count + n
    assert count == len(tok("4<|im_end|>\n")["input_ids"]) + len(
        tok("hello there<|im_end|>\n")["input_ids"]
    )
    assert got == pytest.approx(total / count, rel=1e-5)
    # changing only the prompt changes nothing that is counted... but the context does
    ids, _ = encode_example(tok, val[1], max_length=None)
    with torch.no_grad():
        full = model(input_ids=torch.tensor([ids]), labels=torch.tensor([ids])).loss.item()
    single = validation_loss(model, tok, [val[1]], max_length=None, batch_size=1)
    assert single != pytest.approx(full, rel=1e-3)


def test_validation_loss_rejects_empty(tiny_base):
    with pytest.raises(ValueError, match="empty"):
        validation_loss(tiny_base.model, tiny_base.tokenizer, [], max_length=None, batch_size=2)


def test_batched_generation_matches_one_by_one(tiny_base, short_task):
    tok = tiny_base.tokenizer
    prompts = [prompt_ids(tok, ex) for ex in short_task(5, seed=4)]
    assert len({len(p) for p in prompts}) > 1  # left padding is exercised
    batched = generate(tiny_base.model, tok, prompts, max_new_tokens=6, batch_size=5)
    single = [
        generate(tiny_base.model, tok, [p], max_new_tokens=6, batch_size=1)[0] for p in prompts
    ]
    assert batched == single
    assert any(batched)


def test_generation_stops_at_end_of_turn(tiny_base, monkeypatch):
    tok = tiny_base.tokenizer
    end = tok.convert_tokens_to_ids("<|im_end|>")
    a = tok.convert_tokens_to_ids("a")
    model = tiny_base.model
    real_generate = model.generate

    def fake_generate(input_ids, attention_mask, generation_config):
        assert end in generation_config.eos_token_id and not generation_config.do_sample
        tail = torch.tensor([[a, a, end, a, a]] * input_ids.shape[0])
        return torch.cat([input_ids, tail], dim=1)

    monkeypatch.setattr(model, "generate", fake_generate)
    try:
        assert generate(model, tok, [[1, 2, 3]], max_new_tokens=5, batch_size=1) == ["aa"]
    finally:
        monkeypatch.setattr(model, "generate", real_generate)


def test_evaluate_reports_loss_metrics_and_predictions(
    tiny_base, short_task, monkeypatch, tmp_path
):
    (tmp_path / "user_eval.py").write_text(
        "def is_digit(prediction, reference, *, example, strict=False):\n"
        "    return {'score': float(prediction.isdigit()), 'seen': float(example.answer == reference)}\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    val = short_task(8, seed=5)
    cfg = EvalConfig(
        evaluators=(
            EvaluatorSpec("exact_match"),
            EvaluatorSpec("json_match", label="json", params={"lenient": True}),
            EvaluatorSpec("user_eval:is_digit", params={"strict": True}),
        ),
        samples=5,
        max_new_tokens=4,
        batch_size=4,
    )
    result = evaluate(tiny_base, tiny_base.tokenizer, val, cfg, max_length=64)
    sys.modules.pop("user_eval", None)
    m = result.metrics
    assert set(m) == {
        "val_loss",
        "eval.exact_match",
        "eval.json",
        "eval.json.valid",
        "eval.json.field_acc",
        "eval.is_digit",
        "eval.is_digit.seen",
    }
    assert m["val_loss"] == pytest.approx(
        validation_loss(tiny_base, tiny_base.tokenizer, val, max_length=64, batch_size=3)
    )
    assert m["eval.is_digit.seen"] == 1.0
    assert result.n_val == 8 and result.n_sampled == 5 and len(result.predictions) == 5
    sampled = sample_for_generation(val, cfg)
    for rec, ex in zip(result.predictions, sampled, strict=True):
        assert rec["id"] == ex.id and rec["reference"] == ex.answer
        assert isinstance(rec["prediction"], str)
        assert rec["exact_match"] == float(rec["prediction"].strip() == ex.answer)
        assert {"json", "json.valid", "json.field_acc", "is_digit", "is_digit.seen"} <= set(rec)
    mean = sum(r["exact_match"] for r in result.predictions) / 5
    assert m["eval.exact_match"] == pytest.approx(mean)
    # per-item scores for the paired analysis: loss on every item, evaluators on the sample
    items = result.item_scores
    assert set(items["val_loss"]) == {ex.id for ex in val}
    assert sum(items["val_loss"].values()) / len(val) == pytest.approx(m["val_loss"])
    assert set(items) == set(m)
    for name in set(m) - {"val_loss"}:
        assert set(items[name]) == {ex.id for ex in sampled}
        assert sum(items[name].values()) / 5 == pytest.approx(m[name])
    reused = evaluate(
        tiny_base, tiny_base.tokenizer, val, EvalConfig(), max_length=64, val_loss=1.25
    )
    assert reused.metrics == {"val_loss": 1.25} and reused.predictions == []
    assert reused.item_scores == {}
    forced = evaluate(
        tiny_base, tiny_base.tokenizer, val, EvalConfig(), max_length=64, val_loss=1.25,
        item_losses=True,
    )  # fmt: skip
    assert forced.metrics == {"val_loss": 1.25} and len(forced.item_scores["val_loss"]) == 8


def _brute_force_logprob(base, prompt: list[Message], option: str) -> float:
    """Summed log-probability of `option` as the assistant's whole turn, one unpadded sequence
    at a time, straight from the model's logits (no batching, no shared helpers)."""
    tok, model = base.tokenizer, base.model
    turns = [{"role": m.role, "content": m.content} for m in prompt]
    head = tok.apply_chat_template(
        turns, tokenize=True, add_generation_prompt=True, return_dict=True
    )
    full = tok.apply_chat_template(
        turns + [{"role": "assistant", "content": option}], tokenize=True, return_dict=True
    )
    head_ids, ids = list(head["input_ids"]), list(full["input_ids"])
    assert ids[: len(head_ids)] == head_ids
    model.eval()
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0].float()
    logp = logits.log_softmax(-1)
    return float(sum(logp[t - 1, ids[t]] for t in range(len(head_ids), len(ids))))


def test_choice_loglik_picks_the_most_likely_option(tiny_base):
    """The pick is the option the model itself finds most likely, checked item by item."""
    options = [["cat", "dog", "bird"], ["red", "green"], ["1", "22", "333", "4444"], ["yes", "no"]]
    prompts = ["Which animal barks?", "Colour of grass?", "Pick a number.", "Is ice cold?"]
    val = [
        _ex(p, opts[i % len(opts)], i, choices=opts)
        for i, (p, opts) in enumerate(zip(prompts * 3, options * 3, strict=True))
    ]
    cfg = EvalConfig(evaluators=(EvaluatorSpec("choice_loglik"),), batch_size=5)
    result = evaluate(tiny_base, tiny_base.tokenizer, val, cfg, max_length=64)
    by_id = {rec["id"]: rec for rec in result.predictions}
    picks = []
    for ex in val:
        lps = [_brute_force_logprob(tiny_base, list(ex.prompt), o) for o in ex.meta["choices"]]
        best = ex.meta["choices"][max(range(len(lps)), key=lps.__getitem__)]
        assert by_id[ex.id]["choice_loglik.choice"] == best, (ex.prompt, lps)
        assert by_id[ex.id]["choice_loglik"] == float(best == ex.answer)
        picks.append(best == ex.answer)
    assert result.metrics["eval.choice_loglik"] == pytest.approx(sum(picks) / len(picks))


def test_choice_loglik_runs_without_generation(tiny_base, monkeypatch):
    from loop import evaluate as evaluate_mod

    def no_generation(*a, **kw):
        raise AssertionError("loglik evaluators must not generate")

    monkeypatch.setattr(evaluate_mod, "generate", no_generation)
    val = [_ex("pick a letter", "b", i, choices=["a", "b", "c"]) for i in range(3)]
    cfg = EvalConfig(evaluators=(EvaluatorSpec("choice_loglik"),))
    result = evaluate(tiny_base, tiny_base.tokenizer, val, cfg, max_length=64)
    # the same item three times: one pick, and the metric is that pick's score
    assert len({rec["choice_loglik.choice"] for rec in result.predictions}) == 1
    assert result.metrics["eval.choice_loglik"] == result.predictions[0]["choice_loglik"]
    for rec in result.predictions:
        assert rec["prediction"] is None
        assert rec["choice_loglik.choice"] in ("a", "b", "c")
        assert rec["choice_loglik"] == float(rec["choice_loglik.choice"] == "b")


def test_evaluator_params_checked_up_front():
    with pytest.raises(
        ValueError,
        match=r"eval\.evaluators\[0\] \(json_match\)\.params:.*accepted: fields, lenient, ignore_case",
    ):
        build_evaluators([EvaluatorSpec("json_match", params={"feilds": ["a"]})])
    with pytest.raises(ValueError, match=r"eval\.evaluators\[0\] \(regex\)\.params"):
        build_evaluators([EvaluatorSpec("regex")])  # pattern is required
    with pytest.raises(ValueError, match="unknown evaluator"):
        build_evaluators([EvaluatorSpec("nope")])
    two = build_evaluators(
        [
            EvaluatorSpec("regex", params={"pattern": "a"}),
            EvaluatorSpec("regex", label="regex_b", params={"pattern": "b"}),
        ]
    )
    assert [e.label for e in two] == ["regex", "regex_b"]


def test_evaluator_errors_name_the_example(tiny_base):
    val = [_ex("q", "not json", 7)]
    cfg = EvalConfig(evaluators=(EvaluatorSpec("json_match"),), max_new_tokens=2)
    with pytest.raises(
        ValueError, match=r"json_match on example .* \(v\.jsonl:7\).*reference is not valid JSON"
    ):
        evaluate(tiny_base, tiny_base.tokenizer, val, cfg, max_length=64)


class _Bigram(torch.nn.Module):
    """logits[t] = table[input_ids[t]]: greedy decoding follows `table`'s row-wise argmax."""

    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.table = torch.nn.Parameter(table)

    def forward(self, input_ids, attention_mask=None):
        import types

        return types.SimpleNamespace(logits=self.table[input_ids])


def test_greedy_flags_say_whether_greedy_decoding_writes_the_answer():
    from loop.models import answer_logprobs

    vocab, stop = 12, 11
    table = torch.zeros(vocab, vocab)
    for a, b in ((1, 5), (5, 7), (7, stop), (stop, 3), (3, 3), (2, 4), (4, 4)):
        table[a, b] = 5.0  # greedy: 1 -> 5 -> 7 -> stop, and 2 -> 4 -> 4 ...

    def seq(prompt, answer):
        return prompt + answer, [IGNORE_INDEX] * len(prompt) + answer

    encoded = [
        seq([2, 1], [5, 7, stop]),  # the greedy chain to the stop token
        seq([2, 1], [5, 7, stop, 9]),  # what follows the stop is never generated
        seq([2, 1], [5, 8, stop]),  # one token off
        seq([1, 2], [4, 4]),  # greedy, but no stop token in the labels: every position counts
        seq([1, 2], [5, stop]),
    ]
    flags: list[bool] = []
    answer_logprobs(
        _Bigram(table), encoded, batch_size=2, pad_id=0, greedy_stops={stop}, greedy_out=flags
    )
    assert flags == [True, True, False, True, False]


def test_greedy_match_reads_the_validation_pass_and_generates_nothing(tiny_base, monkeypatch):
    from loop import evaluate as evaluate_mod

    def no_generation(*a, **kw):
        raise AssertionError("forced evaluators must not generate")

    monkeypatch.setattr(evaluate_mod, "generate", no_generation)
    val = [_ex(f"say {w}", w, i) for i, w in enumerate(["a", "bb", "a b", "zz"])]
    cfg = EvalConfig(evaluators=(EvaluatorSpec("greedy_match"),))
    got = evaluate(tiny_base, tiny_base.tokenizer, val, cfg, max_length=64, val_loss=1.0)
    flags: list[bool] = []
    evaluate_mod.validation_item_losses(
        tiny_base.model, tiny_base.tokenizer, val, max_length=64, batch_size=3, greedy_out=flags
    )
    assert [rec["greedy_match"] for rec in got.predictions] == [float(f) for f in flags]
    assert got.metrics["val_loss"] == 1.0 and set(got.item_scores) == {
        "val_loss",
        "eval.greedy_match",
    }
    with pytest.raises(ValueError, match="greedy_match"):
        build_evaluators([EvaluatorSpec("greedy_match", params={"strict": True})])


def test_the_dry_run_accepts_a_teacher_forced_evaluator(json_task):
    from loop.evaluate import dry_run

    dry_run([EvaluatorSpec("greedy_match"), EvaluatorSpec("json_match")], json_task(3))


# --------------------------------------------------------------------------------------------
# Stopping early, answers known from the validation pass, the merged adapter
# --------------------------------------------------------------------------------------------


def _rule(name):
    return evals.get(name).settled


def test_settled_rules_stop_where_the_score_is_decided():
    exact, norm, js = _rule("exact_match"), _rule("normalized_match"), _rule("json_match")
    # exact_match: decided once a whole word leaves the reference's path
    assert exact("Nimbus X3 and", "Nimbus X2")
    assert not exact("Nimbus X", "Nimbus X2")  # "X" may still become "X2"
    assert not exact("Nimbus X2 ", "Nimbus X2")  # trailing spaces are stripped
    assert not exact("Nimbu", "Nimbus X2") and not exact("   ", "Nimbus X2")
    assert exact("nimbus x3 ", "Nimbus X2", ignore_case=True)
    assert not exact("nimbus x", "Nimbus X2", ignore_case=True)
    # normalized_match: decided on whole words only
    assert norm("The answer is", "positive")
    assert not norm("Positive.", "positive") and not norm("positive \n", "positive")
    assert norm("positive and more", "positive")
    assert not norm("Positive, and", "positive")  # "and" is not a whole word yet
    # json_match: a complete leading fence decides; a closed bare object does not
    assert js('```json\n{"product": "Ember"}\n```', '{"product": "Ember"}')
    assert js('  ```\n{"a": 1}``` and then', '{"a": 1}')
    assert not js('```json\n{"product": "Ember"}\n', '{"product": "Ember"}')  # fence open
    assert not js("```json\n{'a': 1}\n```", '{"a": 1}')  # content is not JSON
    assert not js('{"product": "Ember"}', '{"product": "Ember"}')
    assert not js('{"product": "Ember"} and', '{"product": "Ember"}', lenient=True)


def test_a_closed_object_is_not_a_safe_stop_for_json_match():
    # why json_match stops only at the end: text after a closed object changes the score
    fn = evals.get("json_match").fn
    ref = '{"product": "Ember"}'
    assert fn(ref, ref)["score"] == 1.0
    assert fn(ref + " is the product", ref)["score"] == 0.0  # strict: trailing text
    fenced = ref + '\n```json\n{"product": "Orbit"}\n```'
    assert fn(fenced, ref, lenient=True)["score"] == 0.0  # a later fence replaces the object


@pytest.mark.parametrize(
    "name,params,reference",
    [
        ("exact_match", {}, "Nimbus X2"),
        ("exact_match", {"ignore_case": True}, "nimbus X2"),
        ("normalized_match", {}, "Nimbus X2!"),
        ("json_match", {}, '{"product": "Nimbus X2"}'),
        ("json_match", {"lenient": True, "ignore_case": True}, '{"product": "Nimbus X2"}'),
    ],
)
def test_a_settled_answer_scores_as_every_continuation_would(name, params, reference):
    """Fuzz: wherever the rule says settled, the evaluator returns the same result for the text
    there and for that text continued (what the unstopped path would have scored)."""
    reg, rng = evals.get(name), random.Random(0)
    pieces = [
        "Nimbus",
        " X2",
        "x2",
        " ",
        "\n",
        "\t",
        "!",
        ".",
        "`",
        "```",
        "```json\n",
        "{",
        "}",
        '"product"',
        ": ",
        '"Nimbus X2"',
        '"Ember"',
        "[",
        "]",
        ",",
        "e",
        "\u0301",
        "ok",
    ]
    fired = 0
    for _ in range(3000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 12)))
        if reference.startswith("{") and rng.random() < 0.3:
            text = "```json\n" + reference + "```" + text
        if not reg.settled(text, reference, **params):
            continue
        fired += 1
        final = reg.fn(text.strip(), reference, **params)
        for _ in range(5):
            more = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 8)))
            assert reg.fn((text + more).strip(), reference, **params) == final, (text, more)
    assert fired > 50  # the rule did fire: the test exercised it


def test_settled_check_needs_a_rule_for_every_generation_evaluator():
    with_rules = build_evaluators([EvaluatorSpec("exact_match"), EvaluatorSpec("greedy_match")])
    check = settled_check(with_rules, "Nimbus X2")
    assert check is not None and check("Orbit S5 is") and not check("Nimbus")
    both = build_evaluators([EvaluatorSpec("exact_match"), EvaluatorSpec("normalized_match")])
    assert not settled_check(both, "nimbus x2")("Nimbus X2 ")  # exact may still match
    assert settled_check(both, "nimbus x2")("Orbit S5 is")
    assert settled_check(build_evaluators([EvaluatorSpec("rouge_l")]), "x") is None
    assert settled_check(build_evaluators([EvaluatorSpec("greedy_match")]), "x") is None


def _counting_forward(model, monkeypatch):
    calls = []
    real = model.forward

    def forward(*args, **kwargs):
        calls.append(kwargs.get("input_ids").shape if "input_ids" in kwargs else None)
        return real(*args, **kwargs)

    monkeypatch.setattr(model, "forward", forward)
    return calls


def _greedy_tokens(model, prompt, n):
    """Greedy decoding by hand, one prompt, no cache: the reference the batched path must meet."""
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(n):
            ids.append(int(model(input_ids=torch.tensor([ids])).logits[0, -1].argmax()))
    return ids[len(prompt) :]


def test_generation_stops_each_row_once_settled_and_the_batch_when_all_are(
    tiny_base, short_task, monkeypatch
):
    tok, model = tiny_base.tokenizer, tiny_base.model
    prompts = [prompt_ids(tok, ex) for ex in short_task(4, seed=4)]
    tokens = [_greedy_tokens(model, p, 12) for p in prompts]
    stops = set(stop_token_ids(tok, model))
    assert not any(stops & set(t) for t in tokens)  # the random model runs to the limit

    def expected(row, check):  # the text at the first token where `check` holds
        for k in range(1, 13):
            text = tok.decode(tokens[row][:k], skip_special_tokens=True)
            if check is not None and check(text):
                return text.strip()
        return text.strip()

    # rows stop at different points, the others go on
    lengths = [3, 5, None, 2]
    checks = [None if n is None else (lambda t, n=n: len(t) >= n) for n in lengths]
    cut = generate(model, tok, prompts, max_new_tokens=12, batch_size=4, settled=checks)
    assert cut == [expected(row, c) for row, c in enumerate(checks)]
    # when every row has settled the batch ends: a prefill and 3 decode steps, not 11
    calls = _counting_forward(model, monkeypatch)
    four = [lambda t: len(tok.encode(t, add_special_tokens=False)) >= 4] * 4
    cut = generate(model, tok, prompts, max_new_tokens=12, batch_size=4, settled=four)
    assert cut == [expected(row, c) for row, c in enumerate(four)]
    assert len(calls) == 4


def test_stopped_answers_score_as_the_unstopped_ones(tiny_base, short_task, monkeypatch):
    """evaluate() with early stopping gives every item the scores the full answers get."""
    val = short_task(10, seed=6)
    cfg = EvalConfig(
        evaluators=(EvaluatorSpec("exact_match"), EvaluatorSpec("normalized_match")),
        max_new_tokens=10,
        batch_size=4,
    )
    stopped = evaluate(tiny_base, tiny_base.tokenizer, val, cfg, max_length=64)
    monkeypatch.setattr("loop.evaluate.settled_check", lambda evaluators, reference: None)
    full = evaluate(tiny_base, tiny_base.tokenizer, val, cfg, max_length=64)
    assert stopped.metrics == full.metrics
    assert stopped.item_scores == full.item_scores
    cut = 0
    for a, b in zip(stopped.predictions, full.predictions, strict=True):
        assert b["prediction"].startswith(a["prediction"])
        cut += len(a["prediction"]) < len(b["prediction"])
    assert cut >= 3  # rows did stop early (the random model writes tabs between its words)


def _memorizing_model(tok, examples, steps=150):
    """A tiny model trained (all weights) until greedy decoding writes `examples`' answers."""
    model = build_tiny_model(tok, seed=1)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    batch = [encode_example(tok, ex, max_length=None) for ex in examples]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        for _ in range(steps):
            for ids, labels in batch:
                loss = model(input_ids=torch.tensor([ids]), labels=torch.tensor([labels])).loss
                opt.zero_grad()
                loss.backward()
                opt.step()
    return model.eval().requires_grad_(False)


def test_answers_read_from_the_validation_pass_are_the_generated_ones(
    tiny_base, short_task, monkeypatch
):
    tok = tiny_base.tokenizer
    val = short_task(6, seed=8)
    model = _memorizing_model(tok, val[:3])
    flags: list[bool] = []
    validation_item_losses(model, tok, val, max_length=64, batch_size=3, greedy_out=flags)
    assert flags[:3] == [True] * 3  # memorized
    evaluators = build_evaluators([EvaluatorSpec("exact_match")])
    prompts = [prompt_ids(tok, ex) for ex in val]
    generated = generate(model, tok, prompts, max_new_tokens=8, batch_size=3)
    for ex, flag, answer in zip(val, flags, generated, strict=True):
        known = known_answer(tok, ex, stop_token_ids(tok, model), max_new_tokens=8, max_length=64)
        assert known == ex.answer  # the reference, as generate decodes it
        if flag:
            assert answer == known
    assert (
        known_answer(tok, val[0], stop_token_ids(tok, model), max_new_tokens=1, max_length=64)
        == val[0].answer[:1]
    )
    assert (
        known_answer(tok, val[0], stop_token_ids(tok, model), max_new_tokens=8, max_length=5)
        is None
    )
    # only the items the pass does not settle are generated
    calls = _counting_forward(model, monkeypatch)
    writes = {ex.id: f for ex, f in zip(val, flags, strict=True)}
    got = sample_answers(
        model,
        tok,
        val,
        evaluators,
        max_new_tokens=8,
        batch_size=6,
        max_length=64,
        writes_reference=writes,
    )
    assert [g for g, f in zip(got, flags, strict=True) if f] == [ex.answer for ex in val[:3]]
    assert all(calls) and all(shape[0] == len(val) - sum(flags) for shape in calls)
    full = generate(model, tok, prompts, max_new_tokens=8, batch_size=6)
    assert [exact_match_score(g, ex.answer) for g, ex in zip(got, val, strict=True)] == [
        exact_match_score(g, ex.answer) for g, ex in zip(full, val, strict=True)
    ]


def exact_match_score(prediction, reference):
    return evals.get("exact_match").fn(prediction, reference)


def test_a_merged_adapter_answers_as_the_unmerged_one(tiny_base, short_task):
    from loop.recipe import BudgetConfig, LoraConfig, TrainConfig
    from loop.train import merged_for_inference, release, train_cell

    tok = tiny_base.tokenizer
    before = {k: v.clone() for k, v in tiny_base.model.state_dict().items()}
    cfg = TrainConfig(
        learning_rate=3e-2,
        batch_size=4,
        budget=BudgetConfig(policy="min_steps", min_steps=8),
        warmup_ratio=0.0,
        max_length=64,
    )
    prompts = [prompt_ids(tok, ex) for ex in short_task(8, seed=9)]
    plain = generate(tiny_base.model, tok, prompts, max_new_tokens=8, batch_size=4)
    result = train_cell(tiny_base, short_task(16, seed=3), cfg, LoraConfig(r=4, alpha=8), seed=0)
    try:
        merged = generate(result.model, tok, prompts, max_new_tokens=8, batch_size=4)
        unmerged = generate(result.model, tok, prompts, max_new_tokens=8, batch_size=4, merge=False)
        assert merged == unmerged
        assert merged != plain  # the adapter changes the answers: the test can fail
        with merged_for_inference(result.model) as m:
            assert not any("lora" in n for n, _ in m.named_modules())
            ids = torch.tensor([prompts[0]])
            with torch.no_grad():
                a, b = m(input_ids=ids).logits, result.model(input_ids=ids).logits
        with torch.no_grad():
            b = result.model(input_ids=ids).logits
        assert torch.allclose(a, b, atol=1e-5)
        # leaving the block restores the LoRA layers and never wrote the base weights
        assert any("lora_A" in n for n, _ in result.model.named_modules())
    finally:
        release(result)
    after = tiny_base.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
