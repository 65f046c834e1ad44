import numpy as np
import pytest

from loop.clean import semantic
from loop.clean.base import StepContext
from loop.example import Message, make_example
from loop.recipe import SemanticDedupConfig


def ex(prompt, answer="An answer."):
    return make_example(
        [Message("user", prompt), Message("assistant", answer)], source=prompt, format="chat"
    )


def test_paraphrased_prompts_are_dropped_near_topics_kept(tmp_path):
    pool = [
        ex("What is the capital of France?"),
        ex("what is the capital of France"),
        ex("Tell me the capital city of France."),
        ex("What is the capital of Germany?"),  # same topic, another question: ~0.66
        ex("How do I bake sourdough bread?"),
        ex("Explain how to bake a sourdough loaf."),
        ex("Write a poem about the sea."),
    ]
    cfg = SemanticDedupConfig(threshold=0.85)
    out = semantic.run(pool, cfg, StepContext(cache_dir=tmp_path))
    assert [(d.index, d.reason) for d in out.drops] == [
        (1, "semantic_duplicate"),
        (2, "semantic_duplicate"),
        (5, "semantic_duplicate"),
    ]
    assert [d.duplicate_of for d in out.drops] == [pool[0].id, pool[0].id, pool[4].id]
    assert (tmp_path / semantic.CACHE_FILE).is_file()


def test_cached_prompts_are_not_embedded_again(tmp_path, monkeypatch):
    texts = ["first prompt", "second prompt", "first prompt"]
    path = tmp_path / "emb.npz"
    first = semantic.embed(texts, cache_path=path)
    assert first.shape == (3, semantic.DIM)
    assert np.allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded although every prompt is cached")

    monkeypatch.setattr(semantic, "load_encoder", no_model)
    again = semantic.embed(texts, cache_path=path)
    assert np.array_equal(first, again)
    with pytest.raises(AssertionError):
        semantic.embed(["a prompt never seen"], cache_path=path)


def _planted(n, pairs, seed=0):
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(n, 32)).astype(np.float32)
    for a, b in pairs:
        emb[b] = emb[a] + 0.05 * rng.normal(size=32)
    return emb / np.linalg.norm(emb, axis=1, keepdims=True)


@pytest.mark.parametrize("exact_max", [10_000, 10])  # exact search, then the IVF index
def test_similar_pairs_exact_and_ivf(exact_max):
    planted = [(0, 500), (7, 1999), (1200, 1300)]
    emb = _planted(2000, planted)
    i, j, s = semantic.similar_pairs(emb, 0.95, exact_search_max=exact_max)
    assert sorted(zip(i.tolist(), j.tolist(), strict=True)) == planted
    assert (s >= 0.95).all()


def test_estimate_seconds():
    est = semantic.estimate_seconds
    assert est(0) == 0.0
    assert est(10_000, mean_chars=100) < est(20_000, mean_chars=100)
    assert est(10_000, mean_chars=100) < est(10_000, mean_chars=500)
    assert est(10_000, device="cuda") < est(10_000)
    assert est(10_000, cached=10_000) < est(10_000, cached=0)
    assert est(1000, rows_per_s=100, exact_search_max=10) == pytest.approx(6 + 10 + 0.3)


def test_estimate_counts_cached_rows(tmp_path):
    pool = [ex("alpha prompt"), ex("beta prompt")]
    cfg = SemanticDedupConfig()
    before = semantic.estimate(pool, cfg, cache_dir=tmp_path)
    assert (before.rows, before.cached) == (2, 0)
    semantic.embed(
        [semantic.embedding_text(pool[0], cfg.max_chars)], cache_path=tmp_path / semantic.CACHE_FILE
    )
    after = semantic.estimate(pool, cfg, cache_dir=tmp_path)
    assert (after.rows, after.cached) == (2, 1) and after.seconds < before.seconds


def test_template_text_is_not_embedded_and_minimal_pairs_stay(tmp_path):
    template = "Classify the event log line below as Information, Warning or Error."

    def item(line, answer):
        return ex(f"{template}\n{line}", answer)

    pool = [
        item("Disk C: is nearly full.", "Warning"),
        item("Disk C: is full.", "Error"),  # close in meaning, another label: a minimal pair
        item("Disk C: is nearly full!", "Warning"),  # a real duplicate
        item("The print spooler started.", "Information"),
        item("Windows Update installed 3 updates.", "Information"),
    ]
    texts = [semantic.embedding_text(e, 512, frozenset({template})) for e in pool]
    assert texts[0] == "Disk C: is nearly full."
    out = semantic.run(pool, SemanticDedupConfig(threshold=0.8), StepContext(cache_dir=tmp_path))
    assert [(d.index, d.reason) for d in out.drops] == [(2, "semantic_duplicate")]
    assert out.counts["minimal_pairs"] >= 1
    assert out.counts["shared_lines_ignored"] == 1


def test_raw_records_that_paraphrase_a_validation_prompt_are_leaks(tmp_path):
    validation = [ex("What is the capital of France?", "Paris."), ex("Write a poem about the sea.")]
    raw = [
        ex("Tell me the capital city of France.", "Paris."),  # a paraphrase, same answer: a leak
        ex(
            "Tell me the capital city of France.", "Lyon is a fine city in the south."
        ),  # minimal pair
        ex("What is the capital of Germany?", "Berlin."),  # same topic, another question
        ex("How do I bake sourdough bread?"),
    ]
    cfg = SemanticDedupConfig(threshold=0.85)
    found = semantic.validation_leaks(validation, raw, cfg, StepContext(cache_dir=tmp_path))
    assert list(found) == [0]
    assert found[0].startswith(f"paraphrase of validation {validation[0].id} (prompt cosine 0.")
    strict = SemanticDedupConfig(threshold=0.85, minimal_pairs="drop")
    assert list(semantic.validation_leaks(validation, raw, strict, StepContext())) == [0, 1]
