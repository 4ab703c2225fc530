"""The Pareto-front explorer: a small web app over the searches in one MLflow store.

    ranksearch dashboard [--tracking-uri URI] [--host 127.0.0.1] [--port 8050]

- `model`  what a search holds, read from MLflow through `tracking.StoreReader` and cached
           (trials, the tracker's front, hypervolume history, rank-config export);
- `importance` hyperparameter (and rank) importance per objective, by Optuna's evaluators;
- `app`    the Flask app: the page, its assets and the read-only JSON API;
- `assets` where the page's files and plotly.js are found;
- `server` `serve()` and the `ranksearch dashboard` command.

MLflow is read only through `ranksearch.tracking`; Flask, plotly and MLflow are imported inside
functions: importing this package is cheap.
"""

from __future__ import annotations

from ranksearch.dashboard.app import create_app
from ranksearch.dashboard.assets import assets_dir
from ranksearch.dashboard.model import DashboardError, MlflowReader
from ranksearch.dashboard.server import DEFAULT_HOST, DEFAULT_PORT, dashboard_command, serve

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "DashboardError", "MlflowReader", "assets_dir", "create_app",
           "dashboard_command", "serve"]
