import difflib
import json
import math
import re
from collections import Counter

import phonenumbers
import pytest

from loop.demo import (
    DEFAULT_RATES,
    PRODUCTS,
    Planted,
    format_score,
    load_truth,
    score_cleaning,
    source_line,
    write_demo_pool,
)
from loop.example import Message, content_id
from loop.pool import load_pool
from loop.recipe import PoolConfig

KEYS = ["category", "priority", "product", "order_id"]
# Written for the test, independently of the generator's templates.
CATEGORY_WORDS = {
    "billing": r"charge|invoice|billed|overcharged|payment|receipt|subscription fee",
    "shipping": r"arrived|tracking|courier|shipped|transit|delivery|delivered|lost in the mail",
    "technical": r"turn on|crashing|error code|firmware|wifi|flickers|battery|freezes|bluetooth|"
    r"buzzing|overheats|offline",
    "account": r"log ?in|password|locked out|two-factor|username|account|verification|profile",
    "returns": r"return|exchange|send it back|sent back|wrong size|replacement|take back|swap",
}
PRIORITY_WORDS = {  # one cue word per level; medium has none
    "low": r"\bno rush\b",
    "high": r"\bsoon\b",
    "urgent": r"\burgent\b",
}
EMAIL = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")


def records(path):
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def user_and_answer(rec):
    """The (user, assistant) texts of a record, mapped as DESIGN.md says."""
    if "messages" in rec:
        return rec["messages"][0]["content"], rec["messages"][1]["content"]
    if "instruction" in rec:
        user = rec["instruction"] + (f"\n\n{rec['input']}" if rec["input"] else "")
        return user, rec["output"]
    return rec["prompt"], rec["completion"]


def message_of(user):
    return user.split("\n\n", 1)[1]


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    p = write_demo_pool(tmp_path_factory.mktemp("demo"), rows=1200, seed=0)
    recs = records(p.paths[0])
    return p, {i: user_and_answer(r) for i, r in enumerate(recs, 1)}, recs


def test_same_seed_gives_byte_identical_files_and_another_seed_differs(tmp_path):
    a = write_demo_pool(tmp_path / "a", rows=300, seed=7)
    b = write_demo_pool(tmp_path / "b", rows=300, seed=7)
    c = write_demo_pool(tmp_path / "c", rows=300, seed=8)
    assert a.paths[0].read_bytes() == b.paths[0].read_bytes()
    assert a.truth_path.read_bytes() == b.truth_path.read_bytes()
    assert a.paths[0].read_bytes() != c.paths[0].read_bytes()


def test_defect_rates_match_the_configured_ones(tmp_path):
    p = write_demo_pool(tmp_path, rows=5000, seed=1)
    counts = Counter(t.kind for t in p.truth.values())
    assert sum(counts.values()) == 5000 == len(records(p.paths[0]))
    for kind, rate in DEFAULT_RATES.items():
        assert abs(counts[kind] / 5000 - rate) <= 0.002, kind
    assert abs(counts["clean"] / 5000 - (1 - sum(DEFAULT_RATES.values()))) <= 0.005


def test_rates_can_be_overridden_and_bad_rates_are_named(tmp_path):
    p = write_demo_pool(tmp_path, rows=1000, rates={"harmful": 0.1, "pii": 0})
    counts = p.counts
    assert counts["harmful"] == 100 and "pii" not in counts
    with pytest.raises(ValueError, match="unknown defect kind 'typo'"):
        write_demo_pool(tmp_path, rates={"typo": 0.1})
    with pytest.raises(ValueError, match=r"rates\.pii: expected a number within \[0, 1\]"):
        write_demo_pool(tmp_path, rates={"pii": 1.5})
    with pytest.raises(ValueError, match="add up to"):
        write_demo_pool(tmp_path, rates={"near_dup": 0.5})


def test_every_record_parses_and_is_one_of_the_three_formats(pool):
    p, _, recs = pool
    shapes = {
        frozenset({"instruction", "input", "output"}): "instruction",
        frozenset({"messages"}): "chat",
        frozenset({"prompt", "completion"}): "completion",
    }
    seen, by_source = Counter(), Counter()
    for line, rec in enumerate(recs, 1):
        fmt = shapes[frozenset(rec) - {"source"}]
        seen[fmt] += 1
        bad = p.truth[line].kind not in ("clean", "pii", "exact_dup", "near_dup", "over_long")
        by_source[rec["source"], bad] += 1
        assert fmt == p.truth[line].format
        assert "task" not in rec  # the truth file, not the pool, says what is off-task
        if fmt == "chat":
            assert [m["role"] for m in rec["messages"]] == ["user", "assistant"]
        user, answer = user_and_answer(rec)
        assert isinstance(user, str) and user.strip() and isinstance(answer, str) and answer.strip()
    assert set(seen) == {"instruction", "chat", "completion"}
    assert min(seen.values()) > 300  # roughly a third each
    # two sources, and the crowd batch holds most of the bad answers
    assert {src for src, _ in by_source} == {"helpdesk", "crowd"}
    crowd_bad = by_source["crowd", True] / (by_source["crowd", True] + by_source["helpdesk", True])
    crowd_ok = by_source["crowd", False] / (
        by_source["crowd", False] + by_source["helpdesk", False]
    )
    assert crowd_bad > 0.7 and 0.3 < crowd_ok < 0.5, by_source


def test_clean_answers_are_tickets_whose_labels_follow_from_the_text(pool):
    p, texts, _ = pool
    checked = 0
    for line, t in p.truth.items():
        if t.kind not in ("clean", "pii", "near_dup", "exact_dup"):
            continue
        user, answer = texts[line]
        msg = message_of(user)
        ticket = json.loads(answer)
        assert list(ticket) == KEYS
        ids = re.findall(r"\b[A-Z]-\d{5}\b", msg)
        assert ticket["order_id"] == (ids[0] if ids else None) and len(ids) <= 1
        cats = [c for c, words in CATEGORY_WORDS.items() if re.search(words, msg, re.I)]
        assert cats == [ticket["category"]], msg
        prios = [c for c, words in PRIORITY_WORDS.items() if re.search(words, msg, re.I)]
        assert prios == ([] if ticket["priority"] == "medium" else [ticket["priority"]]), msg
        assert ticket["product"] is None or ticket["product"] in msg
        assert 20 <= len(msg.split()) <= 80  # greeting and sign-off included
        checked += 1
    assert checked > 700


def test_each_defect_looks_like_its_kind(pool):
    p, texts, recs = pool
    for line, t in p.truth.items():
        user, answer = texts[line]
        if t.kind == "exact_dup":
            assert texts[t.of] == (user, answer) and p.truth[t.of].kind == "clean"
            assert p.truth[t.of].id == t.id
        elif t.kind == "near_dup":
            orig_user, orig_answer = texts[t.of]
            assert answer == orig_answer and user != orig_user
            ops = difflib.SequenceMatcher(None, orig_user.split(), user.split()).get_opcodes()
            changed = sum(max(i2 - i1, j2 - j1) for op, i1, i2, j1, j2 in ops if op != "equal")
            assert 1 <= changed <= 10
        elif t.kind == "contradiction" and t.of is not None:
            assert texts[t.of][0] == user and texts[t.of][1] != answer
            assert p.truth[t.of].kind == "contradiction"
            a, b = json.loads(answer), json.loads(texts[t.of][1])
            assert a["product"] == b["product"] and a["order_id"] == b["order_id"]
        elif t.kind == "broken_json":
            with pytest.raises(json.JSONDecodeError):
                json.loads(answer)
        elif t.kind == "schema":
            assert list(json.loads(answer)) != KEYS
        elif t.kind == "too_short":
            assert len(answer) <= 16
        elif t.kind == "over_long":
            assert len(user) > 3000 and list(json.loads(answer)) == KEYS
        elif t.kind == "off_task":
            assert t.task == "other" and not answer.startswith("{")
        elif t.kind == "harmful":
            assert re.search(r"can't|won't|not able|not something", answer)
            assert not answer.startswith("{")
        elif t.kind == "pii":
            found_phone = list(phonenumbers.PhoneNumberMatcher(user, "US"))
            assert EMAIL.search(user) or found_phone
        if t.kind in ("clean", "exact_dup", "near_dup", "wrong_label"):
            assert not EMAIL.search(user) and not list(phonenumbers.PhoneNumberMatcher(user, "US"))


def test_wrong_labels_are_valid_tickets_that_disagree_with_the_text(pool):
    p, texts, _ = pool
    wrong = [line for line, t in p.truth.items() if t.kind == "wrong_label"]
    assert wrong
    for line in wrong:
        user, answer = texts[line]
        ticket = json.loads(answer)
        assert list(ticket) == KEYS
        msg = message_of(user)
        cats = [c for c, words in CATEGORY_WORDS.items() if re.search(words, msg, re.I)]
        prios = [c for c, words in PRIORITY_WORDS.items() if re.search(words, msg, re.I)] or [
            "medium"
        ]
        assert (cats, prios) != ([ticket["category"]], [ticket["priority"]])


def test_priority_task_answers_the_priority_alone_from_short_messages(tmp_path):
    p = write_demo_pool(tmp_path, rows=1000, seed=3, task="priority")
    texts = {i: user_and_answer(r) for i, r in enumerate(records(p.paths[0]), 1)}
    kept = wrong = 0
    for line, t in p.truth.items():
        user, answer = texts[line]
        msg = message_of(user) if "\n\n" in user else user
        if t.kind in ("clean", "pii", "near_dup", "exact_dup", "wrong_label", "over_long"):
            ticket = json.loads(answer)
            assert list(ticket) == ["priority"]
            prios = [c for c, words in PRIORITY_WORDS.items() if re.search(words, msg, re.I)]
            truth = prios or ["medium"]
            assert len(truth) == 1, msg
            if t.kind == "wrong_label":
                assert ticket["priority"] != truth[0]
                wrong += 1
            else:
                assert ticket["priority"] == truth[0], msg
                kept += 1
            if t.kind in ("clean", "near_dup", "exact_dup", "wrong_label"):
                assert 8 <= len(msg.split()) <= 70, msg
        elif t.kind == "schema":
            assert list(json.loads(answer)) != ["priority"]
        elif t.kind == "broken_json":
            with pytest.raises(json.JSONDecodeError):
                json.loads(answer)
        elif t.kind == "contradiction" and t.of is not None:
            assert texts[t.of][0] == user and texts[t.of][1] != answer
    assert kept > 500 and wrong == p.counts["wrong_label"] > 0
    with pytest.raises(ValueError, match="task: expected one of ticket, priority"):
        write_demo_pool(tmp_path, task="sentiment")


def test_product_task_answers_the_product_named_in_the_message(tmp_path):
    p = write_demo_pool(tmp_path, rows=600, seed=4, task="product")
    texts = {i: user_and_answer(r) for i, r in enumerate(records(p.paths[0]), 1)}
    names = [n for n, _ in PRODUCTS]
    seen = Counter()
    for line, t in p.truth.items():
        user, answer = texts[line]
        msg = message_of(user) if "\n\n" in user else user
        if t.kind not in ("clean", "pii", "near_dup", "exact_dup", "wrong_label", "over_long"):
            continue
        ticket = json.loads(answer)
        assert list(ticket) == ["product"]
        named = [n for n in names if re.search(rf"\b{re.escape(n)}\b", msg)]
        assert len(named) <= 1, msg
        truth = named[0] if named else None
        if t.kind == "wrong_label":
            assert ticket["product"] != truth, msg
        else:
            assert ticket["product"] == truth, msg
        seen["null" if truth is None else "named"] += 1
    assert seen["named"] > 300 and seen["null"] == 0  # every message names its product


def test_clean_pool_has_enough_distinct_examples(pool):
    p, texts, _ = pool
    survivors = [t for t in p.truth.values() if t.kind in ("clean", "pii", "wrong_label")]
    assert len({t.id for t in survivors}) >= 700
    clean_users = [texts[t.line][0] for t in p.truth.values() if t.kind == "clean"]
    assert len(set(clean_users)) == len(clean_users)  # no duplicate that was not planted


def test_truth_ids_match_what_the_pool_reader_computes(pool):
    p, texts, _ = pool
    loaded = load_pool(PoolConfig(paths=(str(p.paths[0]),)))
    assert len(loaded.examples) == p.rows and not loaded.problems
    assert set(loaded.counts_by_format) == {"instruction", "chat", "completion"}
    for ex in loaded.examples:
        t = p.truth[source_line(ex.source)]
        assert ex.id == t.id and ex.format == t.format
        assert ex.meta["source"] in ("helpdesk", "crowd")  # a tier can select by it (`where:`)
    # and the id is the one of the plain (user, assistant) messages, whatever the format
    user, answer = texts[1]
    assert content_id([Message("user", user), Message("assistant", answer)]) == p.truth[1].id


def test_per_format_files_hold_the_same_pool_in_each_format(tmp_path):
    p = write_demo_pool(tmp_path, rows=200, mixed=False)
    assert [x.name for x in p.paths] == [
        "tickets.instruction.jsonl",
        "tickets.chat.jsonl",
        "tickets.completion.jsonl",
    ]
    per_file = [[user_and_answer(r) for r in records(path)] for path in p.paths]
    assert per_file[0] == per_file[1] == per_file[2]
    assert len(per_file[0]) == 200
    assert load_truth(p.truth_path) == dict(p.truth)


def test_score_cleaning_gives_exact_precision_and_recall():
    truth = {
        1: "clean",
        2: "clean",
        3: "exact_dup",
        4: "pii",
        5: "broken_json",
        6: "off_task",
        7: "wrong_label",
        8: "harmful",
    }
    s = score_cleaning(truth, kept_ids={1, 3, 4, 7}, dropped_ids={2, 5, 6})
    # removed: 5, 6 (right), 2 (a clean record); missed: 3 (kept), 8 (unaccounted)
    assert (s.true_pos, s.false_pos, s.false_neg, s.unaccounted) == (2, 1, 2, 1)
    assert s.precision == pytest.approx(2 / 3) and s.recall == pytest.approx(2 / 4)
    assert s.by_kind["clean"].planted == 2 and s.by_kind["clean"].removed == 1
    assert s.by_kind["pii"].kept == 1 and s.by_kind["wrong_label"].kept == 1
    pii_removed = score_cleaning(truth, kept_ids={1, 3, 7}, dropped_ids={2, 4, 5, 6})
    assert pii_removed.false_pos == 2 and pii_removed.precision == pytest.approx(2 / 4)
    table = format_score(s)
    for kind in truth.values():
        assert kind in table
    assert "66.7%" in table and "50.0%" in table and "1 record(s) neither" in table


def test_score_cleaning_accepts_any_one_member_of_a_duplicate_group():
    def planted(line, kind, of=None):
        return Planted(line, f"id{line}", kind, "ticket", "chat", of)

    truth = {1: planted(1, "clean"), 2: planted(2, "exact_dup", 1), 3: planted(3, "near_dup", 1)}
    copy_kept = score_cleaning(truth, kept_ids={2}, dropped_ids={1, 3})
    assert (copy_kept.true_pos, copy_kept.false_pos, copy_kept.false_neg) == (2, 0, 0)
    all_dropped = score_cleaning(truth, kept_ids=set(), dropped_ids={1, 2, 3})
    assert (all_dropped.true_pos, all_dropped.false_pos) == (2, 1)
    two_kept = score_cleaning(truth, kept_ids={2, 3}, dropped_ids={1})
    assert (two_kept.true_pos, two_kept.false_pos, two_kept.false_neg) == (1, 0, 1)


def test_score_cleaning_rejects_ids_it_cannot_place():
    with pytest.raises(ValueError, match="both kept and dropped"):
        score_cleaning({1: "clean"}, kept_ids={1}, dropped_ids={1})
    with pytest.raises(ValueError, match="not in the truth"):
        score_cleaning({1: "clean"}, kept_ids={2}, dropped_ids=set())
    s = score_cleaning({1: "clean"}, kept_ids={1}, dropped_ids=set())
    assert math.isnan(s.precision) and math.isnan(s.recall)


def test_source_line():
    assert source_line("mlruns/work/demo-data/tickets.jsonl:12") == 12
    with pytest.raises(ValueError, match="file:line"):
        source_line("dataset[3]")
