import pytest

from loop.clean import pii
from loop.clean.base import StepContext
from loop.example import Message, content_id, make_example
from loop.recipe import PiiConfig


def ex(answer, prompt="Give me the details.", system=None):
    msgs = ([Message("system", system)] if system else []) + [
        Message("user", prompt),
        Message("assistant", answer),
    ]
    return make_example(msgs, source="t", format="chat")


def find(text, **cfg):
    return [(s.kind, text[s.start : s.end]) for s in pii.detector(PiiConfig(**cfg)).find(text)]


def test_luhn():
    assert pii.luhn_ok("4111111111111111")
    assert not pii.luhn_ok("4111111111111112")
    assert not pii.luhn_ok("1234567890123456")


def test_detects_each_kind():
    text = (
        "Mail jane.doe+news@example.co.uk or call (650) 253-0000 / +44 20 7946 0958; "
        "server 192.168.10.7 and 2001:db8::1; card 4111 1111 1111 1111."
    )
    assert find(text) == [
        ("email", "jane.doe+news@example.co.uk"),
        ("phone", "(650) 253-0000"),
        ("phone", "+44 20 7946 0958"),
        ("ip", "192.168.10.7"),
        ("ip", "2001:db8::1"),
        ("credit_card", "4111 1111 1111 1111"),
    ]


@pytest.mark.parametrize(
    "text",
    [
        "Order 1234 5678 9012 3456 shipped.",  # 16 digits, fails Luhn
        "Use version 1.2.3 or 10.4.",  # not four parts
        "Octets 300.1.2.3 are out of range.",
        "The meeting is at 10:30:00 in room 12.",
        "Write to admin@localhost for help.",  # no top-level domain
        "In 2023 we sold 1,500,000 units.",
        "Call me at 123.",
    ],
)
def test_near_misses_are_not_pii(text):
    assert find(text) == []


def test_anonymize_replaces_with_typed_placeholders_in_every_message():
    pool = [
        ex(
            "Reach me at bob@example.com or (650) 253-0000, IP 10.0.0.1, card 4111-1111-1111-1111.",
            system="Support desk for bob@example.com",
        ),
        ex("Nothing personal here, just 42 apples."),
    ]
    out = pii.run(pool, PiiConfig(), StepContext())
    new = out.examples[0]
    assert new.answer == "Reach me at <EMAIL> or <PHONE>, IP <IP>, card <CREDIT_CARD>."
    assert new.messages[0].content == "Support desk for <EMAIL>"
    assert new.id == content_id(new.messages) != pool[0].id
    assert new.meta["original_id"] == pool[0].id
    assert out.examples[1] is pool[1]
    assert out.drops == ()
    assert out.modified == {
        "anonymized:credit_card": 1,
        "anonymized:email": 1,
        "anonymized:ip": 1,
        "anonymized:phone": 1,
    }


def test_drop_and_flag_policies():
    pool = [ex("Email carol@example.org twice: carol@example.org"), ex("No PII at all here.")]
    out = pii.run(pool, PiiConfig(policy="drop"), StepContext())
    assert [(d.index, d.reason, d.detail) for d in out.drops] == [(0, "pii", "email×2")]
    out = pii.run(pool, PiiConfig(policy="flag"), StepContext())
    assert out.drops == ()
    assert out.examples[0].meta["flags"] == ["pii:email"]
    assert out.examples[0].answer == pool[0].answer
    assert out.flagged == {"pii:email": 1}


def test_configured_patterns_and_kinds():
    pool = [ex("Badge EMP-123456, mail dan@example.com")]
    cfg = PiiConfig(kinds=("phone",), patterns={"employee_id": r"EMP-\d{6}"})
    out = pii.run(pool, cfg, StepContext())
    assert out.examples[0].answer == "Badge <EMPLOYEE_ID>, mail dan@example.com"


def test_texts_without_at_colon_or_digit_skip_the_detectors_and_lose_nothing(monkeypatch):
    # the one-scan gate: every text finds the same spans as with the gate open
    import random
    import re

    rng = random.Random(0)
    pieces = ["jane@example.com", "10.0.0.7", "::1", "2001:db8::1", "ab::cd", "+1 650-253-0000",
              "(650) 253-0000", "4111 1111 1111 1111", "\uff16\uff15\uff10 253 0000",
              "\u0661\u0662\u0663.\u0664.\u0665.\u0666", "word", "at", " ", ", ", "\n", "call"]  # fmt: skip
    texts = ["".join(rng.choices(pieces, k=rng.randint(0, 12))) for _ in range(300)]
    det = pii.detector(PiiConfig())
    gated = [det.find(t) for t in texts]
    monkeypatch.setattr(pii, "_ANY_SIGN", re.compile(""))  # matches every text: no gate
    assert gated == [det.find(t) for t in texts]
    assert sum(map(bool, gated)) > 100  # the texts do hold PII
