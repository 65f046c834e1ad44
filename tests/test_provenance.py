"""Provenance: pool sources and mapped fields, dates, tiers by `where`, licenses, drops per source."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from loop import provenance
from loop.clean.funnel import DroppedRecord, render_markdown, step_funnel
from loop.errors import DataError, PoolError, RecipeError
from loop.example import Message, make_example
from loop.pool import load_pool
from loop.recipe import PoolConfig, TierSpec, parse_recipe
from loop.subsets import take
from loop.tiers import assign_tiers, select


def write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def rows(prefix: str, n: int, **extra) -> list[dict]:
    return [
        {"instruction": f"{prefix} question {i}", "output": f"{prefix} answer {i}", **extra}
        for i in range(n)
    ]


def recipe(**sections):
    return parse_recipe({"name": "t", "pool": {"paths": ["a.jsonl"]}, **sections})


# ----------------------------------------------------------------------------- pool


def test_sources_put_name_license_and_date_in_every_record(tmp_path: Path):
    write(tmp_path / "expert.jsonl", rows("e", 2))
    write(tmp_path / "gen.jsonl", rows("g", 3, source="gpt-4o"))  # a record field named source
    cfg = parse_recipe(
        {
            "name": "t",
            "pool": {
                "sources": [
                    {"path": "expert.jsonl", "license": "cc-by-4.0", "cost_per_example": 3.5},
                    {
                        "path": "gen.jsonl",
                        "name": "synthetic",
                        "license": "MIT",
                        "date": "2025-06-01",
                    },
                ]
            },
        }
    ).pool
    load = load_pool(cfg, base_dir=tmp_path)
    metas = [ex.meta for ex in load.examples]
    assert [m["source"] for m in metas] == ["expert"] * 2 + ["synthetic"] * 3
    assert metas[0]["license"] == "cc-by-4.0" and "date" not in metas[0]
    assert metas[2]["date"] == "2025-06-01" and metas[2]["license"] == "MIT"
    assert metas[2]["record_source"] == "gpt-4o"  # the recipe's name wins; the field is kept


def test_field_map_carries_source_date_and_annotator(tmp_path: Path):
    write(
        tmp_path / "p.jsonl",
        [
            {
                "instruction": "q1",
                "output": "a1",
                "origin": "forum",
                "created": "2024-03-05T10:00:00Z",
                "who": "ann",
            },
            {"instruction": "q2", "output": "a2", "origin": "docs", "created": 1735689600},
            {"instruction": "q3", "output": "a3", "origin": "docs", "created": "March 2, 2023"},
        ],
    )
    cfg = PoolConfig(paths=("p.jsonl",))
    cfg = parse_recipe(
        {
            "name": "t",
            "pool": {
                "paths": ["p.jsonl"],
                "fields": {"source": "origin", "date": "created", "annotator": "who"},
            },
        }
    ).pool
    metas = [ex.meta for ex in load_pool(cfg, base_dir=tmp_path).examples]
    assert [m["source"] for m in metas] == ["forum", "docs", "docs"]
    assert [m["date"] for m in metas] == [
        "2024-03-05T10:00:00+00:00",
        "2025-01-01",  # epoch seconds 1735689600
        "2023-03-02",  # free text, read by dateutil
    ]
    assert metas[0]["annotator"] == "ann" and "origin" not in metas[0] and "created" not in metas[0]


def test_an_unreadable_mapped_date_is_a_bad_record_naming_the_field(tmp_path: Path):
    write(tmp_path / "p.jsonl", [{"instruction": "q", "output": "a", "when": "not a date"}])
    cfg = PoolConfig(paths=("p.jsonl",), fields=PoolConfig().fields.__class__(date="when"))
    with pytest.raises(PoolError) as err:
        load_pool(cfg, base_dir=tmp_path)
    assert "p.jsonl:1: field `when`: expected a date (ISO 8601" in str(err.value)
    assert "got 'not a date'" in str(err.value)


def test_parse_date_forms():
    utc = dt.timezone.utc
    assert provenance.parse_date("2025-01-02") == dt.datetime(2025, 1, 2, tzinfo=utc)
    assert provenance.parse_date("2025-01-02T03:00:00+02:00") == dt.datetime(
        2025, 1, 2, 1, tzinfo=utc
    )
    assert provenance.parse_date(0) == dt.datetime(1970, 1, 1, tzinfo=utc)
    assert provenance.parse_date("yesterday-ish") is None
    assert provenance.parse_date(True) is None


# ----------------------------------------------------------------------------- tiers by where


def ex(i: int, source: str, date: str | None = None, quality: float | None = None):
    meta = {"source": source, **({"date": date} if date else {})}
    e = make_example(
        [Message("user", f"prompt {i}"), Message("assistant", f"answer {i}")],
        source=f"p:{i}",
        format="chat",
        meta=meta,
    )
    if quality is not None:
        e.scores["quality"] = quality
    return e


POOL = [
    ex(i, "expert" if i % 3 == 0 else "synthetic", f"2024-{1 + i % 12:02d}-15", i / 30)
    for i in range(30)
]


def test_where_by_value_list_and_date_and_with_top():
    assert select(POOL, TierSpec("e", where={"source": "expert"})) == list(range(0, 30, 3))
    assert select(POOL, TierSpec("both", where={"source": ["expert", "synthetic"]})) == list(
        range(30)
    )
    late = select(POOL, TierSpec("late", where={"date": {"after": "2024-10-15"}}))
    assert late == [i for i in range(30) if 1 + i % 12 > 10]  # strictly after the day
    window = select(
        POOL, TierSpec("w", where={"date": {"after": "2024-02-01", "before": "2024-04-15"}})
    )
    assert window == [i for i in range(30) if 1 + i % 12 in (2, 3)]
    # top ranks within the filter: the best half of expert by quality
    assert select(POOL, TierSpec("e50", where={"source": "expert"}, top=0.5)) == [
        15,
        18,
        21,
        24,
        27,
    ]


def test_subsets_of_a_where_tier_nest_and_follow_seeds():
    specs = [
        TierSpec("expert", where={"source": "expert"}),
        TierSpec("synthetic", where={"source": "synthetic"}),
    ]
    train = assign_tiers(POOL, specs)
    pool = [e for e in train if "synthetic" in e.meta["tiers"]]
    assert len(pool) == 20 and all(e.meta["source"] == "synthetic" for e in pool)
    for seed in (0, 1):
        small, big = (take(pool, tier="synthetic", size=n, seed=seed) for n in (4, 12))
        assert set(small.ids) <= set(big.ids)
        assert take(pool, tier="synthetic", size=12, seed=seed).ids == big.ids  # same seed, same
    assert take(pool, tier="s", size=12, seed=0).ids != take(pool, tier="s", size=12, seed=1).ids


def test_where_shape_errors_name_the_field():
    with pytest.raises(RecipeError) as err:
        recipe(
            tiers=[
                {"name": "a", "where": {"date": {"after": "soon"}}},
                {"name": "b", "where": {"date": {"since": "2024-01-01"}}},
                {"name": "raw", "where": {"source": "x"}},
            ]
        )
    errors = err.value.errors
    assert "tiers[0].where.date.after: expected a date such as 2025-01-01, got 'soon'" in errors
    assert (
        "tiers[1].where.date: a mapping takes after, before (dates), got keys ['since']" in errors
    )
    assert "tiers[2]: the `raw` tier is the uncleaned pool; it takes no where" in errors


def test_yaml_dates_stay_text(tmp_path: Path):
    from loop.recipe import load_recipe

    path = tmp_path / "r.yaml"
    path.write_text(
        "name: t\npool: {paths: [a.jsonl]}\ntiers:\n"
        "  - {name: new, where: {date: {after: 2025-01-01}}}\n"
    )
    assert load_recipe(path).tiers[0].where == {"date": {"after": "2025-01-01"}}


def test_where_on_a_field_no_record_has_names_the_fields_that_exist():
    errors = provenance.where_errors(
        [TierSpec("a", where={"sorce": "expert"}), TierSpec("b", where={"source": "experts"})],
        POOL,
    )
    assert errors == [
        "tiers[0].where.sorce: no record has a field 'sorce' (did you mean 'source'?); fields the "
        "records have: date, format, source",
        "tiers[1].where.source: no record has source = 'experts'; values found: expert, synthetic",
    ]


def test_loop_validate_pool_rejects_a_where_on_a_missing_field(tmp_path: Path, monkeypatch, capsys):
    from loop.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    write(tmp_path / "e.jsonl", rows("e", 8))
    (tmp_path / "r.yaml").write_text(
        "name: t\npool: {sources: [{path: e.jsonl, name: expert}]}\n"
        "model: {name: tiny-random}\nclean: {steps: [exact_dedup]}\n"
        "tiers: [{name: new, where: {date: {after: 2025-01-01}}}]\nsubsets: {sizes: [2]}\n"
    )
    for args in (["validate", "r.yaml"], ["validate", "--pool", "r.yaml"]):
        assert main(args) == 2
        err = capsys.readouterr().err
        assert "tiers[0].where.date: no record has a field 'date'; fields the records have: " in err
        assert "format, source" in err


# ----------------------------------------------------------------------------- licenses


def sources_recipe(policy: str = "refuse", **extra):
    return {
        "name": "t",
        "pool": {
            "sources": [
                {"path": "a.jsonl", "name": "expert", "license": "cc-by-4.0"},
                {"path": "b.jsonl", "name": "scraped", "license": "CC-BY-NC-4.0"},
                {"path": "c.jsonl", "name": "logs"},
                {"path": "d.jsonl", "name": "code", "license": "MIT OR GPL-3.0-only"},
            ],
            **extra,
        },
        "licenses": {"allow": ["CC-BY-4.0", "MIT"], "policy": policy},
    }


def test_license_allow_list_refuses_at_validate():
    with pytest.raises(RecipeError) as err:
        parse_recipe(sources_recipe())
    assert err.value.errors == [
        "pool.sources[1].license (scraped): 'CC-BY-NC-4.0' is not in licenses.allow (CC-BY-4.0, MIT)",
        "pool.sources[2].license (logs): no license given; licenses.allow accepts CC-BY-4.0, MIT",
    ]  # cc-by-4.0 is CC-BY-4.0; "MIT OR GPL-3.0-only" is satisfied by MIT


def test_license_allow_list_warns_instead(tmp_path: Path):
    from loop import preflight

    r = parse_recipe(sources_recipe("warn"))
    for name in "abcd":
        write(tmp_path / f"{name}.jsonl", rows(name, 1))
    import os

    old = os.getcwd()
    os.chdir(tmp_path)
    try:
        notes = preflight.check(r, probe_store=False)
    finally:
        os.chdir(old)
    assert (
        "pool.sources[1].license (scraped): 'CC-BY-NC-4.0' is not in licenses.allow "
        "(CC-BY-4.0, MIT) (licenses.policy: warn)"
    ) in notes
    assert any(n.startswith("pool.sources[2].license (logs): no license given") for n in notes)


def test_license_expressions():
    ok = provenance.license_allowed
    assert ok("Apache-2.0 OR MIT", ["mit"])
    assert not ok("Apache-2.0 AND MIT", ["MIT"])
    assert ok("LicenseRef-internal", ["licenseref-internal"])
    assert not ok(None, ["MIT"])


def test_per_record_licenses_are_refused_when_the_pool_is_read():
    r = parse_recipe(
        {
            "name": "t",
            "pool": {"paths": ["a.jsonl"], "fields": {"license": "lic"}},
            "licenses": {"allow": ["MIT"]},
        }
    )
    pool = [ex(0, "a"), ex(1, "a")]
    pool[0].meta["license"] = "MIT"
    pool[1].meta["license"] = "CC-BY-NC-4.0"
    assert provenance.record_license_problems(r, pool) == [
        "pool.fields.license: 1 record(s) with license CC-BY-NC-4.0 (e.g. p:1) are not in "
        "licenses.allow (MIT)"
    ]


def test_tier_sources_list_licenses_and_cost():
    pool = [ex(0, "expert"), ex(1, "expert"), ex(2, "synthetic")]
    pool[0].meta["license"] = "cc-by-4.0"
    info = provenance.tier_sources("mixed", pool, {"expert": 3.0, "synthetic": 0.03})
    assert info.sources == {"expert": 2, "synthetic": 1}
    assert info.licenses == {"unknown": 2, "CC-BY-4.0": 1}
    assert info.cost_per_example == pytest.approx((3.0 * 2 + 0.03) / 3)
    assert provenance.tier_sources("x", pool, {"expert": 3.0}).cost_per_example is None


# ----------------------------------------------------------------------------- funnel, MLflow


def test_funnel_counts_drops_per_source():
    dropped = [
        DroppedRecord(POOL[0], "exact_dedup", "exact_duplicate"),
        DroppedRecord(POOL[3], "exact_dedup", "exact_duplicate"),
        DroppedRecord(POOL[1], "exact_dedup", "exact_duplicate"),
    ]
    f = step_funnel("exact_dedup", 30, 27, dropped)
    assert f.dropped_by_source == {
        "expert": {"exact_duplicate": 2},
        "synthetic": {"exact_duplicate": 1},
    }
    md = render_markdown([f], {}, 3)
    assert "| expert | 2 | exact_dedup:exact_duplicate 2 |" in md


def test_dataset_input_carries_sources_and_licenses():
    from loop.track import examples_frame, provenance_tags

    pool = [ex(0, "expert"), ex(1, "synthetic"), ex(2, "synthetic")]
    for e, lic in zip(pool, ["CC-BY-4.0", "MIT", "MIT"], strict=True):
        e.meta["license"] = lic
    frame = examples_frame(pool)
    assert list(frame["data_source"]) == ["expert", "synthetic", "synthetic"]
    assert list(frame["license"]) == ["CC-BY-4.0", "MIT", "MIT"]
    tags = {t.key: t.value for t in provenance_tags(pool)}
    assert tags == {
        "loop.sources": "synthetic (2), expert (1)",
        "loop.licenses": "MIT (2), CC-BY-4.0 (1)",
    }
    assert (
        "data_source"
        not in examples_frame(
            [
                make_example(
                    [Message("user", "q"), Message("assistant", "a")], source="s", format="chat"
                )
            ]
        ).columns
    )


# ----------------------------------------------------------------------------- the whole clean


def test_clean_with_two_sources_freshness_and_copyright(tmp_path: Path):
    from loop.clean import run_clean
    from loop.tiers import tier_pool

    def rec(i: int, source: str, date: str, answer: str | None = None):
        return make_example(
            [
                Message("user", f"{source} question number {i}?"),
                Message("assistant", answer or f"{source} answer number {i}."),
            ],
            source=f"{source}:{i}",
            format="chat",
            meta={"source": source, "date": date, "license": "MIT"},
        )

    pool = [rec(i, "expert", "2025-02-01") for i in range(20)]
    pool += [rec(i, "synthetic", "2025-03-01") for i in range(40)]
    pool[3] = rec(3, "expert", "2019-05-05")  # outdated
    pool[25] = rec(25, "synthetic", "2025-03-01", "Copyright 2021 Example Inc.")  # a notice
    r = parse_recipe(
        {
            "name": "t",
            "pool": {"paths": ["x.jsonl"]},
            "clean": {
                "steps": ["exact_dedup", "freshness", "copyright"],
                "freshness": {"not_before": "2024-01-01"},
                "split": {"validation": 0.1},
            },
            "tiers": [
                {"name": "expert", "where": {"source": "expert"}},
                {"name": "synthetic", "where": {"source": "synthetic"}},
            ],
        }
    )
    result = run_clean(r, pool, count_tokens=None, out_dir=tmp_path)
    funnel = {f.name: f for f in result.funnel}
    assert funnel["freshness"].dropped_by_source == {"expert": {"outdated": 1}}
    assert funnel["copyright"].dropped_by_source == {"synthetic": {"copyright_notice": 1}}
    expert, synthetic = tier_pool(result, "expert"), tier_pool(result, "synthetic")
    assert {e.meta["source"] for e in expert} == {"expert"}
    assert {e.meta["source"] for e in synthetic} == {"synthetic"}
    val = sum(e.split == "validation" for e in result.examples)
    assert len(expert) + len(synthetic) + val == 58
    md = (tmp_path / "funnel.md").read_text()
    assert "| expert | 1 | freshness:outdated 1 |" in md
    assert "| synthetic | 1 | copyright:copyright_notice 1 |" in md


def test_validation_can_be_drawn_from_one_source_only():
    from loop.clean.split import choose_validation
    from loop.recipe import SplitConfig

    chosen = choose_validation(POOL, SplitConfig(validation=0.2, where={"source": "expert"}))
    assert len(chosen) == 2  # 20% of the 10 expert records
    assert {POOL[i].meta["source"] for i in chosen} == {"expert"}
    # an input error (exit 2, no traceback), not a bug
    with pytest.raises(DataError, match="clean.split.where: 0 cleaned record"):
        choose_validation(POOL, SplitConfig(where={"source": "nobody"}))
    errors = provenance.where_errors([], POOL, extra={"clean.split.where": {"src": "x"}})
    assert errors[0].startswith("clean.split.where.src: no record has a field 'src'")


# ----------------------------------------------------------------------------- a sweep


def test_a_two_source_sweep_reports_licenses_and_costs(tmp_path: Path, monkeypatch):
    import mlflow
    import yaml
    from test_driver import children, write_pool

    from loop import driver
    from loop.recipe import load_recipe

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    write_pool(tmp_path / "all.jsonl", n=80)
    lines = (tmp_path / "all.jsonl").read_text().splitlines(keepends=True)
    (tmp_path / "expert.jsonl").write_text("".join(lines[:40]))
    (tmp_path / "synthetic.jsonl").write_text("".join(lines[40:]))
    recipe = {
        "name": "two",
        "pool": {
            "sources": [
                {
                    "path": "expert.jsonl",
                    "name": "expert",
                    "license": "CC-BY-4.0",
                    "cost_per_example": 2.0,
                },
                {
                    "path": "synthetic.jsonl",
                    "name": "synthetic",
                    "license": "MIT",
                    "cost_per_example": 0.02,
                },
            ]
        },
        "licenses": {"allow": ["CC-BY-4.0", "MIT"]},
        "clean": {
            "steps": ["exact_dedup"],
            "split": {"validation": 0.2, "where": {"source": "expert"}},
        },
        "tiers": [
            {"name": "expert", "where": {"source": "expert"}},
            {"name": "synthetic", "where": {"source": "synthetic"}},
        ],
        "subsets": {"sizes": [4, 8, 16], "seeds": [0]},
        "model": {"name": "tiny-random"},
        "lora": {"r": 4, "alpha": 8},
        "train": {
            "batch_size": 4,
            "max_length": 128,
            "budget": {"policy": "min_steps", "min_steps": 2, "epochs": 1},
        },
        "eval": {"evaluators": [{"name": "exact_match"}], "samples": 4, "max_new_tokens": 8},
    }
    (tmp_path / "two.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    out = driver.sweep(load_recipe(tmp_path / "two.yaml"))
    assert (out.ran, out.failed) == (6, 0)
    md = out.report.paths.markdown.read_text()
    assert "## Sources, licenses and cost" in md
    assert "| expert | 32 | expert 32 | CC-BY-4.0 32 | $2.00 |" in md
    assert "| synthetic | 40 | synthetic 40 | MIT 40 | $0.02 |" in md
    parent, kids = children("two")
    client = mlflow.MlflowClient()
    metrics = client.get_run(parent).data.metrics
    assert metrics["tier.expert.cost_per_example"] == 2.0
    cell = kids[kids["tags.loop.cell"] == "synthetic-n8-s0"].iloc[0]["run_id"]
    tags = {t.key: t.value for t in client.get_run(cell).inputs.dataset_inputs[0].tags}
    assert tags["loop.sources"] == "synthetic (8)" and tags["loop.licenses"] == "MIT (8)"


def test_a_glob_source_names_each_file_and_shares_its_license(tmp_path: Path):
    (tmp_path / "gen").mkdir()
    write(tmp_path / "gen" / "batch1.jsonl", rows("a", 1))
    write(tmp_path / "gen" / "batch2.jsonl", rows("b", 1))
    cfg = parse_recipe(
        {"name": "t", "pool": {"sources": [{"path": "gen/*.jsonl", "license": "MIT"}]}}
    ).pool
    metas = [ex.meta for ex in load_pool(cfg, base_dir=tmp_path).examples]
    assert [(m["source"], m["license"]) for m in metas] == [("batch1", "MIT"), ("batch2", "MIT")]
    named = parse_recipe(
        {"name": "t", "pool": {"sources": [{"path": "gen/*.jsonl", "name": "generated"}]}}
    ).pool
    assert {ex.meta["source"] for ex in load_pool(named, base_dir=tmp_path).examples} == {
        "generated"
    }


def test_a_missing_source_file_names_its_field(tmp_path: Path):
    from loop.pool import check_sources

    cfg = parse_recipe({"name": "t", "pool": {"sources": [{"path": "nope.jsonl"}]}}).pool
    errors, _ = check_sources(cfg, base_dir=tmp_path)
    assert errors[0].startswith("pool.sources[0].path: nope.jsonl: file not found")


def test_loop_validate_refuses_per_record_licenses(tmp_path: Path, monkeypatch, capsys):
    from loop.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    write(tmp_path / "p.jsonl", rows("a", 2, lic="MIT") + rows("b", 1, lic="CC-BY-NC-4.0"))
    (tmp_path / "r.yaml").write_text(
        "name: t\npool: {paths: [p.jsonl], fields: {license: lic}}\nmodel: {name: tiny-random}\n"
        "licenses: {allow: [MIT]}\n"
    )
    assert main(["validate", "r.yaml"]) == 2
    assert (
        "pool.fields.license: 1 record(s) with license CC-BY-NC-4.0 (e.g. p.jsonl:3) are not in "
        "licenses.allow (MIT)" in capsys.readouterr().err
    )
    (tmp_path / "r.yaml").write_text(
        "name: t\npool: {paths: [p.jsonl], fields: {license: lic}}\nmodel: {name: tiny-random}\n"
        "licenses: {allow: [MIT], policy: warn}\n"
    )
    assert main(["validate", "r.yaml"]) == 0
    assert "(licenses.policy: warn)" in capsys.readouterr().err
