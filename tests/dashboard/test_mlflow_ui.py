"""MLflow's own UI shows the search's front: the parent run's pareto/front.html artifact renders."""

from __future__ import annotations

import time

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.mlflow]


def test_front_artifact_renders_in_mlflow_ui(page, stack, searches, screenshots):
    from mlflow import MlflowClient
    from selenium.webdriver.common.by import By

    s = searches["nsga2"]
    parent = MlflowClient(tracking_uri=stack.url).get_run(s.run_id)
    front_size = int(parent.data.metrics["front_size"])
    page.get(f"{stack.url}/#/experiments/{s.experiment_id}/runs/{s.run_id}/artifacts/pareto/front.html")
    # MLflow shows an HTML artifact in a sandboxed iframe; the figure inside must be drawn.
    deadline = time.monotonic() + 60
    points = []
    while time.monotonic() < deadline:
        page.switch_to.default_content()
        frames = page.find_elements(By.CSS_SELECTOR, "iframe")
        if frames:
            page.switch_to.frame(frames[0])
            points = page.find_elements(By.CSS_SELECTOR, ".js-plotly-plot .scatterlayer .trace:nth-of-type(2) path.point")
            if points:
                break
        time.sleep(0.25)
    assert len(points) == front_size, "the front artifact did not render in MLflow's UI"
    title = page.find_element(By.CSS_SELECTOR, ".js-plotly-plot .gtitle").text
    assert f"{front_size} on the front" in title and s.name in title
    page.switch_to.default_content()
    assert "front.html" in page.find_element(By.TAG_NAME, "body").text
    page.save_screenshot(str(screenshots / "mlflow-ui-front-artifact.png"))  # the viewport: MLflow's
    # UI redraws (and reloads the artifact) when a full-page capture resizes it
