"""MLflow tracking of searches: the only package of ranksearch that imports MLflow.

One concept per module:

- `schema`     tag, param, metric and artifact names, and the codec of a trial's child run
               (shared by the writer, the readers and the dashboard);
- `masking`    credentials never reach MLflow (`mask_secrets`);
- `store`      which store (`resolve_tracking_uri`: default `<cwd>/mlruns/mlflow.db`), the
               client, paged queries, error kinds;
- `delivery`   the write queue: batching, retries, outage tolerance, the background thread;
- `writer`     `SearchTracker`: writes one search (parent run, child runs, the archive's front
               snapshots) as the driver runs it;
- `reader`     `find_search`, `load_trials`, `load_results`, `load_front`, `load_search_cost`,
               `StoreReader` (the dashboard's store access);
- `artifacts`  downloads, `ArtifactUploader`, `register_model`;
- `production` `TrainingRun`: one plain run outside a search (production training).

Data flows one way: the driver's front archive -> `SearchTracker` -> MLflow -> readers. MLflow
itself is imported lazily, inside functions: importing ranksearch never imports it.
"""

from __future__ import annotations

from ranksearch.tracking.artifacts import (
    ArtifactUploader,
    artifact_names,
    download_artifact_uri,
    download_text,
    register_model,
)
from ranksearch.tracking.masking import MASK, is_secret_key, mask_secrets
from ranksearch.tracking.production import TrainingRun
from ranksearch.tracking.reader import (
    StoreReader,
    find_search,
    load_front,
    load_results,
    load_search_cost,
    load_trials,
)
from ranksearch.tracking.schema import (
    DEFAULT_OBJECTIVES,
    FRONT_DIR,
    PARAM_RANKS,
    SPACE_ARTIFACT,
    TAG_CONSTRAINTS,
    TAG_ELEMENTS,
    TAG_ERROR,
    TAG_KIND,
    TAG_OBJECTIVES,
    TAG_PARENT,
    TAG_PARETO,
    TAG_REFERENCE,
    TAG_RESULT,
    TAG_SPACE,
    TAG_STATUS,
    TAG_STRATEGY,
    TAG_TRIAL_ID,
    TAG_TRIAL_STATUS,
)
from ranksearch.tracking.store import (
    DEFAULT_STORE_DIR,
    TrackingError,
    client_for,
    configure_mlflow_env,
    load_mlflow,
    resolve_tracking_uri,
)
from ranksearch.tracking.writer import SearchTracker

__all__ = [
    "DEFAULT_OBJECTIVES", "DEFAULT_STORE_DIR", "FRONT_DIR", "MASK", "PARAM_RANKS", "SPACE_ARTIFACT",
    "TAG_CONSTRAINTS", "TAG_ELEMENTS", "TAG_ERROR", "TAG_KIND", "TAG_OBJECTIVES", "TAG_PARENT", "TAG_PARETO",
    "TAG_REFERENCE", "TAG_RESULT", "TAG_SPACE", "TAG_STATUS", "TAG_STRATEGY", "TAG_TRIAL_ID",
    "TAG_TRIAL_STATUS", "ArtifactUploader", "SearchTracker", "StoreReader", "TrackingError", "TrainingRun",
    "artifact_names", "client_for", "configure_mlflow_env", "download_artifact_uri", "download_text",
    "find_search", "is_secret_key", "load_front", "load_mlflow", "load_results", "load_search_cost",
    "load_trials", "mask_secrets", "register_model", "resolve_tracking_uri",
]
