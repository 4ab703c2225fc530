"""The dashboard's JSON endpoints and export against a real MLflow server (no browser)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from ranksearch.bench import dashboard as helpers
from ranksearch.bench import servers

pytestmark = pytest.mark.mlflow

ROOT = Path(__file__).resolve().parents[2]


def get(url: str) -> tuple[int, dict, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=60) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def get_json(url: str) -> dict:
    status, _, body = get(url)
    assert status == 200, body[:500]
    return json.loads(body)


def parent_front_size(stack_url: str, run_id: str) -> int:
    from mlflow import MlflowClient

    return int(MlflowClient(tracking_uri=stack_url).get_run(run_id).data.metrics["front_size"])


def test_list_of_searches(dashboard, searches, stack):
    from mlflow import MlflowClient

    rows = {r["run_id"]: r for r in get_json(dashboard.url + "api/searches")["searches"]}
    client = MlflowClient(tracking_uri=stack.url)
    for s in searches.values():
        row = rows[s.run_id]
        parent = client.get_run(s.run_id)
        assert row["name"] == s.name
        assert row["strategy"] == s.strategy
        assert row["status"] == "finished" and row["live"] is False
        assert row["n_finished"] == len(s.results) and row["budget"] == len(s.results)
        assert row["front_size"] == parent.data.metrics["front_size"]
        assert row["hypervolume"] == pytest.approx(parent.data.metrics["hypervolume"])
        assert row["experiment"] == "quickstart_digits"


def test_search_payload_matches_mlflow(dashboard, searches, stack):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=stack.url)
    s = searches["random"]
    data = get_json(dashboard.url + f"api/searches/{s.run_id}")
    trials = data["trials"]
    assert len(trials["trial_id"]) == len(s.results)
    # The highlighted set is the front MLflow holds: its size, and the pareto_optimal tags.
    front_ids = {t for t, on in zip(trials["trial_id"], trials["front"], strict=True) if on}
    assert len(front_ids) == parent_front_size(stack.url, s.run_id)
    tagged = {t for t, tag in zip(trials["trial_id"], trials["pareto_tag"], strict=True) if tag == "true"}
    assert front_ids == tagged
    front_doc = json.loads(Path(client.download_artifacts(s.run_id, "pareto/front.json", str(stack.work))).read_text())
    assert front_ids == {p["trial_id"] for p in front_doc["front"]}
    assert data["search"]["front_source"] == "tags"
    # Ranks and metrics per trial are the ones the tracker logged.
    for tid, ranks, status in zip(trials["trial_id"], trials["ranks"], trials["status"], strict=True):
        result = s.results[tid]
        assert ranks == list(result.ranks)
        assert status == result.status
    i = trials["trial_id"].index(next(iter(front_ids)))
    assert trials["metrics"]["val_accuracy"][i] == pytest.approx(s.results[trials["trial_id"][i]].metrics["val_accuracy"])
    assert data["search"]["elements"] == [f"fc{k}.r{j}" for k in (1, 2) for j in range(6)]
    assert data["search"]["objectives"] == [["val_accuracy", "max"], ["compression_ratio", "max"]]
    # Hypervolume against finished trials: one point per finished trial, ending at the final value.
    hist = data["history"]
    assert hist["step"] == list(range(1, len(s.results) + 1))
    assert hist["hypervolume"][-1] == pytest.approx(data["search"]["hypervolume"])
    assert data["search"]["n_failed"] == sum(r.status == "failed" for r in s.results.values())


def test_finished_search_is_read_once(stack, searches):
    with helpers.DashboardThread(stack.url, prefetch=False, refresh_interval=0.0) as dash:
        url = dash.url + f"api/searches/{searches['nsga2'].run_id}"
        first = get_json(url)
        for _ in range(3):
            assert get_json(url) == first
        assert dash.reader.stats["full_reads"] == 1
        assert dash.reader.stats["cache_hits"] == 3
        # A page that already has this version gets a short answer.
        assert get_json(url + f"?since={first['version']}") == {"unchanged": True, "version": first["version"]}


def test_export_equals_ranksearch_best(dashboard, searches, stack):
    from ranksearch import service

    s = searches["random"]
    best = service.best(s.name, "max val_accuracy", tracking_uri=stack.url)
    tid = best.provenance["trial_id"]
    status, headers, body = get(dashboard.url + f"api/searches/{s.run_id}/trials/{tid}/rank-config")
    assert status == 200
    assert headers["Content-Disposition"] == f'attachment; filename="{s.name}-{tid}.rank_config.yaml"'
    text = body.decode()
    # Byte for byte what `ranksearch best -o` writes for this trial, but for the two values that
    # say how and when it was picked: the rule (here the trial chosen by hand) and the time stamp.
    provenance = yaml.safe_load(text)["provenance"]
    assert provenance["pick"] == f"trial {tid}"
    best.provenance.update(pick=provenance["pick"], created=provenance["created"])
    assert text == best.to_yaml()
    # And it loads as a rank config for production training.
    path = stack.work / "exported.yaml"
    path.write_bytes(body)
    loaded = service.load_rank_config(path)
    assert loaded.ranks == s.results[tid].ranks
    assert loaded.provenance["trial_run_id"] == best.provenance["trial_run_id"]


def test_errors_are_json(dashboard, searches):
    status, _, body = get(dashboard.url + "api/searches/" + "0" * 32)
    assert status == 404 and "no run" in json.loads(body)["error"]
    status, _, body = get(dashboard.url + "api/searches/not-a-run-id")
    assert status == 404 and "not an MLflow run id" in json.loads(body)["error"]
    s = searches["random"]
    failed = next(t for t, r in s.results.items() if r.status == "failed")
    status, _, body = get(dashboard.url + f"api/searches/{s.run_id}/trials/{failed}/rank-config")
    assert status == 409 and "did not finish ok" in json.loads(body)["error"]
    status, _, body = get(dashboard.url + f"api/searches/{s.run_id}/trials/nope/rank-config")
    assert status == 404 and "no trial 'nope'" in json.loads(body)["error"]


def test_running_search_is_read_incrementally(stack):
    space = helpers.quickstart_space(strategy="random", budget=20, name="live_api")
    results = helpers.synthetic_results(space, 20, seed=5)
    tracker = helpers.write_search(stack.url, space, results[:8], run_name="live-api", finish=False)
    try:
        tracker.flush(timeout=60)
        with helpers.DashboardThread(stack.url, prefetch=False, refresh_interval=0.0) as dash:
            url = dash.url + f"api/searches/{tracker.parent_run_id}"
            first = get_json(url)
            assert first["search"]["live"] is True and first["search"]["status"] == "running"
            assert first["search"]["n_finished"] == 8
            for tid, result in results[8:]:
                helpers.log_trial(tracker, tid, result)
            assert tracker.flush(timeout=60)
            second = get_json(url + f"?since={first['version']}")
            assert second["search"]["n_finished"] == 20
            assert len(second["trials"]["trial_id"]) == 20
            # Trials pushed off the front since the first read keep their end time; their tags
            # changed, and the incremental read follows them.
            shown = {t for t, on in zip(second["trials"]["trial_id"], second["trials"]["front"], strict=True) if on}
            assert shown == {r["trial_id"] for r in tracker.front()}
            assert dash.reader.stats["full_reads"] == 1 and dash.reader.stats["incremental_reads"] >= 1
            tracker.finish()
            third = get_json(url)
            assert third["search"]["live"] is False and third["search"]["status"] == "finished"
    finally:
        tracker.finish()


def test_local_store(tmp_path):
    """The dashboard reads a local store (a folder holding mlflow.db) as well as a server."""
    space = helpers.quickstart_space(strategy="random", budget=6, name="local_dash")
    store = tmp_path / "mlruns"
    tracker = helpers.write_search(str(store), space, helpers.synthetic_results(space, 6), run_name="local")
    with helpers.DashboardThread(str(store), prefetch=False) as dash:
        rows = get_json(dash.url + "api/searches")["searches"]
        assert [r["name"] for r in rows] == ["local"]
        data = get_json(dash.url + f"api/searches/{tracker.parent_run_id}")
        assert len(data["trials"]["trial_id"]) == 6
        assert data["mlflow_ui"] is None  # no server to link to: the page says how to start one
        cfg = get_json(dash.url + "api/config")
        assert "mlflow ui --backend-store-uri sqlite:///" in cfg["mlflow_hint"]


def test_assets_and_plotly_are_served(dashboard):
    status, headers, body = get(dashboard.url)
    assert status == 200 and b"assets/app.js" in body
    status, headers, body = get(dashboard.url + "vendor/plotly.min.js")
    assert status == 200 and len(body) > 1_000_000 and "max-age" in headers["Cache-Control"]
    status, _, _ = get(dashboard.url + "assets/../pyproject.toml")
    assert status == 404


def test_import_has_no_side_effects():
    code = ("import sys, ranksearch.dashboard, ranksearch.bench.dashboard; "
            "print(sorted(m for m in ('mlflow', 'flask', 'plotly', 'selenium', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


def test_serve_binds_loopback_by_default(stack, searches, tmp_path):
    """`serve` with no host listens on 127.0.0.1 only (the dashboard has no authentication)."""
    import inspect

    from ranksearch.dashboard import dashboard_command, serve

    assert inspect.signature(serve).parameters["host"].default == "127.0.0.1"
    assert inspect.signature(dashboard_command).parameters["host"].default == "127.0.0.1"
    port = servers.free_port()
    code = f"from ranksearch.dashboard import serve; serve({stack.url!r}, port={port})"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        servers.wait_http(f"http://127.0.0.1:{port}/healthz", proc, timeout=60)
        listening = set()
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            if Path(table).exists():
                for line in Path(table).read_text().splitlines()[1:]:
                    local, state = line.split()[1], line.split()[3]
                    if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                        listening.add(local.rsplit(":", 1)[0])
        assert listening == {"0100007F"}  # 127.0.0.1, and nothing else
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_dashboard_command_options():
    import typer
    from typer.testing import CliRunner

    from ranksearch.dashboard import dashboard_command

    app = typer.Typer()
    app.command("dashboard")(dashboard_command)
    app.command("other")(lambda: None)  # a group, as in the real CLI
    result = CliRunner().invoke(app, ["dashboard", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for option in ("--tracking-uri", "--host", "--port", "--mlflow-ui", "127.0.0.1", "8050"):
        assert option in result.output


def test_prefetch_warms_the_cache(stack, searches):
    with helpers.DashboardThread(stack.url) as dash:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not all(dash.reader.cached(s.run_id) for s in searches.values()):
            time.sleep(0.1)
        assert all(dash.reader.cached(s.run_id) for s in searches.values())


def test_missing_local_store_is_an_error(tmp_path):
    from ranksearch.dashboard import DashboardError, create_app

    with pytest.raises(DashboardError, match="no MLflow store at .*give --tracking-uri"):
        create_app(str(tmp_path / "nowhere"), prefetch=False)
    assert not (tmp_path / "nowhere").exists()  # and nothing was created


def test_search_without_front_tags_gets_its_front_rebuilt(tmp_path):
    """A search logged before the tracker tagged pareto_optimal: the dashboard builds its front
    from the stored trials (`archive.front_of`): the set the tags would have given."""
    from mlflow import MlflowClient

    from ranksearch.tracking import resolve_tracking_uri

    space = helpers.quickstart_space(strategy="random", budget=10, name="untagged")
    store = tmp_path / "mlruns"
    results = helpers.synthetic_results(space, 10, seed=2)
    tracker = helpers.write_search(str(store), space, results, run_name="untagged")
    tagged = {r["trial_id"] for r in tracker.front()}
    client = MlflowClient(resolve_tracking_uri(str(store)))
    for tid, _ in results:
        client.delete_tag(tracker.run_id(tid), "pareto_optimal")
    with helpers.DashboardThread(str(store), prefetch=False) as dash:
        data = get_json(dash.url + f"api/searches/{tracker.parent_run_id}")
    trials = data["trials"]
    assert data["search"]["front_source"] == "rebuilt"
    assert trials["pareto_tag"] == [None] * len(results)
    assert tagged and {t for t, on in zip(trials["trial_id"], trials["front"], strict=True) if on} == tagged


def test_search_with_hyperparameters(tmp_path):
    """Hyperparameter values come as columns (None where inactive), their domains with the search,
    and importances per objective from the finished trials; too few trials give none."""

    space = helpers.quickstart_space(strategy="random", budget=30, name="hp_dash", path=helpers.RANKS_AND_RECIPE)
    results = helpers.synthetic_results(space, 30, seed=3, failed_every=11)
    store = tmp_path / "mlruns"
    tracker = helpers.write_search(str(store), space, results, run_name="hp")
    few = helpers.write_search(str(store), space, results[:5], run_name="hp-few")
    with helpers.DashboardThread(str(store), prefetch=False) as dash:
        data = get_json(dash.url + f"api/searches/{tracker.parent_run_id}")
        domains = data["search"]["hparams"]
        assert set(domains) == set(space.hyper.names)
        assert domains["training.optimizer.lr"]["log"] is True
        assert domains["training.batch_size"]["choices"] == [32, 64, 128]
        columns = data["trials"]["hparams"]
        by_tid = dict(results)
        for i, tid in enumerate(data["trials"]["trial_id"]):
            want = by_tid[tid].hparams
            for name in space.hyper.names:
                assert columns[name][i] == pytest.approx(want.get(name)) if name in want else columns[name][i] is None
        momentum = columns["training.optimizer.momentum"]
        assert None in momentum and any(v is not None for v in momentum)  # conditional: only with sgd

        answer = get_json(dash.url + f"api/searches/{tracker.parent_run_id}/importance")
        assert answer["evaluator"] == "fanova" and answer["min_trials"] == 8  # "auto": few trials
        assert answer["n_finished"] == sum(r.ok for _, r in results)
        acc = answer["importances"]["val_accuracy"]
        assert set(acc) <= set(space.hyper.names) | set(data["search"]["elements"])
        assert next(iter(acc)) == "training.optimizer.lr"  # the synthetic accuracy follows lr
        assert sum(acc.values()) == pytest.approx(1.0)
        assert "compression_ratio" in answer["importances"]
        assert get_json(dash.url + f"api/searches/{tracker.parent_run_id}/importance")["version"] == answer["version"]

        assert get_json(dash.url + f"api/searches/{few.parent_run_id}/importance")["importances"] == {}
        status, _, body = get(dash.url + f"api/searches/{tracker.parent_run_id}/importance?evaluator=shap")
        assert status == 400 and b"fanova" in body
