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
    assert set(out["state_file"]) == {"30"} and out["state_file"]["30"]["bytes"] > 0
    text = scale.report({"trials": 30, "concurrent": 4, "epochs": 1, "strategy": "random",
                         "tracking": "local SQLite", "components": out})
    assert "adapter + strategy, per trial" in text and "search.json at" in text


def test_fake_trial_accuracy_grows_with_rank():
    assert 0 < scale._fake_accuracy([1, 1]) < scale._fake_accuracy([12, 12]) < 1


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.mlflow
def test_end_to_end_runs_a_real_search_of_instant_trials(tmp_path):
    r = scale.end_to_end(12, 3, 1, "random", str(tmp_path / "mlruns"), tmp_path, quiet=True)
    assert r["status"] == "finished" and r["trials"] == 12
    assert r["driver_cpu_seconds_per_trial"] > 0 and r["trials_per_second_overall"] > 0
    assert math.isclose(sum(r["driver_cpu_by_thread_per_trial"].values()),
                        r["driver_cpu_seconds_per_trial"], rel_tol=0.5)
    assert "trials per second" in scale.report({"trials": 12, "concurrent": 3, "epochs": 1, "strategy": "random",
                                                "tracking": "local SQLite", "end_to_end": r})
