"""The cost table on hand-made curves whose exchange rate is known."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loop import costs
from loop.curves import Record, analyze
from loop.provenance import TierSources

K = 4  # synthetic(n) = expert(n / K): one expert example is worth exactly K synthetic ones


def expert(n: float) -> float:
    return 0.9 - 0.8 * n**-0.5


def records(synthetic_sizes=(16, 32, 64, 128, 256, 512, 1024)) -> list[Record]:
    out = []
    for n in (16, 32, 64, 128, 256):
        for s, d in enumerate((-0.001, 0.0, 0.001)):
            out.append(Record("expert", n, s, "eval.acc", expert(n) + d))
    for n in synthetic_sizes:
        for s, d in enumerate((0.001, 0.0, -0.001)):
            out.append(Record("synthetic", n, s, "eval.acc", expert(n / K) + d))
    return out


SOURCES = {
    "expert": TierSources("expert", 300, {"expert": 300}, {"CC-BY-4.0": 300}, 3.5),
    "synthetic": TierSources("synthetic", 1200, {"synthetic": 1200}, {"MIT": 1200}, 0.05),
}


@pytest.fixture(scope="module")
def analysis():
    return analyze(records(), direction="higher", eval_size=100_000, n_boot=200)


def test_exchange_rate_recovers_the_known_ratio_with_an_interval(analysis):
    table = costs.cost_table(analysis, SOURCES, {"eval.acc": [0.8]})
    (rate,) = table.rates
    assert (rate.better, rate.other) == ("expert", "synthetic")
    assert rate.ratio == pytest.approx(K, rel=0.02)
    assert rate.ci[0] < K < rate.ci[1] and rate.ci[1] - rate.ci[0] < 1
    assert rate.at_size == 256
    assert rate.cost_ratio == pytest.approx(K * 0.05 / 3.5, rel=0.02)
    assert rate.text.startswith("1 expert ≈ 4 synthetic at equal eval.acc, 90% CI ")
    assert rate.text.endswith("synthetic is cheaper")


def test_cost_of_a_target_per_source(analysis):
    # expert(n) = 0.8 at n = 64; synthetic at n = 4 * 64 = 256
    table = costs.cost_table(analysis, SOURCES, {"eval.acc": [0.8]})
    exp, syn = table.targets
    assert (exp.tier, exp.status, syn.tier, syn.status) == (
        "expert",
        "reached",
        "synthetic",
        "reached",
    )
    assert exp.n == pytest.approx(64, rel=0.03) and syn.n == pytest.approx(256, rel=0.03)
    assert exp.cost == pytest.approx(64 * 3.5, rel=0.03)
    assert syn.cost == pytest.approx(256 * 0.05, rel=0.03)
    assert exp.n_ci[0] <= 64 <= exp.n_ci[1] and syn.n_ci[0] <= 256 <= syn.n_ci[1]
    assert exp.text.startswith("about 64 ($224) (90% CI ")


def test_targets_past_the_data_or_the_plateau_are_said_plainly(analysis):
    table = costs.cost_table(analysis, SOURCES, {"eval.acc": [0.86, 0.95, 0.2]})
    by = {(t.target, t.tier): t for t in table.targets}
    beyond = by[(0.86, "expert")]  # expert(256) = 0.85: reached only past the largest size
    assert beyond.status == "beyond_sizes_run" and beyond.n is None and beyond.cost is None
    assert beyond.text == (
        "not reached by 256 (the largest size run); the fit reaches it within one doubling, so "
        "run 512 to know"
    )
    never = by[(0.95, "synthetic")]  # above the plateau 0.9
    assert never.status == "never" and never.n is None
    assert never.text.startswith("never: its curve levels off at 0.9 (90% CI ")
    low = by[(0.2, "expert")]
    assert low.status == "at_smallest_size" and low.n == 16
    assert low.text == "reached already at its smallest size, 16 ($56.00)"


def test_only_one_source_reaching_its_plateau_is_named():
    recs = [Record(t, 0, s, "eval.acc", 0.3) for t in ("expert", "synthetic") for s in range(3)]
    for n in (16, 32, 64, 128, 256):
        for s, d in enumerate((-0.001, 0.0, 0.001)):
            recs.append(Record("expert", n, s, "eval.acc", 0.85 - 2 * n**-1.5 + d))
            recs.append(Record("synthetic", n, s, "eval.acc", expert(n / K) - d))
    table = costs.cost_table(
        analyze(recs, direction="higher", eval_size=100_000, n_boot=200), SOURCES
    )
    (line,) = table.plateau
    assert line.startswith("eval.acc: only tier expert reaches its plateau from about ")
    assert line.endswith("synthetic (more data pays) not yet")
    # default targets: each tier's own fitted score at its largest size, reached there
    own = [t for t in table.targets if t.tier == "expert" and t.status == "reached"]
    assert own and own[-1].n == pytest.approx(256, rel=0.01)


def test_a_loss_metric_counts_down():
    recs = [
        Record(t, n, s, "val_loss", 1.0 + 2.0 * (n / k) ** -0.5 + d)
        for t, k in (("expert", 1), ("synthetic", K))
        for n in (16, 32, 64, 128, 256, 512, 1024)
        for s, d in enumerate((-0.001, 0.0, 0.001))
    ]
    a = analyze(recs, direction="lower", n_boot=200)
    table = costs.cost_table(a, SOURCES, {"val_loss": [1.25]})  # expert: n = 64
    exp = next(t for t in table.targets if t.tier == "expert")
    assert exp.n == pytest.approx(64, rel=0.03)
    assert table.rates[0].ratio == pytest.approx(K, rel=0.03)


def test_metrics_and_report_section(analysis, tmp_path: Path):
    from loop.report import write_report

    table = costs.cost_table(analysis, SOURCES, {"eval.acc": [0.8]})
    m = costs.metrics(table)
    assert m["exchange.expert.synthetic.eval.acc.ratio"] == pytest.approx(K, rel=0.02)
    assert m["target.eval.acc.0.8.expert.cost"] == pytest.approx(224, rel=0.03)
    assert m["tier.synthetic.cost_per_example"] == 0.05
    paths = write_report(analysis, tmp_path, title="t", costs=table)
    md = paths.markdown.read_text()
    assert "## Sources, licenses and cost" in md
    assert "| expert | 300 | expert 300 | CC-BY-4.0 300 | $3.50 |" in md
    assert md.index("## Sources, licenses and cost") < md.index("## Warnings")
    summary = json.loads(paths.summary_json.read_text())
    assert summary["sources"]["exchange_rates"][0]["better"] == "expert"


def far_behind() -> list[Record]:
    """Synthetic 32x worse per example, run only to 128: its best stays below expert's at 16."""
    recs = [r for r in records() if r.tier == "expert"]
    for n in (16, 32, 64, 128):
        for s, d in enumerate((0.001, 0.0, -0.001)):
            recs.append(Record("synthetic", n, s, "eval.acc", expert(n / 32) + d))
    return recs


def test_no_rate_inside_the_sizes_gives_a_floor_not_an_extrapolation(tmp_path: Path):
    from loop.report import write_report

    a = analyze(far_behind(), direction="higher", eval_size=100_000, n_boot=200)
    (rate,) = costs.cost_table(a, SOURCES).rates
    assert rate.ratio is None and rate.ci is None and rate.cost_ratio is None
    assert rate.ratio_floor == 128 / 16 and rate.at_size == 16
    assert "1 expert is worth more than 8 synthetic" in rate.text
    # 8 x $0.05 = $0.40 < $3.50: the floor does not settle which source is cheaper
    assert rate.text.endswith(
        "the same score costs $3.50 with expert or more than $0.40 with synthetic: run "
        "synthetic past 128 to know which is cheaper"
    )
    dear = {**SOURCES, "synthetic": TierSources("synthetic", 1200, {}, {}, 0.5)}
    (rate,) = costs.cost_table(a, dear).rates
    assert rate.text.endswith("or more than $4.00 with synthetic: expert is cheaper")
    assert costs.metrics(costs.cost_table(a, SOURCES))[
        "exchange.expert.synthetic.eval.acc.ratio_floor"
    ] == pytest.approx(8)
    md = write_report(a, tmp_path, title="t", costs=costs.cost_table(a, SOURCES)).markdown
    assert "| eval.acc | 1 expert | more than 8 synthetic | — | — |" in md.read_text()


def test_a_rate_read_inside_the_sizes_gets_no_floor(analysis):
    (rate,) = costs.cost_table(analysis, SOURCES).rates
    assert rate.ratio == pytest.approx(K, rel=0.02) and rate.ratio_floor is None


def test_a_target_reached_at_the_smallest_size_is_an_upper_bound_in_the_table(
    analysis, tmp_path: Path
):
    from loop.report import write_report

    table = costs.cost_table(analysis, SOURCES, {"eval.acc": [0.2]})
    md = write_report(analysis, tmp_path, title="t", costs=table).markdown.read_text()
    assert "| eval.acc | 0.2 | expert | ≤16 | ≤$56.00 | reached already at its smallest size" in md


def test_rate_intervals_with_an_open_end_are_said_as_bounds():
    assert costs.ratio_ci((2.0, 6.5)) == "2–6.5"
    assert costs.ratio_ci((2.0, None)) == "at least 2"
    assert costs.ratio_ci((None, 6.5)) == "at most 6.5"
    assert costs.ratio_ci((None, None)) == "open at both ends"


def test_targets_follow_the_recipe_order_and_small_losses_keep_three_digits():
    recs = [
        Record(t, n, s, "val_loss", 0.001 + 2.0 * (n / k) ** -2 + d)
        for t, k in (("expert", 1), ("synthetic", K))
        for n in (16, 32, 64, 128)
        for s, d in enumerate((-1e-5, 0.0, 1e-5))
    ]
    a = analyze(recs, direction="lower", n_boot=200)
    flipped = {"synthetic": SOURCES["synthetic"], "expert": SOURCES["expert"]}
    table = costs.cost_table(a, flipped, {"val_loss": [0.00142]})
    assert [t.tier for t in table.targets] == ["synthetic", "expert"]
    assert any(line.startswith("val_loss 0.00142: tier synthetic: ") for line in table.summary())


def test_every_tier_at_its_plateau_is_named_with_where_it_gets_there():
    recs = [Record(t, 0, s, "eval.acc", 0.3) for t in ("expert", "synthetic") for s in range(3)]
    for n in (16, 32, 64, 128, 256):
        for s, d in enumerate((-0.001, 0.0, 0.001)):
            for t in ("expert", "synthetic"):
                recs.append(Record(t, n, s, "eval.acc", 0.85 - 2 * n**-1.5 + d))
    table = costs.cost_table(
        analyze(recs, direction="higher", eval_size=100_000, n_boot=200), SOURCES
    )
    (line,) = table.plateau
    assert line.startswith("eval.acc: tiers expert (from about ")
    assert ", synthetic (from about " in line and line.endswith(" examples) reach their plateau")
