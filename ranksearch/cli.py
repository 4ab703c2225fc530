"""The `ranksearch` command line.

Heavy imports (torch, Ray, MLflow) happen inside commands, after the input has been validated,
so bad input fails fast with exit code 2 and nothing started.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from ranksearch.errors import RanksearchError, SettingError
from ranksearch.interrupts import sigterm_as_interrupt

app = typer.Typer(
    name="ranksearch", no_args_is_help=True, add_completion=False,
    help="Search the per-layer ranks of tensorized neural networks.",
)
bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks that print measured ratios side by side.")
app.add_typer(bench_app, name="bench")

# Piped output (CI, files) gets wide tables instead of rich's 80-column default.
out = Console(width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 200)

SpaceArg = Annotated[Path, typer.Argument(
    help="Search-space YAML file, or the name of a shipped space (quickstart_digits, ...).")]
ConfigArg = Annotated[str, typer.Argument(
    help="Search-space YAML file, or a rank config: a file from `ranksearch best`, s3://BUCKET/KEY, "
         "runs:/RUN_ID/model or models:/NAME@champion.")]
TrackingOpt = Annotated[str | None, typer.Option(
    "--tracking-uri", help="MLflow store: http(s)://server, sqlite:///file.db or a folder "
    "(default: $MLFLOW_TRACKING_URI, else ./mlruns).")]
StorageOpt = Annotated[str | None, typer.Option(
    "--storage", help="Where searches keep their experiment folders: a folder or "
    "s3://BUCKET/PREFIX[?endpoint=URL] (default: ./runs/ray).")]
RanksOpt = Annotated[
    str | None,
    typer.Option("--ranks", "-r", help="Comma-separated ranks (one per rank element), one int for "
                 "equal ranks, a fraction of dense params like 0.1, or 'same'."),
]


def _load(path: Path | str, *, check_data: bool = True, fix_ranks: str | None = None):
    """The space, through the same checks `run` makes (`ranksearch.checks.check_space`)."""
    from ranksearch.checks import check_space

    return check_space(path, check_data=check_data, fix_ranks=fix_ranks)


def _ranks(space, text: str | None):
    return None if text is None else space.resolve_ranks(text)


@app.command()
def validate(
    space_file: SpaceArg,
    data_check: Annotated[bool, typer.Option(
        "--data-check/--no-data-check", help="Check that the data folder exists here (skip it for a space "
        "whose data lives on a cluster's nodes).")] = True,
    fix_ranks: Annotated[str | None, typer.Option(
        "--fix-ranks", help="Check it as `run --fix-ranks` would: ranks (8,14,..., one int, a fraction, "
        "'same') or a rank-config file.")] = None,
) -> None:
    """Check a search-space file (everything `run` would check) and print a summary."""
    space = _load(space_file, check_data=data_check, fix_ranks=fix_ranks)
    summary = space.summary()
    table = Table(title=f"{space.source}: valid", show_header=False)
    for key, value in summary.items():
        table.add_row(key, ", ".join(map(str, value)) if isinstance(value, list) else str(value))
    if space.fixed_ranks is not None:
        table.add_row("fixed ranks", ",".join(map(str, space.fixed_ranks)) + " (hyperparameters searched alone)")
    table.add_row("search size", f"{space.search_size:.3e} rank configurations")
    out.print(table)


@app.command()
def strategies(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON list.")] = False,
) -> None:
    """The registered strategies (built-in and installed plugins) and their typed options."""
    from ranksearch import strategies as registry

    entries = registry.catalog()
    if as_json:
        print(json.dumps(entries, default=str))
        return
    for entry in entries:
        out.print(f"[bold]{entry['name']}[/bold]  {entry['summary']}")
        if entry.get("error"):
            out.print(f"  cannot be loaded: {entry['error']}", highlight=False)
            continue
        table = Table(show_header=True, box=None, padding=(0, 2))
        for col in ("option", "type", "default", "what it does"):
            table.add_column(col, overflow="fold")
        for o in entry["options"]:
            table.add_row(o["name"], str(o.get("type", "")), repr(o.get("default")), str(o.get("help", "")))
        if entry["options"]:
            out.print(table)
        out.print()


@app.command()
def inspect(
    space_file: SpaceArg,
    ranks: RanksOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Per-layer table (shapes, ranks, params, compression, FLOPs) and totals."""
    space = _load(space_file, check_data=False)  # counts only: the data is not read
    vec = _ranks(space, ranks)
    if vec is None:
        vec = space.upper
        if not as_json:
            out.print(f"[dim]no --ranks given: showing the largest ranks allowed; "
                      f"rank elements: {', '.join(e.name for e in space.elements)}[/dim]")
    from ranksearch.space import layer_report

    report = layer_report(space, vec)
    if as_json:
        print(json.dumps(report))
        return
    table = Table(title=f"{space.name}: {space.config.model.name} on {space.config.data.dataset}")
    for col in ("layer", "format", "shapes", "ranks", "params", "dense", "compression", "FLOPs"):
        table.add_column(col, justify="right" if col in {"params", "dense", "compression", "FLOPs"} else "left")
    for lay in report["layers"]:
        kernel = f" k{lay['kernel_size'][0]}x{lay['kernel_size'][1]}" if lay["kernel_size"] else ""
        table.add_row(
            lay["layer"], lay["format"], f"{lay['in_shape']}->{lay['out_shape']}{kernel}",
            ",".join(map(str, lay["ranks"])), f"{lay['params']:,}", f"{lay['dense_params']:,}",
            f"{lay['compression_ratio']:.1f}x", f"{lay['flops']:,}",
        )
    table.add_section()
    table.add_row("other layers", "", "", "", f"{report['fixed_params']:,}", f"{report['fixed_params']:,}", "", "")
    table.add_row("total", "", "", "", f"{report['total_params']:,}", f"{report['dense_params']:,}",
                  f"{report['compression_ratio']:.2f}x", f"{report['flops']:,}")
    out.print(table)
    out.print(f"compression = dense / tensorized, {report['compression_convention']}")


@app.command()
def train(
    space_file: ConfigArg,
    ranks: RanksOpt = None,
    epochs: Annotated[int | None, typer.Option(help="Override the space's epoch budget.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed (default: the space's).")] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Output folder (checkpoint, metrics.json).")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu or cuda (default: the space's).")] = None,
    tracking_uri: TrackingOpt = None,
    dense: Annotated[Path | None, typer.Option(
        help="Trained dense weights (a search's dense/dense.pt): cores are decomposed from them "
             "(the dense warm start); required when the recipe says init: dense or distill > 0.")] = None,
) -> None:
    """Train one rank configuration: progress bar, checkpoint, metrics JSON (test accuracy too).

    Given a rank-config file (from `ranksearch best`), s3://..., runs:/... or models:/NAME@champion,
    it is production training: the full budget (final_training, else training), logged to MLflow
    and linked to the search and trial it came from.
    """
    from ranksearch import production
    from ranksearch.rankconfig import is_rank_config_ref

    if is_rank_config_ref(space_file):
        if ranks is not None:
            raise SettingError("ranks", "does not apply to a rank config (it holds its ranks)", value=ranks,
                               hint="drop it")
        result = production.train_rank_config(space_file, epochs=epochs, seed=seed, out_dir=out_dir,
                                               device=device, tracking_uri=tracking_uri, dense=dense,
                                               console=err)
        _report_production(result)
    else:
        result = production.train_space(space_file, ranks, epochs=epochs, seed=seed, out_dir=out_dir,
                                        device=device, dense=dense, console=err)
    if result.outcome.status != "ok":
        raise typer.Exit(1)


def _report_production(result) -> None:
    """After production training: how it compares with the search's trial, and its MLflow run."""
    config = result.config
    prov = config.provenance
    searched = config.metrics.get("val_accuracy")
    if searched is not None:
        out.print(f"the search measured val_accuracy {searched:.4f} for trial {prov.get('trial_id') or 'config'}; "
                  f"this run {result.outcome.val_accuracy:.4f}", highlight=False)
    out.print(f"MLflow run {result.run_id} (tagged with search run {prov.get('search_run_id', '-')}, "
              f"trial run {prov.get('trial_run_id', '-')})", highlight=False)


# -- searches: run, resume, front, best (and production training from a rank config) ------------
def _print_front(rows: list[dict[str, Any]], *, title: str) -> None:
    from ranksearch.service import front_rows
    from ranksearch.tune.display import format_hparams

    table = Table(title=title)
    every = bool(rows) and "state" in rows[0]  # `front --all`: every trial, marked
    extra = ("state", "front") if every else ()
    flat = front_rows(rows)
    hyper = ("hyperparameters",) if any(r["hparams"] for r in flat) else ()
    for col in ("trial", *extra, "ranks", *hyper, "val_acc", "params", "compression", "FLOPs", "trial run id"):
        table.add_column(col, justify="right" if col in {"val_acc", "params", "compression", "FLOPs"} else "left",
                         overflow="fold")  # ranks and run ids wrap on narrow terminals, never get cut
    for r in flat:
        def num(v: Any, fmt: str) -> str:
            return format(v, fmt) if isinstance(v, (int, float)) else "-"

        marks = (r["state"], "*" if r["on_front"] else "") if every else ()
        values = (format_hparams(r["hparams"]),) if hyper else ()
        table.add_row(str(r["trial_id"]), *marks, ",".join(map(str, r["ranks"])), *values, num(r["val_accuracy"], ".4f"),
                      num(r["params"], ",.0f"), num(r["compression_ratio"], ".1f") + "x",
                      num(r["flops"], ",.0f"), str(r["run_id"] or "-"))
    out.print(table)


def _report_search(outcome: Any) -> None:
    from ranksearch.service import browse_hint

    rows = sorted(outcome.front, key=lambda r: -float((r.get("metrics") or {}).get("val_accuracy") or 0.0))
    _print_front(rows, title=f"Pareto front of {outcome.name}: {len(outcome.front)} of "
                                      f"{outcome.n_trials} trials (hypervolume {outcome.hypervolume:.4f})")
    out.print(f"search {outcome.name}: {outcome.status}, {outcome.n_ok} ok, {outcome.n_failed} failed, "
              f"{outcome.seconds['total']:.0f} s; experiment folder {outcome.location}", highlight=False)
    if outcome.cost.get("samples_consumed") is not None:
        out.print(_cost_line(outcome.cost), highlight=False)
    out.print(f"MLflow: experiment '{outcome.experiment}', run {outcome.parent_run_id}; browse with "
              f"`{browse_hint(outcome.tracking_uri)}`", highlight=False)
    if outcome.status == "interrupted":
        out.print(f"continue it with `ranksearch resume {outcome.location}`", highlight=False)


def _search_exit(outcome: Any) -> None:
    if outcome.status == "interrupted":
        raise typer.Exit(130)
    if outcome.status != "finished":
        raise typer.Exit(1)


@app.command()
def run(
    space_file: SpaceArg,
    strategy: Annotated[str | None, typer.Option(help="Strategy name (default: the space's).")] = None,
    budget: Annotated[str | None, typer.Option(
        help="Trials (40), full-epoch equivalents (600ep) or training samples (2e6samples); "
             "default: the space's.")] = None,
    workers: Annotated[int | None, typer.Option(help="Trials at once (default: resources.max_concurrent).")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of the strategy, data split and training (default: the space's).")] = None,
    name: Annotated[str | None, typer.Option(help="Search name (default: SPACE-STRATEGY-TIME).")] = None,
    tracking_uri: TrackingOpt = None,
    address: Annotated[str | None, typer.Option(help="Ray cluster: auto, HOST:PORT or ray://HOST:PORT (default: start Ray in this process).")] = None,
    storage: StorageOpt = None,
    retries: Annotated[int, typer.Option(help="Retries of a failed trial (from its last checkpoint).")] = 1,
    fix_ranks: Annotated[str | None, typer.Option(
        "--fix-ranks", help="Search only the hyperparameters at these ranks: as --ranks (8,14,..., one int, "
        "a fraction, 'same') or a rank-config file from `ranksearch best` (its values train first).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No live progress display.")] = False,
) -> None:
    """Run a search: trials on Ray Tune, every trial and the front in MLflow, the front printed at the end."""
    from ranksearch import service

    prepared = service.prepare_search(space_file, strategy=strategy, budget=budget, workers=workers, seed=seed,
                                      name=name, tracking_uri=tracking_uri, address=address, storage=storage,
                                      retries=retries, fix_ranks=fix_ranks)
    s = prepared.settings
    budget_text = f"budget {s.cost_budget} (planned for about {s.budget} trials)" if s.cost_budget else f"budget {s.budget}"
    fixed = prepared.space.fixed_ranks
    if fixed is not None:
        err.print(f"ranks fixed at {','.join(map(str, fixed))}: searching the hyperparameters only", highlight=False)
    err.print(f"search {s.name}: {s.strategy}, {budget_text}, {s.workers} at once; experiment folder "
              f"{prepared.storage.display(s.name)}; MLflow {s.tracking_uri}", highlight=False)
    with sigterm_as_interrupt():
        outcome = service.run_prepared(prepared, show_progress=not quiet, console=err)
    _report_search(outcome)
    _search_exit(outcome)


@app.command()
def resume(
    search: Annotated[str, typer.Argument(help="The search's name (under --storage), folder or s3:// URI.")],
    storage: StorageOpt = None,
    address: Annotated[str | None, typer.Option(help="Ray cluster (default: the one the search used, or in-process).")] = None,
    workers: Annotated[int | None, typer.Option(help="Trials at once (default: as before).")] = None,
    tracking_uri: TrackingOpt = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No live progress display.")] = False,
) -> None:
    """Continue an interrupted search: strategy restored, finished trials never re-run."""
    from ranksearch import service

    with sigterm_as_interrupt():
        outcome = service.resume(search, storage=storage, address=address, workers=workers,
                                 tracking_uri=tracking_uri, show_progress=not quiet, console=err)
    _report_search(outcome)
    _search_exit(outcome)


@app.command()
def front(
    search: Annotated[str, typer.Argument(help="Search name, folder, s3:// URI or MLflow run id.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    every: Annotated[bool, typer.Option("--all", help="Every trial, failed and stopped ones included "
                                        "(marked), with the front's members starred.")] = False,
    tracking_uri: TrackingOpt = None,
    storage: StorageOpt = None,
) -> None:
    """The Pareto front of a search: ranks, accuracy, params, compression, FLOPs, trial run id."""
    from ranksearch import service
    from ranksearch.tracking import load_search_cost

    ref = service.locate_search(search, tracking_uri=tracking_uri, storage=storage)
    if every:
        rows = service.all_trials(ref.parent_run_id, tracking_uri=ref.tracking_uri)
    else:
        rows = service.front(ref.parent_run_id, tracking_uri=ref.tracking_uri)
    cost = load_search_cost(ref.parent_run_id, ref.tracking_uri)
    if as_json:
        print(json.dumps({"search": ref.name, "search_run_id": ref.parent_run_id,
                          "trials" if every else "front": service.front_rows(rows), **cost}))
        return
    what = "Trials" if every else "Pareto front"
    _print_front(rows, title=f"{what} of {ref.name} ({len(rows)} trials)")
    out.print(_cost_line(cost), highlight=False)


def _cost_line(cost: dict[str, Any]) -> str:
    """Search cost under the front: samples and full-training-set epoch equivalents."""
    if cost.get("samples_consumed") is None:
        return "search cost: not recorded (a search from before cost accounting)"
    line = f"search cost: {int(cost['samples_consumed']):,} training samples over {cost['finished_trials']} trials"
    if cost.get("epoch_equivalents") is not None:
        line += (f" = {cost['epoch_equivalents']:.2f} epoch equivalents "
                 f"(samples / {cost['n_train_full']:,}, the full training set before the validation carve)")
    if cost.get("budget") and cost.get("limit_samples"):
        line += (f"; budget {cost['budget']}: {cost['spent_samples'] / cost['limit_samples']:.0%} of "
                 f"{cost['limit_samples']:,.0f} samples spent")
    return line


@app.command()
def best(
    search: Annotated[str, typer.Argument(help="Search name, folder, s3:// URI or MLflow run id.")],
    pick: Annotated[str, typer.Option("--pick", help="'max val_accuracy where compression_ratio >= 8', "
                                      "'min params where val_accuracy >= 0.9' or 'knee'.")] = "knee",
    output: Annotated[str | None, typer.Option("--output", "-o", help="Write the rank config here "
                                               "(a path or s3://BUCKET/KEY); default: print it.")] = None,
    register: Annotated[str | None, typer.Option("--register", help="Register the trial's weights as a "
                                                 "new version of this MLflow model, alias 'champion'.")] = None,
    tracking_uri: TrackingOpt = None,
    storage: StorageOpt = None,
) -> None:
    """Pick one trial of a search and write it as a rank-config file (and optionally register it)."""
    from ranksearch import service

    if output is not None and not output.strip():
        raise SettingError("output", "is empty", value=output, hint="give a path or s3://BUCKET/KEY")
    config = service.best(search, pick, tracking_uri=tracking_uri, storage=storage)
    prov = config.provenance
    m = config.metrics
    err.print(f"picked {prov['trial_id']} ({pick}): val_accuracy {m.get('val_accuracy', float('nan')):.4f}, "
              f"compression {m.get('compression_ratio', float('nan')):.1f}x, params {m.get('params', 0):,.0f}; "
              f"trial run {prov['trial_run_id']}", highlight=False)
    if config.hparams:
        from ranksearch.tune.display import format_hparams

        err.print(f"its recipe: {format_hparams(config.hparams)}", highlight=False)
    if output is None:
        print(config.to_yaml(), end="")
    else:
        where = config.save(output)
        err.print(f"wrote {where}", highlight=False)
    if register:
        version = service.register(config, register, tracking_uri=tracking_uri)
        err.print(f"registered model '{register}' version {version}, alias 'champion' "
                  f"(load it with models:/{register}@champion)", highlight=False)


# -- cluster jobs: submit, and jobs list/status/logs/stop/resume (ranksearch.tune.submit) ---------------
jobs_app = typer.Typer(no_args_is_help=True, help="Search jobs on a Ray cluster: list, status, logs, stop, resume.")
app.add_typer(jobs_app, name="jobs")

AddressOpt = Annotated[str | None, typer.Option(
    "--address", help="The cluster's Jobs API, http://HEAD:8265 (default: $RAY_ADDRESS). The token comes "
    "from $RAY_AUTH_TOKEN, $RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token.")]
JobStorageOpt = Annotated[str | None, typer.Option(
    "--storage", help="Experiment folder every node reaches: s3://BUCKET/PREFIX[?endpoint=URL], or a shared "
    "folder with --shared-storage (default: $RANKSEARCH_STORAGE).")]
SharedOpt = Annotated[bool, typer.Option(
    "--shared-storage", help="--storage is a folder that every node mounts (NFS, EFS, ...).")]
ShipOpt = Annotated[bool, typer.Option(
    "--ship-code/--no-ship-code", help="Send this machine's ranksearch package with the job (default), or use "
    "the one installed on the cluster.")]
PipOpt = Annotated[list[str] | None, typer.Option("--pip", help="Extra pip requirement for the job (repeatable).")]
EnvOpt = Annotated[list[str] | None, typer.Option(
    "--env", help="NAME=VALUE or NAME (from this shell) for the job (repeatable); credentials are refused: "
    "they belong on the cluster's nodes.")]
FollowOpt = Annotated[bool, typer.Option("--follow", "-f", help="Stream the job's logs until it ends.")]


def _jobs(address: str | None):
    from ranksearch.tune.submit import JobsClient

    return JobsClient(address)


def _follow_job(jobs, job_id: str) -> None:
    """Stream a job's logs, then exit with 0 when it succeeded, 1 otherwise."""
    for chunk in jobs.follow(job_id):
        sys.stdout.write(chunk)
        sys.stdout.flush()
    status = jobs.wait(job_id, timeout=30)
    err.print(f"job {job_id}: {status}", highlight=False)
    if status != "SUCCEEDED":
        raise typer.Exit(1)


def _submitted(job, *, follow: bool) -> None:
    from ranksearch.tune.submit import JobsClient

    print(job.job_id)  # stdout holds the id alone, for scripts
    a = job.address
    err.print(f"submitted search {job.name} to {a}; experiment folder {job.location}\n"
              f"  watch: ranksearch jobs logs {job.job_id} --follow --address {a}\n"
              f"  stop:  ranksearch jobs stop {job.job_id} --address {a}", highlight=False)
    if follow:
        _follow_job(JobsClient(a), job.job_id)


@app.command()
def submit(
    space_file: SpaceArg,
    address: AddressOpt = None,
    strategy: Annotated[str | None, typer.Option(help="Strategy name (default: the space's).")] = None,
    budget: Annotated[str | None, typer.Option(
        help="Trials (40), full-epoch equivalents (600ep) or training samples (2e6samples); "
             "default: the space's.")] = None,
    workers: Annotated[int | None, typer.Option(help="Trials at once (default: resources.max_concurrent).")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed (default: the space's).")] = None,
    name: Annotated[str | None, typer.Option(help="Search name (default: SPACE-STRATEGY-TIME).")] = None,
    tracking_uri: Annotated[str | None, typer.Option(
        "--tracking-uri", help="MLflow server the cluster reaches (default: $MLFLOW_TRACKING_URI).")] = None,
    storage: JobStorageOpt = None,
    retries: Annotated[int, typer.Option(help="Retries of a failed trial (from its last checkpoint).")] = 1,
    shared_storage: SharedOpt = False,
    working_dir: Annotated[Path | None, typer.Option(
        "--working-dir", help="Folder to upload as the job's working directory (must hold SPACE_FILE).")] = None,
    ship_code: ShipOpt = True,
    pip: PipOpt = None,
    env: EnvOpt = None,
    follow: FollowOpt = False,
    fix_ranks: Annotated[str | None, typer.Option(
        "--fix-ranks", help="Search only the hyperparameters at these ranks, as `run --fix-ranks` (a local "
                            "rank-config file is shipped with the job).")] = None,
) -> None:
    """Send a search to a Ray cluster as a job (Jobs API); prints the job id."""
    from ranksearch.tune.submit import parse_env, submit_search

    job = submit_search(space_file, address=address, storage=storage, tracking_uri=tracking_uri,
                        shared_storage=shared_storage, strategy=strategy, budget=budget, workers=workers,
                        seed=seed, name=name, retries=retries, working_dir=working_dir, ship_code=ship_code,
                        pip=pip or (), env_vars=parse_env(env or ()), fix_ranks=fix_ranks)
    _submitted(job, follow=follow)


@jobs_app.command("list")
def jobs_list(
    address: AddressOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON array.")] = False,
) -> None:
    """The cluster's jobs, newest first, with the search each one runs."""
    from ranksearch.tune.submit import job_row

    rows = sorted((job_row(i) for i in _jobs(address).list()), key=lambda r: r["start_time"] or "", reverse=True)
    if as_json:
        print(json.dumps(rows))
        return
    table = Table(title=f"jobs ({len(rows)})")
    for col in ("job id", "status", "search", "kind", "started", "ended"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(str(r["job_id"]), r["status"], r["search"] or "-", r["kind"] or "-",
                      r["start_time"] or "-", r["end_time"] or "-")
    out.print(table)


@jobs_app.command("status")
def jobs_status(
    job_id: Annotated[str, typer.Argument(help="Job id (from `submit` or `jobs list`).")],
    address: AddressOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """One job: status, message, the search it runs and where its results go."""
    from ranksearch.tune.submit import job_row, resume_hint

    jobs = _jobs(address)
    row = job_row(jobs.info(job_id))
    row["message"] = jobs.redact(row["message"])
    if as_json:
        print(json.dumps(row))
        return
    table = Table(title=f"job {job_id}", show_header=False)
    for key in ("status", "message", "search", "kind", "storage", "tracking_uri", "start_time", "end_time",
                "driver_exit_code", "entrypoint"):
        if row.get(key) not in (None, ""):
            table.add_row(key, jobs.redact(str(row[key])))
    out.print(table)
    hint = resume_hint(row, jobs.address)
    if hint:
        out.print(f"continue the search with `{hint}`", highlight=False)


@jobs_app.command("logs")
def jobs_logs(
    job_id: Annotated[str, typer.Argument(help="Job id.")],
    address: AddressOpt = None,
    follow: FollowOpt = False,
) -> None:
    """A job's output (the search's progress lines and its final front)."""
    jobs = _jobs(address)
    if follow:
        _follow_job(jobs, job_id)
        return
    sys.stdout.write(jobs.logs(job_id))


@jobs_app.command("stop")
def jobs_stop(
    job_id: Annotated[str, typer.Argument(help="Job id.")],
    address: AddressOpt = None,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Wait until the job has ended.")] = True,
    timeout: Annotated[float, typer.Option(min=1, help="Seconds to wait.")] = 120.0,
) -> None:
    """Stop a job: the search stops its trials, saves its state and can be resumed."""
    from ranksearch.tune.submit import job_row, resume_hint

    jobs = _jobs(address)
    stopped = jobs.stop(job_id)
    if not stopped:
        row = job_row(jobs.info(job_id))
        err.print(f"job {job_id} was not running ({row['status']})", highlight=False)
    if wait:
        status = jobs.wait(job_id, timeout=timeout)
        err.print(f"job {job_id}: {status}", highlight=False)
    row = job_row(jobs.info(job_id))
    hint = resume_hint(row, jobs.address)
    if hint:
        err.print(f"continue the search with `{hint}`", highlight=False)


@jobs_app.command("resume")
def jobs_resume(
    search: Annotated[str, typer.Argument(help="The search's name (under --storage).")],
    address: AddressOpt = None,
    storage: JobStorageOpt = None,
    tracking_uri: Annotated[str | None, typer.Option(
        "--tracking-uri", help="MLflow server (default: the one the search used).")] = None,
    workers: Annotated[int | None, typer.Option(help="Trials at once (default: as before).")] = None,
    shared_storage: SharedOpt = False,
    ship_code: ShipOpt = True,
    pip: PipOpt = None,
    env: EnvOpt = None,
    follow: FollowOpt = False,
) -> None:
    """Continue a stopped or interrupted search as a new job; prints the job id."""
    from ranksearch.tune.submit import parse_env, submit_resume

    job = submit_resume(search, address=address, storage=storage, tracking_uri=tracking_uri,
                        shared_storage=shared_storage, workers=workers, ship_code=ship_code, pip=pip or (),
                        env_vars=parse_env(env or ()))
    _submitted(job, follow=follow)


# `ranksearch bench NAME ...` runs `ranksearch.bench.NAME.main(args)`: each benchmark parses its own
# options (also usable as `python -m ranksearch.bench.NAME`).
_BENCHES = {
    "layers": "Tensorized vs. dense layer timings (sequential, reconstruction, auto; tensorly-torch).",
    "strategies": "Every strategy on the same work, hypervolume against evaluations, ratios to random.",
    "pstrn": "PSTRN's TR-LeNet-5 / Fashion-MNIST benchmark at 1/100 of its training work (resumable).",
    "front": "The Fashion-MNIST TR-LeNet-5 front with learned ranks beside Cao 2024 and PSTRN (resumable).",
    "recipe": "The training recipe searched at fixed ranks (PSTRN-M's), 3 seeds of the winner (resumable).",
    "service": "Search overhead: summed trial time / workers vs. wall time, driver cost per trial.",
    "hpo": "NAS-Bench-201 ground truth: hypervolume regret of each strategy and Optuna's samplers.",
    "fidelity": "Strategies with FIFO, MO-ASHA and Syne Tune's MOASHA at equal epochs: hypervolume vs cost.",
}


def _register_bench(name: str, help_text: str) -> None:
    def command(ctx: typer.Context) -> None:
        import importlib

        module = importlib.import_module(f"ranksearch.bench.{name}")
        raise typer.Exit(module.main(list(ctx.args)) or 0)

    # --help goes to the benchmark's own parser, which lists its real options.
    bench_app.command(name, help=help_text, add_help_option=False,
                      context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(command)


for _name, _help in _BENCHES.items():
    _register_bench(_name, _help)


def _register_dashboard() -> None:
    from ranksearch.dashboard import dashboard_command

    app.command("dashboard", help="Serve the Pareto-front explorer (127.0.0.1 by default).")(dashboard_command)


_register_dashboard()


#: Library settings whose flag is not `--` + the name with dashes.
_FLAGS = {"env_vars": "--env", "output": "-o/--output", "search": "search", "space": "SPACE_FILE"}


def flag_for(setting: str) -> str:
    """The command-line spelling of a library setting (`workers` -> `--workers`)."""
    return _FLAGS.get(setting, "--" + setting.replace("_", "-"))


def _print_error(text: str) -> None:
    from rich.text import Text

    err.print(Text.assemble(("error:", "bold red"), " ", text), highlight=False, soft_wrap=True)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry: user errors print one clear message and exit with status 2."""
    try:
        code = app(args=argv, standalone_mode=False)
        if isinstance(code, int) and code:  # typer.Exit(n) is returned, not raised, here
            sys.exit(code)
    except SettingError as exc:  # the library names the setting; the user typed its flag
        _print_error(exc.render(names=flag_for))
        sys.exit(exc.exit_code)
    except RanksearchError as exc:
        _print_error(str(exc))
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        err.print("aborted")
        sys.exit(130)
    except Exception as exc:
        # Usage errors from the CLI library (missing argument, bad option) know how to show
        # themselves and carry exit code 2.
        if hasattr(exc, "show") and isinstance(getattr(exc, "exit_code", None), int):
            exc.show()
            sys.exit(exc.exit_code)
        raise


if __name__ == "__main__":
    main()
