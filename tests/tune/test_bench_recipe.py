"""`ranksearch bench recipe` end to end on the small digits space with a `hyperparameters:`
block (the real run tunes PSTRN-M's recipe on Fashion-MNIST for about an hour; stages,
accounting and resume are the same code)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ranksearch.bench import recipe
from ranksearch.rankconfig import load_rank_config

pytestmark = [pytest.mark.ray, pytest.mark.mlflow]

SPACE = Path(__file__).resolve().parents[2] / "search_spaces" / "digits_ranks_and_recipe.yaml"
RANKS = [4] * 12


def test_recipe_bench_tunes_trains_the_winner_per_seed_and_resumes(ray_runtime, tmp_path, capsys):
    work = tmp_path / "bench"
    argv = [str(SPACE), "--workdir", str(work), "--ranks", ",".join(map(str, RANKS)), "--budget", "40ep",
            "--seeds", "2", "--baseline"]
    assert recipe.main(argv) == 0
    state = json.loads((work / "bench.json").read_text())
    report = json.loads((work / "report.json").read_text())
    search = state["searches"]["recipe"]
    # the tuning searched the recipe alone, at the given ranks, within its cost budget
    assert search["n_trials"] >= 2 and all(t["ranks"] == RANKS for t in search["trials"])
    assert 0 < search["samples"] <= 40 * report["n_train_full"]
    assert report["search"]["within_allowance"]
    # the winner is the best completed trial, written as a rank-config file `train` takes
    win = state["winner"]
    best_val = max(t["val_accuracy"] for t in search["trials"] if t["status"] == "ok")
    assert win["val_accuracy"] == pytest.approx(best_val)
    config = load_rank_config(str(work / "best.yaml"))
    assert list(config.ranks) == RANKS and dict(config.hparams) == win["hparams"] and win["hparams"]
    # trained once per seed with the winner's values, and the hand-found recipe beside it
    found = {k: v for k, v in state["finals"].items() if k.startswith("found:")}
    hand = {k: v for k, v in state["finals"].items() if k.startswith("hand:")}
    assert sorted(r["seed"] for r in found.values()) == [0, 1] == sorted(r["seed"] for r in hand.values())
    assert all(r["hparams"] == win["hparams"] for r in found.values())
    assert all(r["hparams"] == {} for r in hand.values())
    rows = {r["row"]: r for r in report["rows"]}
    assert len(rows["searched recipe"]["test_errors"]) == 2
    errors = sorted(100 * (1 - r["test_accuracy"]) for r in found.values())
    assert rows["searched recipe"]["median_test_error"] == pytest.approx(sum(errors) / 2, abs=0.011)
    assert report["params"] == found["found:seed0"]["params"]
    out = capsys.readouterr().out
    assert "| searched recipe |" in out and "| hand-found recipe |" in out and "PSTRN-M (published)" in out
    # Started again: everything is read back, nothing trains again.
    assert recipe.main(argv) == 0
    after = json.loads((work / "bench.json").read_text())
    assert after["finals"] == state["finals"] and after["searches"] == state["searches"]

    # Another bench reuses this one's dense network (weights and cost) instead of training one.
    other = tmp_path / "other"
    assert recipe.main([str(SPACE), "--workdir", str(other), "--ranks", ",".join(map(str, RANKS)),
                        "--budget", "10ep", "--seeds", "1", "--dense-from", str(work)]) == 0
    shared = json.loads((other / "bench.json").read_text())["dense"]
    assert shared["shared_from"] == str(work.resolve())
    assert {k: v for k, v in shared.items() if k != "shared_from"} == state["dense"]
    assert (other / "dense.pt").read_bytes() == (work / "dense.pt").read_bytes()


@pytest.mark.parametrize("args,message", [
    (["--budget", "200ep"], "up to 150"),
    (["--budget", "12"], "full-epoch equivalents"),
    (["--ranks", "3,3"], "12 rank elements"),
    (["--ranks", "a,b"], "whole numbers"),
    (["--seeds", "0"], "--seeds"),
    (["--dense-from", "nowhere"], "no finished dense stage"),
])
def test_bad_arguments_exit_2_before_any_work(tmp_path, capsys, args, message):
    work = tmp_path / "bench"
    argv = [str(SPACE), "--workdir", str(work), "--ranks", ",".join(map(str, RANKS)), *args]
    assert recipe.main(argv) == 2
    assert message in capsys.readouterr().err
    assert not work.exists()


def test_a_space_without_hyperparameters_is_refused(tmp_path, capsys):
    quick = SPACE.parent / "quickstart_digits.yaml"
    assert recipe.main([str(quick), "--workdir", str(tmp_path / "b"), "--ranks", "3"]) == 2
    assert "hyperparameters" in capsys.readouterr().err and not (tmp_path / "b").exists()


def test_an_interrupted_search_is_not_recorded_as_done(tmp_path, monkeypatch, capsys):
    """Ctrl-C or SIGTERM ends `service.search` with status "interrupted" (its own tests send the
    signal to a real driver); here that return is stood in for, to check what the bench does with
    it: exit 1, the dense stage kept, the search not marked done, so the next start resumes it."""
    from ranksearch import service

    calls = []

    def interrupted(space, **kw):
        calls.append(kw["name"])
        return type("Outcome", (), {"status": "interrupted"})()

    monkeypatch.setattr(service, "search", interrupted)
    work = tmp_path / "bench"
    argv = [str(SPACE), "--workdir", str(work), "--ranks", ",".join(map(str, RANKS)), "--budget", "40ep"]
    assert recipe.main(argv) == 1
    assert calls == ["bench-recipe-recipe"]
    err = capsys.readouterr().err
    assert "interrupted" in err and "resume" in err
    state = json.loads((work / "bench.json").read_text())
    assert "dense" in state and "recipe" not in state.get("searches", {}) and "finals" not in state
