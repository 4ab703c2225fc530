"""Serving the dashboard: `ranksearch dashboard` and `serve()`.

The server binds to 127.0.0.1 by default: it has no authentication, and what it shows (run
ids, metrics, the tracking URI with credentials masked) is meant for the user's own browser.
"""

from __future__ import annotations

import sys
import threading
from typing import TYPE_CHECKING, Annotated

import typer

from ranksearch.dashboard.model import DashboardError

if TYPE_CHECKING:
    from ranksearch.dashboard.model import MlflowReader

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8050


def _is_loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


def serve(tracking_uri: str | None = None, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
          open_browser: bool = False, *, mlflow_ui: str | None = None, poll_interval: float = 3.0) -> None:
    """Serve the dashboard until interrupted (Ctrl-C)."""
    from werkzeug.serving import make_server

    from ranksearch.dashboard.app import create_app
    from ranksearch.tracking import mask_secrets

    app = create_app(tracking_uri, poll_interval=poll_interval, mlflow_ui=mlflow_ui)
    try:
        server = make_server(host, port, app, threaded=True)
    except OSError as exc:
        raise DashboardError(f"cannot listen on {host}:{port}: {exc}; choose another --port", status=500) from None
    url = f"http://{'[' + host + ']' if ':' in host else host}:{server.server_port}/"
    reader: MlflowReader = app.config["READER"]
    print(f"ranksearch dashboard on {url} (MLflow: {mask_secrets(reader.tracking_uri)}); Ctrl-C stops it",
          flush=True)
    if not _is_loopback(host):
        print(f"warning: the dashboard has no authentication and listens on {host}: anyone who can "
              "reach this address can read the tracking store through it", file=sys.stderr, flush=True)
    if open_browser:
        import webbrowser

        threading.Timer(0.5, webbrowser.open, args=(url,)).start()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def dashboard_command(
    tracking_uri: Annotated[str | None, typer.Option(
        "--tracking-uri", help="MLflow store: http(s)://server, sqlite:///file.db or a folder "
        "(default: $MLFLOW_TRACKING_URI, else ./mlruns).")] = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on; keep 127.0.0.1 unless others "
                                      "must reach it (there is no authentication).")] = DEFAULT_HOST,
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = DEFAULT_PORT,
    open_browser: Annotated[bool, typer.Option("--open/--no-open", help="Open the page in a browser.")] = False,
    mlflow_ui: Annotated[str | None, typer.Option(
        "--mlflow-ui", help="MLflow UI that trial links open (default: the tracking server).")] = None,
) -> None:
    """Browse Pareto fronts in the browser: searches, fronts, compare strategies, export configs."""
    serve(tracking_uri, host=host, port=port, open_browser=open_browser, mlflow_ui=mlflow_ui)
