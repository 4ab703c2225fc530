"""Where the dashboard's page comes from: its assets folder and plotly's JavaScript.

One small function finds the assets (HTML, JS, CSS of the single-page app), so a wheel install
can point it elsewhere (`ranksearch.resources`) without touching the app.
"""

from __future__ import annotations

from pathlib import Path

from ranksearch.dashboard.model import DashboardError


def assets_dir() -> Path:
    """The folder holding the page's index.html, app.js and style.css."""
    return Path(__file__).resolve().parents[2] / "dashboards"


def plotly_js() -> Path:
    """plotly.min.js from the installed plotly package (served, never fetched from a CDN)."""
    import plotly

    path = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    if not path.is_file():
        raise DashboardError(f"the installed plotly package has no {path}; reinstall plotly", status=500)
    return path
