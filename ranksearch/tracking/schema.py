"""What a search looks like in MLflow: tag, param, metric and artifact names, and the codec of a
trial's child run.

The writer (`SearchTracker`), the readers (`load_trials`, `load_front`, ...) and the dashboard
all use these names and these functions, so a run is encoded in one place and decoded in one
place. Layout (see DESIGN.md, "MLflow layout"):

- parent run = one search: tags `ranksearch.kind=search`, status, space, strategy, objectives,
  constraints, rank element names, hypervolume reference, and `ranksearch.fixed_ranks` (JSON)
  when the ranks were fixed and only the recipe searched; params (strategy, options, budget,
  seed, ..., `fixed_ranks` likewise) and one param `hp_domain.<name>` per hyperparameter (its
  domain as JSON, as the space's `hyperparameters:` block writes it); metrics `hypervolume`, `front_size` and the
  search cost at step = finished trials; artifacts `space.yaml` and
  `pareto/{front.json,history.json,front.html,front.png}`.
- child run = one trial (tag `mlflow.parentRunId`): params = one per rank element plus a JSON
  copy (`ranks`), and one `hp.<name>` per hyperparameter value the trial trained with;
  per-epoch metrics at step = epoch; final metrics; tags `trial_id`, the trial status, the
  full result as JSON (exact read-back), strategy bookkeeping, and `pareto_optimal` =
  true/false as the search's front archive last decided.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ranksearch.objectives import Objectives, finite
from ranksearch.tracking.masking import mask_secrets
from ranksearch.trial import TrialResult

# -- tags -----------------------------------------------------------------------------------------
TAG_PARENT = "mlflow.parentRunId"
TAG_KIND = "ranksearch.kind"  # "search" on the parent, "trial" on children
TAG_STATUS = "ranksearch.status"  # parent: running / finished / failed / killed
TAG_SPACE = "ranksearch.space"
TAG_STRATEGY = "ranksearch.strategy"
TAG_OBJECTIVES = "ranksearch.objectives"  # JSON [[name, "max"|"min"], ...]
TAG_CONSTRAINTS = "ranksearch.constraints"  # JSON {"max_params": ..., "min_compression": ...}
TAG_ELEMENTS = "ranksearch.elements"  # JSON list of rank element names
TAG_FIXED_RANKS = "ranksearch.fixed_ranks"  # JSON rank vector of a recipe-only search (`ranks.fixed`)
TAG_REFERENCE = "ranksearch.hv_reference"
TAG_N_FINISHED = "ranksearch.n_finished"  # parent, set when the search ends
TAG_FRONT_SIZE = "ranksearch.front_size"  # parent, set when the search ends
TAG_TRIAL_ID = "trial_id"
TAG_TRIAL_STATUS = "ranksearch.trial_status"  # ok / failed / pruned (set when finished)
TAG_RESULT = "ranksearch.result"  # JSON TrialResult, for an exact read-back
TAG_PARETO = "pareto_optimal"
TAG_ERROR = "error"
# -- params ---------------------------------------------------------------------------------------
PARAM_RANKS = "ranks"
PARAM_DENSE = "dense_params"
PARAM_N_TRAIN = "n_train_full"
PARAM_HP = "hp."  # child run: hp.<name> = a hyperparameter value the trial trained with
PARAM_HP_DOMAIN = "hp_domain."  # parent run: hp_domain.<name> = that hyperparameter's domain (JSON)
PARAM_FIXED_RANKS = "fixed_ranks"  # parent run of a recipe-only search: its rank vector (JSON)
# -- parent metrics (step = finished trials) ------------------------------------------------------
METRIC_HYPERVOLUME = "hypervolume"
METRIC_FRONT_SIZE = "front_size"
METRIC_SAMPLES = "samples_consumed"
METRIC_EPOCHS = "epoch_equivalents"
METRIC_WARM_START = "warm_start_samples"
# -- artifacts ------------------------------------------------------------------------------------
FRONT_DIR = "pareto"
FRONT_JSON = f"{FRONT_DIR}/front.json"
HISTORY_JSON = f"{FRONT_DIR}/history.json"
SPACE_ARTIFACT = "space.yaml"

KIND_SEARCH = "search"
KIND_TRIAL = "trial"
DEFAULT_OBJECTIVES: tuple[tuple[str, str], ...] = (("val_accuracy", "max"), ("compression_ratio", "max"))
#: MLflow run status of a finished trial, by TrialResult status.
RUN_STATUS_OF = {"ok": "FINISHED", "failed": "FAILED", "pruned": "KILLED"}
MAX_PARAM_LEN = 6000
MAX_TAG_LEN = 8000
MAX_KEY_LEN = 250
_RESERVED_TAGS = (TAG_TRIAL_ID, TAG_KIND, TAG_PARETO, TAG_TRIAL_STATUS)


# -- names and values MLflow accepts --------------------------------------------------------------
def key(name: Any) -> str:
    """A name MLflow accepts for a param, metric or tag (alphanumerics, _ - . space /)."""
    k = re.sub(r"[^\w.\- /]", "_", str(name)).strip("/")
    k = re.sub(r"/+", "/", k)
    if not k or any(part in (".", "..") for part in k.split("/")):
        k = "_" + k.replace("/", "_")
    return k[:MAX_KEY_LEN]


def text(value: Any, limit: int) -> str:
    """Scalars as text, everything else as JSON, cut to MLflow's length limit."""
    if isinstance(value, str):
        s = value
    elif isinstance(value, (bool, int, float)) or value is None:
        s = str(value)
    else:
        s = json.dumps(value, default=str, sort_keys=True)
    return s if len(s) <= limit else s[: limit - 15] + "...[truncated]"


def flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    """Nested options as dotted keys (`options.nested.depth`), one param each."""
    if isinstance(value, Mapping) and value:
        for k, v in value.items():
            flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = value


def metric_rows(metrics: Mapping[str, Any], ts: int, step: int) -> list[tuple[str, float, int, int]]:
    """(key, value, timestamp, step) for every numeric entry (non-numbers are left out)."""
    out = []
    for k, v in metrics.items():
        if isinstance(v, bool) or v is None:
            continue
        try:
            f = float(v)
        except (TypeError, ValueError):
            continue
        out.append((key(k), f, ts, step))
    return out


def jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def json_list(raw: str | None, default: Any) -> Any:
    """A JSON list stored in a tag or param; `default` when missing or malformed."""
    try:
        value = json.loads(raw) if raw else default
    except ValueError:
        return default
    return value if isinstance(value, list) else default


# -- the parent run -------------------------------------------------------------------------------
def constraints_tag(objectives: Objectives) -> str:
    return json.dumps({k: v for k, v in (("max_params", objectives.max_params),
                                         ("min_compression", objectives.min_compression)) if v is not None})


def search_objectives(tags: Mapping[str, str], params: Mapping[str, str]) -> Objectives:
    """A search's objectives and constraints as its parent run stores them (older runs without
    the tags: the default objectives, no constraints)."""
    pairs = [o for o in json_list(tags.get(TAG_OBJECTIVES), []) if isinstance(o, (list, tuple)) and len(o) >= 2]
    try:
        limits = json.loads(tags.get(TAG_CONSTRAINTS) or "{}")
    except ValueError:
        limits = {}
    dense = finite(params.get(PARAM_DENSE))
    return Objectives.from_pairs(
        pairs or DEFAULT_OBJECTIVES, dense_params=int(dense) if dense else None,
        max_params=limits.get("max_params") if isinstance(limits, dict) else None,
        min_compression=limits.get("min_compression") if isinstance(limits, dict) else None,
    )


# -- a trial's child run: encoding ----------------------------------------------------------------
def info_tags(info: Mapping[str, Any]) -> dict[str, str]:
    """Strategy bookkeeping (generation, phase, beam_step, episode, ...) as child-run tags."""
    out = {}
    for k, v in mask_secrets(dict(info)).items():
        name = key(k)
        if name.startswith("mlflow.") or name in _RESERVED_TAGS:
            name = f"info.{name}"
        out[name] = text(v, 1000)
    return out


def trial_tags(parent_id: str, trial_id: str, info: Mapping[str, Any] | None) -> dict[str, str]:
    """The tags a child run is created with."""
    return {TAG_PARENT: parent_id, TAG_TRIAL_ID: trial_id, TAG_KIND: KIND_TRIAL, **info_tags(info or {})}


def rank_params(elements: Sequence[str], ranks: Sequence[int]) -> dict[str, str]:
    """One param per rank element plus a JSON copy."""
    ranks = [int(r) for r in ranks]
    params = {key(name): str(r) for name, r in zip(elements, ranks, strict=False)}
    params[PARAM_RANKS] = text(ranks, MAX_PARAM_LEN)
    return params


def hparam_params(hparams: Mapping[str, Any]) -> dict[str, str]:
    """One child-run param `hp.<name>` per hyperparameter value (numbers as `repr` text, so a
    float reads back exactly)."""
    return {key(f"{PARAM_HP}{name}"): text(repr(v) if isinstance(v, float) else v, MAX_PARAM_LEN)
            for name, v in hparams.items()}


def hparam_domain_params(domains: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """One parent-run param `hp_domain.<name>` per hyperparameter (`HyperSpace.to_dict()`)."""
    return {key(f"{PARAM_HP_DOMAIN}{name}"): text(json.dumps(dict(d), sort_keys=True, default=str), MAX_PARAM_LEN)
            for name, d in domains.items()}


def hparams_of(run: Any) -> dict[str, Any]:
    """A child run's hyperparameter values from its `hp.*` params (JSON scalars where the text
    parses as one, else the text)."""
    out: dict[str, Any] = {}
    for k, v in run.data.params.items():
        if k.startswith(PARAM_HP) and not k.startswith(PARAM_HP_DOMAIN):
            out[k[len(PARAM_HP):]] = _scalar(v)
    return out


def hparam_domains_of(params: Mapping[str, str]) -> dict[str, Any]:
    """A parent run's hyperparameter domains from its `hp_domain.*` params."""
    out: dict[str, Any] = {}
    for k, v in params.items():
        if k.startswith(PARAM_HP_DOMAIN):
            try:
                out[k[len(PARAM_HP_DOMAIN):]] = json.loads(v)
            except ValueError:
                out[k[len(PARAM_HP_DOMAIN):]] = v
    return out


def _scalar(v: str) -> Any:
    if v in ("True", "False"):
        return v == "True"
    try:
        parsed = json.loads(v)
    except ValueError:
        return v
    return parsed if isinstance(parsed, (int, float)) and not isinstance(parsed, bool) else v


def result_json(result: TrialResult) -> str:
    """The result as JSON (secrets masked), cut to fit a tag."""
    d = result.to_dict()
    d["info"] = jsonable(mask_secrets(d["info"]))
    d["error"] = mask_secrets(d["error"]) if d["error"] else None
    out = json.dumps(d, default=str)
    if len(out) > MAX_TAG_LEN:
        d["info"], d["error"] = {}, (d["error"] or "")[:1000] or None
        out = json.dumps(d, default=str)
    return out[:MAX_TAG_LEN]


def finish_tags(result: TrialResult) -> dict[str, str]:
    """The tags a finished trial adds to its run (its pareto_optimal tag is set beside them)."""
    tags = {TAG_TRIAL_STATUS: result.status, TAG_RESULT: result_json(result), **info_tags(result.info)}
    if result.error:
        tags[TAG_ERROR] = text(mask_secrets(result.error), 5000)
    return tags


# -- a trial's child run: decoding ----------------------------------------------------------------
def ranks_of(run: Any) -> list[int]:
    """The ranks param of a child run ([] when missing or malformed)."""
    return [int(r) for r in json_list(run.data.params.get(PARAM_RANKS), []) if finite(r) is not None]


def result_of(run: Any) -> TrialResult | None:
    """A finished trial's TrialResult from its child run (None while it has not finished)."""
    tags = run.data.tags
    status = tags.get(TAG_TRIAL_STATUS)
    if status is None:
        return None
    try:
        return TrialResult.from_dict(json.loads(tags.get(TAG_RESULT, "")))
    except (ValueError, TypeError, KeyError):
        pass
    return TrialResult(ranks=tuple(ranks_of(run)), status=status, metrics=dict(run.data.metrics),  # type: ignore[arg-type]
                       error=tags.get(TAG_ERROR), hparams=hparams_of(run))


def trial_row(run: Any) -> dict[str, Any]:
    """A child run as a plain dict (finished or not): trial_id, run_id, status ('running' until
    it finished), run_status, ranks, metrics (the result's, or the logged ones while running),
    fidelity, error, info, hparams (the values it trained with), pareto_optimal (True/False,
    or None where the tag is missing),
    start_time, end_time, and `result` (the TrialResult, None while running)."""
    tags = run.data.tags
    result = result_of(run)
    tag = tags.get(TAG_PARETO)
    return {
        "trial_id": str(tags.get(TAG_TRIAL_ID) or run.info.run_name or run.info.run_id),
        "run_id": run.info.run_id,
        "status": result.status if result else "running", "run_status": str(run.info.status),
        "ranks": list(result.ranks) if result and result.ranks else ranks_of(run),
        "hparams": dict(result.hparams) if result and result.hparams else hparams_of(run),
        "metrics": dict(result.metrics) if result else dict(run.data.metrics),
        "fidelity": result.fidelity if result else None,
        "error": tags.get(TAG_ERROR), "info": dict(result.info) if result else {},
        "pareto_optimal": None if tag is None else tag == "true",
        "start_time": run.info.start_time, "end_time": run.info.end_time,
        "result": result,
    }


def front_row(trial_id: str, run_id: str | None, result: TrialResult, metrics: Mapping[str, float]) -> dict[str, Any]:
    """One entry of `pareto/front.json` (and of `load_front`, `tracker.front()`)."""
    return {"trial_id": trial_id, "run_id": run_id, "ranks": list(result.ranks),
            "hparams": jsonable(dict(result.hparams)), "status": result.status,
            "metrics": dict(metrics), "fidelity": result.fidelity, "info": jsonable(mask_secrets(result.info))}


def finished_results(rows: Iterable[Mapping[str, Any]]) -> list[tuple[str, TrialResult]]:
    """(trial_id, result) of the finished rows, in the rows' order, first one per trial."""
    seen: set[str] = set()
    out = []
    for r in rows:
        if r.get("result") is not None and r["trial_id"] not in seen:
            seen.add(r["trial_id"])
            out.append((r["trial_id"], r["result"]))
    return out
