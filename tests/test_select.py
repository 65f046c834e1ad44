"""Selection methods: rankings, IFD, k-center, their cache, and ranked tiers through a sweep."""

from __future__ import annotations

import dataclasses
import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from loop import select, subsets
from loop.cell import take_subset
from loop.example import Message, make_example
from loop.recipe import Cell, ModelConfig, RecipeError, parse_recipe, recipe_digest, stable_dict
from loop.select import IfdScore


def ex(prompt: str, answer: str, **scores: float):
    e = make_example(
        [Message("user", prompt), Message("assistant", answer)], source=f"t:{prompt}", format="chat"
    )
    return dataclasses.replace(e, scores=dict(scores))


def recipe(tiers, **extra):
    data = {
        "name": "sel",
        "pool": {"paths": ["p.jsonl"]},
        "tiers": tiers,
        "subsets": {"sizes": [2, 4], "seeds": [0, 1]},
        "model": {"name": "tiny-random"},
        **extra,
    }
    return parse_recipe(data)


# ----------------------------------------------------------------------------- recipe fields


def test_select_fields_parse_and_errors_name_the_field():
    r = recipe(
        [
            {"name": "random"},
            {"name": "ifd", "select": "ifd", "select_model": "tiny-random"},
            {"name": "longest", "select": "length"},
            {"name": "diverse", "select": "diversity", "top": 0.5},
        ]
    )
    assert [t.select for t in r.tiers] == ["random", "ifd", "length", "diversity"]
    with pytest.raises(RecipeError) as err:
        recipe(
            [
                {"name": "a", "select": "idf"},
                {"name": "raw", "select": "length"},
                {"name": "b", "select_model": "tiny-random"},
                {"name": "c", "select": "quality"},
            ],
            clean={"steps": ["exact_dedup"]},
        )
    text = str(err.value)
    assert "tiers[0].select: must be one of 'random', 'ifd'" in text and "'ifd'?" in text
    assert "tiers[1].select: the `raw` tier is the uncleaned pool" in text
    assert "tiers[2].select_model: only tiers with select: ifd" in text
    assert "tiers[3].select (c): selects by quality score" in text


def test_recipes_without_the_new_fields_keep_their_digest():
    plain = recipe([{"name": "all"}])
    explicit = recipe([{"name": "all", "select": "random"}], selection={"batch_size": 4})
    assert "selection" not in stable_dict(plain)
    assert stable_dict(plain)["tiers"] == [{"name": "all"}]
    assert recipe_digest(plain) == recipe_digest(explicit)  # default select, cosmetic batch size
    ranked = recipe([{"name": "all", "select": "length"}])
    assert recipe_digest(ranked) != recipe_digest(plain)
    stricter = recipe([{"name": "all", "select": "length"}], selection={"min_answer_tokens": 5})
    assert recipe_digest(stricter) != recipe_digest(ranked)
    unused = recipe([{"name": "all"}], selection={"min_answer_tokens": 5})
    assert recipe_digest(unused) == recipe_digest(plain)  # no tier ranks: nothing changes


# ----------------------------------------------------------------------------- k-center


def test_k_center_picks_spread_out_points_first():
    rng = np.random.default_rng(0)
    corners = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])
    pts = np.concatenate([c + rng.normal(0, 0.3, (25, 2)) for c in corners])
    pts = np.concatenate([pts, [[5.0, 5.0]]])  # the middle point: nearest the mean
    order, radius = select.k_center_order(pts)
    assert order[0] == len(pts) - 1  # starts at the most central point
    first_four = {int(i) // 25 for i in order[1:5]}
    assert first_four == {0, 1, 2, 3}  # then one point of each far cluster
    assert sorted(order.tolist()) == list(range(len(pts)))  # a ranking of every point
    assert np.all(np.diff(radius[1:]) <= 1e-6)  # each pick covers less than the one before
    # a random start of 5 points would miss a cluster most of the time; k-center never does
    spread = min(np.linalg.norm(pts[a] - pts[b]) for a in order[1:5] for b in order[1:5] if a != b)
    assert spread > 8


def test_k_center_beyond_the_greedy_picks_follows_distance():
    pts = np.array([[0.0], [1.0], [2.0], [10.0], [4.0]])
    full, _ = select.k_center_order(pts)
    part, radius = select.k_center_order(pts, greedy_max=2)
    assert part[:2].tolist() == full[:2].tolist()  # the greedy prefix does not depend on the cap
    assert sorted(part.tolist()) == list(range(5))
    assert np.all(np.diff(radius[2:]) <= 0)  # the rest farthest first


# ----------------------------------------------------------------------------- IFD


class CopyModel(torch.nn.Module):
    """A hand-made causal LM: the next token is likely when it appeared earlier in the context
    (a copy head), uniform otherwise. An answer its prompt contains is easy with the prompt."""

    def __init__(self, vocab: int):
        super().__init__()
        self.vocab = vocab
        self.bias = torch.nn.Parameter(torch.zeros(1))

    def forward(self, input_ids, attention_mask=None):
        onehot = torch.nn.functional.one_hot(input_ids, self.vocab).float()
        if attention_mask is not None:
            onehot = onehot * attention_mask[..., None]
        seen = (onehot.cumsum(1) > 0).float()
        return type("Out", (), {"logits": 4.0 * seen + self.bias})()


def test_an_answer_the_prompt_makes_easy_has_the_lower_ifd(tiny_cfg):
    from loop.models import load_tokenizer

    tok = load_tokenizer(tiny_cfg)
    model = CopyModel(len(tok.get_vocab()) + 8)
    easy = ex("Repeat after me: quick brown fox", "quick brown fox")
    hard = ex("Say 1 2 3", "quick brown fox")
    got = select.score_ifd(model, tok, [easy, hard], batch_size=2, max_length=256)
    assert got[0].tokens == got[1].tokens  # the same answer tokens are scored in both passes
    assert got[0].alone == pytest.approx(got[1].alone)  # without the prompt they are the same
    assert got[0].cond < got[0].alone  # the prompt helps the easy one
    assert got[0].ifd < got[1].ifd
    # 0.59 vs 0.90 here: the unrelated prompt helps only through the template's own letters
    assert got[0].ifd < 0.7 and got[1].ifd > 0.85
    # batching does not change a score
    one = select.score_ifd(model, tok, [hard], batch_size=1, max_length=256)[0]
    assert one.cond == pytest.approx(got[1].cond, rel=1e-5)


def test_ifd_order_puts_ratios_above_one_then_short_answers_last():
    pool = [ex(f"q{i}", f"a{i}") for i in range(6)]
    s = {
        pool[0].id: IfdScore(0.5, 1.0, 5, 5),  # 0.5
        pool[1].id: IfdScore(0.9, 1.0, 5, 5),  # 0.9
        pool[2].id: IfdScore(1.2, 1.0, 5, 5),  # >= 1
        pool[3].id: IfdScore(0.1, 1.0, 3, 1),  # short answer: no IFD
        pool[4].id: IfdScore(math.nan, math.nan, 0, 4),  # cut off by max_length
        pool[5].id: IfdScore(1.05, 1.0, 5, 5),  # >= 1, closer to 1
    }
    order, groups = select.ifd_order(pool, s, min_answer_tokens=3)
    assert [e.id for e in order[:4]] == [pool[i].id for i in (1, 0, 5, 2)]
    assert {e.id for e in order[4:]} == {pool[3].id, pool[4].id}
    assert groups == {"below_1": 2, "at_or_above_1": 2, "short": 2}


def test_ifd_cache_is_reused_and_an_interrupted_run_resumes(tmp_path: Path, tiny_cfg, monkeypatch):
    from loop.models import load_base

    loads = []

    def counting(cfg: ModelConfig):
        loads.append(cfg.name)
        return load_base(cfg)

    pool = [ex(f"What is {i} plus {i}?", f"It is {2 * i}, of course.") for i in range(10)]
    monkeypatch.setattr(select, "CHUNK", 4)
    lines = []
    kw = dict(folder=tmp_path, batch_size=4, max_length=128, load_base=counting)
    first, run = select.ifd_scores(pool[:6], tiny_cfg, progress=lambda e: lines.append(e), **kw)
    assert (run.scored, run.cached) == (6, 0) and run.examples_per_s > 0
    said = " ".join(e.message for e in lines)
    assert "6 examples to score" in said and "about" in said and "examples/s" in said
    assert run.cache.is_file() and len(run.cache.read_text().splitlines()) == 6
    # a run cut short mid-line: the complete lines are kept, the broken one is scored again
    text = run.cache.read_text().splitlines()
    run.cache.write_text("\n".join(text[:5]) + "\n" + text[5][:20])
    again, run2 = select.ifd_scores(pool, tiny_cfg, **kw)
    assert (run2.scored, run2.cached) == (5, 5)
    for e in pool[:5]:
        assert again[e.id] == first[e.id]
    third, run3 = select.ifd_scores(pool, tiny_cfg, **kw)
    assert (run3.scored, run3.cached) == (0, 10) and third == again
    assert loads == ["tiny-random", "tiny-random"]  # the fully cached run loads no model
    # another max_length is another scorer: a cache file of its own
    _, run4 = select.ifd_scores(pool[:2], tiny_cfg, **{**kw, "max_length": 64})
    assert run4.scored == 2 and run4.cache != run.cache


def test_generation_prefix_opens_the_assistant_turn(tiny_cfg):
    from loop.models import load_tokenizer

    tok = load_tokenizer(tiny_cfg)
    assert tok.decode(select.generation_prefix(tok)) == "<|im_start|>assistant\n"
    assert select.generation_prefix(tok, as_text=True) == [tok.bos_token_id]


# ----------------------------------------------------------------------------- tiers


def _fake_embed(texts, **_):
    """Deterministic stand-in for MiniLM (no model load): a unit vector per text."""
    out = []
    for t in texts:
        rng = np.random.default_rng(abs(hash(t)) % (2**32))
        v = rng.normal(size=8)
        out.append(v / np.linalg.norm(v))
    return np.array(out, dtype=np.float32)


def test_rankings_are_deterministic_and_their_subsets_nest(tmp_path, tiny_cfg, monkeypatch):
    from loop.clean import semantic
    from loop.models import load_tokenizer

    monkeypatch.setattr(semantic, "embed", _fake_embed)
    r = recipe(
        [
            {"name": "random"},
            {"name": "ifd", "select": "ifd"},
            {"name": "longest", "select": "length"},
            {"name": "diverse", "select": "diversity"},
            {"name": "heuristic", "select": "quality"},
        ],
        subsets={"sizes": [2, 4, 8], "seeds": [0, 1]},
    )
    rng = random.Random(0)
    pool = [
        ex(f"question {i} " + "x" * rng.randint(0, 9), "word " * rng.randint(1, 12), quality=i % 4)
        for i in range(20)
    ]
    tok = load_tokenizer(tiny_cfg)
    shuffled = pool[::-1]
    a = select.rank_tiers(r, {t.name: pool for t in r.tiers}, folder=tmp_path / "a", tokenizer=tok)
    b = select.rank_tiers(
        r, {t.name: shuffled for t in r.tiers}, folder=tmp_path / "b", tokenizer=tok
    )
    assert set(a) == {"ifd", "longest", "diverse", "heuristic"}  # random has no ranking
    for name in a:
        assert [e.id for e in a[name].order] == [e.id for e in b[name].order], name
        assert sorted(e.id for e in a[name].order) == sorted(e.id for e in pool)
    lengths = [a["longest"].scores[e.id] for e in a["longest"].order]
    assert lengths == sorted(lengths, reverse=True)
    quality = [e.scores["quality"] for e in a["heuristic"].order]
    assert quality == sorted(quality, reverse=True)
    for name, ranking in a.items():
        order = list(ranking.order)
        subs = {(n, s): take_subset(r, order, Cell(name, n, s)) for n in (2, 4, 8) for s in (0, 1)}
        for s in (0, 1):
            assert set(subs[(2, s)].ids) <= set(subs[(4, s)].ids) <= set(subs[(8, s)].ids)
        for n in (2, 4, 8):
            assert subs[(n, 0)].ids == subs[(n, 1)].ids  # seeds do not change a ranked subset
            assert subs[(n, 0)].select == ranking.method
            assert subsets.manifest(subs[(n, 0)])["select"] == ranking.method
    rand = take_subset(r, pool, Cell("random", 4, 0))
    assert rand.select == "random" and "select" not in subsets.manifest(rand)
    # the stored k-center order is read back as it was written
    again = select.rank_tiers(
        r, {t.name: pool for t in r.tiers}, folder=tmp_path / "a", tokenizer=tok
    )
    assert "reused" in again["diverse"].note
    assert [e.id for e in again["diverse"].order] == [e.id for e in a["diverse"].order]


def test_top_still_filters_a_ranked_tier(tmp_path, tiny_cfg):
    from loop import tiers
    from loop.models import load_tokenizer

    r = recipe(
        [{"name": "long_of_best", "select": "length", "top": 0.5}],
        clean={"steps": ["exact_dedup", "quality"]},
    )
    pool = [ex(f"q{i}", "w " * (i + 1), quality=i / 10) for i in range(10)]
    members = [pool[i] for i in tiers.select(pool, r.tiers[0])]
    assert {e.scores["quality"] for e in members} == {0.5, 0.6, 0.7, 0.8, 0.9}
    got = select.rank_tiers(
        r, {"long_of_best": members}, folder=tmp_path, tokenizer=load_tokenizer(tiny_cfg)
    )
    assert [e.scores["quality"] for e in got["long_of_best"].order] == [0.9, 0.8, 0.7, 0.6, 0.5]


def test_a_sweep_tags_each_child_run_with_its_method(tmp_path, monkeypatch):
    import mlflow
    import yaml

    from loop import driver
    from loop.recipe import load_recipe

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with (tmp_path / "pool.jsonl").open("w") as f:
        for i in range(40):
            out = json.dumps({"name": f"n{i % 7}", "age": 20 + i, "pad": "z" * (i % 5)})
            f.write(json.dumps({"instruction": f"Extract: id={i} n{i % 7}", "output": out}) + "\n")
    data = {
        "name": "selsweep",
        "pool": {"paths": [str(tmp_path / "pool.jsonl")]},
        "clean": {"steps": ["exact_dedup"], "split": {"validation": 0.1}},
        "tiers": [{"name": "random"}, {"name": "longest", "select": "length"},
                  {"name": "ifd", "select": "ifd"}],
        "subsets": {"sizes": [2, 4, 8], "seeds": [0]},
        "model": {"name": "tiny-random"},
        "lora": {"r": 2, "alpha": 4},
        "train": {"batch_size": 4, "max_length": 96,
                  "budget": {"policy": "min_steps", "min_steps": 1, "epochs": 1}},
        "eval": {"evaluators": [{"name": "json_match"}], "samples": 4, "max_new_tokens": 4},
    }  # fmt: skip
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    out = driver.sweep(load_recipe(path))
    assert (out.ran, out.failed) == (9, 0)
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    exp = mlflow.get_experiment_by_name("selsweep")
    kids = mlflow.search_runs([exp.experiment_id], filter_string="tags.`loop.kind` = 'cell'")
    parent = mlflow.search_runs([exp.experiment_id], filter_string="tags.`loop.kind` = 'sweep'")
    assert parent.iloc[0]["metrics.select.ifd.examples_per_s"] > 0  # IFD throughput, logged
    by_tier = dict(zip(kids["tags.loop.tier"], kids["tags.loop.select"], strict=False))
    assert by_tier == {"random": "random", "longest": "length", "ifd": "ifd", "zero-shot": "none"}
    summary = json.loads((tmp_path / "mlruns/work/selsweep/report/summary.json").read_text())
    verdicts = summary["selection"]["verdicts"]
    assert {(v["tier"], v["reference"]) for v in verdicts} >= {("longest", "random")}
    assert all(v["verdict"] in ("better", "no different", "worse", "mixed") for v in verdicts)
    report = (tmp_path / "mlruns/work/selsweep/report/report.md").read_text()
    assert "Selection methods against random" in report


def test_each_method_gets_a_verdict_against_random():
    from loop import curves

    rng = np.random.default_rng(0)
    records = []
    for n in (8, 32, 128):
        base = 0.4 + 0.05 * math.log2(n / 8)
        for seed in range(3):
            for tier, shift in (("random", 0.0), ("good", 0.15), ("same", 0.0), ("bad", -0.15)):
                value = base + shift + rng.normal(0, 0.01)
                records.append(curves.Record(tier, n, seed, "eval.acc", value))
    a = curves.analyze(records, direction="higher", eval_size=2000, n_boot=300, reference="random")
    got = {v.tier: v for v in a.versus}
    assert set(got) == {"good", "same", "bad"}
    assert (got["good"].verdict, got["same"].verdict, got["bad"].verdict) == (
        "better",
        "no different",
        "worse",
    )
    assert [g.size for g in got["good"].sizes] == [8, 32, 128]
    assert all(g.ci[0] > 0 for g in got["good"].sizes)
    assert got["good"].text.startswith("tier good vs random (eval.acc): better at 8, 32, 128 (+15")
    assert "no different at the sizes run" in got["same"].text
    assert curves.analyze(records, direction="higher", eval_size=2000, n_boot=300).versus == ()
    doc = curves.to_json(a)
    assert [v["verdict"] for v in doc["selection"]["verdicts"]] == [
        got[t].verdict for t in ("good", "same", "bad")
    ]


def test_the_reference_is_the_random_tier_only_when_a_tier_is_ranked():
    from loop.recipe import reference_tier

    assert reference_tier(recipe([{"name": "all"}, {"name": "raw"}])) is None
    assert reference_tier(recipe([{"name": "x"}, {"name": "ifd", "select": "ifd"}])) == "x"
    both = recipe([{"name": "x"}, {"name": "random"}, {"name": "l", "select": "length"}])
    assert reference_tier(both) == "random"
    filtered = recipe(
        [{"name": "best", "top": 0.5}, {"name": "l", "select": "length"}],
        clean={"steps": ["quality"]},
    )
    assert reference_tier(filtered) is None  # a filtered draw is not random selection


def test_diversity_reads_the_embeddings_semantic_dedup_cached(tmp_path, tiny_cfg, monkeypatch):
    from loop.clean import semantic
    from loop.models import load_tokenizer

    calls: list[int] = []

    class Encoder:
        def encode(self, texts, **_):
            calls.append(len(texts))
            return _fake_embed(texts)

    monkeypatch.setattr(semantic, "load_encoder", lambda device=None: Encoder())
    r = recipe([{"name": "random"}, {"name": "diverse", "select": "diversity"}])
    pool = [ex(f"prompt number {i}", "an answer") for i in range(12)]
    # what semantic dedup writes: work/clean/cache/embeddings.npz, keyed by the prompt text
    cache = tmp_path / "clean" / "cache" / semantic.CACHE_FILE
    cfg = r.clean.semantic_dedup
    semantic.embed([semantic.embedding_text(e, cfg.max_chars) for e in pool], cache_path=cache)
    assert calls == [12]
    got = select.rank_tiers(
        r, {"diverse": pool}, folder=tmp_path / "select", tokenizer=load_tokenizer(tiny_cfg)
    )
    assert calls == [12]  # every prompt came from the cache: nothing embedded again
    assert len(got["diverse"].order) == 12


def test_a_clear_gap_smaller_than_epsilon_is_no_difference():
    from loop import curves

    rng = np.random.default_rng(1)
    records = [
        curves.Record(tier, n, seed, "eval.acc", 0.4 + 0.05 * math.log2(n / 8) + shift + noise)
        for n in (8, 32, 128)
        for seed in range(3)
        for tier, shift in (("random", 0.0), ("close", 0.003), ("far", 0.05))
        for noise in [rng.normal(0, 0.0005)]
    ]
    a = curves.analyze(records, direction="higher", eval_size=10**6, n_boot=300, reference="random")
    got = {v.tier: v for v in a.versus}
    assert all(g.ci[0] > 0 for g in got["close"].sizes)  # the gap is real...
    assert got["close"].verdict == "no different"  # ...but a third of ε (1 point)
    assert "within ±ε (1.0 points)" in got["close"].text
    assert got["far"].verdict == "better"


def test_loop_clean_and_size_checks_do_not_rank(tmp_path, monkeypatch):
    from loop import prepare

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with (tmp_path / "pool.jsonl").open("w") as f:
        for i in range(30):
            f.write(json.dumps({"instruction": f"Say {i} twice", "output": f"{i} {i}"}) + "\n")
    r = parse_recipe(
        {
            "name": "norank",
            "pool": {"paths": ["pool.jsonl"]},
            "clean": {"steps": ["exact_dedup"]},
            "tiers": [{"name": "random"}, {"name": "ifd", "select": "ifd"}],
            "subsets": {"sizes": [4]},
            "model": {"name": "tiny-random"},
        }
    )
    prep = prepare.clean(r)
    prepare.check_sizes(r)
    assert prep.rankings == {} and prep.tier_sizes == {"random": 27, "ifd": 27}
    assert not (tmp_path / "mlruns" / "work" / "norank" / "select").exists()  # nothing scored
    ranked = prepare.prepare(r)
    assert set(ranked.rankings) == {"ifd"}
    assert [e.id for e in ranked.tiers["ifd"]] == [e.id for e in ranked.rankings["ifd"].order]
