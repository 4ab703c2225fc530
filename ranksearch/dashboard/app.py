"""The dashboard's web app: the page, its assets, and a few read-only JSON endpoints.

    GET /api/searches                             every search: name, strategy, status, progress
    GET /api/searches/RUN_ID[?since=VERSION]      one search: all trials (columnar), its front,
                                                  hypervolume against finished trials
    GET /api/searches/RUN_ID/importance[?evaluator=auto|fanova|ped-anova]
                                                  how much each rank element and hyperparameter
                                                  matters to each objective (Optuna's evaluators)
    GET /api/searches/RUN_ID/trials/TRIAL_ID/rank-config
                                                  the trial's rank-config file (as `ranksearch best`)

What a search holds comes from `model.MlflowReader`; this module only turns it into HTTP.
Flask is imported inside `create_app`: importing this module is cheap.
"""

from __future__ import annotations

import json
import math
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ranksearch.dashboard.assets import assets_dir as default_assets_dir
from ranksearch.dashboard.assets import plotly_js as _plotly_js
from ranksearch.dashboard.model import DashboardError, MlflowReader
from ranksearch.errors import RanksearchError

if TYPE_CHECKING:
    from flask import Flask


def _mlflow_ui_base(tracking_uri: str, mlflow_ui: str | None) -> str | None:
    if mlflow_ui:
        return mlflow_ui.rstrip("/")
    if tracking_uri.startswith(("http://", "https://")):
        return tracking_uri.rstrip("/")
    return None


def _json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def create_app(tracking_uri: str | None = None, *, poll_interval: float = 3.0, prefetch: bool = True,
               mlflow_ui: str | None = None, refresh_interval: float = 1.0,
               assets_dir: str | os.PathLike[str] | None = None) -> Flask:
    """The Flask app of the dashboard for one tracking store.

    `poll_interval` is how often a page showing a running search asks for news; `prefetch`
    reads the most recent searches in a background thread right away; `mlflow_ui` is the MLflow
    UI that trial links open (default: the tracking URI when it is a server).
    """
    from flask import Flask, Response, request, send_file, send_from_directory

    from ranksearch.tracking import mask_secrets

    assets = Path(assets_dir) if assets_dir is not None else default_assets_dir()
    if not (assets / "index.html").is_file():
        raise DashboardError(f"the dashboard's assets are missing: no {assets / 'index.html'}", status=500)
    reader = MlflowReader(tracking_uri, refresh_interval=refresh_interval)
    if reader.tracking_uri.startswith("sqlite:///"):
        db = Path(reader.tracking_uri[len("sqlite:///"):])
        if not db.is_file():  # a read-only tool must not create an empty store
            raise DashboardError(f"no MLflow store at {db}; give --tracking-uri (a tracking server, "
                                 "sqlite:///FILE.db, or the folder a search logged to)", status=500)
    reader.store.connect()  # import MLflow now, not inside the first request
    ui = _mlflow_ui_base(reader.tracking_uri, mlflow_ui)
    app = Flask("ranksearch.dashboard", static_folder=None)
    app.config["READER"] = reader

    bodies: dict[str, tuple[str, bytes]] = {}  # run id -> (version, JSON) of the last search answer

    def as_json(data: Any, status: int = 200) -> Response:
        return json_response(json.dumps(_json_safe(data), allow_nan=False, separators=(",", ":")).encode(), status)

    def json_response(body: bytes, status: int = 200) -> Response:
        return Response(body, status=status, mimetype="application/json", headers={"Cache-Control": "no-store"})

    @app.errorhandler(DashboardError)
    def _dashboard_error(exc: DashboardError) -> Response:
        return as_json({"error": str(exc)}, exc.status)

    @app.errorhandler(RanksearchError)
    def _ranksearch_error(exc: RanksearchError) -> Response:
        return as_json({"error": str(exc)}, 422)

    @app.get("/")
    def index() -> Response:
        response = send_from_directory(assets, "index.html")
        response.headers["Cache-Control"] = "no-cache"
        return response

    @app.get("/assets/<path:name>")
    def asset(name: str) -> Response:
        response = send_from_directory(assets, name)
        response.headers["Cache-Control"] = "no-cache"  # revalidated by ETag: edits show at once
        return response

    @app.get("/vendor/plotly.min.js")
    def plotly_js() -> Response:
        return send_file(_plotly_js(), mimetype="text/javascript", max_age=7 * 24 * 3600)

    @app.get("/healthz")
    def healthz() -> Response:
        return Response("ok", mimetype="text/plain")

    @app.get("/api/config")
    def config() -> Response:
        from ranksearch import __version__, service

        local_hint = None if ui else service.browse_hint(reader.tracking_uri)
        return as_json({"tracking_uri": mask_secrets(reader.tracking_uri), "mlflow_ui": ui,
                        "mlflow_hint": local_hint, "poll_interval": poll_interval, "version": __version__})

    @app.get("/api/searches")
    def searches() -> Response:
        try:
            rows = reader.list_searches(fresh=request.args.get("fresh") == "1")
        except DashboardError:
            raise
        except Exception as exc:  # noqa: BLE001 - store down or misconfigured: tell the page
            raise DashboardError(f"cannot read searches from {mask_secrets(reader.tracking_uri)}: {exc}",
                                 status=502) from None
        return as_json({"searches": rows, "mlflow_ui": ui, "poll_interval": poll_interval})

    @app.get("/api/searches/<run_id>")
    def search(run_id: str) -> Response:
        try:
            payload = reader.search(run_id, fresh=request.args.get("fresh") == "1")
        except DashboardError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise DashboardError(f"cannot read search {run_id}: {exc}", status=502) from None
        version = payload["version"]
        if request.args.get("since") == version:
            return as_json({"unchanged": True, "version": version})
        cached = bodies.get(run_id)
        if cached is None or cached[0] != version:
            body = json.dumps(_json_safe({**payload, "mlflow_ui": ui, "poll_interval": poll_interval}),
                              allow_nan=False, separators=(",", ":")).encode()
            cached = bodies[run_id] = (version, body)
        return json_response(cached[1])

    @app.get("/api/searches/<run_id>/importance")
    def importance(run_id: str) -> Response:
        try:
            answer = reader.importance(run_id, evaluator=request.args.get("evaluator", "auto"))
        except RanksearchError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise DashboardError(f"cannot compute importances for search {run_id}: {exc}", status=502) from None
        return as_json(answer)

    @app.get("/api/searches/<run_id>/trials/<trial_id>/rank-config")
    def rank_config(run_id: str, trial_id: str) -> Response:
        name, text = reader.rank_config(run_id, trial_id)
        return Response(text.encode(), mimetype="application/x-yaml", headers={
            "Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"})

    if prefetch:
        threading.Thread(target=reader.prefetch, name="ranksearch-dashboard-prefetch", daemon=True).start()
    return app


