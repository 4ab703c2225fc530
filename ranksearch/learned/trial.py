"""A learned-rank trial inside a Ray worker: the `learned` strategy's knob in, learned ranks out.

The strategy puts a `learn` entry in the trial's config (`LearnSpec.to_config`): the gate kind,
the knob (a target compression or a penalty strength) and the phases' epochs. The trial runs
`learn_ranks` (gated training, prune, fine-tune), reports every epoch of both phases to Tune,
and ends with one final report shaped like an ordinary trial's, plus

- `rs_ranks`: the LEARNED rank vector, which the searcher adapter makes the result's ranks (the
  config's `ranks` is only the strategy's placeholder proposal), with the closed-form costs
  (`rs_params`, `rs_flops`) at those ranks: the pruned model's count is checked against them;
- `rs_extra_*`: what the learning did (the knob, gated and pruned accuracy, expected count at
  the end), which the adapter adds to the result's metrics.

A retried learned trial starts over (the gated phase keeps no trainer checkpoint: the gates'
own optimizer and the budget penalty's schedule are not part of it).
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ranksearch.learned.train import LearnedOutcome
    from ranksearch.space import SearchSpace
    from ranksearch.tune.storage import Storage

#: Config key that marks a learned-rank trial.
CONFIG_KEY = "learn"
#: Report keys: the learned ranks, and the prefix of extra metrics.
RANKS_KEY = "rs_ranks"
EXTRA_PREFIX = "rs_extra_"
#: The user-facing gate names and the kinds `learn_ranks` knows them by.
GATE_KINDS = {"hard_concrete": "l0", "ard": "ard"}
KNOBS = ("target_compression", "strength")
#: A target-compression trial's gated run starts at this many times the target's count.
START_FACTOR = 4.0


@dataclass(frozen=True)
class LearnSpec:
    """One learned-rank trial's settings (JSON-able through `to_config` / `from_config`)."""

    gate: str
    knob: str
    value: float
    index: int = 0  # which of the strategy's knobs (reported back: the strategy matches on it)
    epochs: int | None = None
    finetune_epochs: int | None = None

    def __post_init__(self) -> None:
        if self.gate not in GATE_KINDS:
            raise ValueError(f"learned trial: unknown gate {self.gate!r}; use one of {sorted(GATE_KINDS)}")
        if self.knob not in KNOBS:
            raise ValueError(f"learned trial: unknown knob {self.knob!r}; use one of {KNOBS}")
        bad = (not math.isfinite(self.value) or (self.knob == "target_compression" and self.value <= 1)
               or (self.knob == "strength" and self.value < 0))
        if bad:
            raise ValueError(f"learned trial: {self.knob} = {self.value!r} is out of range "
                             "(a target compression is > 1, a strength >= 0)")

    def to_config(self) -> dict[str, Any]:
        return {"gate": self.gate, "knob": self.knob, "value": float(self.value), "index": int(self.index),
                "epochs": self.epochs, "finetune_epochs": self.finetune_epochs}

    @classmethod
    def from_config(cls, doc: dict[str, Any]) -> LearnSpec:
        return cls(gate=str(doc["gate"]), knob=str(doc["knob"]), value=float(doc["value"]),
                   index=int(doc.get("index", 0)), epochs=doc.get("epochs"),
                   finetune_epochs=doc.get("finetune_epochs"))

    def learn_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of `learn_ranks` this spec sets. A target compression starts the
        gated run at START_FACTOR x its count, with plain (not rescaled) gates: from the upper
        ranks, or with rescaling, the gated net collapsed at 26x-71x on Fashion-MNIST (see
        `learn_ranks`)."""
        kw = {"kind": GATE_KINDS[self.gate], self.knob: float(self.value), "epochs": self.epochs,
              "finetune_epochs": self.finetune_epochs}
        if self.knob == "target_compression":
            kw.update(start_factor=START_FACTOR, rescale=False)
        return kw


def run_learned(space: SearchSpace, spec: LearnSpec, *, dense_state: dict[str, Any] | None = None,
                num_threads: int | None = None, on_epoch: Any = None) -> LearnedOutcome:
    """`learn_ranks` with the spec's settings and the space's seed (what every learned trial runs)."""
    from ranksearch.learned.train import learn_ranks

    return learn_ranks(space, seed=space.seed, dense_state=dense_state, num_threads=num_threads,
                       on_epoch=on_epoch, **spec.learn_kwargs())


def train_learned_trial(config: dict[str, Any], *, space: SearchSpace, storage: Storage | None = None,
                        cpus_per_trial: float = 1.0, dense_path: str | None = None) -> None:
    """The trainable's branch for a config with a `learn` entry (see the module docstring)."""
    from ray import tune

    from ranksearch.tune.searcher import reported_costs
    from ranksearch.tune.trainable import EPOCH_KEYS, FINAL_KEY, MODEL_FILE, OUTCOME_FILE, _finite, _node_id

    started, t0 = time.time(), time.perf_counter()
    spec = LearnSpec.from_config(config[CONFIG_KEY])
    dense_state = None
    if dense_path and storage is not None and space.config.training.init == "dense":
        from ranksearch.tune.warmstart import dense_net

        dense_state = dense_net(space, dense_path, storage).state_dict()

    def on_epoch(record: dict[str, Any]) -> None:
        metrics = {k: record[k] for k in EPOCH_KEYS if k in record}
        metrics[FINAL_KEY] = False
        tune.report(metrics)

    outcome = run_learned(space, spec, dense_state=dense_state, num_threads=max(1, int(cpus_per_trial)),
                          on_epoch=on_epoch)
    gated, tuned = outcome.phases.get("gated"), outcome.phases.get("finetune")
    last = tuned or gated
    failed = next((p for p in outcome.phases.values() if not p.ok), None)
    workdir = Path(tempfile.mkdtemp(prefix=f"ranksearch-{config.get('trial_id', 'trial')}-"))
    try:
        import torch

        torch.save(outcome.model.state_dict(), workdir / MODEL_FILE)
        doc = {"learned_ranks": list(outcome.ranks), "learn": spec.to_config(),
               "metrics": outcome.metrics,
               "phases": {k: {kk: vv for kk, vv in p.to_dict().items() if kk != "history"}
                          for k, p in outcome.phases.items()}}
        (workdir / OUTCOME_FILE).write_text(json.dumps(doc, default=str))
        extra = {"learn_index": float(spec.index), f"learn_{spec.knob}": float(spec.value)}
        extra.update({k: outcome.metrics[k] for k in ("gated_val_accuracy", "pruned_val_accuracy",
                                                       "expected_params_end", "upper_params")})
        report = {
            FINAL_KEY: True,
            "rs_status": "failed" if failed is not None else "ok",
            "rs_error": (failed.error or f"the {failed.status} phase did not finish") if failed else "",
            "val_accuracy": _finite(outcome.metrics["val_accuracy"]),
            "final_val_accuracy": _finite(last.final_val_accuracy) if last is not None else math.nan,
            "epochs_done": sum(p.epochs_done for p in outcome.phases.values()),
            "best_epoch": (gated.epochs_done if gated else 0) + (tuned.best_epoch if tuned else 0),
            "samples_seen": int(outcome.metrics["samples_seen"]),
            "train_seconds": sum(p.train_seconds for p in outcome.phases.values()),
            "rs_trial_seconds": time.perf_counter() - t0,
            "rs_started_at": started,
            "rs_ended_at": time.time(),
            "latency_ms": math.nan,
            "params_measured": int(outcome.metrics["params"]),
            "rs_resumed_from": "",
            "rs_node_id": _node_id(),
            RANKS_KEY: list(outcome.ranks),
            **{EXTRA_PREFIX + k: float(v) for k, v in extra.items()},
            **reported_costs(space, outcome.ranks),
        }
        tune.report(report, checkpoint=tune.Checkpoint.from_directory(str(workdir)))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def reported_ranks(space: SearchSpace, report: dict[str, Any] | None) -> tuple[int, ...] | None:
    """The learned ranks a final report carries (None for an ordinary trial's report)."""
    value = (report or {}).get(RANKS_KEY)
    if not value:
        return None
    return tuple(space.check_ranks([int(r) for r in value]))


def extra_metrics(report: dict[str, Any] | None) -> dict[str, float]:
    """The `rs_extra_*` values of a report, as metrics (names without the prefix)."""
    out = {}
    for k, v in (report or {}).items():
        if isinstance(k, str) and k.startswith(EXTRA_PREFIX):
            try:
                out[k.removeprefix(EXTRA_PREFIX)] = float(v)
            except (TypeError, ValueError):
                continue
    return out
