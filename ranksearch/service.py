"""User-facing search functions and rank-config files.

    from ranksearch import service
    outcome = service.search("search_spaces/quickstart_digits.yaml", budget=8, workers=2)
    rows = service.front(outcome.name)
    config = service.best(outcome.name, "max val_accuracy where compression_ratio >= 8")
    config.save("best.yaml")                       # or "s3://bucket/key"
    service.register(config, "digits-tr")          # MLflow registry, alias 'champion'
    model = service.load_rank_config("models:/digits-tr@champion").build_model(weights=True)

Every function validates its input first and raises a `RanksearchError` (the CLI prints it
and exits 2) before Ray or MLflow start. Searches run through `ranksearch.tune`; reading
results back goes through `ranksearch.tracking`.

A rank-config file is the hand-over from search to production: the (effective) search space,
one rank vector and its provenance (search and trial run ids, metrics, the pick rule).
`load_rank_config` reads one from a local path, `s3://bucket/key`, `runs:/RUN_ID[/path]` or
`models:/NAME@alias` (or `models:/NAME/VERSION`).

MLflow is reached only through `ranksearch.tracking` (the one module that imports it): the
service-level pieces at the end of this module (trial weights, the model registry,
production-training runs, artifact downloads) build the service's own content (rank-config
text, tags, provenance) and hand it to tracking's generic functions.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from ranksearch.errors import RanksearchError

if TYPE_CHECKING:
    import torch.nn as nn
    from rich.console import Console

    from ranksearch.space import SearchSpace, TrainingSpec
    from ranksearch.trial import TrialResult
    from ranksearch.tune.driver import SearchOutcome, SearchSettings
    from ranksearch.tune.state import SearchState
    from ranksearch.tune.storage import Storage

log = logging.getLogger(__name__)

RANK_CONFIG_KIND = "ranksearch/rank-config"
RANK_CONFIG_VERSION = 1
RANK_CONFIG_FILE = "rank_config.yaml"
MODEL_FILE = "model.pt"
MODEL_ARTIFACT_DIR = "model"
DEFAULT_TRACKING_DIR = "mlruns"  # -> sqlite:///<cwd>/mlruns/mlflow.db, artifacts beside it
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,119}$")
_ADDRESS = re.compile(r"^(auto|local|ray://[^\s/:]+(:\d+)?|[^\s/:]+:\d+)$")
_TRACKING_SCHEMES = ("http", "https", "sqlite", "file", "postgresql", "mysql", "mssql", "databricks")


class ServiceError(RanksearchError):
    """Bad input to a service function (the CLI exits 2 with this message)."""


# -- defaults ---------------------------------------------------------------------------------------
def default_tracking_uri(tracking_uri: str | None = None) -> str:
    """The tracking store to use: the given one, $MLFLOW_TRACKING_URI, or ./mlruns (SQLite).

    Relative paths are made absolute here, so a search resumed from another folder still
    finds its store. Nothing is created.
    """
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_DIR
    uri = str(uri)
    if "://" in uri:
        scheme = uri.split("://", 1)[0].split("+", 1)[0].lower()
        if scheme not in _TRACKING_SCHEMES:
            raise ServiceError(f"--tracking-uri {uri!r}: unsupported scheme '{scheme}://'; give an "
                               "http(s):// server, sqlite:///PATH.db, or a folder")
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
    budget: int | None = None,
    workers: int | None = None,
    seed: int | None = None,
    name: str | None = None,
    tracking_uri: str | None = None,
    address: str | None = None,
    storage: str | None = None,
    retries: int = 1,
    options: Mapping[str, Any] | None = None,
    check_storage: bool = True,
) -> PreparedSearch:
    """Validate everything a search needs, with no side effect beyond reading files.

    Command-line overrides are folded into an effective space (strategy, budget, options,
    seed), so what MLflow records and what `best` hands over is exactly what ran.
    """
    from ranksearch import strategies
    from ranksearch.space import SearchSpace, load_space
    from ranksearch.strategies.seeding import check_seeds
    from ranksearch.tune.driver import SearchSettings
    from ranksearch.tune.storage import Storage

    base = space if isinstance(space, SearchSpace) else load_space(space)
    spec = base.config.strategy
    strategy = strategy or spec.name
    if strategy not in strategies.available():
        raise ServiceError(f"unknown strategy '{strategy}'; valid strategies: "
                           f"{', '.join(strategies.available())}")
    opts = dict(spec.options) if strategy == spec.name else {}
    opts.update(options or {})
    budget = spec.budget if budget is None else int(budget)
    if budget < 1:
        raise ServiceError(f"--budget must be at least 1 (got {budget})")
    seed = base.seed if seed is None else int(seed)
    resources = base.config.resources
    workers = resources.max_concurrent if workers is None else int(workers)
    if workers < 1:
        raise ServiceError(f"--workers must be at least 1 (got {workers})")
    if retries < 0:
        raise ServiceError(f"--retries must be 0 or more (got {retries})")
    data = base.to_dict()
    data["seed"] = seed
    data["strategy"] = {**data.get("strategy", {}), "name": strategy, "budget": budget, "options": opts}
    effective = SearchSpace.from_dict(data, source=base.source)
    check_seeds(effective)
    # Make the strategy once: unknown options and impossible constraints fail here.
    strategy_opts = dict(opts)
    if "budget" in strategies.options(strategy):
        strategy_opts["budget"] = budget
    strategies.get(strategy, effective, seed=seed, **strategy_opts)

    name = name or f"{effective.name}-{strategy}-{time.strftime('%Y%m%d-%H%M%S')}"
    if not _NAME.match(name):
        raise ServiceError(f"--name {name!r}: use letters, digits, '.', '_' and '-' (at most 120, "
                           "starting with a letter or digit)")
    tracking = default_tracking_uri(tracking_uri)
    store = Storage.parse(storage)
    if check_storage:
        store.check_writable()
        if store.exists(name, "search.json"):
            raise ServiceError(f"a search named '{name}' already exists in {store.uri}; continue it "
                               f"with `ranksearch resume {name}` or choose another --name")
    check_address(address)
    settings = SearchSettings(
        name=name, strategy=strategy, budget=budget, seed=seed, workers=workers,
        storage=store.uri if store.is_local else _storage_spec(store), options=opts,
        max_failures=retries, tracking_uri=tracking, address=address,
        cpus_per_trial=resources.cpus_per_trial, gpus_per_trial=resources.gpus_per_trial,
    )
    return PreparedSearch(effective, settings, store)


def check_address(address: str | None, *, timeout: float = 3.0) -> None:
    """Fail fast when nothing listens at a HOST:PORT Ray address (Ray itself waits minutes)."""
    if address is None:
        return
    if not _ADDRESS.match(address):
        raise ServiceError(f"--address {address!r}: give 'auto', 'local', HOST:PORT or ray://HOST:PORT")
    if address in ("auto", "local"):
        return
    import socket

    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise ServiceError(f"--address {address}: nothing answers there ({exc.strerror or exc}); start the "
                           "Ray head first (`ray start --head`) or leave --address out to run Ray in "
                           "this process") from None


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
    elif _NAME.match(text):
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
        raise ServiceError("name a search: its --name, its folder, or its MLflow run id")
    found = find_state(search, storage=storage)
    if found is not None:
        store, state = found
        uri = tracking_uri or state.settings.get("tracking_uri") or default_tracking_uri()
        if state.parent_run_id:
            return SearchRef(state.name, state.parent_run_id, uri, state, store)
    uri = default_tracking_uri(tracking_uri)
    parent = find_search(str(search), uri)
    return SearchRef(str(search), parent, uri)


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
    if workers is not None and workers < 1:
        raise ServiceError(f"--workers must be at least 1 (got {workers})")
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
        space=space, ranks=tuple(int(r) for r in row["ranks"]),
        metrics={k: float(v) for k, v in row["metrics"].items() if _finite(v)},
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
    text = _download_text(ref.tracking_uri, ref.parent_run_id, "space.yaml")
    if text is None:
        raise ServiceError(f"search run {ref.parent_run_id} has no space.yaml artifact; it was not "
                           "made by ranksearch run")
    return SearchSpace.from_dict(yaml.safe_load(text), source=f"runs:/{ref.parent_run_id}/space.yaml")


def _finite(v: Any) -> bool:
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


# -- rank-config files ------------------------------------------------------------------------------
@dataclass
class RankConfigFile:
    """A search space, one rank vector and where it came from: the hand-over to production.

    `build_model()` builds the model; with `weights=True` it also loads the trial's trained
    weights (from the folder the config was loaded from, or the `model_uri` in provenance).
    """

    space: SearchSpace
    ranks: tuple[int, ...]
    metrics: dict[str, float] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    source: str | None = None
    weights_path: str | None = None  # a local model.pt next to the config, when there is one

    def __post_init__(self) -> None:
        self.ranks = self.space.check_ranks(self.ranks)

    @property
    def training(self) -> TrainingSpec:
        """The production recipe: `final_training`, else the search's per-trial `training`."""
        cfg = self.space.config
        return cfg.final_training or cfg.training

    def to_dict(self) -> dict[str, Any]:
        import ranksearch

        return {
            "kind": RANK_CONFIG_KIND, "version": RANK_CONFIG_VERSION,
            "ranks": list(self.ranks),
            "elements": [e.name for e in self.space.elements],
            "metrics": dict(self.metrics),
            "provenance": {**self.provenance, "ranksearch_version": ranksearch.__version__},
            "space": self.space.to_dict(),
        }

    def to_yaml(self) -> str:
        return yaml.dump(self.to_dict(), Dumper=_ConfigDumper, sort_keys=False, default_flow_style=False,
                         width=100)

    @classmethod
    def from_dict(cls, data: Any, *, source: str | None = None) -> RankConfigFile:
        from ranksearch.space import SearchSpace

        where = source or "<rank config>"
        if not isinstance(data, dict) or data.get("kind") != RANK_CONFIG_KIND:
            raise ServiceError(f"{where} is not a rank-config file (expected 'kind: {RANK_CONFIG_KIND}'; "
                               "make one with `ranksearch best`)")
        if data.get("version") != RANK_CONFIG_VERSION:
            raise ServiceError(f"{where} has version {data.get('version')!r}; this ranksearch reads "
                               f"version {RANK_CONFIG_VERSION}")
        for key in ("space", "ranks"):
            if key not in data:
                raise ServiceError(f"{where}: field '{key}' is missing")
        space = SearchSpace.from_dict(data["space"], source=where)
        return cls(space=space, ranks=tuple(data["ranks"]), metrics=dict(data.get("metrics") or {}),
                   provenance=dict(data.get("provenance") or {}), source=source)

    def save(self, dest: str | os.PathLike[str]) -> str:
        """Write to a local path or `s3://bucket/key`; returns where it went."""
        return write_text(str(dest), self.to_yaml())

    def build_model(self, *, weights: bool = False, dense: nn.Module | None = None,
                    from_dense: bool = False) -> nn.Module:
        from ranksearch.models import build_model

        model = build_model(self.space, self.ranks, dense=dense, from_dense=from_dense)
        if weights:
            import torch

            path = self.fetch_weights()
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        return model

    def fetch_weights(self) -> str:
        """A local path of the trial's trained weights (downloaded from MLflow when needed)."""
        if self.weights_path and Path(self.weights_path).is_file():
            return self.weights_path
        uri = self.provenance.get("model_uri")
        if not uri:
            raise ServiceError(f"{self.source or 'this rank config'} has no weights: no model.pt "
                               "beside it and no provenance.model_uri")
        folder = _download_uri(uri, self.provenance.get("tracking_uri"))
        path = Path(folder) / MODEL_FILE
        if not path.is_file():
            raise ServiceError(f"{uri} holds no {MODEL_FILE}")
        self.weights_path = str(path)
        return self.weights_path


class _ConfigDumper(yaml.SafeDumper):
    """Block mappings, but lists of scalars on one line (`ranks: [8, 14, 8, ...]`)."""


def _represent_list(dumper: yaml.SafeDumper, data: list) -> yaml.Node:
    flow = all(isinstance(x, (int, float, str, bool)) or x is None for x in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_ConfigDumper.add_representer(list, _represent_list)
_ConfigDumper.add_representer(tuple, _represent_list)


def load_rank_config(uri: str | os.PathLike[str], *, tracking_uri: str | None = None) -> RankConfigFile:
    """Read a rank config from a path, `s3://...`, `runs:/RUN_ID[/path]` or `models:/NAME@alias`."""
    text = str(uri)
    if text.startswith(("runs:/", "models:/")):
        local = _download_uri(text, tracking_uri)
        p = Path(local)
        if p.is_dir():
            if not (p / RANK_CONFIG_FILE).is_file() and (p / MODEL_ARTIFACT_DIR / RANK_CONFIG_FILE).is_file():
                p = p / MODEL_ARTIFACT_DIR
            p = p / RANK_CONFIG_FILE
        if not p.is_file():
            raise ServiceError(f"{text} holds no {RANK_CONFIG_FILE}; point at a trial's "
                               f"'{MODEL_ARTIFACT_DIR}' folder or a registered model")
        cfg = RankConfigFile.from_dict(yaml.safe_load(p.read_text()), source=text)
        weights = p.parent / MODEL_FILE
        if weights.is_file():
            cfg.weights_path = str(weights)
        return cfg
    if text.startswith("s3://"):
        return RankConfigFile.from_dict(yaml.safe_load(read_text(text)), source=text)
    path = Path(text)
    if path.is_dir() and (path / RANK_CONFIG_FILE).is_file():
        path = path / RANK_CONFIG_FILE
    if not path.is_file():
        raise ServiceError(f"rank config {text!r} not found; give a file written by `ranksearch best`, "
                           "an s3:// URI, runs:/RUN_ID/model or models:/NAME@champion")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ServiceError(f"{text}: malformed YAML: {exc}") from None
    cfg = RankConfigFile.from_dict(data, source=text)
    weights = path.parent / MODEL_FILE
    if weights.is_file():
        cfg.weights_path = str(weights)
    return cfg


def is_rank_config_ref(text: str) -> bool:
    """True when `text` names a rank config rather than a search-space file."""
    if text.startswith(("runs:/", "models:/", "s3://")):
        return True
    path = Path(text)
    if path.is_dir():
        return (path / RANK_CONFIG_FILE).is_file()
    if not path.is_file():
        return False
    try:
        with path.open() as f:
            head = f.read(4096)
    except OSError:
        return False
    return bool(re.search(rf"^kind:\s*['\"]?{re.escape(RANK_CONFIG_KIND)}", head, re.MULTILINE))


# -- S3 and local text I/O --------------------------------------------------------------------------
def _s3_client() -> Any:
    import boto3

    endpoint = (os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
                or os.environ.get("MLFLOW_S3_ENDPOINT_URL"))
    return boto3.client("s3", endpoint_url=endpoint or None)


def _split_s3(uri: str) -> tuple[str, str]:
    rest = uri[len("s3://"):]
    bucket, _, key = rest.partition("/")
    if not bucket or not key:
        raise ServiceError(f"{uri!r}: write s3://BUCKET/KEY")
    return bucket, key


def write_text(dest: str, text: str) -> str:
    """Write text to a local file or `s3://bucket/key` (boto3; endpoint from $AWS_ENDPOINT_URL
    or $MLFLOW_S3_ENDPOINT_URL)."""
    if dest.startswith("s3://"):
        bucket, key = _split_s3(dest)
        try:
            _s3_client().put_object(Bucket=bucket, Key=key, Body=text.encode())
        except Exception as exc:
            raise ServiceError(f"cannot write {dest}: {exc}") from None
        return dest
    path = Path(dest)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


def read_text(src: str) -> str:
    if src.startswith("s3://"):
        bucket, key = _split_s3(src)
        try:
            body = _s3_client().get_object(Bucket=bucket, Key=key)["Body"].read()
        except Exception as exc:
            raise ServiceError(f"cannot read {src}: {exc}") from None
        return body.decode()
    return Path(src).read_text()


# -- production training ------------------------------------------------------------------------------
def training_for(config: RankConfigFile, *, epochs: int | None = None, device: str | None = None) -> TrainingSpec:
    """The production recipe for a config, with the command line's overrides."""
    training = config.training
    if epochs is not None:
        training = training.model_copy(update={"epochs": epochs, "steps": None})
    if device is not None:
        training = training.model_copy(update={"device": device})
    return training


# -- MLflow through `ranksearch.tracking`: artifacts, the model registry, production runs ----------
def _download_text(tracking_uri: str, run_id: str, path: str) -> str | None:
    from ranksearch.tracking import download_text

    return download_text(tracking_uri, run_id, path)


def _download_uri(uri: str, tracking_uri: str | None) -> str:
    """Download a runs:/ or models:/ URI to a fresh local folder (or file) and return it."""
    from ranksearch.tracking import TrackingError, download_artifact_uri

    try:
        return download_artifact_uri(uri, default_tracking_uri(tracking_uri), model_dir=MODEL_ARTIFACT_DIR)
    except TrackingError as exc:
        raise ServiceError(str(exc)) from None


def register(config: RankConfigFile, name: str, *, alias: str = "champion",
             tracking_uri: str | None = None) -> str:
    """Register the config's trial weights as a new version of model `name`, tag it with the
    config, and move `alias` to it. Returns the version."""
    from ranksearch.tracking import artifact_names, register_model

    if not _NAME.match(name):
        raise ServiceError(f"--register {name!r}: use letters, digits, '.', '_' and '-'")
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
                space=self.space, ranks=result.ranks,
                metrics={k: float(v) for k, v in result.metrics.items() if _finite(v)},
                provenance={"search": self.state.name, "search_run_id": self.state.parent_run_id,
                            "trial_id": trial_id, "trial_run_id": rid, "tracking_uri": self.tracking_uri,
                            "model_uri": f"runs:/{rid}/{MODEL_ARTIFACT_DIR}", "experiment": self.space.name},
            )
            return {**files, RANK_CONFIG_FILE: config.to_yaml().encode()}

        self._uploader.submit(f"trial {trial_id}", with_config, run_id, done)

    def close(self, timeout: float) -> None:
        self._uploader.close(timeout)


class ProductionRun:
    """The MLflow run of a production training (`ranksearch train CONFIG`), linked to its search."""

    def __init__(self, config: RankConfigFile, *, tracking_uri: str | None = None,
                 run_name: str | None = None, source: str | None = None) -> None:
        from ranksearch.tracking import TrainingRun

        self.config = config
        prov = config.provenance
        self.tracking_uri = default_tracking_uri(tracking_uri or prov.get("tracking_uri"))
        self.run_name = run_name or f"train-{prov.get('trial_id') or config.space.name}"
        self.source = source or config.source
        self._run = TrainingRun(self.tracking_uri)

    @property
    def client(self) -> Any:
        """The MLflow client, once `start()` made it."""
        return self._run.client

    @property
    def run_id(self) -> str | None:
        return self._run.run_id

    def start(self) -> str:
        experiment = str(self.config.provenance.get("experiment") or self.config.space.name)
        prov = self.config.provenance
        tags = {"ranksearch.kind": "train", "ranksearch.space": self.config.space.name,
                "ranksearch.source": str(self.source or "")}
        for key in ("search", "search_run_id", "trial_id", "trial_run_id", "pick"):
            if prov.get(key):
                tags[f"ranksearch.{key}"] = str(prov[key])
        names = [e.name for e in self.config.space.elements]
        params = {n.replace("/", "_"): str(r) for n, r in zip(names, self.config.ranks, strict=True)}
        params["ranks"] = json.dumps(list(self.config.ranks))
        params["epochs"] = str(self.config.training.epochs)
        return self._run.start(experiment, run_name=self.run_name, tags=tags, params=params)

    def finish(self, outcome: Any, *, metrics: Mapping[str, Any], out_dir: Path) -> None:
        """Per-epoch history, final metrics, and the weights + config + metrics.json as artifacts."""
        assert self.client is not None and self.run_id is not None
        rows = []
        for h in outcome.history:
            for k in ("train_loss", "train_accuracy", "val_loss", "val_accuracy"):
                if _finite(h.get(k)):
                    rows.append((k, float(h[k]), int(h["epoch"])))
        for k, v in metrics.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and _finite(v):
                rows.append((f"final_{k}" if k in ("val_accuracy",) else k, float(v), 0))
        self._run.log_metrics(rows)
        files = {RANK_CONFIG_FILE: self.config.to_yaml().encode()}
        weights = _best_weights(out_dir)
        if weights is not None:
            files[MODEL_FILE] = weights
        if (out_dir / "metrics.json").is_file():
            files["metrics.json"] = (out_dir / "metrics.json").read_bytes()
        self._run.log_files(files, MODEL_ARTIFACT_DIR)
        self._run.terminate("FINISHED" if outcome.status == "ok" else "FAILED")

    def fail(self) -> None:
        if self.client is not None and self.run_id is not None:
            try:
                self._run.terminate("FAILED")
            except Exception:  # noqa: BLE001 - already failing; keep the original error
                log.warning("could not mark MLflow run %s failed", self.run_id)


def _best_weights(out_dir: Path) -> bytes | None:
    """The best epoch's weights from the trainer checkpoint in `out_dir/checkpoint`."""
    import io

    import torch

    from ranksearch.training import CHECKPOINT_NAME

    ckpt = out_dir / "checkpoint" / CHECKPOINT_NAME
    if not ckpt.is_file():
        return None
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    weights = state.get("best_state") or state.get("model")
    buf = io.BytesIO()
    torch.save(weights, buf)
    return buf.getvalue()


def front_rows(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Front entries flattened for display and JSON: ranks, accuracy, params, compression, FLOPs."""
    out = []
    for r in rows:
        m = r.get("metrics", {}) or {}
        out.append({
            "trial_id": r.get("trial_id"), "run_id": r.get("run_id"), "ranks": list(r.get("ranks") or []),
            "val_accuracy": m.get("val_accuracy"), "params": m.get("params"),
            "compression_ratio": m.get("compression_ratio"), "flops": m.get("flops"),
            "latency": m.get("latency"),
        })
    return out
