"""Rank-config files: the hand-over from a search to production.

A rank config is the (effective) search space, one rank vector, the hyperparameter values the
trial trained with (`hyperparameters:`, for a space that searches its recipe) and its provenance
(search and trial run ids, metrics, the pick rule). `ranksearch best` writes one; `ranksearch train CONFIG`
and `build_model(config)` read one. `load_rank_config` reads from a local path,
`s3://bucket/key`, `runs:/RUN_ID[/path]` or `models:/NAME@alias` (or `models:/NAME/VERSION`).

    from ranksearch import load_rank_config
    model = load_rank_config("best.yaml").build_model(weights=True)
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from ranksearch.errors import ServiceError, SpaceError

if TYPE_CHECKING:
    import torch.nn as nn

    from ranksearch.space import SearchSpace, TrainingSpec

RANK_CONFIG_KIND = "ranksearch/rank-config"
RANK_CONFIG_VERSION = 1
RANK_CONFIG_FILE = "rank_config.yaml"
MODEL_FILE = "model.pt"
MODEL_ARTIFACT_DIR = "model"
_ARTIFACT_URI = re.compile(r"^(runs:/[0-9A-Za-z]+(/.*)?|models:/[^/@\s]+(@[^/\s]+|/\d+|/[A-Za-z]+))$")


@dataclass
class RankConfigFile:
    """A search space, one rank vector, its hyperparameter values and where it came from: the
    hand-over to production.

    `build_model()` builds the model; with `weights=True` it also loads the trial's trained
    weights (from the folder the config was loaded from, or the `model_uri` in provenance).
    `hparams` are checked against the space's `hyperparameters:` domains and applied to the
    production recipe (`training`) and the model options (`trial_space`).
    """

    space: SearchSpace
    ranks: tuple[int, ...]
    metrics: dict[str, float] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    source: str | None = None
    weights_path: str | None = None  # a local model.pt next to the config, when there is one
    hparams: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.ranks = self.space.check_ranks(self.ranks)
        where = self.source or self.space.source
        if not isinstance(self.hparams, dict):
            raise SpaceError("must be a mapping of hyperparameter name to value", file=where,
                             field="hyperparameters", value=self.hparams)
        if self.hparams or self.space.hyper:
            try:
                self.hparams = self.space.hyper.check(self.hparams, where="hyperparameters")
            except SpaceError as err:
                raise (err.with_file(where) if where and not err.file else err) from None
        self._trial_space: SearchSpace | None = None
        self._training: TrainingSpec | None = None
        self.trial_space  # noqa: B018 - a value the recipe rejects fails here, when the file is read
        self.training  # noqa: B018

    @property
    def trial_space(self) -> SearchSpace:
        """The space with the hyperparameter values applied (what the trial trained under)."""
        if self._trial_space is None:
            if not self.hparams:
                self._trial_space = self.space
            else:
                from ranksearch.space import SearchSpace

                config = _validated(lambda: self.space.trial_config(self.hparams), self.source)
                self._trial_space = SearchSpace(config, source=self.space.source)
        return self._trial_space

    @property
    def training(self) -> TrainingSpec:
        """The production recipe: `final_training`, else the search's per-trial `training`, with
        the recipe's hyperparameter values (`training.*`) applied to it."""
        if self._training is None:
            cfg = self.trial_space.config
            final = self.space.config.final_training
            if final is None:
                self._training = cfg.training
            else:
                self._training = _validated(lambda: training_with_values(final, self.hparams), self.source,
                                            field="final_training")
        return self._training

    def to_dict(self) -> dict[str, Any]:
        import ranksearch

        return {
            "kind": RANK_CONFIG_KIND, "version": RANK_CONFIG_VERSION,
            "ranks": list(self.ranks),
            **({"hyperparameters": dict(self.hparams)} if self.hparams else {}),
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
        hparams = data.get("hyperparameters")
        return cls(space=space, ranks=tuple(data["ranks"]), metrics=dict(data.get("metrics") or {}),
                   provenance=dict(data.get("provenance") or {}), source=source,
                   hparams={} if hparams is None else hparams)

    def save(self, dest: str | os.PathLike[str]) -> str:
        """Write to a local path or `s3://bucket/key`; returns where it went."""
        return write_text(str(dest), self.to_yaml())

    def build_model(self, *, weights: bool = False, dense: nn.Module | None = None,
                    from_dense: bool = False) -> nn.Module:
        from ranksearch.models import build_model

        model = build_model(self.trial_space, self.ranks, dense=dense, from_dense=from_dense)
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
        folder = download_uri(uri, self.provenance.get("tracking_uri"))
        path = Path(folder) / MODEL_FILE
        if not path.is_file():
            raise ServiceError(f"{uri} holds no {MODEL_FILE}")
        self.weights_path = str(path)
        return self.weights_path


def training_with_values(training: TrainingSpec, hparams: Mapping[str, Any]) -> TrainingSpec:
    """A production recipe with a search's `training.*` hyperparameter values applied (other
    values, e.g. `model.*`, belong elsewhere); the recipe itself when there are none."""
    values = {k.removeprefix("training."): v for k, v in hparams.items() if k.startswith("training.")}
    return _apply_training(training, values) if values else training


def _apply_training(training: TrainingSpec, values: dict[str, Any]) -> TrainingSpec:
    """`training` with dotted sub-paths (`optimizer.lr`) set to `values`, validated."""
    data = training.model_dump(mode="python")
    for path, v in values.items():
        node = data
        *parents, last = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = v
    return type(training).model_validate(data)


def _validated(make: Any, source: str | None, *, field: str = "hyperparameters") -> Any:
    """`make()`, with the recipe schema's rejection turned into a SpaceError naming the file."""
    from pydantic import ValidationError

    try:
        return make()
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        msg = str(first.get("msg", "")).removeprefix("Value error, ")
        raise SpaceError(f"the recipe rejects the hyperparameter values: {where}: {msg}", file=source,
                         field=field, value=first.get("input"),
                         hint="use values the recipe accepts (see the space's hyperparameters domains)") from None


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
        local = download_uri(text, tracking_uri)
        p = Path(local)
        if p.is_dir():
            if not (p / RANK_CONFIG_FILE).is_file() and (p / MODEL_ARTIFACT_DIR / RANK_CONFIG_FILE).is_file():
                p = p / MODEL_ARTIFACT_DIR
            p = p / RANK_CONFIG_FILE
        if not p.is_file():
            raise ServiceError(f"{text} holds no {RANK_CONFIG_FILE}; point at a trial's "
                               f"'{MODEL_ARTIFACT_DIR}' folder or a registered model")
        cfg = RankConfigFile.from_dict(_parse(p.read_text(), text), source=text)
        weights = p.parent / MODEL_FILE
        if weights.is_file():
            cfg.weights_path = str(weights)
        return cfg
    if text.startswith("s3://"):
        return RankConfigFile.from_dict(_parse(read_text(text), text), source=text)
    path = Path(text)
    if path.is_dir() and (path / RANK_CONFIG_FILE).is_file():
        path = path / RANK_CONFIG_FILE
    if not path.is_file():
        raise ServiceError(f"rank config {text!r} not found; give a file written by `ranksearch best`, "
                           "an s3:// URI, runs:/RUN_ID/model or models:/NAME@champion")
    from ranksearch.space import read_yaml

    cfg = RankConfigFile.from_dict(read_yaml(path, source=text), source=text)
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


def finite(v: Any) -> bool:
    """True for a value that converts to a finite float (metrics worth recording)."""
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def download_uri(uri: str, tracking_uri: str | None) -> str:
    """Download a runs:/ or models:/ URI to a fresh local folder (or file) and return it."""
    from ranksearch.service import default_tracking_uri, missing_local_store
    from ranksearch.tracking import TrackingError, download_artifact_uri

    if not _ARTIFACT_URI.match(uri):
        raise ServiceError(f"{uri!r} is not a rank-config location: write runs:/RUN_ID/PATH, "
                           "models:/NAME@ALIAS or models:/NAME/VERSION")
    store = default_tracking_uri(tracking_uri)
    missing = missing_local_store(store)
    if missing is not None:  # MLflow would create an empty store to look the URI up in
        raise ServiceError(f"{uri}: there is no tracking store at {missing}; give the tracking URI the "
                           "search used (or set MLFLOW_TRACKING_URI)")

    try:
        return download_artifact_uri(uri, store, model_dir=MODEL_ARTIFACT_DIR)
    except TrackingError as exc:
        raise ServiceError(str(exc)) from None


def _parse(text: str, source: str) -> Any:
    """YAML text of a downloaded rank config, with the space loader's duplicate-key check."""
    from ranksearch.space import SpaceError, UniqueKeyLoader

    try:
        return yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise SpaceError(f"malformed YAML: {str(exc).splitlines()[0]}", file=source) from None
