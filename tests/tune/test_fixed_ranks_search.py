"""A recipe search at fixed ranks end to end (`run --fix-ranks RANK_CONFIG`), on real Ray,
real MLflow and MO-ASHA: every trial trains the fixed ranks, the values vary (the rank-config
file's first), the parent run says the ranks are fixed, and `best` hands ranks and values on."""

from __future__ import annotations

import json
import math

import pytest
import yaml
from tune_helpers import ROOT, child_runs, mlflow_client

from ranksearch.cli import main
from ranksearch.rankconfig import RankConfigFile, load_rank_config
from ranksearch.service import locate_search
from ranksearch.space import count_params, load_space
from ranksearch.tune.state import SearchState
from ranksearch.tune.storage import Storage

pytestmark = [pytest.mark.ray, pytest.mark.mlflow]
RECIPE = ROOT / "search_spaces" / "digits_ranks_and_recipe.yaml"
FIXED = [3, 4, 5, 3, 4, 5, 2, 3, 4, 2, 3, 4]
FIRST = {"training.optimizer.name": "sgd", "training.optimizer.lr": 0.01, "training.optimizer.momentum": 0.95,
         "training.batch_size": 32}


def test_a_fixed_rank_search_varies_only_the_recipe_and_hands_it_over(ray_runtime, tmp_path, tracking, capsys):
    data = yaml.safe_load(RECIPE.read_text())
    data["training"]["epochs"] = 2
    data["scheduler"] = {"name": "mo_asha", "grace_epochs": 1, "reduction_factor": 2}
    space_file = tmp_path / "space.yaml"
    space_file.write_text(yaml.safe_dump(data, sort_keys=False))
    space = load_space(space_file)
    given = tmp_path / "given.yaml"  # a rank config as `best` writes it: its ranks, its recipe first
    RankConfigFile(space=space, ranks=tuple(FIXED), hparams=dict(FIRST)).save(given)
    store = str(tmp_path / "store")

    main(["run", str(space_file), "--fix-ranks", str(given), "--strategy", "random", "--budget", "4",
          "--workers", "2", "--name", "fixed", "--storage", store, "--tracking-uri", tracking, "--quiet"])
    assert "ranks fixed at " + ",".join(map(str, FIXED)) in capsys.readouterr().err

    state = SearchState.load(Storage.parse(store), "fixed")
    assert state.status == "finished" and len(state.trials) == 4
    assert state.space["ranks"]["fixed"] == FIXED  # resume and `best` read the fixed space back
    expected_params = count_params(space, tuple(FIXED))
    lrs, keys = set(), set()
    for rec in state.trials.values():
        assert rec.ranks == FIXED
        result = rec.trial_result()
        if result.status == "ok":  # the trained model's size is the fixed ranks'
            assert result.metrics["params"] == expected_params
        lrs.add(rec.hparams["training.optimizer.lr"])
        keys.add(json.dumps(rec.hparams, sort_keys=True))
    assert len(keys) == 4 and len(lrs) >= 3  # values vary across trials
    canonical = space.hyper.canonical(FIRST)
    assert any(rec.hparams == canonical for rec in state.trials.values())  # the file's recipe trained too

    ref = locate_search("fixed", storage=store, tracking_uri=tracking)
    client = mlflow_client(ref.tracking_uri)
    parent = client.get_run(ref.parent_run_id)
    assert json.loads(parent.data.tags["ranksearch.fixed_ranks"]) == FIXED
    assert json.loads(parent.data.params["fixed_ranks"]) == FIXED
    runs = child_runs(client, ref.parent_run_id)
    assert len(runs) == 4 and all(json.loads(r.data.params["ranks"]) == FIXED for r in runs)

    best = tmp_path / "best.yaml"
    main(["best", "fixed", "--storage", store, "--tracking-uri", tracking, "-o", str(best)])
    doc = yaml.safe_load(best.read_text())
    picked = state.trials[doc["provenance"]["trial_id"]]
    assert doc["ranks"] == FIXED and doc["hyperparameters"] == picked.hparams
    ok = [r.trial_result() for r in state.trials.values() if r.status == "ok"]
    assert doc["metrics"]["val_accuracy"] == max(r.metrics["val_accuracy"] for r in ok)  # accuracy decides
    config = load_rank_config(best)
    lr = picked.hparams["training.optimizer.lr"]
    assert config.ranks == tuple(FIXED) and math.isclose(config.training.optimizer.lr, lr)
    out = tmp_path / "prod"  # `train` applies the ranks and the winning recipe
    main(["train", str(best), "--epochs", "1", "--out", str(out), "--tracking-uri", tracking])
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["hyperparameters"] == picked.hparams and metrics["ranks"] == FIXED
