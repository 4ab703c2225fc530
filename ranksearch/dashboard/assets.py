"""Where the dashboard's page comes from: its assets folder and plotly's JavaScript.

One small function finds the assets (HTML, JS, CSS of the single-page app): the package data
`ranksearch.resources` locates, so a checkout, an editable install and a wheel all work.
"""

from __future__ import annotations

from pathlib import Path

from ranksearch.dashboard.model import DashboardError


def assets_dir() -> Path:
    """The folder holding the page's index.html, app.js and style.css."""
    from ranksearch.resources import dashboard_dir

    return dashboard_dir()


def plotly_js() -> Path:
    """plotly.min.js from the installed plotly package (served, never fetched from a CDN)."""
    import plotly

    path = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    if not path.is_file():
        raise DashboardError(f"the installed plotly package has no {path}; reinstall plotly", status=500)
    return path
