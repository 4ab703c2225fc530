"""Front pictures: offline HTML with hover details, PNG bytes, empty and odd inputs."""

from __future__ import annotations

import re

from ranksearch import frontviz

POINTS = [
    {"trial_id": "a", "ranks": [2, 3], "metrics": {"val_accuracy": 0.90, "compression_ratio": 4.0}},
    {"trial_id": "b", "ranks": [1, 1], "metrics": {"val_accuracy": 0.80, "compression_ratio": 20.0}},
    {"trial_id": "c", "ranks": [3, 3], "metrics": {"val_accuracy": 0.70, "compression_ratio": 3.0}},
    {"trial_id": "d", "ranks": [9, 9], "metrics": {"val_accuracy": float("nan"), "compression_ratio": 1.0}},
]


def test_front_html_is_offline_and_shows_ranks():
    html = frontviz.front_html(POINTS, ["a", "b"], title="demo", element_names=["fc1.r0", "fc1.r1"])
    assert "<html>" in html[:200].lower()
    assert not re.search(r"<script[^>]+src=[\"']?https?:", html)
    assert "Pareto front (2)" in html and "fc1.r0 = 2" in html
    assert "3 trials, 2 on the front" in html  # the NaN point is left out


def test_front_png_and_history_png_are_pngs():
    png = frontviz.front_png(POINTS, ["a", "b"])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    hist = frontviz.history_png([{"n_finished": 1, "hypervolume": 0.1, "front_size": 1},
                                 {"n_finished": 2, "hypervolume": 0.3, "front_size": 2}])
    assert hist[:4] == b"\x89PNG"


def test_empty_inputs_still_draw():
    assert "<html" in frontviz.front_html([], [])
    assert frontviz.front_png([], [])[:4] == b"\x89PNG"
    assert frontviz.history_png([])[:4] == b"\x89PNG"


def test_axis_scale_follows_the_objectives_module():
    """Cost metrics (ranksearch.objectives.LOG_SCALE_METRICS) get a log axis, others linear,
    unless the caller says otherwise."""
    default = frontviz.front_html(POINTS, ["a", "b"])
    assert "compression_ratio (log)" in default
    swapped = frontviz.front_html(POINTS, ["a", "b"], x="val_accuracy", y="compression_ratio")
    assert "val_accuracy (log)" not in swapped and '"type":"linear"' in swapped.replace(" ", "")
    forced = frontviz.front_html(POINTS, ["a", "b"], log_x=False)
    assert "compression_ratio (log)" not in forced
