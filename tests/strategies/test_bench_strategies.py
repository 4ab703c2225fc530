"""The strategy benchmark: evaluators, hypervolume curves, the table, the plot and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import fakes
import numpy as np
import pytest

from ranksearch.bench import strategies as bench
from ranksearch.strategies import available

SPACES = Path(__file__).resolve().parents[2] / "search_spaces"


@pytest.fixture
def small_space():
    return fakes.small()


@pytest.fixture
def lenet_space():
    return fakes.lenet5()


def test_synthetic_landscape_is_calibrated_and_seeded(lenet_space):
    ev = bench.SyntheticEvaluator(lenet_space, seed=0)
    acc = {r: ev.accuracy(lenet_space.equal_ranks(r)) for r in (2, 4, 10, 30)}
    assert acc[2] < acc[4] < acc[10] < acc[30] < 0.92
    assert 0.68 < acc[2] < 0.76 and 0.88 < acc[10] < 0.92
    assert np.isclose(ev.sensitivity.sum(), 1) and ev.sensitivity.max() > 3 * ev.sensitivity.min()
    r = lenet_space.equal_ranks(6)
    a, b = ev(r), bench.SyntheticEvaluator(lenet_space, seed=0)(r)
    assert a == b and a.metrics["params"] == 6196 and a.fidelity == 4
    assert bench.SyntheticEvaluator(lenet_space, seed=1)(r) != a  # noise follows the seed


def test_run_strategy_records_a_hypervolume_curve(lenet_space):
    rec = bench.run_strategy(lenet_space, "uniform", bench.SyntheticEvaluator(lenet_space),
                             budget=40, seed=0, workers=2)
    assert rec.checkpoints == [4, 8, 12, 16, 20, 24, 28, 32, 36, 40]
    assert rec.evaluations == 29  # the sweep runs out of equal ranks (2..30) first
    assert rec.hypervolume == sorted(rec.hypervolume) and rec.final > 0.5
    assert len(rec.curve) == 29 and rec.front_size > 3
    assert json.loads(json.dumps(rec.to_dict()))["strategy"] == "uniform"


def test_summary_table_and_plot(tmp_path, small_space):
    records = [
        bench.run_strategy(small_space, name, bench.SyntheticEvaluator(small_space, seed=s),
                           budget=20, seed=s)
        for name in ("random", "nsga2") for s in range(2)
    ]
    summary = bench.summarise(records)
    by = {s.strategy: s for s in summary}
    assert by["random"].ratio_to_random == pytest.approx(1.0)
    assert by["nsga2"].ratio_to_random > 0
    report = {"space": "fake", "evaluator": "synthetic", "budget": 20, "seeds": 2, "workers": 1,
              "hypervolume_plane": "acc x log10 cr", "reference": [0.5, 0.0],
              "summary": [s.to_dict() for s in summary]}
    table = bench.format_table(report)
    assert "random" in table and "x random" in table and "100%" in table
    png = bench.plot(report, tmp_path / "hv.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_on_a_real_space(tmp_path, capsys):
    rc = bench.main([str(SPACES / "quickstart_digits.yaml"), "--budget", "6", "--seeds", "1",
                     "--strategies", "random,uniform", "--out", str(tmp_path), "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert [s["strategy"] for s in out["summary"]] == ["random", "uniform"]
    assert out["reference"] == [0.5, 0.0] and out["budget"] == 6
    assert (tmp_path / "hypervolume.png").exists() and (tmp_path / "report.json").exists()
    assert bench.main([str(SPACES / "quickstart_digits.yaml"), "--strategies", "nope",
                       "--out", str(tmp_path)]) == 2


@pytest.mark.slow
def test_train_evaluator_trains_each_configuration_once(tmp_path):
    from ranksearch import load_space

    space = load_space(SPACES / "quickstart_digits.yaml")
    ev = bench.TrainEvaluator(space)
    r = space.equal_ranks(4)
    first = ev(r)
    assert first.status == "ok" and 0.3 < first.value("val_accuracy") <= 1.0
    assert ev(r) is first
    rec = bench.run_strategy(space, "random", ev, budget=3, seed=0)
    assert rec.evaluations == 3


def test_fake_space_counts_like_the_paper():
    space = fakes.lenet5()
    from ranksearch.space import count_params

    assert space.dense_params == 429_100
    assert count_params(space, space.equal_ranks(10)) == 16_500


@pytest.fixture(scope="module")
def digits_space():
    from ranksearch import load_space

    return load_space(SPACES / "quickstart_digits.yaml")


@pytest.mark.parametrize("name", available())
def test_every_strategy_runs_on_a_real_space(name, digits_space):
    rec = bench.run_strategy(digits_space, name, bench.SyntheticEvaluator(digits_space, seed=0),
                             budget=12, seed=0, workers=2)
    assert 0 < rec.evaluations <= 12 and rec.final > 0
