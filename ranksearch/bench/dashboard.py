"""Browser benchmark of the dashboard: from request to drawn plot, for a search of 1,000 trials.

    python -m ranksearch.bench.dashboard [--trials 1000] [--repeats 5] [--local] [--json]
                                          [--screenshot PATH] [--tracking-uri URI --search RUN_ID]
    python -m ranksearch.bench.dashboard --write-store DIR [--trials 1000]   # a demo store only

Writes a finished synthetic search (SearchTracker fed with synthetic TrialResults: closed-form
params and FLOPs of the quickstart space, a made-up accuracy curve, no training) into a fresh
SQLite store, starts an MLflow tracking server on it (loopback; `--local` reads the SQLite store
directly instead), serves the dashboard against it in this process, and opens the search view
in headless Chromium (Debian's chromium + chromedriver; nothing is downloaded).

The time reported is the page's own clock: performance.now() at the `ranksearch:plot-drawn`
mark, which the page sets once the scatter of every trial is on screen, measured from the
navigation's start (the request). Three cases:

- cold: the first open after the dashboard started with an empty cache (MLflow read included)
- warm server: the dashboard's cache holds the search, the browser cache is emptied each time
  (a first visit while `ranksearch dashboard` has prefetched, as it does at start)
- warm: browser cache kept too (plotly.js from cache), the usual reopen

The helpers here (headless Chromium, synthetic searches, the MLflow server) are shared with
tests/dashboard; loopback server plumbing is in `ranksearch.bench.servers`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ranksearch.bench.servers import ServerProcess, free_port

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

    from ranksearch.space import SearchSpace
    from ranksearch.trial import TrialResult

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "search_spaces" / "quickstart_digits.yaml"
RANKS_AND_RECIPE = ROOT / "search_spaces" / "digits_ranks_and_recipe.yaml"  # quickstart + hyperparameters
GOAL_MS = 2000.0
CHROME_FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--no-first-run", "--no-default-browser-check", "--disable-extensions",
)


# -- processes and ports ----------------------------------------------------------------------------
def fast_tmpdir(prefix: str) -> Path:
    """A fresh folder on tmpfs when there is one: SQLite's fsyncs make a disk store 5x slower."""
    shm = Path("/dev/shm")
    base = str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None
    return Path(tempfile.mkdtemp(prefix=prefix, dir=base))


def migrated_db(path: Path) -> Path:
    """An empty MLflow SQLite database with its schema in place (migrations take seconds)."""
    from ranksearch.tracking import client_for

    path.parent.mkdir(parents=True, exist_ok=True)
    client_for(f"sqlite:///{path}").search_experiments()
    return path


def mlflow_server(db: Path, artifacts_destination: str, *, workdir: Path,
                  env: dict[str, str] | None = None) -> tuple[ServerProcess, str]:
    """`mlflow server` on loopback over a SQLite file, one worker, job execution off (ENV.md)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AWS_"))}
    full_env.update(env or {})
    full_env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    cmd = [str(Path(sys.executable).parent / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{db}",
           "--artifacts-destination", artifacts_destination, "--host", "127.0.0.1", "--port", str(port),
           "--workers", "1"]
    return ServerProcess(cmd, health=f"{url}/health", log=workdir / "mlflow-server.log", env=full_env,
                         cwd=workdir), url


def _quiet_handler() -> type:
    from werkzeug.serving import WSGIRequestHandler

    class Quiet(WSGIRequestHandler):
        def log_request(self, *args: Any, **kwargs: Any) -> None:  # no access log in benches and tests
            pass

    return Quiet


class DashboardThread:
    """The dashboard app served from a background thread of this process (for tests, benches)."""

    def __init__(self, tracking_uri: str, **options: Any) -> None:
        from werkzeug.serving import make_server

        from ranksearch.dashboard import create_app

        self.app = create_app(tracking_uri, **options)
        self.reader = self.app.config["READER"]
        self.server = make_server("127.0.0.1", 0, self.app, threaded=True, request_handler=_quiet_handler())
        self.url = f"http://127.0.0.1:{self.server.server_port}/"
        self.thread = threading.Thread(target=self.server.serve_forever, name="dashboard", daemon=True)

    def __enter__(self) -> DashboardThread:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


# -- the browser ----------------------------------------------------------------------------------
def chromium_paths() -> tuple[str, str]:
    """(chromium, chromedriver): $RANKSEARCH_CHROMIUM / $RANKSEARCH_CHROMEDRIVER, else Debian's."""
    browser = os.environ.get("RANKSEARCH_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    driver = os.environ.get("RANKSEARCH_CHROMEDRIVER") or shutil.which("chromedriver") or "/usr/bin/chromedriver"
    return browser, driver


def headless_chromium(*, profile_dir: Path, download_dir: Path | None = None, size: tuple[int, int] = (1440, 1000)
                      ) -> WebDriver:
    """Selenium driving the system's headless Chromium (never a downloaded browser)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver = chromium_paths()
    if not (Path(browser).exists() and Path(driver).exists()):
        raise RuntimeError(f"need {browser} and {driver}: apt-get install chromium chromium-driver")
    opts = webdriver.ChromeOptions()
    opts.binary_location = browser
    for flag in CHROME_FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={profile_dir}")
    opts.add_argument(f"--window-size={size[0]},{size[1]}")
    if download_dir is not None:
        opts.add_experimental_option("prefs", {
            "download.default_directory": str(download_dir), "download.prompt_for_download": False,
            "download.directory_upgrade": True, "safebrowsing.enabled": False,
        })
    chrome = webdriver.Chrome(service=Service(executable_path=driver), options=opts)
    if download_dir is not None:
        chrome.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(download_dir)})
    return chrome


def wait_for_mark(driver: WebDriver, name: str, timeout: float = 30.0) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    script = f"return !!(document.body && document.body.hasAttribute('data-{name}'))"
    try:
        WebDriverWait(driver, timeout, poll_frequency=0.05).until(lambda d: d.execute_script(script))
    except Exception:
        error = driver.execute_script("const e = document.getElementById('error'); return e && e.textContent")
        raise RuntimeError(f"the page never set data-{name} within {timeout} s"
                           + (f"; it says: {error}" if error else "")) from None


def save_full_page(driver: WebDriver, path: Path) -> Path:
    """A PNG of the whole page, below the fold included (Chromium's DevTools protocol)."""
    import base64

    width, height = driver.execute_script(
        "const e = document.documentElement; return [e.clientWidth, Math.max(e.scrollHeight, document.body.scrollHeight)]")
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": width, "height": min(height, 6000), "scale": 1},
    })
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(base64.b64decode(shot["data"]))
    return path


_TIMING_JS = """
const name = arguments[0];
const mark = performance.getEntriesByName('ranksearch:' + name)[0];
const nav = performance.getEntriesByType('navigation')[0];
const res = performance.getEntriesByType('resource');
const api = res.find(r => /\\/api\\/searches\\/[0-9a-f]{32}/.test(r.name));
const js = res.find(r => r.name.indexOf('plotly.min.js') >= 0);
return {
  drawn_ms: mark ? mark.startTime : null,
  html_ms: nav ? nav.responseEnd : null,
  dom_ready_ms: nav ? nav.domContentLoadedEventEnd : null,
  api_ms: api ? api.responseEnd - api.startTime : null,
  api_bytes: api ? api.encodedBodySize : null,
  plotly_ms: js ? js.responseEnd - js.startTime : null,
  plotly_from_cache: js ? js.transferSize === 0 : null,
  points: document.querySelectorAll('#scatter .scatterlayer path.point').length,
};
"""


def open_and_time(driver: WebDriver, url: str, *, mark: str = "plot-drawn", clear_cache: bool = False,
                  timeout: float = 60.0) -> dict[str, Any]:
    """Navigate to `url` afresh and return the page's timings once it set `mark`."""
    driver.get("about:blank")
    if clear_cache:
        driver.execute_cdp_cmd("Network.clearBrowserCache", {})
    driver.get(url)
    wait_for_mark(driver, mark, timeout)
    return driver.execute_script(_TIMING_JS, mark)


# -- synthetic searches ---------------------------------------------------------------------------
def quickstart_space(*, strategy: str = "random", budget: int = 16, name: str | None = None,
                     path: Path = QUICKSTART) -> SearchSpace:
    """The quickstart space (or another at `path`, e.g. RANKS_AND_RECIPE) with the strategy and
    budget a search records (its effective space)."""
    import yaml

    from ranksearch.space import SearchSpace

    data = yaml.safe_load(path.read_text())
    data["strategy"] = {"name": strategy, "budget": int(budget), "options": {}}
    if name:
        data["name"] = name
    return SearchSpace.from_dict(data, source=str(path))


def synthetic_results(space: SearchSpace, n: int, *, seed: int = 0, skew: float = 1.0,
                      failed_every: int = 0, pruned_every: int = 0) -> list[tuple[str, TrialResult]]:
    """Trials with exact params/FLOPs for their ranks and an accuracy that saturates with size.

    `skew` > 1 draws smaller ranks more often (a strategy that leans to compression), < 1 larger.
    A space with hyperparameters gets random values too (from their own seeded generator, so
    the ranks do not change), and accuracy then falls off away from a learning rate of 3e-3.
    """
    from ranksearch.space import count_flops, count_params
    from ranksearch.trial import TrialResult

    rng = random.Random(seed)
    lows = [e.low for e in space.elements]
    highs = [e.high for e in space.elements]
    smallest = count_params(space, lows)
    largest = count_params(space, highs)
    span = math.log(largest / smallest)
    hyper = getattr(space, "hyper", None)
    hp_rng = random.Random(seed + 7919)
    out = []
    for i in range(n):
        hparams = _random_hparams(hyper, hp_rng) if hyper else {}
        ranks = tuple(lo + min(hi - lo, int((hi - lo + 1) * rng.random() ** skew)) for lo, hi in zip(lows, highs, strict=True))
        params = count_params(space, ranks)
        capacity = math.log(params / smallest) / span
        acc = 0.55 + 0.42 * (1 - math.exp(-3.5 * capacity)) + rng.gauss(0, 0.012)
        if "training.optimizer.lr" in hparams:
            acc -= 0.3 * (math.log10(hparams["training.optimizer.lr"] / 3e-3)) ** 2
        acc = round(min(0.995, max(0.05, acc)), 4)
        metrics = {"val_accuracy": acc, "params": float(params), "flops": float(count_flops(space, ranks)),
                   "compression_ratio": space.dense_params / params}
        tid = f"t{i:04d}"
        if failed_every and i % failed_every == failed_every - 1:
            out.append((tid, TrialResult(ranks, status="failed", error="RuntimeError: loss is NaN at epoch 2",
                                         hparams=hparams)))
        elif pruned_every and i % pruned_every == pruned_every - 1:
            # as a scheduler's stop reports it: partial accuracy, exact costs
            out.append((tid, TrialResult(ranks, status="pruned", metrics={**metrics, "val_accuracy": acc * 0.7},
                                         fidelity=2, hparams=hparams)))
        else:
            out.append((tid, TrialResult(ranks, metrics=metrics, fidelity=space.config.training.epochs,
                                         info={"generation": i // 10}, hparams=hparams)))
    return out


def _random_hparams(hyper: Any, rng: random.Random) -> dict[str, Any]:
    """Values drawn uniformly from each domain (log-uniformly from a log one), inactive ones dropped."""
    raw: dict[str, Any] = {}
    for p in hyper:
        if p.kind == "categorical":
            raw[p.name] = rng.choice(p.choices)
        elif p.log:
            raw[p.name] = math.exp(rng.uniform(math.log(p.low), math.log(p.high)))
        elif p.kind == "int":
            raw[p.name] = rng.randint(int(p.low), int(p.high))
        else:
            raw[p.name] = rng.uniform(p.low, p.high)
    return hyper.canonical(raw)


def write_search(tracking_uri: str, space: SearchSpace, trials: Sequence[tuple[str, TrialResult]], *,
                 run_name: str, finish: bool = True, epochs: bool = False, retry_for: float = 60.0,
                 artifact_interval: float = 5.0) -> Any:
    """Log a search through SearchTracker (the real layout); returns the tracker (finished or not)."""
    from ranksearch.tracking import SearchTracker

    tracker = SearchTracker(space, tracking_uri=tracking_uri, run_name=run_name, flush_interval=0.2,
                            artifact_interval=artifact_interval, retry_for=retry_for)
    tracker.start()
    for tid, result in trials:
        log_trial(tracker, tid, result, epochs=epochs)
    if finish:
        tracker.finish()
    return tracker


def log_trial(tracker: Any, tid: str, result: TrialResult, *, epochs: bool = False) -> None:
    tracker.trial_started(tid, result.ranks, dict(result.info), hparams=dict(result.hparams) or None)
    if epochs and result.status != "failed":
        acc = result.metrics.get("val_accuracy", 0.5)
        for epoch in (1, 2):
            tracker.trial_epoch(tid, epoch, {"train_loss": 1.5 / epoch, "val_accuracy": acc * (0.8 + 0.1 * epoch)})
    tracker.trial_finished(tid, result)


def make_big_store(folder: Path, n_trials: int, *, seed: int = 0) -> tuple[str, str]:
    """A SQLite store in `folder` holding one finished search of `n_trials`: (uri, run id)."""
    folder.mkdir(parents=True, exist_ok=True)
    db = migrated_db(folder / "mlflow.db")
    uri = f"sqlite:///{db}"
    space = quickstart_space(strategy="random", budget=n_trials)
    tracker = write_search(uri, space, synthetic_results(space, n_trials, seed=seed, failed_every=50),
                           run_name=f"bench-{n_trials}-trials", artifact_interval=3600.0)
    return uri, tracker.parent_run_id


# -- the benchmark --------------------------------------------------------------------------------
def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    drawn = [r["drawn_ms"] for r in rows]
    return {"runs": len(rows), "median_ms": statistics.median(drawn), "max_ms": max(drawn), "min_ms": min(drawn),
            "api_median_ms": statistics.median(r["api_ms"] for r in rows if r["api_ms"] is not None),
            "points": rows[-1]["points"], "samples_ms": [round(d, 1) for d in drawn]}


def run_benchmark(tracking_uri: str, run_id: str, *, repeats: int = 5, screenshot: Path | None = None,
                  workdir: Path) -> dict[str, Any]:
    """Open the search view in Chromium: once cold, then `repeats` times per warm case."""
    with DashboardThread(tracking_uri, prefetch=False) as dash:
        url = f"{dash.url}#/search/{run_id}"
        driver = headless_chromium(profile_dir=workdir / "chromium-profile")
        try:
            cold = open_and_time(driver, url, clear_cache=True)
            warm_server = [open_and_time(driver, url, clear_cache=True) for _ in range(repeats)]
            warm = [open_and_time(driver, url) for _ in range(repeats)]
            if screenshot is not None:
                wait_for_mark(driver, "search-complete")
                save_full_page(driver, screenshot)
        finally:
            driver.quit()
        payload = dash.reader.search(run_id)
    return {
        "trials": payload["search"]["n_trials"], "front_size": payload["search"]["front_size_local"],
        "cold": {**_summary([cold]), "what": "dashboard cache empty, browser cache empty"},
        "warm_server": {**_summary(warm_server), "what": "dashboard cache warm, browser cache emptied"},
        "warm": {**_summary(warm), "what": "dashboard and browser caches warm"},
        "reader": dict(dash.reader.stats), "goal_ms": GOAL_MS,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ranksearch.bench.dashboard",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=1000, help="trials of the synthetic search (default 1000)")
    parser.add_argument("--repeats", type=int, default=5, help="opens per warm case (default 5)")
    parser.add_argument("--local", action="store_true", help="read the SQLite store directly, no MLflow server")
    parser.add_argument("--tracking-uri", help="benchmark an existing store instead (with --search)")
    parser.add_argument("--search", help="parent run id of the search to open (with --tracking-uri)")
    parser.add_argument("--screenshot", type=Path, help="save the search view here (PNG)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--write-store", type=Path, metavar="DIR",
                        help="only write the synthetic search into a SQLite store in DIR and print its "
                             "URI and run id as JSON (a demo store; the tests use it)")
    args = parser.parse_args(argv)
    if bool(args.tracking_uri) != bool(args.search):
        parser.error("--tracking-uri and --search go together")
    if args.write_store is not None:
        uri, run_id = make_big_store(args.write_store, args.trials)
        print(json.dumps({"tracking_uri": uri, "run_id": run_id, "trials": args.trials}), flush=True)
        return 0

    workdir = fast_tmpdir("ranksearch-bench-dash-")
    server: ServerProcess | None = None
    say = (lambda *a: None) if args.json else (lambda *a: print(*a, file=sys.stderr, flush=True))
    try:
        setup: dict[str, Any] = {}
        if args.tracking_uri:
            uri, run_id = args.tracking_uri, args.search
        else:
            say(f"writing a finished search of {args.trials} trials through SearchTracker ...")
            t0 = time.perf_counter()
            local_uri, run_id = make_big_store(workdir / "store", args.trials)
            setup["write_s"] = round(time.perf_counter() - t0, 1)
            uri = local_uri
            if not args.local:
                server, uri = mlflow_server(workdir / "store" / "mlflow.db",
                                            (workdir / "store" / "served-artifacts").as_uri(), workdir=workdir)
                t0 = time.perf_counter()
                server.start()
                setup["server_start_s"] = round(time.perf_counter() - t0, 1)
        say(f"benchmarking {uri} search {run_id} in headless Chromium ...")
        result = run_benchmark(uri, run_id, repeats=args.repeats, screenshot=args.screenshot, workdir=workdir)
        result.update(setup, store="sqlite (direct)" if uri.startswith("sqlite") else "MLflow tracking server")
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"dashboard: search of {result['trials']} trials ({result['front_size']} on the front), "
              f"store: {result['store']}")
        print(f"{'case':<13}{'median ms':>10}{'max ms':>9}{'api ms':>8}  points  goal < {GOAL_MS:.0f} ms")
        for case in ("cold", "warm_server", "warm"):
            r = result[case]
            ok = "ok" if r["median_ms"] < GOAL_MS else "SLOW"
            print(f"{case:<13}{r['median_ms']:>10.0f}{r['max_ms']:>9.0f}{r['api_median_ms']:>8.0f}  {r['points']:>6}  "
                  f"{ok}  ({r['what']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
