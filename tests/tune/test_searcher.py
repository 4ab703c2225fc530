"""The Strategy -> Tune Searcher adapter, driven directly (no Ray runtime needed)."""

from __future__ import annotations

import json
import math
import pickle
from collections.abc import Iterable

import pytest

from ranksearch import strategies
from ranksearch.strategies import Strategy
from ranksearch.trial import RankConfig, TrialResult
from ranksearch.tune import searcher as searcher_mod
from ranksearch.tune.searcher import Requeued, StrategySearcher, result_from_report
from ranksearch.tune.trainable import FINAL_KEY

FINISHED = "FINISHED"


class _Batch(Strategy):
    """Proposes `batch` configurations, then waits until all of them are told."""

    name = "test-batch"

    def __init__(self, space, *, seed: int | None = None, budget: int | None = None, batch: int = 2) -> None:
        super().__init__(space, seed=seed, budget=budget, options={"batch": batch})
        self.batch = batch

    def _propose(self, limit: int) -> Iterable[RankConfig]:
        if self.pending:
            return []
        out: list[RankConfig] = []
        while len(out) < min(limit, self.batch):
            cand = tuple(int(self.rng.choice(v)) for v in self.values)
            if self.is_new(cand) and cand not in out:
                out.append(cand)
        return out


class _Stuck(Strategy):
    """Never proposes anything: the adapter must not poll it forever."""

    name = "test-stuck"

    def __init__(self, space, *, seed: int | None = None, budget: int | None = None) -> None:
        super().__init__(space, seed=seed, budget=budget)

    def _propose(self, limit: int) -> Iterable[RankConfig]:
        return []


for _cls in (_Batch, _Stuck):
    if _cls.name not in strategies.available():
        strategies.register(_cls.name, _cls)


class Recorder:
    def __init__(self) -> None:
        self.proposed: list[tuple[str, str, tuple[int, ...], str | None]] = []
        self.told: list[tuple[str, TrialResult]] = []
        self.tell_errors: list[tuple[str, BaseException]] = []

    def on_proposed(self, trial_id, tune_id, ranks, info, resume_from, *, hparams=None) -> None:
        self.proposed.append((trial_id, tune_id, ranks, resume_from))

    def on_told(self, trial_id, tune_id, result) -> None:
        self.told.append((trial_id, result))

    def on_tell_error(self, trial_id, error) -> None:
        self.tell_errors.append((trial_id, error))


def final(acc: float = 0.9, status: str = "ok", error: str = "") -> dict:
    return {FINAL_KEY: True, "rs_status": status, "rs_error": error, "val_accuracy": acc,
            "final_val_accuracy": acc, "epochs_done": 2, "latency_ms": 0.25, "train_seconds": 1.0,
            "rs_trial_seconds": 1.5, "rs_started_at": 100.0, "rs_ended_at": 101.5}


@pytest.fixture()
def make(digits_space):
    def _make(name: str = "random", budget: int = 3, max_concurrent: int | None = 2, **kw):
        rec = Recorder()
        strat = strategies.get(name, digits_space, seed=0, budget=budget)
        return StrategySearcher(strat, max_concurrent=max_concurrent, listener=rec, **kw), rec
    return _make


def test_concurrency_budget_and_finish(make):
    s, rec = make(budget=3)
    a = s.suggest("A")
    b = s.suggest("B")
    assert (a["trial_id"], b["trial_id"]) == ("t0001", "t0002")
    assert a["resume_from"] is None and len(a["ranks"]) == s.space.n_ranks
    assert s.suggest("C") is None  # two live: the limit
    s.on_trial_complete("A", final(0.8))
    c = s.suggest("C")
    assert c["trial_id"] == "t0003"
    assert s.suggest("D") is None
    s.on_trial_complete("B", final(0.7))
    assert s.suggest("D") == FINISHED  # budget of 3 used
    assert [t for t, *_ in rec.proposed] == ["t0001", "t0002", "t0003"]
    assert [t for t, _ in rec.told] == ["t0001", "t0002"]


def test_duplicate_late_and_unknown_completions_are_ignored(make):
    s, rec = make()
    s.suggest("A")
    s.on_trial_complete("A", final(0.8))
    s.on_trial_complete("A", final(0.1))  # duplicate: the first report stands
    s.on_trial_complete("nobody", final(0.5))  # unknown Tune id (e.g. a late one)
    s.fail("A", "late error")  # late failure of a told trial
    assert len(rec.told) == 1 and rec.told[0][1].metrics["val_accuracy"] == 0.8
    assert len(s.strategy.observations) == 1
    assert s.stats["ignored"] == 2


def test_a_strategy_that_raises_in_tell_is_reported_and_the_search_goes_on(make, monkeypatch):
    s, rec = make(budget=3)
    s.suggest("A")
    s.suggest("B")

    def broken(trial_id, result):
        raise RuntimeError(f"cannot learn from {trial_id}")

    monkeypatch.setattr(s.strategy, "tell", broken)
    s.on_trial_complete("A", final(0.8))
    assert [t for t, _ in rec.told] == ["t0001"]  # the trial is recorded all the same
    (tid, error), = rec.tell_errors
    assert tid == "t0001" and "cannot learn from t0001" in str(error)
    assert s.stats["tell_errors"] == 1
    monkeypatch.undo()
    s.on_trial_complete("B", final(0.7))  # the next result reaches the strategy as usual
    assert s.stats["tell_errors"] == 1 and s.strategy.observations[-1].trial_id == "t0002"
    assert s.suggest("C")["trial_id"] == "t0003"


def test_a_cost_limit_stops_proposing_when_the_next_trial_would_not_fit(make):
    from ranksearch.budget import CostLimit

    s, rec = make(budget=50, max_concurrent=4, cost_limit=CostLimit(1000, 300))
    assert s.suggest("A") and s.suggest("B") and s.suggest("C")
    assert s.suggest("D") is None  # 3 x 300 committed: a fourth would pass 1000
    s.on_trial_complete("A", {**final(0.8), "samples_seen": 100})  # stopped early: 200 back
    assert s.suggest("D")["trial_id"] == "t0004"  # 100 + 3 x 300 = 1000
    assert s.suggest("E") is None
    for tid in ("B", "C", "D"):
        s.on_trial_complete(tid, {**final(0.8), "samples_seen": 300})
    assert s.suggest("E") == FINISHED and s.budget_spent  # 1000 spent: nothing fits any more
    assert s.cost_limit.spent == 1000 and not s.strategy.is_finished()


def test_a_cost_budget_outlasting_the_planned_trials_extends_the_plan_and_resume_replays_it(make):
    """A scheduler stopped more trials than the planned count assumed: the search goes on while
    the next trial fits, and a strategy restored from the log replays the extension."""
    from ranksearch import strategies
    from ranksearch.budget import CostLimit

    s, rec = make(budget=2, max_concurrent=4, cost_limit=CostLimit(1000, 300))
    header = s.strategy.state_dict()
    assert s.suggest("A") and s.suggest("B")
    assert s.suggest("C")["trial_id"] == "t0003"  # 2 planned, room for a third: 600 + 300
    assert s.strategy.budget == 3 and s.suggest("D") is None
    s.on_trial_complete("A", {**final(0.8), "samples_seen": 100})
    assert s.suggest("D")["trial_id"] == "t0004" and s.strategy.budget == 4
    for tid in ("B", "C", "D"):
        s.on_trial_complete(tid, {**final(0.7), "samples_seen": 300})
    assert s.suggest("E") == FINISHED and s.budget_spent and s.cost_limit.spent == 1000
    log = s.strategy.log_since(0)
    assert [e["extend"] for e in log if "extend" in e] == [1, 1]
    again = strategies.from_state(s.space, {**header, "events": log})
    assert again.budget == 4 and again.state_dict()["budget"] == 2 and again.n_asked == 4
    assert [o.ranks for o in again.observations] == [o.ranks for o in s.strategy.observations]


def test_a_planned_count_set_by_hand_caps_the_trials_under_a_cost_budget(make):
    from ranksearch.budget import CostLimit

    s, _ = make(budget=2, max_concurrent=4, cost_limit=CostLimit(1000, 300), extend_plan=False)
    assert s.suggest("A") and s.suggest("B")
    assert s.suggest("C") == FINISHED and s.strategy.budget == 2 and not s.budget_spent


def test_errored_trial_is_told_failed_with_its_reason(make):
    s, rec = make()
    s.suggest("A")
    s.on_trial_complete("A", error=True)
    assert rec.told == []  # waiting for the reason, which reaches callbacks, not searchers
    s.fail("A", "ValueError: boom")
    (tid, result), = rec.told
    assert tid == "t0001" and result.status == "failed" and result.error == "ValueError: boom"
    assert result.metrics["params"] > 0  # closed-form costs are known even for a failed trial
    assert s.strategy.observations[0].status == "failed"


def test_errored_trial_without_reason_is_still_told(make, monkeypatch):
    monkeypatch.setattr(searcher_mod, "_REASON_WAIT_S", 0.0)
    s, rec = make()
    s.suggest("A")
    s.on_trial_complete("A", error=True)
    s.suggest("B")
    assert rec.told[0][1].status == "failed" and "raised" in rec.told[0][1].error


def test_batch_strategy_makes_the_adapter_wait(make):
    s, _ = make("test-batch", budget=4, max_concurrent=4)
    assert s.suggest("A")["trial_id"] == "t0001"
    assert s.suggest("B")["trial_id"] == "t0002"
    assert s.suggest("C") is None  # the batch is out
    s.on_trial_complete("A", final())
    assert s.suggest("C") is None  # half of it told
    s.on_trial_complete("B", final())
    assert s.suggest("C")["trial_id"] == "t0003"


def test_a_strategy_that_waits_for_nothing_ends_the_search(make):
    s, _ = make("test-stuck", budget=5)
    assert s.suggest("A") == FINISHED


def test_requeued_trials_run_first_without_asking_the_strategy(make):
    s, rec = make(requeue=[Requeued("t0007", (3,) * 12, {"generation": 1}, "/store/x/checkpoint_000002")],
                  next_index=8)
    first = s.suggest("A")
    assert first == {"trial_id": "t0007", "ranks": [3] * 12, "hparams": {}, "resume_from": "/store/x/checkpoint_000002"}
    assert s.strategy.n_asked == 0
    assert s.suggest("B")["trial_id"] == "t0008"


def test_state_is_json_and_restores_the_same_continuation(make, digits_space, tmp_path):
    s, _ = make(budget=6, max_concurrent=None)
    for tid in "ABC":
        s.suggest(tid)
    s.on_trial_complete("A", final(0.9))
    s.on_trial_complete("B", error=True)
    s.fail("B", "boom")
    state = s.get_state()
    json.dumps(state)  # strict JSON: no pickled objects
    s.save(str(tmp_path / "searcher.json"))

    fresh = StrategySearcher(strategies.get("random", digits_space, seed=123, budget=1))
    fresh.restore(str(tmp_path / "searcher.json"))
    assert fresh.get_state() == state
    assert fresh.suggest("D") == s.suggest("D")  # same next proposal, same id

    clone = pickle.loads(pickle.dumps(s))  # what Tune does to its config (tuner.pkl)
    assert clone.get_state()["strategy"] == s.get_state()["strategy"]
    assert clone.listener is None


def test_result_from_report(digits_space):
    from ranksearch.space import compression_ratio, count_flops, count_params

    ranks = (4,) * digits_space.n_ranks
    ok = result_from_report(digits_space, ranks, final(0.93), info={"generation": 2})
    assert ok.status == "ok" and ok.fidelity == 2
    assert ok.metrics["val_accuracy"] == 0.93 and ok.metrics["latency"] == 0.25
    assert ok.metrics["params"] == count_params(digits_space, ranks)
    assert ok.metrics["flops"] == count_flops(digits_space, ranks)
    assert ok.metrics["compression_ratio"] == pytest.approx(compression_ratio(digits_space, ranks))
    assert ok.info["generation"] == 2 and ok.info["trial_seconds"] == 1.5

    diverged = result_from_report(digits_space, ranks, final(math.nan, "failed", "non-finite loss"))
    assert diverged.status == "failed" and diverged.error == "non-finite loss"
    no_acc = result_from_report(digits_space, ranks, final(math.nan))
    assert no_acc.status == "failed" and "finite" in no_acc.error
    cut = result_from_report(digits_space, ranks, {"epoch": 1, "best_val_accuracy": 0.5})
    assert cut.status == "pruned" and cut.metrics["val_accuracy"] == 0.5 and cut.fidelity == 1
    nothing = result_from_report(digits_space, ranks, None)
    assert nothing.status == "failed"
