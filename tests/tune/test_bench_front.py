"""`ranksearch bench front` end to end on the small digits space (the real front runs for about
an hour on Fashion-MNIST; stages, accounting and resume are the same code)."""

from __future__ import annotations

import json

import pytest
from tune_helpers import QUICKSTART

from ranksearch.bench import front
from ranksearch.space import count_params, load_space

pytestmark = [pytest.mark.ray, pytest.mark.mlflow]


def test_front_learns_trains_and_reports_every_target_and_resumes(ray_runtime, tmp_path, capsys):
    work = tmp_path / "bench"
    argv = [str(QUICKSTART), "--workdir", str(work), "--targets", "6,26", "--subset", "400",
            "--gated-epochs", "2", "--finetune-epochs", "1",
            "--searches", "random+learned", "--search-budget", "6ep", "--search-epochs", "2"]
    assert front.main(argv) == 0
    report = json.loads((work / "report.json").read_text())
    state = json.loads((work / "bench.json").read_text())
    space = load_space(QUICKSTART)
    learned = state["searches"]["learned"]["learned"]
    assert sorted(r["target"] for r in learned) == [6.0, 26.0]
    by_target = {p["target"]: p for p in report["points"]}
    for c in (6.0, 26.0):
        ours = by_target[c]["ours"]
        # the learned ranks, trained in full, at an exact count within the target
        assert count_params(space, ours["ranks"]) == ours["params"] <= space.dense_params / c
        trial = next(r for r in learned if r["target"] == c)
        assert trial["ranks"] == ours["ranks"] and trial["samples"] > 0
        final = state["finals"][f"learned:{c:g}x"]
        assert ours["samples"] == trial["samples"] + final["samples"]
        assert 0 < ours["test_accuracy"] <= 100
        eq = by_target[c]["equal"]
        assert eq is not None and count_params(space, [eq["rank"]] * space.n_ranks) <= space.dense_params / c
    assert by_target[26.0]["cao"] == {"compression": 26, "test_accuracy": 90.9}
    assert by_target[6.0]["cao"] is None  # Cao has no point near 6x
    assert by_target[26.0]["ours"]["params"] < by_target[6.0]["ours"]["params"]
    # learned-then-searched: one search over the whole range, its best trial within each target
    # trained in full (once per distinct configuration), the search's cost shared by the targets
    searched = state["searches"]["random+learned"]
    assert 0 < searched["samples"] <= 6 * report["n_train_full"] + 1150 * 2  # budget + the one gated seed run
    trained = {k: r for k, r in state["finals"].items() if k.startswith("random+learned:")}
    assert trained and len({tuple(r["ranks"]) for r in trained.values()}) == len(trained)
    for c in (6.0, 26.0):
        point = by_target[c]["searched"].get("random+learned")
        ok = [t for t in searched["trials"] if t["status"] == "ok" and t["params"] <= space.dense_params / c]
        if not ok:
            assert point is None
            continue
        best = max(ok, key=lambda t: t["val_accuracy"])
        assert point["ranks"] == best["ranks"] and point["params"] <= space.dense_params / c
        final = next(r for r in trained.values() if r["ranks"] == best["ranks"])
        assert point["samples"] == searched["samples"] + final["samples"]
    total = (state["dense"]["samples"] + state["searches"]["learned"]["samples"] + searched["samples"]
             + sum(r["samples"] for r in state["finals"].values()))
    assert report["total_samples"] == total and report["within_budget"]
    out = capsys.readouterr().out
    assert "| 26x | ranksearch learned |" in out and "Cao 2024" in out and "PSTRN-M (published)" in out
    # Started again: everything is read back, nothing trains again.
    assert front.main(argv) == 0
    after = json.loads((work / "bench.json").read_text())
    assert after["finals"] == state["finals"] and after["searches"] == state["searches"]


@pytest.mark.parametrize("args,message", [
    (["--targets", "0.5"], "above 1"),
    (["--targets", "9,9"], "distinct"),
    (["--targets", "x"], "numbers"),
    (["--gated-epochs", "0"], "--gated-epochs"),
    (["missing.yaml"], "not found"),
    (["--searches", "learned"], "other than learned"),
    (["--searches", "random+seeds"], "+learned"),
    (["--searches", "random,random"], "distinct"),
    (["--search-budget", "lots"], "--search-budget"),
    (["--recipe-from", "no-such-folder"], "no finished recipe search"),
])
def test_bad_arguments_exit_2_before_any_work(tmp_path, capsys, args, message):
    work = tmp_path / "w"
    assert front.main(args + ["--workdir", str(work)]) == 2
    assert message in capsys.readouterr().err
    assert not work.exists()


def _recipe_folder(path, hparams, samples):
    """What `ranksearch bench recipe` leaves in its work folder (the parts `--recipe-from` reads)."""
    path.mkdir()
    (path / "bench.json").write_text(json.dumps({
        "searches": {"recipe": {"name": "bench-recipe-recipe", "samples": samples, "seconds": 12.5}},
        "winner": {"hparams": hparams, "ranks": [4, 4], "val_accuracy": 0.9}}))
    return path


def test_recipe_from_trains_every_final_with_the_found_values_and_charges_their_tuning(tmp_path):
    values = {"training.optimizer.lr": 0.003, "training.label_smoothing": 0.05}
    src = _recipe_folder(tmp_path / "recipe", values, 123_000)
    work = tmp_path / "w"
    bench = front.FrontBench(front.parse_args([str(QUICKSTART), "--workdir", str(work),
                                               "--recipe-from", str(src)]))
    assert bench.recipe()["hparams"] == values and bench.recipe()["samples"] == 123_000
    assert bench.final_job("learned:9x", [4] * 5)["hparams"] == values
    # a joint search's own values win over the recipe's where both set one
    assert bench.final_job("x", [4] * 5, {"training.label_smoothing": 0.1})["hparams"] == \
        {"training.optimizer.lr": 0.003, "training.label_smoothing": 0.1}
    # kept in the work folder: started again without the flag, the same values; with another, refused
    again = front.FrontBench(front.parse_args([str(QUICKSTART), "--workdir", str(work)]))
    assert again.recipe()["hparams"] == values
    other = _recipe_folder(tmp_path / "other", {"training.optimizer.lr": 0.01}, 1)
    clash = front.FrontBench(front.parse_args([str(QUICKSTART), "--workdir", str(work), "--recipe-from", str(other)]))
    with pytest.raises(front.BenchError, match="use the recipe from"):
        clash.recipe()
    # without the flag the finals train the production recipe (no values)
    plain = front.FrontBench(front.parse_args([str(QUICKSTART), "--workdir", str(tmp_path / "p")]))
    assert "hparams" not in plain.final_job("learned:9x", [4] * 5) and plain.recipe()["samples"] == 0
