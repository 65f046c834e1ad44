import pytest

from loop.clean import quality
from loop.clean.base import StepContext
from loop.example import Message, make_example
from loop.recipe import QualityConfig

GOOD = (
    "Photosynthesis turns light, water and carbon dioxide into glucose and oxygen. "
    "It happens in the chloroplasts of plant cells, where chlorophyll absorbs light."
)


def ex(answer, prompt="Explain photosynthesis briefly."):
    return make_example(
        [Message("user", prompt), Message("assistant", answer)], source="t", format="chat"
    )


def test_signals_are_in_range_and_a_good_answer_scores_high():
    s = quality.signals(ex(GOOD))
    assert set(s) == set(quality.SIGNALS)
    assert all(0.0 <= v <= 1.0 for v in s.values())
    assert s == {
        **s,
        "repetition": 1.0,
        "overlap": 1.0,
        "format": 1.0,
        "charset": 1.0,
        "ending": 1.0,
    }
    assert quality.quality_score(ex(GOOD), QualityConfig()) > 0.9


@pytest.mark.parametrize(
    ("answer", "signal", "prompt"),
    [
        ("Yes.", "length", None),
        ("the cat sat on the mat. " * 6, "repetition", None),
        (
            "Explain photosynthesis briefly please and explain photosynthesis briefly.",
            "overlap",
            "Explain photosynthesis briefly please and explain photosynthesis briefly.",
        ),
        ('{"a": 1, "b": ', "format", None),
        ("```python\nprint('unclosed fence')", "format", None),
        ("CafÃ© rÃ©sumÃ© naÃ¯ve ï¿½ text", "charset", None),
        ("Photosynthesis is the process by which plants use light energy, and", "ending", None),
    ],
)
def test_each_signal_catches_its_problem(answer, signal, prompt):
    bad = quality.signals(ex(answer, prompt or "Explain photosynthesis briefly."))
    good = quality.signals(ex(GOOD))
    assert bad[signal] < good[signal]
    assert bad[signal] <= 0.5


def test_weights_choose_the_signals():
    e = ex("Yes.")
    only_length = QualityConfig(weights={s: 0.0 for s in quality.SIGNALS} | {"length": 1.0})
    assert quality.quality_score(e, only_length) == pytest.approx(quality.signals(e)["length"])
    assert quality.quality_score(e, QualityConfig()) > quality.quality_score(e, only_length)


def test_run_stores_each_signal_and_the_score():
    out = quality.run([ex(GOOD), ex("Yes.")], QualityConfig(), StepContext())
    assert out.drops == ()
    for e in out.examples:
        assert set(e.scores) == set(quality.SIGNALS) | {"quality"}
    assert out.examples[0].scores["quality"] > out.examples[1].scores["quality"]


def test_model_loss_signal_ranks_by_the_callers_losses():
    pool = [ex(GOOD), ex(GOOD + " More."), ex(GOOD + " Even more.")]
    cfg = QualityConfig(model_loss=True)
    out = quality.run(pool, cfg, StepContext(answer_loss=lambda exs: [2.0, 0.5, 1.0]))
    assert [e.scores["model_loss"] for e in out.examples] == [0.0, 1.0, 0.5]
    with pytest.raises(ValueError, match="answer_loss"):
        quality.run(pool, cfg, StepContext())
