"""Which members of a duplicate cluster go: hand-made similarities, no model."""

import numpy as np

from loop.clean.pairs import resolve_group
from loop.example import Message, make_example


def _ex(prompt, answer):
    return make_example(
        [Message("user", prompt), Message("assistant", answer)], source="t", format="chat"
    )


# cosine between members 0-3: 0~1 and 1~2 are close, 0~2 is not; 3 is close to 0, other answer
SIM = np.array(
    [
        [1.00, 0.95, 0.80, 0.96],
        [0.95, 1.00, 0.94, 0.90],
        [0.80, 0.94, 1.00, 0.70],
        [0.96, 0.90, 0.70, 1.00],
    ]
)


def _resolve(order, keep_pairs=True):
    pool = [_ex(f"q{i}", "yes") for i in range(3)] + [_ex("q3", "no, the opposite")]
    return resolve_group(
        order,
        lambda m, kept: SIM[m, list(kept)],
        0.92,
        pool,
        keep_pairs=keep_pairs,
        answer_similarity=0.8,
    )


def test_each_drop_names_a_kept_record_within_the_threshold():
    out = _resolve([0, 1, 2, 3])
    # 1 duplicates 0; 2 is close only to 1, which went: kept, linked by the chain alone
    assert out.drops == ((1, 0, 0.95),)
    assert out.chained == 1
    # 3 is close to 0 but answers otherwise: a minimal pair, kept
    assert out.minimal_pairs == 1


def test_the_best_member_first_decides_what_stays():
    out = _resolve([1, 0, 2, 3])  # 1 has the best quality: 0 and 2 are both its duplicates
    assert out.drops == ((0, 1, 0.95), (2, 1, 0.94))
    # 3 was close to 0 only, which went: kept, and not a minimal pair (it is far from 1)
    assert out.chained == 1 and out.minimal_pairs == 0


def test_without_minimal_pairs_a_different_answer_is_still_a_duplicate():
    out = _resolve([0, 1, 2, 3], keep_pairs=False)
    assert (3, 0, 0.96) in out.drops and out.minimal_pairs == 0
