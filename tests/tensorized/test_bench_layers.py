"""The layer benchmark runs end to end (tiny batch, no timing assertions)."""

from __future__ import annotations

import json

import pytest

from ranksearch.bench import layers as bench


def test_lenet_rows_and_report():
    rows = bench.bench_lenet_layers(batch=2, budget_s=0.0, round_s=0.0, min_rounds=1)
    assert [r["layer"] for r in rows] == ["conv1", "conv2", "fc1", "fc2"]
    assert sum(r["params"] for r in rows) == 48_780
    for r in rows:
        assert r["auto_path"] in ("sequential", "reconstruct")
        assert min(r["time_sequential"], r["time_reconstruct"], r["time_auto"], r["time_dense"]) > 0
    tt = bench.bench_tt_vs_tltorch(batch=2, budget_s=0.0, round_s=0.0, min_rounds=1)
    assert tt["params_ours"] == 8670
    text = bench.format_report(rows, tt, 2, 1)
    assert "conv1" in text and "TT-matrix linear" in text


def test_tltorch_comparison_uses_same_parameter_count():
    pytest.importorskip("tltorch")
    tt = bench.bench_tt_vs_tltorch(batch=2, budget_s=0.0, round_s=0.0, min_rounds=1)
    assert tt["params_tltorch"] == tt["params_ours"]
    assert tt["speedup_vs_tltorch_best"] > 0


def test_main_json(monkeypatch, capsys):
    monkeypatch.setattr(bench, "bench_lenet_layers", lambda batch, budget_s: [])
    monkeypatch.setattr(bench, "bench_tt_vs_tltorch", lambda batch, budget_s: {"rank": 10, "goal_met": True})
    monkeypatch.setattr(bench, "bench_model", lambda batch, budget_s: {"goal_met": True})
    assert bench.main(["--json", "--threads", "1", "--batch", "3"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["batch"] == 3 and out["tt_vs_tltorch"] == {"rank": 10, "goal_met": True}
    monkeypatch.setattr(bench, "bench_model", lambda batch, budget_s: {"goal_met": False})
    assert bench.main(["--json", "--threads", "1", "--batch", "3"]) == 1


def test_whole_model_step_compares_tensorized_with_dense():
    model = bench.bench_model(batch=4, budget_s=0.0, round_s=0.0, min_rounds=1)
    assert model["params_tensorized"] == 48_780 and model["params_dense"] == 429_100
    assert model["time_tensorized"] > 0 and model["time_dense"] > 0
    assert model["ratio"] == pytest.approx(model["time_tensorized"] / model["time_dense"])
    assert "Whole LeNet-5 training step" in "\n".join(bench._model_lines(model))
