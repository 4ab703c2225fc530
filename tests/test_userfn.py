"""The user-function adapter without Ray: config, reports, outcomes and the failure cases."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import userfn_cases
import yaml

from ranksearch.errors import SpaceError
from ranksearch.objectives import Objectives
from ranksearch.space import SearchSpace, load_space
from ranksearch.userfn import evaluate, resolve_function, run_user_function, trial_config

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "search_spaces" / "user_function_example.yaml"


def space_for(fn: str, **extra) -> SearchSpace:
    data = {
        "name": "uf", "training": {"function": f"userfn_cases:{fn}", "epochs": 3},
        "hyperparameters": {"lr": {"low": 0.01, "high": 1.0, "log": True, "default": 0.1},
                            "opt": {"choices": ["adam", "sgd"]},
                            "momentum": {"low": 0.0, "high": 0.99, "when": {"opt": "sgd"}}},
        "objectives": [{"name": "val_accuracy"}, {"name": "params", "direction": "min"}],
    }
    data.update(extra)
    return SearchSpace.from_dict(data, source="uf.yaml")


def test_config_holds_canonical_values_with_defaults_and_budget():
    space = space_for("good")
    assert space.n_ranks == 0 and not space.has_closed_form and space.hyper.names == ("lr", "opt", "momentum")
    cfg = trial_config(space, (), {"lr": 0.5}, trial_id="t7")
    assert cfg == {"lr": 0.5, "opt": "adam", "epochs": 3, "seed": 0, "trial_id": "t7"}  # momentum inactive
    assert trial_config(space, (), {"opt": "sgd", "momentum": 0.5})["momentum"] == 0.5


def test_ok_trial_takes_last_reports_and_reported_cost():
    userfn_cases.CALLS.clear()
    seen = []
    space = space_for("good")
    out = run_user_function(space, (), {"lr": 1.0}, on_epoch=seen.append)
    assert out.status == "ok" and out.error is None and out.epochs_done == 3
    assert out.metrics == {"val_accuracy": pytest.approx(0.8), "params": 1000.0}
    assert [r["epoch"] for r in seen] == [1.0, 2.0, 3.0]  # each epoch reaches the host as it happens
    result = evaluate(space, (), {"lr": 1.0})
    assert result.ok and result.hparams == {"lr": 1.0, "opt": "adam"} and result.fidelity == 3
    # no closed form here: params is a measured objective read from the report
    goals = Objectives.from_space(space)
    assert [o.name for o in goals.measured] == ["val_accuracy", "params"]
    assert goals.vector(result, log=False) == (pytest.approx(-0.8), 1000.0)


def test_returned_dict_wins_over_reports():
    out = run_user_function(space_for("returns_final"), ())
    assert out.status == "ok" and out.metrics == {"val_accuracy": 0.9, "params": 12.0}


@pytest.mark.parametrize(("fn", "needle"), [
    ("raises", "raised RuntimeError: out of memory on purpose"),
    ("reports_nan", "metric 'val_accuracy' is not finite (nan) at epoch 2"),
    ("reports_text", "metric 'val_accuracy' is not a number: 'high'"),
    ("forgets_params", "did not report params"),
])
def test_failures_are_failed_trials_not_errors(fn, needle):
    space = space_for(fn)
    result = evaluate(space, ())
    assert result.status == "failed" and not result.ok
    assert needle in result.error
    goals = Objectives.from_space(space)
    assert not goals.usable(result) and not goals.eligible(result)
    assert goals.vector(result) == (-0.0, 1e12)  # counted as worst, never crashes a strategy


def test_checkpoint_folder_survives_a_retry(tmp_path):
    space = space_for("checkpoints")
    first = run_user_function(space, (), checkpoint_dir=tmp_path)
    assert first.status == "failed" and first.epochs_done == 2 and "preempted" in first.error
    second = run_user_function(space, (), checkpoint_dir=tmp_path, resumed=True)
    assert second.status == "ok" and [r["epoch"] for r in second.history] == [3.0]
    assert second.metrics["val_accuracy"] == pytest.approx(0.3)


def test_ranks_reach_the_function_when_the_space_has_a_model():
    data = yaml.safe_load((ROOT / "search_spaces" / "quickstart_digits.yaml").read_text())
    data["training"] = {"function": "userfn_cases:with_ranks"}
    data["hyperparameters"] = {"lr": {"low": 0.001, "high": 0.1, "log": True}}
    space = SearchSpace.from_dict(data)
    assert space.n_ranks > 0 and space.has_closed_form
    userfn_cases.CALLS.clear()
    ranks = space.equal_ranks(3)
    result = evaluate(space, ranks, {"lr": 0.01})
    cfg = userfn_cases.CALLS[-1]
    assert cfg["ranks"] == list(ranks) and set(cfg["layer_ranks"]) == {"fc1", "fc2"} and cfg["lr"] == 0.01
    assert "epochs" not in cfg  # a user function needs no budget
    assert result.ok and result.metrics["compression_ratio"] > 1  # closed-form costs added


@pytest.mark.parametrize(("spec", "needle"), [
    ("userfn_cases", "must name a function as 'package.module:function'"),
    ("no_such_module_xyz:train", "module 'no_such_module_xyz' cannot be imported"),
    ("userfn_cases:missing", "module 'userfn_cases' has no function 'missing'"),
    ("userfn_cases:not_a_function", "is not a function"),
])
def test_bad_function_names_the_file_field_and_value(spec, needle):
    with pytest.raises(SpaceError) as err:
        resolve_function(spec, source="space.yaml")
    text = str(err.value)
    assert needle in text and "space.yaml" in text and "training.function" in text and repr(spec) in text


def test_schema_rules_for_user_function_spaces():
    with pytest.raises(SpaceError, match="field 'model': is required"):
        SearchSpace.from_dict({"name": "x", "training": {"epochs": 1}})
    with pytest.raises(SpaceError, match=r"objectives.1.direction.*maximise or minimise"):
        space_for("good", objectives=[{"name": "val_accuracy"}, {"name": "loss"}])
    quick = yaml.safe_load((ROOT / "search_spaces" / "quickstart_digits.yaml").read_text())
    quick["objectives"] = [{"name": "val_accuracy"}, {"name": "loss", "direction": "min"}]
    with pytest.raises(SpaceError, match=r"objectives.1.name': has an unsupported value"):
        SearchSpace.from_dict(quick)
    ok = space_for("good", objectives=[{"name": "val_accuracy"}, {"name": "loss", "direction": "min"}])
    assert [o.sense for o in ok.objectives] == ["max", "min"]


def test_example_function_and_space(tmp_path):
    space = load_space(EXAMPLE)
    result = evaluate(space, (), {"lr": 0.02, "hidden": 16, "weight_decay": 1e-4, "optimizer": "adam"})
    assert result.ok and 0.5 < result.metrics["val_accuracy"] <= 1.0
    assert result.metrics["params"] == 64 * 16 + 16 + 16 * 10 + 10


def test_validate_exits_2_on_an_unknown_function(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(EXAMPLE.read_text().replace("digits_mlp:train", "digits_mlp:trian"))
    proc = subprocess.run([sys.executable, "-m", "ranksearch.cli", "validate", str(bad)], capture_output=True,
                          text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 2
    assert str(bad) in proc.stderr and "training.function" in proc.stderr and "trian" in proc.stderr
    good = subprocess.run([sys.executable, "-m", "ranksearch.cli", "validate", str(EXAMPLE)], capture_output=True,
                          text=True, cwd=ROOT, timeout=300)
    assert good.returncode == 0, good.stderr


def test_nan_metric_in_a_returned_dict_fails_the_trial(monkeypatch):
    monkeypatch.setattr(userfn_cases, "returns_final", lambda c, r: {"val_accuracy": math.inf, "params": 1})
    from ranksearch import userfn

    userfn._FUNCTIONS.pop("userfn_cases:returns_final", None)
    out = run_user_function(space_for("returns_final"), ())
    assert out.status == "failed" and "not finite" in out.error
    userfn._FUNCTIONS.pop("userfn_cases:returns_final", None)
