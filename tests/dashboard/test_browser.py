"""The dashboard in headless Chromium against a real MLflow server: what a user sees and does."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from ranksearch.bench import dashboard as helpers

pytestmark = [pytest.mark.browser, pytest.mark.mlflow]

FRONT_POINTS = "#scatter .scatterlayer .trace:nth-of-type(2) path.point"
DOMINATED_POINTS = "#scatter .scatterlayer .trace:nth-of-type(1) path.point"


def css(driver: Any, selector: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, selector)


def wait_until(fn, timeout: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def open_search(driver: Any, dashboard: Any, run_id: str) -> None:
    driver.get(f"{dashboard.url}#/search/{run_id}")
    helpers.wait_for_mark(driver, "plot-drawn")


def mlflow_parent(stack_url: str, run_id: str) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=stack_url).get_run(run_id)


def hover_text(driver: Any, point: Any) -> str:
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(driver).move_to_element(point).perform()
    label = wait_until(lambda: css(driver, "#scatter .hoverlayer .hovertext"), what="a hover label")
    return label[0].get_attribute("textContent")


def test_list_shows_searches(page, dashboard, searches, screenshots):
    page.get(dashboard.url)
    helpers.wait_for_mark(page, "list-drawn")
    rows = css(page, "#searches tbody tr")
    by_id = {r.get_attribute("data-run-id"): r.text for r in rows}
    for s in searches.values():
        text = by_id[s.run_id]
        assert s.name in text and s.strategy in text and "finished" in text
        assert f"{len(s.results)} / {len(s.results)}" in text
    helpers.save_full_page(page, screenshots / "dashboard-list.png")


def test_highlighted_points_equal_mlflow_front(page, dashboard, searches, stack, screenshots):
    s = searches["random"]
    open_search(page, dashboard, s.run_id)
    parent = mlflow_parent(stack.url, s.run_id)
    front = css(page, FRONT_POINTS)
    assert len(front) == int(parent.data.metrics["front_size"]) > 2
    ok = sum(r.ok for r in s.results.values())
    assert len(front) + len(css(page, DOMINATED_POINTS)) == ok
    # Trials a scheduler stopped are drawn apart (at their partial accuracy), never on the front.
    traces = page.execute_script("return document.getElementById('scatter').data.map("
                                 "t => [t.name, t.x.length, t.customdata])")
    n_pruned = sum(r.status == "pruned" for r in s.results.values())
    stopped = [t for t in traces if t[0].startswith("stopped early")]
    assert len(stopped) == 1 and stopped[0][1] == n_pruned > 0
    front_trace = [t for t in traces if t[0].startswith("Pareto front")][0]
    assert not set(stopped[0][2]) & set(front_trace[2])
    assert len(css(page, "#scatter .scatterlayer path.point")) == len(front) + len(css(page, DOMINATED_POINTS)) + n_pruned
    # Joined: the front trace draws a line through its points.
    assert css(page, "#scatter .scatterlayer .trace:nth-of-type(2) path.js-line")
    assert page.find_element("id", "front-size").text == str(len(front))
    # The side views are drawn too: hypervolume against finished trials, the ranks heatmap, the table.
    helpers.wait_for_mark(page, "search-complete")
    hv_x = page.execute_script("return document.getElementById('hv-plot').data[0].x")
    assert hv_x[-1] == len(s.results)
    heat = page.execute_script("const d = document.getElementById('rank-heatmap').data[0]; return [d.y.length, d.x.length]")
    assert heat == [12, len(front)]
    rows = css(page, "#front-table tbody tr")
    assert len(rows) == len(front)
    rows[len(rows) // 2].click()  # choose a trial from the table: the panel shows it, no tab opens
    wait_until(lambda: page.find_element("css selector", "#trial-panel h2").text.startswith("Trial "),
               what="the trial panel")
    helpers.save_full_page(page, screenshots / "dashboard-search.png")


def test_hover_shows_ranks(page, dashboard, searches, screenshots):
    s = searches["random"]
    open_search(page, dashboard, s.run_id)
    point = css(page, FRONT_POINTS)[2]
    text = hover_text(page, point)
    page.save_screenshot(str(screenshots / "dashboard-hover.png"))
    tid = text.split("trial ", 1)[1].split(" ")[0].split("·")[0].strip()
    ranks = s.results[tid].ranks
    assert f"fc1 [{', '.join(map(str, ranks[:6]))}]" in text
    assert f"fc2 [{', '.join(map(str, ranks[6:]))}]" in text
    assert "val_accuracy = " in text and "compression_ratio = " in text


def test_axes_are_selectable(page, dashboard, searches):
    from selenium.webdriver.support.ui import Select

    s = searches["nsga2"]
    open_search(page, dashboard, s.run_id)
    n_front = len(css(page, FRONT_POINTS))
    assert page.execute_script("return document.getElementById('scatter').layout.xaxis.title.text") == "compression_ratio (log)"
    Select(page.find_element("id", "x-axis")).select_by_value("params")
    wait_until(lambda: page.execute_script("return document.getElementById('scatter').layout.xaxis.title.text")
               == "params (log)", what="the x axis to change")
    assert len(css(page, FRONT_POINTS)) == n_front
    xs = page.execute_script("return document.getElementById('scatter').data[1].x")
    assert xs == sorted(xs)  # the front is joined in order along the chosen axis


def test_click_opens_mlflow_run_and_export_downloads_config(page, dashboard, searches, stack):
    from selenium.webdriver.common.action_chains import ActionChains

    from ranksearch import service

    s = searches["random"]
    open_search(page, dashboard, s.run_id)
    point = css(page, FRONT_POINTS)[-1]
    tid = hover_text(page, point).split("trial ", 1)[1].split(" ")[0].split("·")[0].strip()
    windows = set(page.window_handles)
    # A real click at the point's position (plotly's drag layer, on top of the points, takes it).
    ActionChains(page).move_to_element(point).click().perform()
    # The trial's MLflow run opens in a new tab ...
    new = wait_until(lambda: set(page.window_handles) - windows, what="the MLflow run to open")
    main = page.current_window_handle
    page.switch_to.window(new.pop())
    wait_until(lambda: "/runs/" in page.current_url, what="the run URL")
    trial_run = next(t for t in service.front(s.name, tracking_uri=stack.url) if t["trial_id"] == tid)["run_id"]
    assert page.current_url.startswith(stack.url)
    assert page.current_url.endswith(f"#/experiments/{s.experiment_id}/runs/{trial_run}")
    page.close()
    page.switch_to.window(main)
    # ... and the panel offers its rank-config file.
    assert page.find_element("css selector", "#trial-panel h2").text == f"Trial {tid}"
    downloads: Path = page.downloads
    for old in downloads.iterdir():
        old.unlink()
    page.find_element("id", "export-selected").click()
    expected = downloads / f"{s.name}-{tid}.rank_config.yaml"
    wait_until(expected.exists, what=f"{expected.name} to download")
    wait_until(lambda: not list(downloads.glob("*.crdownload")), what="the download to finish")
    config = service.load_rank_config(expected)
    assert config.ranks == s.results[tid].ranks
    assert config.provenance["trial_run_id"] == trial_run
    assert config.provenance["search_run_id"] == s.run_id
    data = yaml.safe_load(expected.read_text())
    assert data["kind"] == "ranksearch/rank-config" and data["elements"][0] == "fc1.r0"


def test_compare_shows_two_fronts(page, dashboard, searches, stack, screenshots):
    page.get(dashboard.url)
    helpers.wait_for_mark(page, "list-drawn")
    for s in searches.values():
        page.find_element("css selector", f"input.pick[value='{s.run_id}']").click()
    page.find_element("id", "compare-selected").click()
    helpers.wait_for_mark(page, "compare-drawn")
    traces = page.execute_script(
        "return document.getElementById('compare-plot').data.map(t => [t.meta && t.meta.run_id, t.x.length, t.name])")
    assert len(traces) == 2
    by_run = {run_id: (n, name) for run_id, n, name in traces}
    for s in searches.values():
        n, name = by_run[s.run_id]
        parent = mlflow_parent(stack.url, s.run_id)
        assert n == int(parent.data.metrics["front_size"])
        assert s.strategy in name and f"HV {parent.data.metrics['hypervolume']:.4g}"[:6] in name
    drawn = css(page, "#compare-plot .scatterlayer .trace")
    assert len(drawn) == 2
    assert len(css(page, "#compare-table tbody tr")) == 2
    page.find_element("id", "show-all").click()  # the dominated trials of both, faintly
    wait_until(lambda: len(page.execute_script("return document.getElementById('compare-plot').data")) == 4,
               what="the dominated trials")
    helpers.save_full_page(page, screenshots / "dashboard-compare.png")


def test_running_search_updates_live(page, dashboard, stack, screenshots):
    space = helpers.quickstart_space(strategy="random", budget=24, name="live_browser")
    results = helpers.synthetic_results(space, 24, seed=9)
    tracker = helpers.write_search(stack.url, space, results[:6], run_name="live-browser", finish=False)
    try:
        assert tracker.flush(timeout=60)
        open_search(page, dashboard, tracker.parent_run_id)
        page.execute_script("window.__sameDocument = true")
        assert page.find_element("id", "n-finished").text == "6 / 24"
        n_points = len(css(page, FRONT_POINTS)) + len(css(page, DOMINATED_POINTS))
        assert n_points == 6
        for tid, result in results[6:]:
            helpers.log_trial(tracker, tid, result)
        assert tracker.flush(timeout=60)
        wait_until(lambda: page.find_element("id", "n-finished").text == "24 / 24", timeout=30,
                   what="the page to show 24 finished trials")
        wait_until(lambda: len(css(page, FRONT_POINTS)) + len(css(page, DOMINATED_POINTS)) == 24,
                   what="24 points")
        assert len(css(page, FRONT_POINTS)) == len(tracker.front())
        assert page.execute_script("return window.__sameDocument === true && window.__liveUpdates >= 1")
        tracker.finish()
        wait_until(lambda: "finished" in page.find_element("id", "search-name").text, timeout=30,
                   what="the finished status")
        helpers.save_full_page(page, screenshots / "dashboard-live.png")
    finally:
        tracker.finish()


def test_hyperparameters_show_in_hover_table_parcoords_and_importance(page, dashboard, hp_search, screenshots):
    s = hp_search
    open_search(page, dashboard, s.run_id)
    text = hover_text(page, css(page, FRONT_POINTS)[0])
    tid = text.split("trial ", 1)[1].split(" ")[0].split("·")[0].strip()
    values = s.results[tid].hparams
    assert "hyperparameters" in text and f"training.optimizer.name = {values['training.optimizer.name']}" in text
    assert ("training.optimizer.momentum = " in text) == ("training.optimizer.momentum" in values)
    helpers.wait_for_mark(page, "search-complete")
    # the front table: a column per hyperparameter, blank where a conditional one is inactive
    heads = [th.text for th in css(page, "#front-table thead th")]
    assert "training.optimizer.lr" in heads and "training.batch_size" in heads
    for row in css(page, "#front-table tbody tr"):
        want = s.results[row.get_attribute("data-trial-id")].hparams
        cell = row.find_element("css selector", 'td[data-hp="training.optimizer.momentum"]').text
        assert (cell == "") == ("training.optimizer.momentum" not in want)
        assert row.find_element("css selector", 'td[data-hp="training.optimizer.name"]').text == want["training.optimizer.name"]
    # parallel coordinates: one line per finished trial, an axis per rank element, hyperparameter, objective
    assert css(page, "#parcoords .parcoords")
    trace = page.execute_script("const d = document.getElementById('parcoords').data[0]; "
                                "return [d.type, d.dimensions.map(x => x.label), d.dimensions[0].values.length, "
                                "d.dimensions.map(x => x.ticktext)]")
    assert trace[0] == "parcoords" and trace[2] == sum(r.ok for r in s.results.values())
    labels = trace[1]
    assert len(labels) == 12 + 6 + 2  # rank elements, hyperparameters, objectives
    assert "training.optimizer.lr" in labels and "compression_ratio (log)" in labels
    assert trace[3][labels.index("training.optimizer.name")] == ["adamw", "sgd"]
    assert "inactive" in trace[3][labels.index("training.optimizer.momentum")]
    axis_titles = [t.get_attribute("textContent") for t in css(page, "#parcoords .parcoords .axis-title")]
    assert "training.optimizer.lr" in axis_titles
    # importance: grouped bars per objective, the synthetic accuracy's learning rate among them
    wait_until(lambda: css(page, "#importance .barlayer .trace.bars"), what="the importance bars")
    assert len(css(page, "#importance .barlayer .trace.bars")) == 2
    ticks = [t.get_attribute("textContent") for t in css(page, "#importance .ytick text")]
    assert "training.optimizer.lr" in ticks
    assert not css(page, "#importance-note")
    helpers.save_full_page(page, screenshots / "dashboard-hyperparameters.png")
