import csv
import json

import pytest

from loop.clean.funnel import DroppedRecord
from loop.clean.result import CleanResult
from loop.example import Message, make_example
from loop.recipe import TierSpec
from loop.review import export_review, import_review, load_decisions, review_rows
from loop.tiers import assign_tiers


def ex(i, score=0.5, split="train"):
    e = make_example(
        [Message("user", f"Prompt {i}\nwith two lines"), Message("assistant", f"Answer, {i}")],
        source=f"p:{i}",
        format="chat",
    )
    e.scores["quality"] = score
    return e.__class__(**{**e.__dict__, "split": split})


def result(per_reason=5):
    specs = (TierSpec("top", top=0.2), TierSpec("all"), TierSpec("raw"))
    train = assign_tiers([ex(i, i / 100) for i in range(50)], specs)
    val = [ex(100 + i, split="validation") for i in range(6)]
    dropped = [
        DroppedRecord(ex(200 + i), "exact_dedup", "exact_duplicate", "dup")
        for i in range(per_reason)
    ]
    dropped += [DroppedRecord(ex(300 + i), "pii", "pii", "email×1") for i in range(2)]
    dropped += [DroppedRecord(ex(400), "split", "near_validation", "same prompt as validation")]
    return CleanResult(tuple(train + val), (), tuple(dropped), (), {}, specs, "k")


def test_stratified_sample_each_record_once():
    rows = review_rows(result(), per_stratum=4, seed=1)
    strata = [r["stratum"] for r in rows]
    assert strata.count("tier:top") == 4 and strata.count("tier:all") == 4
    assert strata.count("validation") == 4
    assert strata.count("dropped:exact_dedup:exact_duplicate") == 4
    assert strata.count("dropped:pii:pii") == 2
    assert "tier:raw" not in strata and "dropped:split:near_validation" not in strata
    assert len({r["id"] for r in rows}) == len(rows)
    top_scores = [r["quality"] for r in rows if r["stratum"] == "tier:top"]
    assert min(top_scores) >= 0.4  # top 20% of 0.00..0.49
    assert all(r["decision"] == "" for r in rows)
    assert review_rows(result(), per_stratum=4, seed=1) == rows
    assert review_rows(result(), per_stratum=4, seed=2) != rows


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_export_fill_import_round_trip(tmp_path, suffix):
    path = tmp_path / f"review{suffix}"
    exported = export_review(result(), path, per_stratum=3)
    assert exported.rows == sum(exported.strata.values()) == 3 + 3 + 3 + 3 + 2
    if suffix == ".csv":
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
    else:
        rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert rows[0]["prompt"].count("\n") >= 1  # multi-line text survives
    rows[0]["decision"] = "reject"
    rows[1]["decision"] = " Accept "
    if suffix == ".csv":
        with path.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=rows[0].keys())
            w.writeheader()
            w.writerows(rows)
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    imported = import_review(path)
    assert imported.decisions == {rows[0]["id"]: "reject", rows[1]["id"]: "accept"}
    assert imported.counts == {"accept": 1, "reject": 1, "blank": len(rows) - 2}
    assert load_decisions(imported.path) == imported.decisions
    assert load_decisions(path) == imported.decisions


def test_import_merges_with_earlier_decisions(tmp_path):
    out = tmp_path / "decisions.json"
    out.write_text(json.dumps({"decisions": {"a": "accept", "b": "accept"}}))
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps({"id": "b", "decision": "reject"}) + "\n")
    assert import_review(path, out=out).decisions == {"a": "accept", "b": "reject"}


def test_bad_rows_name_file_line_and_field(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text('id,decision\nx1,accept\n"x2",maybe\n,reject\nx1,reject\n')
    with pytest.raises(ValueError) as err:
        import_review(path)
    lines = str(err.value).splitlines()
    assert lines[0] == f"{path}:3: field 'decision': expected accept, reject or empty, got 'maybe'"
    assert lines[1].startswith(f"{path}:4: field 'id': expected an example id")
    assert lines[2].startswith(f"{path}:5: field 'decision': x1 is 'accept' on an earlier line")
    bad_header = tmp_path / "h.csv"
    bad_header.write_text("identifier,verdict\nx,accept\n")
    with pytest.raises(ValueError, match="header lacks column"):
        import_review(bad_header)
    with pytest.raises(ValueError, match="must end in .csv or .jsonl"):
        export_review(result(), tmp_path / "r.txt")
