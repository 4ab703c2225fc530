"""The front archive: incremental inserts give the batch front, hypervolume and history."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ranksearch.archive import FrontArchive, front_of
from ranksearch.objectives import Objectives
from ranksearch.pareto import non_dominated_mask, plane_hypervolume
from ranksearch.trial import TrialResult

OBJ = Objectives.from_pairs([("val_accuracy", "max"), ("params", "min")], dense_params=10_000)


def _result(acc: float, params: int, status: str = "ok") -> TrialResult:
    return TrialResult(ranks=(1,), status=status, metrics={"val_accuracy": acc, "params": float(params)})


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_incremental_front_equals_batch_front(seed: int) -> None:
    rng = np.random.default_rng(seed)
    rows = [(f"t{i}", _result(float(rng.uniform(0.5, 1.0)), int(rng.integers(100, 10_000))))
            for i in range(200)]
    archive = FrontArchive(OBJ)
    for tid, r in rows:
        archive.insert(tid, r)
    F = np.array([[-r.metrics["val_accuracy"], r.metrics["params"]] for _, r in rows])
    want = {rows[i][0] for i in np.flatnonzero(non_dominated_mask(F))}
    assert set(archive.front_ids()) == want
    acc = [r.metrics["val_accuracy"] for _, r in rows]
    comp = [10_000 / r.metrics["params"] for _, r in rows]
    assert archive.hypervolume == pytest.approx(plane_hypervolume(acc, comp, (0.5, 0.0)).value)
    assert len(archive.history) == 200
    assert archive.history[-1]["front"] == archive.front_ids()
    assert set(front_of(OBJ, rows)) == want


def test_failed_nonfinite_and_infeasible_never_enter() -> None:
    obj = Objectives.from_pairs([("val_accuracy", "max"), ("params", "min")], dense_params=10_000,
                                max_params=5_000)
    archive = FrontArchive(obj)
    assert not archive.insert("a", _result(0.99, 100, status="failed")).on_front
    assert not archive.insert("b", _result(math.nan, 100)).on_front
    assert not archive.insert("c", _result(0.99, 6_000)).on_front  # breaks max_params
    assert not archive.insert("d", _result(0.99, 100, status="pruned")).on_front
    up = archive.insert("e", _result(0.5, 4_000))
    assert up.on_front and up.entered == ("e",) and up.front_size == 1
    assert archive.n_finished == 5 and archive.front_ids() == ["e"]


def test_update_reports_who_left_and_duplicates_are_ignored() -> None:
    archive = FrontArchive(OBJ)
    archive.insert("a", _result(0.8, 1_000))
    archive.insert("b", _result(0.9, 2_000))
    up = archive.insert("c", _result(0.95, 900))
    assert up.entered == ("c",) and set(up.left) == {"a", "b"}
    again = archive.insert("c", _result(0.1, 9_000))
    assert not again.changed and archive.result("c").metrics["val_accuracy"] == 0.95
    assert archive.n_finished == 3
