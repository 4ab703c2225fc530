"""Real servers for the dashboard tests: the session's moto S3, an MLflow tracking server whose
artifacts live there, searches written through SearchTracker (synthetic results, no training),
the dashboard served from a thread of the test process, and Debian's headless Chromium driven
by Selenium. Server plumbing lives in tests/servers.py.

Everything binds to loopback and is stopped at the end of the session. SQLite files go to tmpfs
when there is one (a disk SQLite store is ~5x slower to write).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from servers import MlflowServer, MotoS3, migrated_db

from ranksearch.bench import dashboard as helpers

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "test-output" / "screenshots"
BUCKET = "ranksearch-dash"
N_TRIALS = 36
BIG_TRIALS = 1000
HP_TRIALS = 24


@dataclass
class Stack:
    url: str  # the MLflow tracking server
    s3_endpoint: str
    work: Path


@dataclass
class Search:
    name: str
    strategy: str
    run_id: str
    experiment_id: str
    results: dict[str, Any] = field(default_factory=dict)


@pytest.fixture(scope="session")
def work_dir() -> Iterator[Path]:
    work = helpers.fast_tmpdir("ranksearch-dash-tests-")
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="session")
def stack(work_dir: Path, moto_s3: MotoS3) -> Iterator[Stack]:
    """An MLflow server with proxied artifacts in the session's moto S3 bucket."""
    template = migrated_db(work_dir / "template" / "mlflow.db")
    server = MlflowServer(work_dir / "server", template_db=template, s3=moto_s3, bucket=BUCKET)
    server.start()
    try:
        yield Stack(url=server.url, s3_endpoint=moto_s3.endpoint, work=work_dir)
    finally:
        server.stop()


@pytest.fixture(scope="session")
def searches(stack: Stack) -> dict[str, Search]:
    """Two finished searches of the quickstart space, one per strategy, with fronts that differ."""
    from mlflow import MlflowClient

    plans = {"random": (1.0, 0), "nsga2": (1.8, 1)}
    trackers = {}
    made = {}
    for strategy, (skew, seed) in plans.items():
        space = helpers.quickstart_space(strategy=strategy, budget=N_TRIALS)
        results = helpers.synthetic_results(space, N_TRIALS, seed=seed, skew=skew, failed_every=11, pruned_every=13)
        name = f"digits-{strategy}"
        trackers[strategy] = helpers.write_search(stack.url, space, results, run_name=name, finish=False,
                                                  epochs=True)
        made[strategy] = (name, results)
    out = {}
    client = MlflowClient(tracking_uri=stack.url)
    for strategy, tracker in trackers.items():
        tracker.finish()
        name, results = made[strategy]
        run = client.get_run(tracker.parent_run_id)
        out[strategy] = Search(name, strategy, tracker.parent_run_id, run.info.experiment_id, dict(results))
    return out


@pytest.fixture(scope="session")
def hp_search(stack: Stack) -> Search:
    """A finished search of ranks and recipe together (digits_ranks_and_recipe: six
    hyperparameters, momentum only with sgd), its synthetic accuracy following the learning rate."""
    from mlflow import MlflowClient

    space = helpers.quickstart_space(strategy="random", budget=HP_TRIALS, path=helpers.RANKS_AND_RECIPE)
    results = helpers.synthetic_results(space, HP_TRIALS, seed=5, failed_every=11)
    tracker = helpers.write_search(stack.url, space, results, run_name="digits-hp")
    run = MlflowClient(tracking_uri=stack.url).get_run(tracker.parent_run_id)
    return Search("digits-hp", "random", tracker.parent_run_id, run.info.experiment_id, dict(results))


@pytest.fixture(scope="session")
def dashboard(stack: Stack, searches: dict[str, Search]) -> Iterator[helpers.DashboardThread]:
    """The dashboard over the MLflow server (polling fast, so live tests finish quickly)."""
    with helpers.DashboardThread(stack.url, poll_interval=0.5, refresh_interval=0.2) as dash:
        yield dash


@pytest.fixture(scope="session")
def chromium_available() -> None:
    browser, driver = helpers.chromium_paths()
    if not (Path(browser).exists() and Path(driver).exists()):
        message = f"needs {browser} and {driver} (apt-get install chromium chromium-driver)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="session")
def browser(chromium_available: None, work_dir: Path) -> Iterator[Any]:
    downloads = work_dir / "downloads"
    downloads.mkdir()
    driver = helpers.headless_chromium(profile_dir=work_dir / "chromium-profile", download_dir=downloads)
    driver.downloads = downloads  # type: ignore[attr-defined]
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """The session's browser on a blank page, with any extra windows a test opened closed after."""
    browser.get("about:blank")
    main = browser.current_window_handle
    yield browser
    for handle in browser.window_handles:
        if handle != main:
            browser.switch_to.window(handle)
            browser.close()
    browser.switch_to.window(main)


@pytest.fixture(scope="session")
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS


class _BigStore:
    """The 1,000-trial store, written by a subprocess that starts with the session, so its ~30-50 s
    of writing overlap the other tests instead of adding to them."""

    def __init__(self, folder: Path) -> None:
        import subprocess

        self.folder = folder
        self.log = folder.parent / "big-store.log"
        folder.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "ranksearch.bench.dashboard", "--write-store", str(folder),
                 "--trials", str(BIG_TRIALS)], stdout=subprocess.PIPE, stderr=err, cwd=ROOT, start_new_session=True)

    def result(self, timeout: float = 600.0) -> tuple[str, str]:
        import json

        out, _ = self.proc.communicate(timeout=timeout)
        if self.proc.returncode != 0:
            raise RuntimeError(f"writing the 1,000-trial store failed:\n{self.log.read_text()[-3000:]}")
        data = json.loads(out.decode().strip().splitlines()[-1])
        return data["tracking_uri"], data["run_id"]

    def stop(self) -> None:
        if self.proc.poll() is None:
            import signal

            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=10)


@pytest.fixture(scope="session", autouse=True)
def _big_store(request: pytest.FixtureRequest, work_dir: Path) -> Iterator[_BigStore | None]:
    if not any("big_search" in getattr(item, "fixturenames", ()) for item in request.session.items):
        yield None
        return
    store = _BigStore(work_dir / "big" / "store")
    try:
        yield store
    finally:
        store.stop()


@pytest.fixture(scope="session")
def big_search(_big_store: _BigStore, work_dir: Path) -> Iterator[tuple[str, str, int]]:
    """(tracking server URL, run id, trials) of a finished search of 1,000 trials on its own server."""
    _, run_id = _big_store.result()
    folder = work_dir / "big"
    server = MlflowServer(folder, db=folder / "store" / "mlflow.db", artifacts=(folder / "served").as_uri())
    try:
        server.start()
        yield server.url, run_id, BIG_TRIALS
    finally:
        server.stop()
