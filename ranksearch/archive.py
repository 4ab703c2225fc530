"""A search's front archive: the only code that keeps a front.

The driver owns one `FrontArchive` per search and inserts every finished trial (ok, failed or
pruned) in finishing order; tracking writes its snapshots (front, hypervolume, history) to
MLflow; `front`, `best`, the live display and the dashboard read those snapshots. A resumed
driver rebuilds it by inserting the recorded results again, in the recorded order, which gives
the same front, hypervolume and history.

Two sets are kept, both incrementally (a new point is compared with the current set only):

- the *objective front*: eligible trials (see `Objectives.eligible`) that no other eligible
  trial dominates over all of the space's objectives;
- the *plane front*: the same trials' (validation accuracy, compression ratio) points, whose
  hypervolume (accuracy and log10 compression both maximised, from the space's reference point)
  is the search's progress number whatever its objectives.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ranksearch.objectives import Objectives, search_plane
from ranksearch.pareto import dominates, plane_hypervolume
from ranksearch.trial import TrialResult


@dataclass(frozen=True)
class FrontUpdate:
    """What one insert changed."""

    trial_id: str
    n_finished: int
    eligible: bool
    on_front: bool
    entered: tuple[str, ...]  # trials that joined the objective front (this one, if it did)
    left: tuple[str, ...]  # trials it pushed off
    hypervolume: float
    front_size: int

    @property
    def changed(self) -> bool:
        return bool(self.entered or self.left)


@dataclass
class _Point:
    trial_id: str
    result: TrialResult
    metrics: dict[str, float]
    vector: tuple[float, ...]
    plane: tuple[float, float] | None = None


@dataclass
class FrontArchive:
    """Insert results; read the front, its hypervolume and its history after every trial."""

    objectives: Objectives
    reference: tuple[float, float] = (0.5, 0.0)
    keep_history: bool = True
    _points: dict[str, _Point] = field(default_factory=dict, repr=False)
    _order: list[str] = field(default_factory=list, repr=False)
    _front: list[str] = field(default_factory=list, repr=False)
    _plane: list[str] = field(default_factory=list, repr=False)
    _hypervolume: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list, repr=False)

    @classmethod
    def for_space(cls, space: Any, **kwargs: Any) -> FrontArchive:
        ref = tuple(float(v) for v in space.config.hypervolume.reference)
        return cls(Objectives.from_space(space), reference=(ref[0], ref[1]), **kwargs)

    # -- writing ------------------------------------------------------------------------------
    def insert(self, trial_id: str, result: TrialResult) -> FrontUpdate:
        """Record one finished trial. A second insert of the same trial id is ignored (the first
        result stands) and reports no change."""
        trial_id = str(trial_id)
        if trial_id in self._points:
            return FrontUpdate(trial_id, len(self._order), False, trial_id in self._front, (), (),
                               self._hypervolume, len(self._front))
        metrics = self.objectives.metrics(result)
        eligible = self.objectives.eligible(result)
        point = _Point(trial_id, result, metrics, self.objectives.vector(result, log=False))
        self._points[trial_id] = point
        self._order.append(trial_id)
        entered: tuple[str, ...] = ()
        left: tuple[str, ...] = ()
        if eligible:
            entered, left = self._insert_front(point)
            point.plane = search_plane(metrics)
            if point.plane is not None and self._insert_plane(point):
                self._hypervolume = self._plane_hypervolume()
        update = FrontUpdate(trial_id, len(self._order), eligible, trial_id in entered, entered, left,
                             self._hypervolume, len(self._front))
        if self.keep_history:
            self.history.append({"n_finished": update.n_finished, "trial_id": trial_id,
                                 "hypervolume": self._hypervolume, "front_size": len(self._front),
                                 "front": list(self._front)})
        return update

    def _insert_front(self, point: _Point) -> tuple[tuple[str, ...], tuple[str, ...]]:
        v = point.vector
        for tid in self._front:
            if dominates(self._points[tid].vector, v):
                return (), ()
        left = tuple(t for t in self._front if dominates(v, self._points[t].vector))
        if left:
            gone = set(left)
            self._front = [t for t in self._front if t not in gone]
        self._front.append(point.trial_id)
        return (point.trial_id,), left

    def _insert_plane(self, point: _Point) -> bool:
        a = _plane_min(point.plane)
        for tid in self._plane:
            if dominates(_plane_min(self._points[tid].plane), a):
                return False
        self._plane = [t for t in self._plane if not dominates(a, _plane_min(self._points[t].plane))]
        self._plane.append(point.trial_id)
        return True

    def _plane_hypervolume(self) -> float:
        pts = [self._points[t].plane for t in self._plane]
        return plane_hypervolume([p[0] for p in pts], [p[1] for p in pts], self.reference).value

    # -- reading ------------------------------------------------------------------------------
    @property
    def hypervolume(self) -> float:
        return self._hypervolume

    @property
    def n_finished(self) -> int:
        return len(self._order)

    @property
    def order(self) -> tuple[str, ...]:
        """Trial ids in finishing order."""
        return tuple(self._order)

    def __contains__(self, trial_id: object) -> bool:
        return trial_id in self._points

    def __len__(self) -> int:
        return len(self._order)

    def front_ids(self) -> list[str]:
        """The objective front's trial ids, in the order they joined it."""
        return list(self._front)

    def on_front(self, trial_id: str) -> bool:
        return trial_id in self._front

    def result(self, trial_id: str) -> TrialResult:
        return self._points[trial_id].result

    def metrics(self, trial_id: str) -> dict[str, float]:
        return dict(self._points[trial_id].metrics)

    def eligible(self, trial_id: str) -> bool:
        return self.objectives.eligible(self._points[trial_id].result)

    def front(self) -> list[dict[str, Any]]:
        """The front as plain rows (trial_id, ranks, status, metrics, fidelity, info)."""
        return [self.row(t) for t in self._front]

    def row(self, trial_id: str) -> dict[str, Any]:
        p = self._points[trial_id]
        return {"trial_id": trial_id, "ranks": list(p.result.ranks), "status": p.result.status,
                "metrics": dict(p.metrics), "fidelity": p.result.fidelity, "info": dict(p.result.info)}


def _plane_min(plane: tuple[float, float] | None) -> tuple[float, float]:
    assert plane is not None
    return (-plane[0], -math.log10(plane[1]))


def front_of(objectives: Objectives, results: Sequence[tuple[str, TrialResult]]) -> list[str]:
    """The objective front's trial ids of a finished set of results (an archive filled at once)."""
    archive = FrontArchive(objectives, keep_history=False)
    for trial_id, result in results:
        archive.insert(trial_id, result)
    return archive.front_ids()
