"""The `ranksearch` command line.

Heavy imports (torch, Ray, MLflow) happen inside commands, after the input has been validated,
so bad input fails fast with exit code 2 and nothing started.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from ranksearch.errors import RanksearchError

app = typer.Typer(
    name="ranksearch", no_args_is_help=True, add_completion=False,
    help="Search the per-layer ranks of tensorized neural networks.",
)
bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks that print measured ratios side by side.")
app.add_typer(bench_app, name="bench")

# Piped output (CI, files) gets wide tables instead of rich's 80-column default.
out = Console(width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 200)

SpaceArg = Annotated[Path, typer.Argument(help="Search-space YAML file (see search_spaces/).")]
RanksOpt = Annotated[
    str | None,
    typer.Option("--ranks", "-r", help="Comma-separated ranks (one per rank element), one int for "
                 "equal ranks, a fraction of dense params like 0.1, or 'same'."),
]


def _load(path: Path):
    from ranksearch.space import load_space

    return load_space(path)


def _ranks(space, text: str | None, *, required: bool = False):
    if text is None:
        if required:
            raise RanksearchError("--ranks is required: give one integer per rank element "
                                  f"({space.n_ranks} of them: {', '.join(e.name for e in space.elements)})")
        return None
    return space.resolve_ranks(text)


@app.command()
def validate(space_file: SpaceArg) -> None:
    """Check a search-space file and print a summary."""
    space = _load(space_file)
    summary = space.summary()
    table = Table(title=f"{space_file}: valid", show_header=False)
    for key, value in summary.items():
        table.add_row(key, ", ".join(map(str, value)) if isinstance(value, list) else str(value))
    table.add_row("search size", f"{space.search_size:.3e} rank configurations")
    out.print(table)


def inspect_report(space, ranks) -> dict[str, Any]:
    """Per-layer counts at `ranks` (closed form) and whole-model totals."""
    from ranksearch.space import count_flops, count_params

    per_layer = space.layer_ranks(ranks)
    layers = []
    for lay in space.layers:
        r = per_layer[lay.name]
        p = lay.params(r)
        layers.append({
            "layer": lay.name, "kind": lay.kind, "format": lay.format,
            "in_shape": list(lay.in_shape), "out_shape": list(lay.out_shape),
            "kernel_size": list(lay.kernel_size) if lay.kernel_size else None,
            "ranks": list(r), "params": p, "dense_params": lay.dense_params,
            "compression_ratio": lay.dense_params / p, "flops": lay.flops(r),
            "dense_flops": lay.dense_flops,
        })
    total = count_params(space, ranks)
    return {
        "space": space.name, "ranks": list(ranks),
        "total_params": total, "dense_params": space.dense_params,
        "compression_ratio": space.dense_params / total,
        "compression_convention": "whole model: every parameter (cores, biases, BN affine, "
                                  "untouched layers) on both sides",
        "flops": count_flops(space, ranks), "dense_flops": space.dense_flops,
        "flops_convention": "forward FLOPs for one sample (2 per multiply-add, torch FlopCounterMode)",
        "fixed_params": space.fixed_params, "layers": layers,
    }


@app.command()
def inspect(
    space_file: SpaceArg,
    ranks: RanksOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Per-layer table (shapes, ranks, params, compression, FLOPs) and totals."""
    space = _load(space_file)
    vec = _ranks(space, ranks)
    if vec is None:
        vec = space.upper
        if not as_json:
            out.print(f"[dim]no --ranks given: showing the largest ranks allowed; "
                      f"rank elements: {', '.join(e.name for e in space.elements)}[/dim]")
    report = inspect_report(space, vec)
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
    space_file: SpaceArg,
    ranks: RanksOpt = None,
    epochs: Annotated[int | None, typer.Option(min=1, help="Override the space's epoch budget.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed (default: the space's).")] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Output folder (checkpoint, metrics.json).")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu or cuda (default: the space's).")] = None,
) -> None:
    """Train one rank configuration: progress bar, checkpoint, metrics JSON (test accuracy too)."""
    space = _load(space_file)
    vec = _ranks(space, ranks, required=True)
    if device not in (None, "auto", "cpu", "cuda"):
        raise RanksearchError(f"--device must be auto, cpu or cuda (got {device!r})")
    training = space.config.final_training or space.config.training
    if epochs is not None:
        training = training.model_copy(update={"epochs": epochs, "steps": None})
    if device is not None:
        training = training.model_copy(update={"device": device})
    from ranksearch.training import get_splits

    get_splits(space, seed=seed)  # a missing data file fails here, before anything is written
    out_dir = out_dir or Path("runs") / "train" / f"{space.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    outcome = train_and_report(space, vec, training, seed=seed, out_dir=out_dir)
    if outcome.status != "ok":
        raise typer.Exit(1)


def train_and_report(space, ranks, training, *, seed, out_dir: Path, extra: dict | None = None):
    """Train with a progress bar, then write metrics.json and print the result."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from ranksearch.space import compression_ratio, count_params
    from ranksearch.training import train_config

    out_dir.mkdir(parents=True, exist_ok=True)
    total = training.epochs or 1
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), console=err, transient=False) as progress:
        task = progress.add_task(f"training {space.name}", total=total)

        def on_epoch(m: dict) -> None:
            progress.update(task, completed=m["epoch"], description=(
                f"epoch {m['epoch']}: loss {m['train_loss']:.4f} val_acc {m['val_accuracy']:.4f}"))

        outcome = train_config(space, ranks, training=training, seed=seed, callback=on_epoch,
                               checkpoint_dir=out_dir / "checkpoint", evaluate_test=True)
    metrics = {
        "space": space.name, "source": space.source, "ranks": list(ranks),
        "params": count_params(space, ranks), "dense_params": space.dense_params,
        "compression_ratio": compression_ratio(space, ranks), **outcome.to_dict(), **(extra or {}),
    }
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    test = outcome.test_accuracy
    out.print(
        f"{outcome.status}: val_accuracy {outcome.val_accuracy:.4f}"
        + (f", test_accuracy {test:.4f} (error {100 * (1 - test):.2f}%)" if test is not None else "")
        + f", params {metrics['params']:,} ({metrics['compression_ratio']:.2f}x), "
        f"{outcome.train_seconds:.1f} s; wrote {out_dir / 'metrics.json'}"
    )
    if outcome.error:
        err.print(f"[red]{outcome.error}[/red]")
    return outcome


@bench_app.command("layers", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def bench_layers(ctx: typer.Context) -> None:
    """Tensorized vs. dense layer timings (sequential, reconstruction, auto; tensorly-torch)."""
    from ranksearch.bench.layers import main as bench_main

    raise typer.Exit(bench_main(list(ctx.args)) or 0)


@bench_app.command("strategies", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def bench_strategies(ctx: typer.Context) -> None:
    """Every strategy on the same work, hypervolume against evaluations, ratios to random."""
    from ranksearch.bench.strategies import main as bench_main

    raise typer.Exit(bench_main(list(ctx.args)) or 0)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry: user errors print one clear message and exit with status 2."""
    try:
        app(args=argv, standalone_mode=False)
    except RanksearchError as exc:
        err.print(f"[bold red]error:[/bold red] {exc}", highlight=False, soft_wrap=True)
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
