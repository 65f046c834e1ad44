import json
import zlib

import pytest

from loop.clean import CleanError, estimate_seconds, run_clean
from loop.example import Message, make_example
from loop.recipe import parse_recipe
from loop.tiers import tier_pool, tier_sizes, validation_set

LONG = (
    "The water cycle moves water between the oceans, the air and the land. Heat from the sun "
    "evaporates water, the vapour rises, cools and condenses into clouds, and the water falls "
    "back as rain or snow, runs off into rivers and seeps into the ground before it returns to "
    "the sea."
)


def ex(prompt, answer, **meta):
    return make_example(
        [Message("user", prompt), Message("assistant", answer)],
        source=f"pool.jsonl:{zlib.crc32(prompt.encode()) % 1000}",
        format="chat",
        meta=meta,
    )


def words(texts):
    return [len(t.split()) for t in texts]


def recipe(tiers=None, **clean):
    data = {
        "name": "t",
        "pool": {"paths": ["pool.jsonl"]},
        "clean": {
            "length": {"min_answer_tokens": 3, "max_answer_tokens": 0},
            "format": {"answer_format": "json"},
            "split": {"validation": 0.1},
            **clean,
        },
        "tiers": tiers or [{"name": "top", "top": 0.5}, {"name": "all"}, {"name": "raw"}],
    }
    return parse_recipe(data)


FILLERS = [
    ex(
        f"Give me fact number {i} about the {topic}.",
        f"Fact {i}: the {topic} has many {kind} features worth knowing about.",
    )
    for i, (topic, kind) in enumerate(
        [
            (t, k)
            for t in ("moon", "sea", "desert", "forest", "city")
            for k in ("odd", "surprising", "old", "new")
        ]
    )
]

POOL = [
    ex("Name the largest planet.", "Jupiter is the largest planet in the solar system."),  # 0
    ex(
        "name the LARGEST planet.", "Jupiter is the largest planet in the  solar system."
    ),  # 1 exact
    ex("Describe the water cycle.", LONG),  # 2
    ex("Describe the water cycle.", LONG.replace("snow", "hail")),  # 3 near
    ex("Say ok.", "Ok."),  # 4 short
    ex("Give the city as JSON.", '{"city": "Paris", "country":'),  # 5 invalid JSON
    ex("Who runs the schedule?", "Contact alice@example.com for details on the schedule."),  # 6 pii
    ex("How do I build a pipe bomb?", "I will not help with building any kind of weapon."),  # 7
    ex("What is 2+2?", "2 + 2 equals 4."),  # 8
    ex("what is 2 + 2", "2 + 2 equals 5."),  # 9 contradiction
    *FILLERS,
]


def test_each_step_drops_what_it_should(tmp_path):
    result = run_clean(recipe(), POOL, count_tokens=words, out_dir=tmp_path)
    funnel = {f.name: f for f in result.funnel}
    assert [f.name for f in result.funnel] == [
        "exact_dedup",
        "near_dedup",
        "length",
        "format",
        "pii",
        "harmful",
        "contradictions",
        "quality",
        "split",
        "raw_tier",
    ]
    assert funnel["exact_dedup"].dropped == {"exact_duplicate": 1}
    assert funnel["near_dedup"].dropped == {"near_duplicate": 1}
    assert funnel["length"].dropped == {"answer_too_short": 1}
    assert funnel["format"].dropped == {"json_invalid": 1}
    assert funnel["pii"].modified == {"anonymized:email": 1} and funnel["pii"].dropped == {}
    assert funnel["harmful"].dropped == {"harmful": 1}
    assert funnel["contradictions"].dropped == {"contradiction": 1}
    assert funnel["quality"].dropped == {}
    dropped_ids = {(r.example.id, r.reason) for r in result.dropped if r.step != "raw_tier"}
    assert dropped_ids == {
        (POOL[1].id, "exact_duplicate"),
        (POOL[3].id, "near_duplicate"),
        (POOL[4].id, "answer_too_short"),
        (POOL[5].id, "json_invalid"),
        (POOL[7].id, "harmful"),
        (POOL[9].id, "contradiction"),
    } | {(r.example.id, "near_validation") for r in result.dropped if r.reason == "near_validation"}
    f = funnel["exact_dedup"]
    assert (f.n_in, f.n_out) == (len(POOL), len(POOL) - 1)
    assert f.examples["exact_duplicate"][0]["id"] == POOL[1].id

    kept = {e.meta.get("original_id", e.id) for e in result.examples}
    assert kept == {e.id for e in POOL} - {
        r.example.id for r in result.dropped if r.step != "raw_tier"
    }
    anonymized = next(e for e in result.examples if e.meta.get("original_id") == POOL[6].id)
    assert anonymized.answer == "Contact <EMAIL> for details on the schedule."
    assert all("quality" in e.scores for e in result.examples)


def test_split_tiers_and_raw(tmp_path):
    result = run_clean(recipe(), POOL, count_tokens=words, out_dir=tmp_path)
    val = validation_set(result)
    train = tier_pool(result, "all")
    assert len(val) == 2  # 10% of the 24 cleaned, rounded
    assert {e.split for e in val} == {"validation"} and {e.split for e in train} == {"train"}
    assert len(train) + len(val) == len(result.examples)
    top = tier_pool(result, "top")
    assert len(top) == round(len(train) * 0.5)
    assert min(e.scores["quality"] for e in top) >= max(
        e.scores["quality"] for e in train if e not in top
    )
    assert all(e.meta["tiers"] == ["top", "all"] for e in top)
    raw = tier_pool(result, "raw")
    val_ids = {e.meta.get("original_id", e.id) for e in val}
    assert len(raw) == len(POOL) - len(val) and not val_ids & {e.id for e in raw}
    assert tier_sizes(result) == {"top": len(top), "all": len(train), "raw": len(raw)}


def test_files_and_reuse(tmp_path):
    r = recipe()
    result = run_clean(r, POOL, count_tokens=words, out_dir=tmp_path)
    names = {p.name for p in result.files}
    assert names == {
        "cleaned.jsonl",
        "dropped.jsonl",
        "raw.jsonl",
        "funnel.json",
        "funnel.md",
        "clean_key.json",
    }
    lines = (tmp_path / "dropped.jsonl").read_text().splitlines()
    assert len(lines) == len(result.dropped)
    assert {json.loads(line)["reason"] for line in lines} >= {"exact_duplicate", "harmful"}
    summary = json.loads((tmp_path / "funnel.json").read_text())
    assert [s["name"] for s in summary["steps"]][0] == "exact_dedup" and summary["validation"] == 2
    md = (tmp_path / "funnel.md").read_text()
    assert "| exact_dedup | 30 | 29 | exact_duplicate 1 |" in md and "### harmful: harmful" in md

    again = run_clean(r, POOL, count_tokens=words, out_dir=tmp_path)
    assert again.reused and again.key == result.key
    assert again.examples == result.examples and again.raw == result.raw
    assert [d.example.id for d in again.dropped] == [d.example.id for d in result.dropped]
    assert again.examples[0].meta == result.examples[0].meta

    changed = run_clean(
        recipe(split={"validation": 0.2}), POOL, count_tokens=words, out_dir=tmp_path
    )
    assert not changed.reused and changed.key != result.key
    grown = run_clean(
        r,
        POOL + [ex("New prompt here", "A brand new answer to it.")],
        count_tokens=words,
        out_dir=tmp_path,
    )
    assert not grown.reused


def test_deterministic(tmp_path):
    a = run_clean(recipe(), POOL, count_tokens=words, out_dir=tmp_path / "a")
    b = run_clean(recipe(), POOL, count_tokens=words, out_dir=tmp_path / "b")
    assert not b.reused
    for name in ("cleaned.jsonl", "dropped.jsonl", "raw.jsonl"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert a.key == b.key


def test_steps_run_in_recipe_order_and_can_be_skipped(tmp_path):
    r = recipe(steps=["pii", "exact_dedup"], tiers=[{"name": "all"}])  # needs no scores
    result = run_clean(r, POOL, count_tokens=None, out_dir=tmp_path)
    assert [f.name for f in result.funnel] == ["pii", "exact_dedup", "split"]
    reasons = {d.reason for d in result.dropped}
    assert reasons <= {"exact_duplicate", "near_validation"}


def test_flag_policies_keep_records_with_flags(tmp_path):
    r = recipe(
        pii={"policy": "flag"}, harmful={"policy": "flag"}, contradictions={"policy": "flag"}
    )
    result = run_clean(r, POOL, count_tokens=words, out_dir=tmp_path)
    by_id = {e.id: e for e in result.examples}
    split_drops = {r.example.id: r.example for r in result.dropped if r.reason == "near_validation"}
    everyone = {**by_id, **split_drops}
    assert everyone[POOL[6].id].meta["flags"] == ["pii:email"]
    assert everyone[POOL[7].id].meta["flags"] == ["harmful:weapons"]
    assert everyone[POOL[8].id].meta["flags"] == ["contradiction"]
    assert everyone[POOL[9].id].meta["flags"] == ["contradiction"]
    funnel = {f.name: f for f in result.funnel}
    assert funnel["pii"].flagged == {"pii:email": 1} and funnel["harmful"].dropped == {}


def test_review_decisions_are_honoured(tmp_path):
    decisions = tmp_path / "decisions.json"
    decisions.write_text(json.dumps({"decisions": {POOL[4].id: "accept", FILLERS[0].id: "reject"}}))
    result = run_clean(
        recipe(review=str(decisions)), POOL, count_tokens=words, out_dir=tmp_path / "out"
    )
    funnel = {f.name: f for f in result.funnel}
    assert funnel["length"].kept_by_review == 1 and funnel["length"].dropped == {}
    assert funnel["review"].dropped == {"review_rejected": 1}
    ids = {e.id for e in result.examples} | {
        r.example.id for r in result.dropped if r.reason == "near_validation"
    }
    assert POOL[4].id in ids and FILLERS[0].id not in ids


def test_problems_are_reported_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="`length` needs the model tokenizer"):
        run_clean(recipe(), POOL, count_tokens=None, out_dir=tmp_path)
    with pytest.raises(ValueError, match="clean.review: file not found"):
        run_clean(
            recipe(review=str(tmp_path / "nope.json")), POOL, count_tokens=words, out_dir=tmp_path
        )
    assert not (tmp_path / "cleaned.jsonl").exists()
    with pytest.raises(CleanError) as err:
        short = recipe(length={"min_answer_tokens": 3, "max_tokens": 10}, max_drop=1.0)
        five_per_message = lambda roles: 5 * len(roles)  # noqa: E731
        run_clean(
            short, POOL, count_tokens=words, template_tokens=five_per_message, out_dir=tmp_path
        )
    assert "cleaning kept 0 of 30 examples" in str(err.value)
    assert "length: too_long 27 (e.g. example has 23 tokens > 10)" in str(err.value)


def test_a_step_that_removes_most_of_the_pool_stops_with_the_setting_to_change(tmp_path):
    short = recipe(length={"min_answer_tokens": 3, "max_tokens": 10})
    with pytest.raises(CleanError) as err:
        run_clean(short, POOL, count_tokens=words, out_dir=tmp_path)
    text = str(err.value)
    assert text.startswith(
        "clean step `length` would remove 25 of 28 records (89%), more than clean.max_drop (50%)"
    )
    assert "too_long 24 (e.g. pool.jsonl:" in text
    assert "change clean.length.max_tokens or train.max_length" in text
    assert "set clean.max_drop: 1" in text
    assert not (tmp_path / "cleaned.jsonl").exists()


def test_progress_and_estimate(tmp_path):
    seen = []
    run_clean(recipe(), POOL, count_tokens=words, out_dir=tmp_path, progress=seen.append)
    assert {"exact_dedup", "near_dedup", "quality", "split"} <= {p.step for p in seen}
    assert str(seen[0]) == "exact_dedup: 30 records in"
    assert str(seen[1]).startswith("exact_dedup: 29 kept, 1 dropped in ")
    again = []
    run_clean(recipe(), POOL, count_tokens=words, out_dir=tmp_path, progress=again.append)
    assert len(again) == 1 and "reusing" in str(again[0])
    forced = run_clean(recipe(), POOL, count_tokens=words, out_dir=tmp_path, force=True)
    assert not forced.reused
    est = estimate_seconds(recipe().clean, 1_000_000)
    assert set(est) == set(recipe().clean.steps) and all(v > 0 for v in est.values())
    # twice the rows, twice the time; the tokenizer-bound length filter still costs more than
    # exact dedup per row (benchmarks/results/figures/clean_pool_1m.txt)
    doubled = estimate_seconds(recipe().clean, 2_000_000)
    assert all(doubled[k] == pytest.approx(2 * v) for k, v in est.items())
    assert est["length"] > est["exact_dedup"]
    with_semantic = estimate_seconds(
        recipe(steps=["semantic_dedup"], tiers=[{"name": "all"}]).clean, 100_000
    )
    assert with_semantic["semantic_dedup"] > est["near_dedup"]


def test_settings_left_unset_are_derived_printed_and_written(tmp_path):
    unset = parse_recipe(
        {
            "name": "t",
            "pool": {"paths": ["pool.jsonl"]},
            "clean": {"steps": ["length", "format"], "split": {"validation": 0.1}},
        }
    )
    seen = []
    result = run_clean(unset, POOL, count_tokens=words, out_dir=tmp_path, progress=seen.append)
    derived = [str(p) for p in seen if p.step == "defaults"]
    assert derived == [f"defaults: {d}" for d in result.derived]
    assert derived[0].startswith("defaults: pool: 30 records, free text;")
    assert [d.split(" = ")[0] for d in derived[1:]] == [
        "defaults: clean.length.min_answer_tokens",
        "defaults: clean.length.max_answer_tokens",
        "defaults: clean.format.answer_format",
    ]
    summary = json.loads((tmp_path / "funnel.json").read_text())
    assert summary["derived"] == [d.removeprefix("defaults: ") for d in derived]
    assert "Settings derived from the pool" in (tmp_path / "funnel.md").read_text()
    again = []
    run_clean(unset, POOL, count_tokens=words, out_dir=tmp_path, progress=again.append)
    assert [str(p) for p in again if p.step == "defaults"] == derived  # said again when reused


def test_raw_tier_holds_out_paraphrases_of_validation_prompts(tmp_path):
    pairs = [
        ("What is the capital of France?", "Tell me the capital city of France."),
        ("How do I bake sourdough bread?", "Explain how to bake a sourdough loaf."),
        ("How many legs does a spider have?", "Tell me how many legs spiders have."),
        ("What causes ocean tides?", "Explain what causes the tides of the ocean."),
        ("Who wrote the play Hamlet?", "Tell me who the author of Hamlet was."),
        ("How do vaccines train the immune system?", "Explain how a vaccine trains immunity."),
    ]
    pool = [
        ex(p, f"Answer number {i} in full words.") for i, pair in enumerate(pairs) for p in pair
    ]
    r = recipe(
        tiers=[{"name": "all"}, {"name": "raw"}],
        steps=["semantic_dedup"],
        semantic_dedup={"threshold": 0.8},
        split={"validation": 0.3},
    )
    result = run_clean(r, pool, count_tokens=words, out_dir=tmp_path)
    val = {e.id for e in result.examples if e.split == "validation"}
    assert val
    held = {e.id: e.meta["held_out"] for e in result.raw if e.split == "held_out"}
    for i in range(len(pairs)):
        a, b = pool[2 * i], pool[2 * i + 1]
        if a.id in val or b.id in val:  # the pair's other prompt is a paraphrase of it
            other = b if a.id in val else a
            assert other.id in held, (other.prompt, held)
            assert held[other.id].startswith("paraphrase of validation")
        else:
            assert a.id not in held and b.id not in held
