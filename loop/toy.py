"""A seeded toy task, the same for the tests and the benchmarks: extract {name, age, city} as
JSON from a sentence about a person, with 0..`filler` extra sentences so lengths vary."""

from __future__ import annotations

import json
import random

from loop.example import Example, Message, make_example

NAMES = ["Alice", "Bruno", "Chen", "Dana", "Emeka", "Fatima", "Goran", "Hana", "Ivan", "Julia"]
CITIES = ["Paris", "Lagos", "Osaka", "Lima", "Oslo", "Cairo", "Denver", "Hanoi", "Porto", "Quito"]
TEMPLATES = [
    "{name} is {age} years old and lives in {city}.",
    "Meet {name}, a {age}-year-old from {city}.",
    "Living in {city}, {name} turned {age} this year.",
    "At {age}, {name} moved to {city}.",
]
FILLER = [
    "They enjoy hiking on weekends.",
    "Their favourite food is soup.",
    "They work as a teacher.",
    "Last summer they learned to sail, which took longer than expected.",
    "They are learning to play the violin and practise every evening after work.",
    "Their neighbours say they bake the best bread on the street.",
]
INSTRUCTION = "Extract the person's name, age and city as JSON with keys name, age, city."


def json_task(n: int, seed: int = 0, *, filler: int = 3) -> list[Example]:
    """`n` examples of the extraction task; the same `seed` gives the same examples."""
    if not 0 <= filler <= len(FILLER):
        raise ValueError(f"filler: must be within [0, {len(FILLER)}], got {filler}")
    rng = random.Random(seed)
    out = []
    for i in range(n):
        name, city, age = rng.choice(NAMES), rng.choice(CITIES), rng.randint(18, 90)
        text = rng.choice(TEMPLATES).format(name=name, age=age, city=city)
        text = " ".join([text, *rng.sample(FILLER, rng.randint(0, filler))])
        answer = json.dumps({"name": name, "age": age, "city": city})
        out.append(
            make_example(
                [Message("user", f"{INSTRUCTION}\n\n{text}"), Message("assistant", answer)],
                source=f"json_task:{seed}:{i}",
                format="instruction",
            )
        )
    return out
