"""Multi-fidelity scheduling: multi-objective asynchronous successive halving (MO-ASHA).

Rungs sit at r, r*eta, r*eta^2, ... epochs (r = grace_epochs, eta = reduction_factor), below
the training budget. When a trial reaches a rung its objective vector is recorded there and it
continues only if it ranks in the top ceil(n / eta) of the n trials recorded at that rung so
far (`top_of_rung`): non-dominated sorting first; within the front that straddles the cut, the
least hypervolume contributor is dropped one at a time (measured from the space's hypervolume
reference point), so a rung's choice never depends on which trial arrived first. (NSGA-II's
crowding distance, the earlier rule, gives every boundary point of a small rung an infinite
distance, and arrival order then decided.) As in ASHA the decision is made at once, never
revisited: the first trials at a rung see few rivals and are promoted leniently, later ones
face a fuller rung; that, and only that, depends on arrival order.

Objectives: val_accuracy is the best validation accuracy reported so far; params,
compression_ratio and flops are known exactly from the ranks (closed-form counts); latency,
measured only after training, is left out of the ranking. A stopped trial reaches the
strategy as status "pruned" with its partial metrics and fidelity (epochs), through the
Searcher adapter.

The vectors come from `ranksearch.objectives` (the one place objective direction and scale are
decided). `RungLedger` holds the rule and its state without Ray; `MultiObjectiveASHA` is the Tune
scheduler around it. Two fidelities compose: the training-subset size (`training.subset`, a
fixed stratified part of the training split per search) and the passes over it, which the
rungs count; a rung's cost in samples is epochs x subset size. Every rung entry is appended to
the search's record, so `ranksearch resume` neither re-judges a trial nor judges newcomers
against an empty rung.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from ranksearch.tune.trainable import FINAL_KEY

if TYPE_CHECKING:
    from ranksearch.space import SearchSpace

def rung_epochs(grace: int, eta: int, max_epochs: int) -> list[int]:
    """Rung milestones r, r*eta, ... strictly below `max_epochs` (the last epoch needs no rung)."""
    if grace < 1 or eta < 2:
        raise ValueError(f"grace_epochs must be >= 1 and reduction_factor >= 2, got {grace}, {eta}")
    out, m = [], grace
    while m < max_epochs:
        out.append(m)
        m *= eta
    return out


class RungLedger:
    """The promotion rule and the vectors recorded at each rung (minimisation form).

    `reference` (minimisation form, one value per objective, None for unknown) bounds the
    hypervolume contributions that order a rung's boundary front; a rung whose values reach
    past it extends it by a tenth of the rung's span. `on_record(milestone, trial_id, vector)`
    is called for every new rung entry (the driver appends it to the search's record).
    """

    def __init__(self, *, grace_epochs: int, reduction_factor: int, max_epochs: int,
                 reference: Sequence[float | None] | None = None,
                 on_record: Callable[[int, str, list[float]], None] | None = None) -> None:
        self.eta = int(reduction_factor)
        self.milestones = rung_epochs(int(grace_epochs), self.eta, int(max_epochs))
        self.rungs: dict[int, dict[str, list[float]]] = {m: {} for m in self.milestones}
        self.reference = None if reference is None else [None if r is None else float(r) for r in reference]
        self.on_record = on_record

    def decide(self, trial_id: str, epoch: int, vector: Sequence[float]) -> bool:
        """Record `trial_id` at every rung it has reached and not yet been recorded at; False
        (stop) as soon as one rung does not promote it. A trial between rungs continues."""
        for m in self.milestones:
            if m > epoch:
                break
            rung = self.rungs[m]
            if trial_id in rung:
                continue
            rung[trial_id] = [float(v) for v in vector]
            if self.on_record is not None:
                self.on_record(m, trial_id, list(rung[trial_id]))
            if not self.promoted(m, trial_id):
                return False
        return True

    def promoted(self, milestone: int, trial_id: str) -> bool:
        """Whether `trial_id` is among the ceil(n / eta) best of rung `milestone`."""
        rung = self.rungs[milestone]
        keep = max(1, math.ceil(len(rung) / self.eta))
        return trial_id in top_of_rung(rung, keep, self.reference)

    def layout(self) -> dict[str, Any]:
        return {"eta": self.eta, "milestones": list(self.milestones)}

    def state_dict(self) -> dict[str, Any]:
        return {**self.layout(),
                "rungs": {str(m): {t: list(v) for t, v in r.items()} for m, r in self.rungs.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the rungs a previous driver recorded (`ranksearch resume`): trials already
        judged at a rung are not judged again, and later arrivals face the full rung."""
        if state.get("eta") != self.eta or list(state.get("milestones") or []) != self.milestones:
            raise ValueError(f"scheduler state has eta {state.get('eta')} and rungs {state.get('milestones')}, "
                             f"this scheduler eta {self.eta} and rungs {self.milestones}")
        self.rungs = {m: {str(t): [float(x) for x in v] for t, v in (state["rungs"].get(str(m)) or {}).items()}
                      for m in self.milestones}

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["on_record"] = None  # the driver's hook stays in the driver
        return state


def top_of_rung(rung: dict[str, list[float]], keep: int,
                reference: Sequence[float | None] | None = None) -> set[str]:
    """The `keep` best trials of a rung, whatever order they arrived in.

    Non-dominated sorting decides first; within the front that straddles the cut the least
    hypervolume contributor is dropped, one at a time, until the front fits (SMS-EMOA's
    reduction). Equal contributions (identical vectors, points past the reference) drop the
    lexicographically worse vector first, then the larger trial id: never arrival order.
    """
    from ranksearch.pareto import non_dominated_sort

    ids = sorted(rung)
    if keep >= len(ids):
        return set(ids)
    F = np.array([[v if math.isfinite(v) else np.inf for v in rung[t]] for t in ids], dtype=float)
    chosen: list[str] = []
    for front in non_dominated_sort(np.where(np.isfinite(F), F, np.finfo(float).max)):
        members = [int(i) for i in front]
        room = keep - len(chosen)
        if len(members) <= room:
            chosen += [ids[i] for i in members]
        else:
            ref = _rung_reference(F, reference)
            kept = _reduce_by_contribution(F, members, room, ref, ids)
            chosen += [ids[i] for i in kept]
        if len(chosen) >= keep:
            break
    return set(chosen)


def _rung_reference(F: np.ndarray, reference: Sequence[float | None] | None) -> np.ndarray:
    """The reference point for a rung's contributions: the given one where it bounds every
    finite value, else the rung's worst value plus a tenth of its span."""
    finite = np.where(np.isfinite(F), F, np.nan)
    worst = np.nanmax(finite, axis=0)
    best = np.nanmin(finite, axis=0)
    span = np.where(worst > best, worst - best, np.maximum(np.abs(worst), 1.0))
    ref = worst + 0.1 * span
    if reference is not None:
        for j, r in enumerate(reference):
            if r is not None and j < len(ref) and r > worst[j]:
                ref[j] = r
    return np.nan_to_num(ref, nan=1.0)


def _reduce_by_contribution(F: np.ndarray, members: list[int], room: int, ref: np.ndarray,
                            ids: list[str]) -> list[int]:
    import moocore  # exact exclusive contributions in one call (pymoo's own HV backend)

    left = list(members)
    while len(left) > room:
        P = np.minimum(F[left], ref)  # a value past the reference contributes nothing on that axis
        if P.shape[1] == 1:
            # one objective: a non-dominated front is a set of equal values, none contributing
            # alone (moocore takes two or more objectives)
            contrib = [0.0] * len(left)
        else:
            contrib = [float(c) for c in moocore.hv_contributions(P, ref=ref)]
        # drop the least contributor; among equals the worse vector, then the larger trial id
        drop = min(range(len(left)), key=lambda k: (round(contrib[k], 15),
                                                    [-x for x in F[left[k]]], _neg_id(ids[left[k]])))
        left.pop(drop)
    return left


def _neg_id(trial_id: str) -> tuple[int, ...]:
    return tuple(-ord(c) for c in trial_id)


def objective_vector(space: SearchSpace, ranks: Sequence[int], result: dict[str, Any],
                     cost: dict[str, float] | None = None) -> list[float]:
    """The space's objectives as one minimisation vector for a mid-training report: the best
    validation accuracy so far, exact cost metrics (`cost`, counted here when not given); a
    missing accuracy is the worst value."""
    from ranksearch.objectives import COST_OBJECTIVES, Objectives
    from ranksearch.tune.searcher import cost_metrics

    objectives = Objectives.from_space(space)
    if cost is None:
        needed = tuple(n for n in objectives.names if n in COST_OBJECTIVES)
        cost = cost_metrics(space, tuple(ranks), names=needed) if needed else {}
    acc = result.get("best_val_accuracy", result.get("val_accuracy"))
    measured = {} if acc is None else {"val_accuracy": acc}
    return list(objectives.partial_vector(measured, cost))


def rung_reference(space: SearchSpace) -> list[float | None]:
    """Where contributions are measured from, per objective of `objective_vector`: the space's
    hypervolume reference for accuracy and compression (a dense-sized model for params and
    FLOPs); None (the rung decides) for anything else."""
    from ranksearch.objectives import Objectives

    acc_ref, log_comp_ref = (float(v) for v in space.config.hypervolume.reference)
    out: list[float | None] = []
    for o in Objectives.from_space(space).items:
        if o.name == "latency":
            continue
        if o.name == "val_accuracy":
            out.append(o.minimised(acc_ref))
        elif o.name == "compression_ratio":
            out.append(o.minimised(10 ** log_comp_ref, log=True))
        elif o.name == "params":
            out.append(o.minimised(space.dense_params / 10 ** log_comp_ref, log=True))
        else:
            out.append(None)
    return out


class MultiObjectiveASHA(FIFOScheduler):
    """MO-ASHA for Ray Tune (see the module docstring); pickles without the live space."""

    def __init__(self, space: SearchSpace, *, grace_epochs: int = 1, reduction_factor: int = 3,
                 max_epochs: int | None = None,
                 on_record: Callable[[int, str, list[float]], None] | None = None) -> None:
        super().__init__()
        import json

        if max_epochs is None:
            max_epochs = space.config.training.epochs
            if max_epochs is None:
                raise ValueError("the mo_asha scheduler needs an epoch budget (training.epochs), "
                                 "not training.steps")
        self._space_json = json.dumps(space.to_dict())
        self._space: SearchSpace | None = space
        self.ledger = RungLedger(grace_epochs=grace_epochs, reduction_factor=reduction_factor,
                                 max_epochs=max_epochs, reference=rung_reference(space),
                                 on_record=on_record)
        self.stats = {"promoted": 0, "stopped": 0}
        self._costs: dict[str, dict[str, float]] = {}

    @property
    def space(self) -> SearchSpace:
        if self._space is None:
            from ranksearch.tune.trainable import space_from_json

            self._space = space_from_json(self._space_json)
        return self._space

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        return True  # the objectives are the space's, not Tune's single metric

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        if result.get(FINAL_KEY) or "epoch" not in result:
            return TrialScheduler.CONTINUE
        ranks = trial.config.get("ranks") or ()
        epoch = int(result["epoch"])
        if not any(m <= epoch for m in self.ledger.milestones):
            return TrialScheduler.CONTINUE
        key = str(trial.config.get("trial_id", trial.trial_id))
        recorded = sum(key in r for r in self.ledger.rungs.values())
        go = self.ledger.decide(key, epoch, objective_vector(self.space, ranks, result, self._cost(key, ranks)))
        if sum(key in r for r in self.ledger.rungs.values()) > recorded:
            self.stats["promoted" if go else "stopped"] += 1
        return TrialScheduler.CONTINUE if go else TrialScheduler.STOP

    def _cost(self, key: str, ranks: Sequence[int]) -> dict[str, float]:
        """A trial's cost objectives, counted once (a trial reports several rungs)."""
        from ranksearch.objectives import COST_OBJECTIVES
        from ranksearch.tune.searcher import cost_metrics

        if key not in self._costs:
            needed = tuple(o.name for o in self.space.objectives if o.name in COST_OBJECTIVES)
            self._costs[key] = cost_metrics(self.space, tuple(int(r) for r in ranks), names=needed)
        return self._costs[key]

    def debug_string(self) -> str:
        sizes = ", ".join(f"{m} ep: {len(r)}" for m, r in self.ledger.rungs.items())
        return f"Using MO-ASHA (eta {self.ledger.eta}; trials per rung {sizes or 'none'})."

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_space"] = None
        return state


def make_scheduler(space: SearchSpace, state: dict[str, Any] | None = None, *,
                   on_record: Callable[[int, str, list[float]], None] | None = None) -> TrialScheduler | None:
    """The space's `scheduler:` section as a Tune scheduler; None for FIFO (the default).
    `state`: the rungs a previous driver recorded (`RungLedger.state_dict` form), restored;
    `on_record`: called with every new rung entry."""
    spec = space.config.scheduler
    if spec is None or spec.name == "fifo":
        return None
    if spec.fidelity != "epochs":  # pragma: no cover - the schema admits epochs only
        raise ValueError(f"scheduler fidelity {spec.fidelity!r} is not implemented; use 'epochs'")
    scheduler = MultiObjectiveASHA(space, grace_epochs=spec.grace_epochs, reduction_factor=spec.reduction_factor,
                                   on_record=on_record)
    if state:
        scheduler.ledger.load_state_dict(state)
    return scheduler
