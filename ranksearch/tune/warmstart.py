"""Dense warm start (`training.init: dense`): one dense training per search, shared by trials.

The driver trains the space's dense network once with the per-trial recipe (`training`) and
keeps its weights in the experiment folder (`dense/dense.pt`, with `dense/meta.json` saying
which model, data, recipe and seed produced them); a later search or `resume` with the same
fingerprint reuses them instead of training again. Each trial then builds its model with
`build_model(space, ranks, dense=net, from_dense=True)`: cores initialised by decomposing the
trained dense layers. The dense run's training samples count towards the search's cost.

Learned warm start (`training.init: learned`, with `strategy.seeds: [learned]`): the driver keeps
the cores of the one gated run behind the learned seeds (`ranksearch.learned.warm`) in the
experiment folder (`learned/cores.pt`, with `learned/meta.json`), and each trial builds its model
with `ranksearch.learned.warm.cut`: cores cut to its ranks from the learned ones. The gated run
is charged once, where the seeds are made; trials add nothing.
"""

from __future__ import annotations

import io
import json
import logging
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch.nn as nn

    from ranksearch.learned.warm import LearnedCores
    from ranksearch.space import SearchSpace
    from ranksearch.tune.storage import Storage

log = logging.getLogger(__name__)

DENSE_DIR = "dense"
DENSE_FILE = "dense.pt"
META_FILE = "meta.json"

_CACHE: dict[str, dict[str, Any]] = {}  # storage path -> state dict, per worker process
_CACHE_LOCK = threading.Lock()


@dataclass(frozen=True)
class DenseStart:
    """Where the dense weights lie and what producing them cost in this driver session."""

    path: str  # filesystem path (under the storage's filesystem) of dense.pt
    samples_seen: int  # 0 when the cached weights were reused
    val_accuracy: float
    reused: bool


def fingerprint(space: SearchSpace) -> dict[str, Any]:
    """What the dense weights depend on: model, data, the dense recipe and seed."""
    d = space.to_dict()
    return {"model": d.get("model"), "data": d.get("data"),
            "training": d.get("dense_training") or d.get("training"), "seed": space.seed}


def dense_recipe(space: SearchSpace) -> Any:
    """The dense network's training recipe: `dense_training`, else the per-trial `training`
    with `init: scratch` and no distillation (it has no teacher)."""
    cfg = space.config
    recipe = cfg.dense_training or cfg.training
    return recipe.model_copy(update={"init": "scratch", "distill": 0.0, "subset": None}) \
        if cfg.dense_training is None else recipe


def install_dense(space: SearchSpace, storage: Storage, name: str, state: dict[str, Any], *,
                  samples_seen: int, val_accuracy: float) -> str:
    """Place dense weights trained elsewhere (e.g. once for several searches) where
    `ensure_dense` finds them for search `name`; the caller accounts for their samples."""
    _save_dense(storage, name, state, {"fingerprint": fingerprint(space), "samples_seen": samples_seen,
                                       "val_accuracy": val_accuracy, "installed": True})
    return storage.path(name, DENSE_DIR, DENSE_FILE)


def _save_dense(storage: Storage, name: str, state: dict[str, Any], meta: dict[str, Any]) -> None:
    """dense.pt (CPU tensors), then meta.json: a reader that finds the meta finds the weights."""
    import torch

    buf = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in state.items()}, buf)
    _write_bytes(storage, buf.getvalue(), name, DENSE_DIR, DENSE_FILE)
    storage.write_text(json.dumps(meta), name, DENSE_DIR, META_FILE)


def ensure_dense(space: SearchSpace, storage: Storage, name: str) -> DenseStart:
    """The search's dense weights: cached ones when the fingerprint matches, else trained now."""
    import torch

    from ranksearch.models import build_dense
    from ranksearch.training import get_splits, train_model

    want = fingerprint(space)
    path = storage.path(name, DENSE_DIR, DENSE_FILE)
    if storage.exists(name, DENSE_DIR, DENSE_FILE) and storage.exists(name, DENSE_DIR, META_FILE):
        meta = json.loads(storage.read_text(name, DENSE_DIR, META_FILE))
        if meta.get("fingerprint") == json.loads(json.dumps(want)):
            return DenseStart(path, 0, float(meta.get("val_accuracy", float("nan"))), True)
        log.warning("dense warm start: cached weights were trained for another space; training again")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(space.seed)
        net = build_dense(space.config.model, space.input_shape, space.num_classes)
    outcome = train_model(net, get_splits(space), dense_recipe(space), seed=space.seed,
                          measure_latency=False)
    if not outcome.ok:
        raise RuntimeError(f"dense warm start: training the dense model failed: {outcome.error}")
    _save_dense(storage, name, net.state_dict(), {"fingerprint": want, "samples_seen": outcome.samples_seen,
                                                   "val_accuracy": outcome.val_accuracy,
                                                   "epochs": outcome.epochs_done})
    return DenseStart(path, outcome.samples_seen, outcome.val_accuracy, False)


def _load_once(path: str, storage: Storage) -> dict[str, Any]:
    """A torch file under `storage` (dense weights, learned cores), read once per worker process."""
    import torch

    with _CACHE_LOCK:
        data = _CACHE.get(path)
        if data is None:
            with storage.fs.open_input_stream(path) as f:
                raw = f.readall()
            data = _CACHE[path] = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    return data


def _dense_state(dense_path: str, storage: Storage) -> dict[str, Any]:
    """The trained dense weights, read once per worker process."""
    return _load_once(dense_path, storage)


def dense_net(space: SearchSpace, dense_path: str, storage: Storage) -> nn.Module:
    """The trained dense network (the distillation teacher, the source of effective ranks)."""
    from ranksearch.models import build_dense

    net = build_dense(space.config.model, space.input_shape, space.num_classes)
    net.load_state_dict(_dense_state(dense_path, storage))
    return net


def warm_model(space: SearchSpace, ranks: tuple[int, ...], dense_path: str, storage: Storage) -> nn.Module:
    """A trial's model initialised from the dense weights."""
    from ranksearch.models import build_warm

    return build_warm(space, ranks, _dense_state(dense_path, storage), seed=space.seed)[0]


LEARNED_DIR = "learned"
LEARNED_FILE = "cores.pt"


def save_learned(storage: Storage, name: str, cores: LearnedCores, meta: dict[str, Any] | None = None) -> str:
    """Keep the learned cores of search `name` (cores.pt, then meta.json); returns their path."""
    import torch

    buf = io.BytesIO()
    torch.save(cores.to_dict(), buf)
    _write_bytes(storage, buf.getvalue(), name, LEARNED_DIR, LEARNED_FILE)
    storage.write_text(json.dumps({"ranks": list(cores.ranks), **(meta or {})}), name, LEARNED_DIR, META_FILE)
    return storage.path(name, LEARNED_DIR, LEARNED_FILE)


def learned_path(storage: Storage, name: str) -> str | None:
    """Where search `name` kept its learned cores; None when it kept none."""
    if storage.exists(name, LEARNED_DIR, LEARNED_FILE) and storage.exists(name, LEARNED_DIR, META_FILE):
        return storage.path(name, LEARNED_DIR, LEARNED_FILE)
    return None


def load_learned(path: str, storage: Storage) -> LearnedCores:
    """The learned cores, read once per worker process."""
    from ranksearch.learned.warm import LearnedCores

    return LearnedCores.from_dict(_load_once(path, storage))


def learned_model(space: SearchSpace, ranks: tuple[int, ...], path: str, storage: Storage) -> nn.Module:
    """A trial's model started from the learned cores, cut to `ranks`."""
    from ranksearch.learned.warm import cut

    return cut(space, ranks, load_learned(path, storage), seed=space.seed)


def _write_bytes(storage: Storage, data: bytes, *parts: str) -> None:
    import os
    from pathlib import Path

    target = storage.path(*parts)
    if storage.is_local:
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(f"{target}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, target)
        return
    with storage.fs.open_output_stream(target) as f:
        f.write(data)
