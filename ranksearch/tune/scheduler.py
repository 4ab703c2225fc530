"""Multi-fidelity scheduling: multi-objective asynchronous successive halving (MO-ASHA).

Rungs sit at r, r*eta, r*eta^2, ... epochs (r = grace_epochs, eta = reduction_factor), below
the training budget. When a trial reaches a rung its objective vector is recorded there and it
continues only if it ranks in the top ceil(n / eta) of the n trials recorded at that rung so
far, ordered by non-dominated rank, then by decreasing crowding distance (NSGA-II's order,
`ranksearch.pareto.rank_and_crowding_order`; ties go to the trial recorded first). As in ASHA
the decision is made at once, never revisited: the first trials at a rung see few rivals and
are promoted leniently, later ones face a fuller rung.

Objectives: val_accuracy is the best validation accuracy reported so far; params,
compression_ratio and flops are known exactly from the ranks (closed-form counts); latency,
measured only after training, is left out of the ranking. A stopped trial reaches the
strategy as status "pruned" with its partial metrics and fidelity (epochs), through the
Searcher adapter.

`RungLedger` holds the rule and its state without Ray; `MultiObjectiveASHA` is the Tune
scheduler around it. Two fidelities compose: the training-subset size (`training.subset`, a
fixed stratified part of the training split per search) and the passes over it, which the
rungs count; a rung's cost in samples is epochs x subset size. The rungs are saved with the
search state, so `ranksearch resume` neither re-judges a trial nor judges newcomers against an
empty rung.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from ranksearch.tune.trainable import FINAL_KEY

if TYPE_CHECKING:
    from ranksearch.space import SearchSpace

#: Objectives a trial's ranks determine before training (see `searcher.cost_metrics`).
_COST_OBJECTIVES = ("params", "compression_ratio", "flops")


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
    """The promotion rule and the vectors recorded at each rung (minimisation form)."""

    def __init__(self, *, grace_epochs: int, reduction_factor: int, max_epochs: int) -> None:
        self.eta = int(reduction_factor)
        self.milestones = rung_epochs(int(grace_epochs), self.eta, int(max_epochs))
        self.rungs: dict[int, dict[str, list[float]]] = {m: {} for m in self.milestones}

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
            if not self.promoted(m, trial_id):
                return False
        return True

    def promoted(self, milestone: int, trial_id: str) -> bool:
        """Whether `trial_id` is in the top ceil(n / eta) of rung `milestone` (rank, crowding)."""
        from ranksearch.pareto import rank_and_crowding_order

        rung = self.rungs[milestone]
        ids = list(rung)
        F = [[v if math.isfinite(v) else math.inf for v in rung[t]] for t in ids]
        keep = max(1, math.ceil(len(ids) / self.eta))
        best = {ids[i] for i in rank_and_crowding_order(F)[:keep]}
        return trial_id in best

    def state_dict(self) -> dict[str, Any]:
        return {"eta": self.eta, "milestones": list(self.milestones),
                "rungs": {str(m): {t: list(v) for t, v in r.items()} for m, r in self.rungs.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the rungs a previous driver recorded (`ranksearch resume`): trials already
        judged at a rung are not judged again, and later arrivals face the full rung."""
        if state.get("eta") != self.eta or list(state.get("milestones") or []) != self.milestones:
            raise ValueError(f"scheduler state has eta {state.get('eta')} and rungs {state.get('milestones')}, "
                             f"this scheduler eta {self.eta} and rungs {self.milestones}")
        self.rungs = {m: {str(t): [float(x) for x in v] for t, v in (state["rungs"].get(str(m)) or {}).items()}
                      for m in self.milestones}


def objective_vector(space: SearchSpace, ranks: Sequence[int], result: dict[str, Any]) -> list[float]:
    """The space's objectives as one minimisation vector for a mid-training report.

    A missing or non-finite accuracy counts as the worst value (+inf).
    """
    from ranksearch.tune.searcher import cost_metrics

    cost = cost_metrics(space, tuple(int(r) for r in ranks))
    acc = _num(result.get("best_val_accuracy", result.get("val_accuracy")))
    out = []
    for obj in space.objectives:
        if obj.name == "latency":
            continue
        v = cost.get(obj.name, math.nan) if obj.name in _COST_OBJECTIVES else acc
        if not math.isfinite(v):
            out.append(math.inf)
            continue
        if obj.name in _COST_OBJECTIVES:
            v = math.log10(max(v, 1e-12))  # counts span orders of magnitude
        out.append(-v if obj.sense == "max" else v)
    return out


class MultiObjectiveASHA(FIFOScheduler):
    """MO-ASHA for Ray Tune (see the module docstring); pickles without the live space."""

    def __init__(self, space: SearchSpace, *, grace_epochs: int = 1, reduction_factor: int = 3,
                 max_epochs: int | None = None) -> None:
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
                                 max_epochs=max_epochs)
        self.stats = {"promoted": 0, "stopped": 0}

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
        go = self.ledger.decide(key, epoch, objective_vector(self.space, ranks, result))
        if sum(key in r for r in self.ledger.rungs.values()) > recorded:
            self.stats["promoted" if go else "stopped"] += 1
        return TrialScheduler.CONTINUE if go else TrialScheduler.STOP

    def debug_string(self) -> str:
        sizes = ", ".join(f"{m} ep: {len(r)}" for m, r in self.ledger.rungs.items())
        return f"Using MO-ASHA (eta {self.ledger.eta}; trials per rung {sizes or 'none'})."

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_space"] = None
        return state


def make_scheduler(space: SearchSpace, state: dict[str, Any] | None = None) -> TrialScheduler | None:
    """The space's `scheduler:` section as a Tune scheduler; None for FIFO (the default).
    `state`: the rungs a previous driver saved (`RungLedger.state_dict`), restored."""
    spec = space.config.scheduler
    if spec is None or spec.name == "fifo":
        return None
    if spec.fidelity != "epochs":  # pragma: no cover - the schema admits epochs only
        raise ValueError(f"scheduler fidelity {spec.fidelity!r} is not implemented; use 'epochs'")
    scheduler = MultiObjectiveASHA(space, grace_epochs=spec.grace_epochs, reduction_factor=spec.reduction_factor)
    if state:
        scheduler.ledger.load_state_dict(state)
    return scheduler


def _num(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan
