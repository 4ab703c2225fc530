"""Hyperparameter values in the hand-over to production and in MLflow's layout: the rank-config
file's `hyperparameters:` mapping, the production recipe it gives, the CLI's clear errors, and
the hp.* / hp_domain.* params that writer and readers share."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from ranksearch import load_space
from ranksearch.cli import main
from ranksearch.errors import SpaceError
from ranksearch.rankconfig import RankConfigFile, load_rank_config
from ranksearch.service import front_rows
from ranksearch.tracking import schema as S
from ranksearch.trial import TrialResult
from ranksearch.tune.display import format_hparams

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "search_spaces" / "digits_ranks_and_recipe.yaml"
SGD = {"training.optimizer.name": "sgd", "training.optimizer.lr": 0.01, "training.optimizer.momentum": 0.95,
       "training.batch_size": 32}


@pytest.fixture(scope="module")
def space():
    return load_space(RECIPE)


def test_the_rank_config_file_round_trips_its_values(space, tmp_path):
    cfg = RankConfigFile(space=space, ranks=space.equal_ranks(4), hparams=dict(SGD))
    assert cfg.hparams == space.hyper.canonical(SGD)  # canonical: defaults filled in
    path = tmp_path / "best.yaml"
    cfg.save(path)
    doc = yaml.safe_load(path.read_text())
    assert doc["hyperparameters"] == cfg.hparams
    back = load_rank_config(path)
    assert back.hparams == cfg.hparams
    opt = back.training.optimizer
    assert (opt.name, opt.lr, opt.momentum, back.training.batch_size) == ("sgd", 0.01, 0.95, 32)
    assert back.trial_space.config.training.optimizer.lr == 0.01
    assert back.build_model() is not None


def test_a_rank_only_config_is_unchanged(tmp_path):
    digits = load_space(ROOT / "search_spaces" / "quickstart_digits.yaml")
    cfg = RankConfigFile(space=digits, ranks=digits.equal_ranks(3))
    assert "hyperparameters" not in cfg.to_dict() and cfg.hparams == {}
    assert cfg.training == digits.config.training and cfg.trial_space is digits
    with pytest.raises(SpaceError, match="unknown hyperparameter 'training.optimizer.lr'"):
        RankConfigFile(space=digits, ranks=digits.equal_ranks(3), hparams={"training.optimizer.lr": 0.1})


def test_values_apply_to_the_final_training_recipe(space):
    data = space.to_dict()
    data["final_training"] = {"epochs": 20, "batch_size": 256, "optimizer": {"name": "adam", "lr": 0.001},
                              "schedule": {"name": "cosine"}}
    from ranksearch.space import SearchSpace

    with_final = SearchSpace.from_dict(data)
    cfg = RankConfigFile(space=with_final, ranks=with_final.equal_ranks(4), hparams=dict(SGD))
    t = cfg.training
    assert (t.epochs, t.schedule.name) == (20, "cosine")  # the production budget and schedule stay
    assert (t.optimizer.name, t.optimizer.lr, t.batch_size) == ("sgd", 0.01, 32)  # the searched values apply


@pytest.mark.parametrize(("values", "words"), [
    ({"training.optimizer.lr": 5.0}, "value 5.0 of 'training.optimizer.lr' lies outside its domain"),
    ({"training.optimizer.lrr": 0.01}, "unknown hyperparameter 'training.optimizer.lrr'"),
    ("fast", "must be a mapping"),
])
def test_train_refuses_a_bad_value_with_exit_2(space, tmp_path, capsys, values, words):
    path = tmp_path / "best.yaml"
    RankConfigFile(space=space, ranks=space.equal_ranks(4), hparams=dict(SGD)).save(path)
    doc = yaml.safe_load(path.read_text())
    doc["hyperparameters"] = values
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    with pytest.raises(SystemExit) as info:
        main(["train", str(path), "--epochs", "1", "--out", str(tmp_path / "out"),
              "--tracking-uri", str(tmp_path / "mlruns")])
    err = capsys.readouterr().err
    assert info.value.code == 2
    assert words in " ".join(err.split()) and str(path) in err.replace("\n", "") and "hyperparameters" in err
    assert not (tmp_path / "out").exists() and not (tmp_path / "mlruns").exists()  # nothing started


def test_mlflow_params_name_each_value_and_domain_once(space):
    values = space.hyper.canonical(SGD)
    params = S.hparam_params(values)
    assert set(params) == {f"hp.{k}" for k in values}
    run = SimpleNamespace(data=SimpleNamespace(params={**params, "ranks": "[1]", "fc1.r0": "1"}, tags={}))
    assert S.hparams_of(run) == values  # floats, ints and strings read back as they were
    domains = S.hparam_domain_params(space.hyper.to_dict())
    assert set(domains) == {f"hp_domain.{k}" for k in space.hyper.names}
    assert S.hparam_domains_of(domains) == json.loads(json.dumps(space.hyper.to_dict()))
    assert S.hparams_of(SimpleNamespace(data=SimpleNamespace(params=domains))) == {}  # domains are not values


def test_front_rows_and_the_trial_line_show_the_values(space):
    values = space.hyper.canonical(SGD)
    result = TrialResult(ranks=space.equal_ranks(4), metrics={"val_accuracy": 0.9, "compression_ratio": 3.0},
                         hparams=values)
    row = S.front_row("t0001", "r1", result, result.metrics)
    assert row["hparams"] == values and front_rows([row])[0]["hparams"] == values
    text = format_hparams(values)
    assert "optimizer.name=sgd" in text and "optimizer.lr=0.01" in text and "batch_size=32" in text
