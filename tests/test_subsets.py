import random
from collections import Counter

import pytest

from loop.example import Message, make_example
from loop.subsets import check_sizes, manifest_bytes, ordering, take, write_manifest


def pool(n: int, tasks: tuple[str, ...] = ("a",)) -> list:
    return [
        make_example(
            [Message("user", f"question {i}"), Message("assistant", f"answer {i}")],
            source=f"p.jsonl:{i + 1}",
            format="chat",
            meta={"task": tasks[i % len(tasks)]},
        )
        for i in range(n)
    ]


def test_smaller_subsets_are_contained_in_larger_ones():
    p = pool(200)
    sizes = [10, 20, 40, 80, 160]
    subs = [set(take(p, tier="t", size=n, seed=3).ids) for n in sizes]
    for small, big in zip(subs, subs[1:], strict=False):
        assert small < big
    assert [len(s) for s in subs] == sizes


def test_order_does_not_depend_on_read_order_but_on_seed():
    p = pool(100)
    shuffled = p[:]
    random.Random(1).shuffle(shuffled)
    assert take(p, tier="t", size=30, seed=0).ids == take(shuffled, tier="t", size=30, seed=0).ids
    assert take(p, tier="t", size=30, seed=0).ids != take(p, tier="t", size=30, seed=1).ids


def test_nested_tiers_keep_relative_order():
    p = pool(100)
    high = p[::3]  # a tier inside the full pool
    full_order = [e.id for e in ordering(p, 5)]
    high_ids = {e.id for e in high}
    assert [e.id for e in ordering(high, 5)] == [i for i in full_order if i in high_ids]


def test_stratified_prefixes_keep_the_mix():
    p = pool(300, tasks=("a", "a", "b"))  # 2:1 mix
    for n in (9, 30, 90):
        counts = Counter(
            e.meta["task"] for e in take(p, tier="t", size=n, seed=2, stratify_by="task").examples
        )
        assert abs(counts["a"] - 2 * n / 3) <= 1, (n, counts)


def test_too_small_is_an_error_unless_capped():
    p = pool(10)
    with pytest.raises(ValueError, match="tier 't' has 10 training examples, fewer than size 20"):
        take(p, tier="t", size=20, seed=0)
    capped = take(p, tier="t", size=20, seed=0, on_too_small="cap")
    assert capped.capped and len(capped.examples) == 10
    assert check_sizes({"high": 10, "raw": 100}, (8, 16, 32), "error") == [
        "subsets.sizes: must be within (0, 10] (training pool of tier 'high'), got [16, 32]"
    ]
    assert check_sizes({"high": 10}, (8, 16), "cap") == []


def test_manifests_are_byte_identical_across_runs(tmp_path):
    a = write_manifest(take(pool(50), tier="t", size=16, seed=7), tmp_path / "a")
    b = write_manifest(take(list(reversed(pool(50))), tier="t", size=16, seed=7), tmp_path / "b")
    assert a.read_bytes() == b.read_bytes()
    assert a.name == "t-n16-s7.json"
    assert b'"ids_sha256"' in manifest_bytes(take(pool(5), tier="t", size=2, seed=0))
