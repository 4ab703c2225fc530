"""User-facing search functions: run, resume, locate, front, best, register.

    from ranksearch import service
    outcome = service.search("search_spaces/quickstart_digits.yaml", budget=8, workers=2)
    rows = service.front(outcome.name)
    config = service.best(outcome.name, "max val_accuracy where compression_ratio >= 8")
    config.save("best.yaml")                       # or "s3://bucket/key"
    service.register(config, "digits-tr")          # MLflow registry, alias 'champion'
    model = service.load_rank_config("models:/digits-tr@champion").build_model(weights=True)

Every function checks its input first (`ranksearch.checks`, the path `ranksearch validate`
takes) and raises a `RanksearchError` before Ray or MLflow start; errors name settings as
Python spells them (`workers`), never command-line flags. Searches run through
`ranksearch.tune`; results are read back through `ranksearch.tracking` (the one module that
imports MLflow). Rank-config files live in `ranksearch.rankconfig` (re-exported here),
production training in `ranksearch.production`, cluster jobs in `ranksearch.tune.submit`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from ranksearch.errors import RanksearchError, ServiceError, SettingError, SpaceError
from ranksearch.rankconfig import (
    MODEL_ARTIFACT_DIR,
    MODEL_FILE,
    RANK_CONFIG_FILE,
    RankConfigFile,
    finite,
    is_rank_config_ref,
    load_rank_config,
)

if TYPE_CHECKING:
    from rich.console import Console

    from ranksearch.space import SearchSpace
    from ranksearch.trial import TrialResult
    from ranksearch.tune.driver import SearchOutcome, SearchSettings
    from ranksearch.tune.state import SearchState
    from ranksearch.tune.storage import Storage

__all__ = [
    "PreparedSearch", "RankConfigFile", "SearchRef", "ServiceError", "best", "browse_hint",
    "check_address", "check_search_name", "default_tracking_uri", "find_state", "front", "front_rows",
    "is_rank_config_ref", "load_rank_config", "locate_search", "prepare_search", "register", "resume",
    "run_prepared", "search",
]

log = logging.getLogger(__name__)

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,119}$")
_ADDRESS = re.compile(r"^(auto|local|ray://[^\s/:]+(:\d+)?|[^\s/:]+:\d+)$")
_TRACKING_SCHEMES = ("http", "https", "sqlite", "file", "postgresql", "mysql", "mssql", "databricks")


def check_search_name(name: str, *, setting: str = "name") -> str:
    """A search name that is safe as a folder, an MLflow run name and a Ray job id part."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise SettingError(setting, "is not a usable search name", value=name,
                           hint="use letters, digits, '.', '_' and '-' (at most 120, starting with a "
                                "letter or digit)")
    return name


# -- defaults ---------------------------------------------------------------------------------------
def default_tracking_uri(tracking_uri: str | None = None) -> str:
    """The tracking store to use: the given one, $MLFLOW_TRACKING_URI, or tracking's default.

    A given relative path is made absolute here, so a search resumed from another folder still
    finds its store; the default comes from `tracking.resolve_tracking_uri` (one place).
    Nothing is created.
    """
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        from ranksearch.tracking import resolve_tracking_uri

        return resolve_tracking_uri(None)
    uri = str(uri)
    if "://" in uri:
        scheme = uri.split("://", 1)[0].split("+", 1)[0].lower()
        if scheme not in _TRACKING_SCHEMES:
            raise SettingError("tracking_uri", f"has an unsupported scheme '{scheme}://'", value=uri,
                               hint="give an http(s):// server, sqlite:///PATH.db, or a folder")
        return uri
    if uri.startswith("file:"):
        return uri
    return str(Path(uri).expanduser().resolve())


def browse_hint(tracking_uri: str) -> str:
    """The command that shows a tracking store in the MLflow UI."""
    from ranksearch.tracking import resolve_tracking_uri

    if tracking_uri.startswith(("http://", "https://")):
        return f"open {tracking_uri}"
    uri = tracking_uri if "://" in tracking_uri else _resolved_without_mkdir(tracking_uri)
    if uri is None:
        uri = resolve_tracking_uri(tracking_uri)
    return f"mlflow ui --backend-store-uri {uri}"


def _resolved_without_mkdir(path: str) -> str | None:
    p = Path(path)
    if p.suffix == ".db":
        return f"sqlite:///{p.resolve()}"
    if (p / "mlflow.db").is_file():
        return f"sqlite:///{(p / 'mlflow.db').resolve()}"
    return None


# -- run ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PreparedSearch:
    """A validated search, ready to start: the effective space and the settings."""

    space: SearchSpace
    settings: SearchSettings
    storage: Storage


def prepare_search(
    space: str | os.PathLike[str] | SearchSpace,
    *,
    strategy: str | None = None,
    budget: int | str | None = None,
    workers: int | None = None,
    seed: int | None = None,
    name: str | None = None,
    tracking_uri: str | None = None,
    address: str | None = None,
    storage: str | None = None,
    retries: int = 1,
    options: Mapping[str, Any] | None = None,
    check_storage: bool = True,
    check_data: bool = True,
    fix_ranks: Any = None,
) -> PreparedSearch:
    """Validate everything a search needs, with no side effect beyond reading files.

    Overrides are folded into an effective space (strategy, budget, options, seed), so what
    MLflow records and what `best` hands over is exactly what ran. `fix_ranks` searches the
    hyperparameters alone at those ranks (`8,14,...`, one int, a fraction, 'same', or a
    rank-config file whose values are the first trial's; `ranksearch.fixranks`). `check_data=False` skips the
    local data folder (a cluster job reads its data on the cluster).
    """
    from ranksearch.checks import check_space
    from ranksearch.tune.driver import SearchSettings
    from ranksearch.tune.storage import Storage

    # The one check path `ranksearch validate` uses: strategy, options, seeds, constraints, data.
    effective = check_space(space, strategy=strategy, budget=budget, seed=seed, options=options,
                            check_data=check_data, fix_ranks=fix_ranks)
    spec = effective.config.strategy
    strategy, seed, opts = spec.name, effective.seed, dict(spec.options)
    budget, cost_budget = _planned_trials(effective, check_data), None
    if spec.cost_budget.is_cost:
        cost_budget = str(spec.cost_budget)
    resources = effective.config.resources
    workers = resources.max_concurrent if workers is None else workers
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise SettingError("workers", "must be a whole number, at least 1", value=workers)
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise SettingError("retries", "must be 0 or more", value=retries)
    name = name or f"{effective.name}-{strategy}-{time.strftime('%Y%m%d-%H%M%S')}"
    check_search_name(name)
    tracking = default_tracking_uri(tracking_uri)
    check_address(address)  # before the storage check, which creates the local folder
    store = Storage.parse(storage)
    if check_storage:
        store.check_writable()
        if store.exists(name, "search.json"):
            raise SettingError("name", f"is taken: a search of that name exists in {store.uri}", value=name,
                               hint=f"continue it with `ranksearch resume {name}`, or choose another name")
    settings = SearchSettings(
        name=name, strategy=strategy, budget=budget, cost_budget=cost_budget, seed=seed, workers=workers,
        storage=store.uri if store.is_local else _storage_spec(store), options=opts,
        max_failures=retries, tracking_uri=tracking, address=address,
        cpus_per_trial=resources.cpus_per_trial, gpus_per_trial=resources.gpus_per_trial,
    )
    return PreparedSearch(effective, settings, store)


def _planned_trials(space: SearchSpace, check_data: bool) -> int:
    """The trials the strategy plans for; a cost budget is turned into a trial count from the
    recipe and the data (where the data cannot be read here, e.g. a cluster job's, a large cap:
    the cost limit, enforced on the cluster, ends the search)."""
    from ranksearch.training import planned_trials

    spec = space.config.strategy
    if spec.trial_budget is not None:
        return spec.trial_budget
    try:
        return planned_trials(space)
    except Exception as exc:  # noqa: BLE001 - data not readable here
        if check_data:
            raise SpaceError(f"cannot size the cost budget {spec.budget}: {exc}", file=space.source,
                             field="strategy.budget", value=spec.budget,
                             hint="set strategy.max_trials, or give the budget in trials") from None
        return 10_000


def check_address(address: str | None, *, timeout: float = 3.0) -> None:
    """Fail fast when nothing listens at a HOST:PORT Ray address (Ray itself waits minutes)."""
    if address is None:
        return
    if not _ADDRESS.match(address):
        raise SettingError("address", "is not a Ray address", value=address,
                           hint="give 'auto', 'local', HOST:PORT or ray://HOST:PORT")
    if address in ("auto", "local"):
        return
    import socket

    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise SettingError("address", f"does not answer ({exc.strerror or exc})", value=address,
                           hint="start the Ray head first (`ray start --head`), or leave the address out "
                                "to run Ray in this process") from None


def _storage_spec(store: Storage) -> str:
    return f"{store.uri}?endpoint={store.endpoint}" if store.endpoint else store.uri


def search(
    space: str | os.PathLike[str] | SearchSpace,
    *,
    show_progress: bool = True,
    console: Console | None = None,
    **kwargs: Any,
) -> SearchOutcome:
    """Run a search (keywords as in `prepare_search`); returns when the budget is used."""
    prepared = prepare_search(space, **kwargs)
    return run_prepared(prepared, show_progress=show_progress, console=console)


def run_prepared(prepared: PreparedSearch, *, show_progress: bool = True,
                 console: Console | None = None) -> SearchOutcome:
    """Start a search that `prepare_search` validated."""
    return _execute(prepared.space, prepared.settings, None, show_progress=show_progress, console=console)


def _execute(space: SearchSpace, settings: SearchSettings, state: SearchState | None, *,
             show_progress: bool, console: Console | None) -> SearchOutcome:
    from ranksearch.tune.driver import run_search

    def sink(tracker: Any, st: SearchState) -> _MlflowModelSink:
        return _MlflowModelSink(tracker.tracking_uri, space, st, retry_for=tracker.retry_for)

    return run_search(space, settings, state=state, model_sink_factory=sink, console=console,
                      show_progress=show_progress)


# -- locating a search ------------------------------------------------------------------------------
@dataclass(frozen=True)
class SearchRef:
    """Where a search lives: its MLflow parent run, and its state file when one was found."""

    name: str
    parent_run_id: str
    tracking_uri: str
    state: SearchState | None = None
    storage: Storage | None = None


def find_state(search: str, *, storage: str | None = None) -> tuple[Storage, SearchState] | None:
    """The `search.json` of a search given by name (under `storage`), folder or s3:// URI."""
    from ranksearch.tune.state import STATE_FILE, SearchState
    from ranksearch.tune.storage import Storage

    text, _, query = str(search).partition("?")  # s3://bucket/prefix/NAME?endpoint=...
    text = text.rstrip("/")
    candidates: list[tuple[Storage, str]] = []
    if text.endswith(STATE_FILE):
        text = text[: -len(STATE_FILE)].rstrip("/")
    if "://" in text or "/" in text or text.startswith("."):
        parent, _, leaf = text.rpartition("/")
        if leaf:
            candidates.append((Storage.parse((parent or "/") + (f"?{query}" if query else "")), leaf))
    elif NAME_PATTERN.match(text):
        candidates.append((Storage.parse(storage), text))
        if Path(text).is_dir():
            candidates.append((Storage.parse(str(Path(text).resolve().parent)), Path(text).name))
    for store, name in candidates:
        try:
            if store.exists(name, STATE_FILE):
                return store, SearchState.load(store, name)
        except RanksearchError:
            raise
        except OSError:
            continue
    return None


def locate_search(search: str, *, tracking_uri: str | None = None, storage: str | None = None) -> SearchRef:
    """A search by name, experiment folder, s3:// URI or MLflow run id (parent or trial)."""
    from ranksearch.tracking import find_search

    if not search or not str(search).strip():
        raise SettingError("search", "is empty", value=search,
                           hint="name a search: its name, its folder, or its MLflow run id")
    found = find_state(search, storage=storage)
    if found is not None:
        store, state = found
        uri = tracking_uri or state.settings.get("tracking_uri") or default_tracking_uri()
        if state.parent_run_id:
            return SearchRef(state.name, state.parent_run_id, uri, state, store)
    uri = default_tracking_uri(tracking_uri)
    _require_local_store(uri, search, storage)
    parent = find_search(str(search), uri)
    return SearchRef(str(search), parent, uri)


def _require_local_store(uri: str, search: str, storage: str | None) -> None:
    """A search looked up in a local store that does not exist fails here, before MLflow would
    create an empty store as a side effect of the lookup."""
    path = missing_local_store(uri)
    if path is not None:
        raise SettingError("search", f"not found: no search state under {storage or 'runs/ray'} and no "
                           f"tracking store at {path}", value=search,
                           hint="give the search's name with the storage and tracking store it used, its "
                                "folder, or its MLflow run id")


def missing_local_store(uri: str) -> Path | None:
    """The path of a local tracking store that does not exist (None for servers and existing stores)."""
    from ranksearch.tracking import resolve_tracking_uri

    if "://" in uri and not uri.startswith(("sqlite:///", "file:")):
        return None
    resolved = resolve_tracking_uri(uri)
    if resolved.startswith("sqlite:///"):
        path = Path(resolved.removeprefix("sqlite:///"))
    elif resolved.startswith("file:"):
        path = Path(resolved.removeprefix("file://").removeprefix("file:"))
    else:
        return None
    return None if path.exists() else path


# -- resume ---------------------------------------------------------------------------------------
def resume(
    search: str,
    *,
    storage: str | None = None,
    address: str | None = None,
    workers: int | None = None,
    tracking_uri: str | None = None,
    show_progress: bool = True,
    console: Console | None = None,
) -> SearchOutcome:
    """Continue an interrupted search from its state file: strategy restored, finished trials
    kept, unfinished ones re-run from their last checkpoint."""
    from dataclasses import replace

    from ranksearch.space import SearchSpace
    from ranksearch.tune.driver import SearchSettings

    found = find_state(search, storage=storage)
    if found is None:
        where = storage or "runs/ray"
        raise ServiceError(f"no search state for {search!r} (looked for {where}/{search}/search.json, "
                           "or give the search's folder or s3:// URI)")
    store, state = found
    if state.status == "finished":
        raise ServiceError(f"search '{state.name}' already finished its budget "
                           f"({len(state.order)} trials); nothing to resume")
    check_address(address)
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise SettingError("workers", "must be a whole number, at least 1", value=workers)
    space = SearchSpace.from_dict(state.space, source=f"{store.display(state.name)}/search.json")
    settings = SearchSettings.from_dict(state.settings)
    settings = replace(settings, storage=store.uri if store.is_local else _storage_spec(store),
                       address=address if address is not None else settings.address,
                       workers=workers or settings.workers,
                       tracking_uri=tracking_uri or settings.tracking_uri)
    return _execute(space, settings, state, show_progress=show_progress, console=console)


# -- reading results --------------------------------------------------------------------------------
def front(search: str, *, tracking_uri: str | None = None, storage: str | None = None) -> list[dict[str, Any]]:
    """The Pareto front of a search: one dict per trial (trial_id, run_id, ranks, metrics)."""
    from ranksearch.tracking import load_front

    ref = locate_search(search, tracking_uri=tracking_uri, storage=storage)
    rows = load_front(ref.parent_run_id, ref.tracking_uri)
    return sorted(rows, key=lambda r: -float(r.get("metrics", {}).get("val_accuracy", 0.0) or 0.0))


def best(search: str, pick: str, *, tracking_uri: str | None = None,
         storage: str | None = None) -> RankConfigFile:
    """The trial a pick rule selects among the finished trials, as a rank-config file."""
    from ranksearch.pareto import parse_pick
    from ranksearch.tracking import load_trials

    rule = parse_pick(pick)  # a malformed rule fails before any store is opened
    ref = locate_search(search, tracking_uri=tracking_uri, storage=storage)
    space = _search_space(ref)
    rows = [r for r in load_trials(ref.parent_run_id, ref.tracking_uri) if r["status"] == "ok"]
    objectives = [(o.name, o.sense) for o in space.objectives]
    index = rule.select([r["metrics"] for r in rows], objectives=objectives)
    row = rows[index]
    return RankConfigFile(
        space=space, ranks=tuple(int(r) for r in row["ranks"]), hparams=dict(row.get("hparams") or {}),
        metrics={k: float(v) for k, v in row["metrics"].items() if finite(v)},
        provenance={
            "search": ref.name, "search_run_id": ref.parent_run_id, "trial_id": row["trial_id"],
            "trial_run_id": row["run_id"], "tracking_uri": ref.tracking_uri, "pick": str(rule),
            "model_uri": f"runs:/{row['run_id']}/{MODEL_ARTIFACT_DIR}",
            "experiment": space.name, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
    )


def _search_space(ref: SearchRef) -> SearchSpace:
    from ranksearch.space import SearchSpace

    if ref.state is not None:
        return SearchSpace.from_dict(ref.state.space)
    from ranksearch.tracking import download_text

    text = download_text(ref.tracking_uri, ref.parent_run_id, "space.yaml")
    if text is None:
        raise ServiceError(f"search run {ref.parent_run_id} has no space.yaml artifact; it was not "
                           "made by ranksearch run")
    return SearchSpace.from_dict(yaml.safe_load(text), source=f"runs:/{ref.parent_run_id}/space.yaml")


# -- MLflow through `ranksearch.tracking`: artifacts, the model registry, production runs ----------
def register(config: RankConfigFile, name: str, *, alias: str = "champion",
             tracking_uri: str | None = None) -> str:
    """Register the config's trial weights as a new version of model `name`, tag it with the
    config, and move `alias` to it. Returns the version."""
    from ranksearch.tracking import artifact_names, register_model

    check_search_name(name, setting="register")
    run_id = config.provenance.get("trial_run_id")
    if not run_id:
        raise ServiceError("this rank config names no trial run (provenance.trial_run_id); "
                           "register configs made by `ranksearch best`")
    uri = tracking_uri or config.provenance.get("tracking_uri")
    if MODEL_FILE not in artifact_names(uri, run_id, MODEL_ARTIFACT_DIR):
        raise ServiceError(f"trial run {run_id} has no {MODEL_ARTIFACT_DIR}/{MODEL_FILE}: its weights "
                           "were not logged (the trial failed, or the search is still logging)")
    prov = config.provenance
    tags = {
        "ranksearch.space": config.space.name,
        "ranksearch.ranks": json.dumps(list(config.ranks)),
        "ranksearch.search": str(prov.get("search", "")),
        "ranksearch.search_run_id": str(prov.get("search_run_id", "")),
        "ranksearch.trial_id": str(prov.get("trial_id", "")),
        "ranksearch.trial_run_id": str(run_id),
        "ranksearch.pick": str(prov.get("pick", "")),
        "ranksearch.metrics": json.dumps(config.metrics, sort_keys=True),
    }
    config_text = config.to_yaml()
    if len(config_text) <= 5000:
        tags["ranksearch.rank_config"] = config_text
    return register_model(
        name, run_id=run_id, source_path=MODEL_ARTIFACT_DIR, tags=tags, alias=alias, tracking_uri=uri,
        description=f"{prov.get('pick', '')} in {prov.get('search', '')}",
        model_description=f"ranksearch rank configurations of {config.space.name}",
    )


class _MlflowModelSink:
    """Logs each finished trial's weights and rank config to its child run, off the driver thread.

    The child run's id comes from the tracker once its queued create is delivered; uploads are
    retried for `retry_for` seconds when the store is unreachable (`tracking.ArtifactUploader`).
    """

    def __init__(self, tracking_uri: str, space: SearchSpace, state: SearchState, *,
                 retry_for: float = 600.0) -> None:
        from ranksearch.tracking import ArtifactUploader

        self.tracking_uri = tracking_uri
        self.space = space
        self.state = state
        self.retry_for = retry_for
        self._uploader = ArtifactUploader(tracking_uri, MODEL_ARTIFACT_DIR, retry_for=retry_for,
                                          what="weights", thread_name="ranksearch-models")

    @property
    def stats(self) -> dict[str, Any]:
        return self._uploader.stats

    def submit(self, trial_id: str, files: dict[str, bytes], result: TrialResult,
               run_id: Callable[[], str | None], done: Callable[[], None]) -> None:
        def with_config(rid: str) -> dict[str, bytes]:
            config = RankConfigFile(
                space=self.space, ranks=result.ranks, hparams=dict(result.hparams),
                metrics={k: float(v) for k, v in result.metrics.items() if finite(v)},
                provenance={"search": self.state.name, "search_run_id": self.state.parent_run_id,
                            "trial_id": trial_id, "trial_run_id": rid, "tracking_uri": self.tracking_uri,
                            "model_uri": f"runs:/{rid}/{MODEL_ARTIFACT_DIR}", "experiment": self.space.name},
            )
            return {**files, RANK_CONFIG_FILE: config.to_yaml().encode()}

        self._uploader.submit(f"trial {trial_id}", with_config, run_id, done)

    def close(self, timeout: float) -> None:
        self._uploader.close(timeout)


def all_trials(search: str, *, tracking_uri: str | None = None, storage: str | None = None) -> list[dict[str, Any]]:
    """Every trial of a search, oldest first, each with `on_front` (the tracker's tag) and a
    `state` for people: ok, failed, running or 'stopped at epoch k' (pruned by a scheduler;
    pruned trials never enter the front of completed trials)."""
    from ranksearch.tracking import load_trials

    ref = locate_search(search, tracking_uri=tracking_uri, storage=storage)
    rows = load_trials(ref.parent_run_id, ref.tracking_uri)
    for r in rows:
        r["on_front"] = bool(r.get("pareto_optimal"))
        r["state"] = (f"stopped at epoch {int(r['fidelity'] or 0)}" if r["status"] == "pruned" else r["status"])
    return rows


def front_rows(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Front entries flattened for display and JSON: ranks, accuracy, params, compression, FLOPs."""
    out = []
    for r in rows:
        m = r.get("metrics", {}) or {}
        out.append({
            "trial_id": r.get("trial_id"), "run_id": r.get("run_id"), "ranks": list(r.get("ranks") or []),
            "hparams": dict(r.get("hparams") or {}),
            "val_accuracy": m.get("val_accuracy"), "params": m.get("params"),
            "compression_ratio": m.get("compression_ratio"), "flops": m.get("flops"),
            "latency": m.get("latency"),
            **({"state": r["state"], "on_front": r.get("on_front", False)} if "state" in r else {}),
        })
    return out
