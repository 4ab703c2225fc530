"""The driver-scale benchmark (ranksearch.bench.scale) on a few trials: it runs and its numbers
hang together. The full 1,000-trial run is a manual step (cluster/README.md)."""

from __future__ import annotations

import math

import pytest

from ranksearch.bench import scale

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def test_components_measure_adapter_tracking_and_state(tmp_path):
    out = scale.components(30, 1, "random", str(tmp_path / "mlruns"), tmp_path)
    assert out["adapter"]["trials"] == 30 and out["adapter"]["seconds_per_trial"] > 0
    t = out["tracking"]
    assert t["trials_per_second_delivered"] > 0 and t["calls_per_trial"] >= 1
    rec = out["record"]
    assert rec["trials"] == 30 and rec["bytes"] > 0 and rec["first_seconds_per_trial"] > 0
    text = scale.report({"trials": 30, "concurrent": 4, "epochs": 1, "strategy": "random",
                         "tracking": "local SQLite", "components": out})
    assert "adapter + strategy, per trial" in text and "record appends" in text


def test_fake_trial_accuracy_grows_with_rank():
    assert 0 < scale._fake_accuracy([1, 1]) < scale._fake_accuracy([12, 12]) < 1


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.mlflow
def test_end_to_end_runs_a_real_search_of_instant_trials(tmp_path):
    r = scale.end_to_end(12, 3, 1, "random", str(tmp_path / "mlruns"), tmp_path, quiet=True)
    assert r["status"] == "finished" and r["trials"] == 12
    assert r["windows"]["first"]["trials"] == r["windows"]["size"] >= 1
    assert r["driver_cpu_seconds_per_trial"] > 0 and r["trials_per_second_overall"] > 0
    assert math.isclose(sum(r["driver_cpu_by_thread_per_trial"].values()),
                        r["driver_cpu_seconds_per_trial"], rel_tol=0.5)
    bare = scale.bare_tune(12, 3, 1, tmp_path)
    assert bare["trials"] == 12 and bare["trials_per_second_overall"] > 0
    text = scale.report({"trials": 12, "concurrent": 3, "epochs": 1, "strategy": "random",
                         "tracking": "local SQLite", "end_to_end": r, "bare": bare})
    assert "trials per second" in text and "side by side" in text


def test_windows_compare_the_first_and_last_trials():
    marks = [(float(i), 0.01 * i) for i in range(41)]  # 10 ms of CPU per trial, 1 trial/s
    w = scale.windows(marks, size=10)
    assert w["size"] == 10 and w["first"]["cpu_seconds_per_trial"] == pytest.approx(0.01)
    assert w["cpu_ratio_last_to_first"] == pytest.approx(1.0) and w["last"]["trials_per_second"] == pytest.approx(1.0)
    own = scale.windows([(float(i), 0.01 * i, 0.002 * i) for i in range(41)], size=10)
    assert own["first"]["own_cpu_seconds_per_trial"] == pytest.approx(0.002)
    assert own["own_cpu_ratio_last_to_first"] == pytest.approx(1.0)
    growing = [(float(i), 0.001 * i * i) for i in range(41)]
    assert scale.windows(growing, size=10)["cpu_ratio_last_to_first"] > 3
