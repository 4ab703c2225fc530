"""`ranksearch bench pstrn` end to end on the small digits space (the real benchmark runs for
hours on Fashion-MNIST; its stages, accounting and resume are the same code)."""

from __future__ import annotations

import json

import pytest
from tune_helpers import QUICKSTART

from ranksearch.bench import pstrn
from ranksearch.space import count_params, load_space

pytestmark = [pytest.mark.ray, pytest.mark.mlflow]


def test_bench_runs_every_stage_within_its_budget_and_resumes(ray_runtime, tmp_path, capsys):
    work = tmp_path / "bench"
    argv = [str(QUICKSTART), "--workdir", str(work), "--strategies", "random", "--budget", "4",
            "--subset", "300", "--trial-epochs", "2", "--final-top", "2"]
    assert pstrn.main(argv) == 0
    report = json.loads((work / "report.json").read_text())
    space = load_space(QUICKSTART)
    rows = {r["row"]: r for r in report["rows"]}
    ours, equal, dense = rows["ranksearch random"], rows["equal-rank TRN (r=7)"], rows["dense lenet300"]
    assert {"PSTRN-M (published)", "PSTRN-S (published)"} <= set(rows)
    state = json.loads((work / "bench.json").read_text())
    search = state["searches"]["random"]
    assert search["n_trials"] == 4 and search["samples"] > 0
    # Every configuration trained in full meets the size target; the answer is picked on validation.
    finals = [r for k, r in state["finals"].items() if k.startswith("random:")]
    assert 1 <= len(finals) <= 2
    assert all(count_params(space, f["ranks"]) == f["params"] <= report["max_params"] for f in finals)
    assert ours["val_accuracy"] == max(f["val_accuracy"] for f in finals)
    assert ours["compression"] >= pstrn.TARGET_COMPRESSION
    # Cost: the dense run, the search's trials and every final training, nothing else.
    assert ours["samples"] == dense["samples"] + search["samples"] + sum(f["samples"] for f in finals)
    assert equal["samples"] == dense["samples"] + state["finals"]["equal"]["samples"]
    assert dense["samples"] == space.config.training.epochs * 1150  # digits: 1,150 training rows
    assert ours["epoch_equivalents"] == pytest.approx(ours["samples"] / 1438, abs=0.05)
    assert (work / "report.md").read_text().count("\n") == len(report["rows"]) + 2
    out = capsys.readouterr().out
    assert "dominates PSTRN-M" in out and "| ranksearch random |" in out
    # Started again: everything is read back, nothing trains or searches again.
    before = (work / "bench.json").read_text()
    assert pstrn.main(argv) == 0
    after = json.loads((work / "bench.json").read_text())
    assert after["finals"] == state["finals"] and after["searches"] == state["searches"]
    assert json.loads(before)["dense"] == after["dense"]


def test_a_joint_search_trains_its_answer_with_the_values_it_found(ray_runtime, tmp_path, capsys):
    """A space with a `hyperparameters:` block: ranks and recipe searched together, and each
    configuration trained in full under the production recipe with its trial's values."""
    space_file = QUICKSTART.parent / "digits_ranks_and_recipe.yaml"
    work = tmp_path / "bench"
    argv = [str(space_file), "--workdir", str(work), "--strategies", "random", "--budget", "4",
            "--subset", "300", "--trial-epochs", "2", "--final-top", "2"]
    assert pstrn.main(argv) == 0
    state = json.loads((work / "bench.json").read_text())
    trials = state["searches"]["random"]["trials"]
    assert all(t["hparams"] for t in trials)
    assert len({json.dumps(t["hparams"], sort_keys=True) for t in trials}) > 1  # the recipe varied
    finals = {k: r for k, r in state["finals"].items() if k.startswith("random:")}
    assert finals
    for row in finals.values():
        trial = next(t for t in trials if t["ranks"] == row["ranks"] and t["status"] == "ok")
        assert row["hparams"] == trial["hparams"]
    assert "hparams" not in state["finals"]["equal"]  # the baseline keeps the production recipe
    report = json.loads((work / "report.json").read_text())
    ours = next(r for r in report["rows"] if r["row"] == "ranksearch random")
    pick = max(finals.values(), key=lambda r: r["val_accuracy"])
    assert ours["hparams"] == pick["hparams"]
    assert "trained with the values its search found" in capsys.readouterr().out


def test_max_params_caps_the_search_and_dense_from_reuses_another_benchs_dense_net(ray_runtime, tmp_path):
    """`--max-params` is the size cap of the search, its finals and the equal-rank row;
    `--dense-from` copies another bench's dense net (and charges its cost) instead of training one."""
    first = tmp_path / "first"
    base = [str(QUICKSTART), "--strategies", "random", "--budget", "3", "--subset", "300",
            "--trial-epochs", "1", "--final-top", "1"]
    assert pstrn.main(base + ["--workdir", str(first)]) == 0
    default_cap = json.loads((first / "report.json").read_text())["max_params"]
    space = load_space(QUICKSTART)
    cap = count_params(space, space.equal_ranks(4))  # well under the default cap
    assert cap < default_cap
    work = tmp_path / "capped"
    assert pstrn.main(base + ["--workdir", str(work), "--max-params", str(cap), "--dense-from", str(first)]) == 0
    state = json.loads((work / "bench.json").read_text())
    report = json.loads((work / "report.json").read_text())
    assert report["max_params"] == cap
    trials = [t for t in state["searches"]["random"]["trials"] if t["status"] == "ok"]
    assert trials and all(t["params"] <= cap for t in trials)
    assert all(r["params"] <= cap for r in state["finals"].values())
    assert state["finals"]["equal"]["ranks"] == list(space.equal_ranks(4))
    # the dense net is the first bench's, bit for bit, and its samples are charged as before
    first_dense = json.loads((first / "bench.json").read_text())["dense"]
    assert state["dense"]["shared_from"] == str(first.resolve())
    assert {k: v for k, v in state["dense"].items() if k != "shared_from"} == first_dense
    assert (work / "dense.pt").read_bytes() == (first / "dense.pt").read_bytes()
    assert not (work / "final" / "dense").exists()  # nothing trained for it
    ours = next(r for r in report["rows"] if r["row"] == "ranksearch random")
    assert ours["samples"] == first_dense["samples"] + state["searches"]["random"]["samples"] + sum(
        r["samples"] for k, r in state["finals"].items() if k.startswith("random:"))


@pytest.mark.parametrize("args,message", [
    (["--max-params", "0"], "--max-params must be at least 1"),
    (["--dense-from", "nowhere"], "no finished dense stage"),
    (["--strategies", "nope"], "valid strategies"),
    (["--final-top", "6"], "1 to 5"),
    (["--grace", "4", "--trial-epochs", "3"], "--grace 4"),
    (["missing.yaml"], "not found"),
])
def test_bad_arguments_exit_2_before_any_work(tmp_path, capsys, args, message):
    work = tmp_path / "w"
    assert pstrn.main(args + ["--workdir", str(work)]) == 2
    assert message in capsys.readouterr().err
    assert not work.exists()
