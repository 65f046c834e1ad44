"""What leaves for the tracking store: no planted personal data, unless the recipe asks for it."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest
import yaml
from test_driver import tiny_recipe

from loop import driver, prepare
from loop.clean import pii
from loop.recipe import PiiConfig, load_recipe

EMAILS = ["alice.wonder@example.com", "bob.builder@corp.example.org"]
PHONES = ["+1 415-555-0132", "(650) 253-0000"]
CARDS = ["4111 1111 1111 1111", "5500-0000-0000-0004"]
PLANTED = [*EMAILS, *PHONES, *CARDS, "alice.wonder", "bob.builder"]


def test_masker_masks_every_string_keys_included():
    mask = pii.masker(PiiConfig(patterns={"badge": r"EMP-\d{4}"}))
    value = {"a": [f"mail {EMAILS[0]}", ("EMP-1234", 3)], f"{EMAILS[1]}": {"card": CARDS[0]}}
    assert mask(value) == {
        "a": ["mail <EMAIL>", ("<BADGE>", 3)],
        "<EMAIL>": {"card": "<CREDIT_CARD>"},
    }
    assert mask(7) == 7 and mask(None) is None


def _pii_recipe(tmp: Path, name: str, **tracking) -> Path:
    path = tiny_recipe(tmp, name=name, sizes=(4,), seeds=(0,))
    _pii_pool(tmp / "pool.jsonl")
    data = yaml.safe_load(path.read_text())
    data["train"]["max_length"] = 256  # the tiny model's tokens are bytes; these records are long
    if tracking:
        data["tracking"] = tracking
    path.write_text(yaml.safe_dump(data))
    return path


def _pii_pool(path: Path, n: int = 60) -> None:
    """The tiny JSON task, every record carrying an e-mail, a phone and a card number in the
    prompt and the e-mail in the answer (so every validation item has them); a few records
    twice, for exact_dedup to drop."""
    words = ["ann", "bob", "cy", "dee", "eve", "fay", "gus", "hal", "ivy", "jo"]
    lines = []
    for i in range(n):
        name, age = words[i % 10], 20 + i
        rec = {"instruction": "Extract the fields as JSON.", "input": f"name={name} age={age}"}
        out = {"name": name, "age": age}
        k = i % 2
        rec["input"] += f" email={EMAILS[k]} phone={PHONES[k]} card={CARDS[k]}"
        out["email"] = EMAILS[k]
        rec["output"] = json.dumps(out)
        lines.append(json.dumps(rec))
        if i % 9 == 0:
            lines.append(json.dumps(rec))  # an exact duplicate: dropped, with its PII
    path.write_text("\n".join(lines) + "\n")


def _store_text(root: Path) -> dict[str, str]:
    """Every file of the store (the SQLite database, its WAL, every artifact), as text; the
    local work folder (mlruns/work) is not the store."""
    out = {}
    for p in (root / "mlruns").rglob("*"):
        if p.is_file() and "work" not in p.relative_to(root / "mlruns").parts[:1]:
            out[str(p)] = p.read_bytes().decode("utf-8", "replace")
    return out


def _client_text(client: mlflow.MlflowClient, exp_id: str, tmp: Path) -> list[str]:
    """Everything MLflow hands back about the experiment's runs: names, params, tags, metrics,
    dataset inputs, and every artifact downloaded."""
    texts = []
    runs = client.search_runs([exp_id])
    assert len(runs) >= 4  # clean, sweep, two cells
    for r in runs:
        texts.append(r.info.run_name or "")
        texts += [f"{k}={v}" for k, v in r.data.params.items()]
        texts += [f"{k}={v}" for k, v in r.data.tags.items()]
        texts += [f"{k}={v}" for k, v in r.data.metrics.items()]
        for d in r.inputs.dataset_inputs if r.inputs else []:
            ds = d.dataset
            texts += [ds.name, ds.digest, ds.source, ds.schema or "", ds.profile or ""]
        folder = Path(client.download_artifacts(r.info.run_id, "", str(tmp / r.info.run_id)))
        for p in folder.rglob("*"):
            if p.is_file():
                texts.append(p.read_bytes().decode("utf-8", "replace"))
    return texts


def test_no_planted_personal_data_reaches_the_store(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    path = _pii_recipe(tmp_path, "private")
    # no `pii` step: the pool reaches training and evaluation as it is, so everything that
    # keeps the store clean is what happens on the way to the store
    assert "pii" not in yaml.safe_load(path.read_text())["clean"]["steps"]
    recipe = load_recipe(path)
    try:
        out = driver.sweep(recipe)
        assert (out.ran, out.failed) == (2, 0)  # tiers high and raw, one size, one seed

        # the planted values are in the pool and in the local work folder ...
        local = "".join(
            p.read_text() for p in (tmp_path / "mlruns" / "work").rglob("*.jsonl") if p.is_file()
        )
        for value in PLANTED:
            assert value in local, value
        # ... and nowhere in the store: its files, byte for byte
        store = _store_text(tmp_path)
        assert any("mlflow.db" in name for name in store)
        assert any("dropped.jsonl" in name for name in store)
        for name, text in store.items():
            for value in PLANTED:
                assert value not in text, (value, name)
        # nor in anything MLflow reads back
        client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
        exp = client.get_experiment_by_name("private")
        texts = _client_text(client, exp.experiment_id, tmp_path / "dl")
        for text in texts:
            for value in PLANTED:
                assert value not in text, (value, text[:200])
        joined = "\n".join(texts)
        # what does go: masked records, with their reasons and ids; the pool as a reference
        assert "<EMAIL>" in joined and "<PHONE>" in joined and "<CREDIT_CARD>" in joined
        assert '"reason": "exact_duplicate"' in joined
        assert '"records_read": 67' in joined.replace("\n", " ").replace("  ", " ")
    finally:
        mlflow.set_tracking_uri(None)


def test_log_raw_records_copies_the_pools_to_the_store_with_a_warning(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    path = _pii_recipe(tmp_path, "raw-copies", log_raw_records=True)
    messages = []
    try:
        prepare.clean(load_recipe(path), progress=lambda e: messages.append(e.message))
        assert any("log_raw_records is on" in m and "personal data" in m for m in messages)
        store = "".join(_store_text(tmp_path).values())
        for value in EMAILS + PHONES + CARDS:
            assert value in store, value  # the test above would see a leak
    finally:
        mlflow.set_tracking_uri(None)


@pytest.mark.parametrize("flag", [False, True])
def test_log_raw_records_does_not_change_the_cells(flag: bool):
    from loop.recipe import parse_recipe, recipe_digest

    base = {"name": "x", "pool": {"paths": ["p.jsonl"]}}
    other = {**base, "tracking": {"log_raw_records": flag}}
    assert recipe_digest(parse_recipe(base)) == recipe_digest(parse_recipe(other))
