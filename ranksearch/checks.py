"""The one check path of the input edge: what `run` would reject, every command rejects first.

`validate`, `inspect`, `run`, `submit` and `train` (and `service.prepare_search`) call
`check_space`, so a space that passes `ranksearch validate` does not fail later on its
strategy, its options, its constraints or its data path. Nothing here starts Ray or MLflow:
it reads the file, builds the dense model once (to resolve the layer shapes), makes the
strategy once and reads the data folder's listing.

Errors name the file, the field and the value (`SpaceError`); an override given as an
argument (`strategy="..."`) names the setting instead (`SettingError`), never a CLI flag.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ranksearch.errors import RanksearchError, SettingError, SpaceError

if TYPE_CHECKING:
    from ranksearch.space import SearchSpace


def check_space(
    space: str | os.PathLike[str] | SearchSpace,
    *,
    strategy: str | None = None,
    budget: int | str | None = None,
    seed: int | None = None,
    options: Mapping[str, Any] | None = None,
    check_data: bool = True,
    fix_ranks: Any = None,
) -> SearchSpace:
    """Load (when given a path) and check a search space; returns the effective space.

    Overrides (`strategy`, `budget`, `seed`, `options`, and `fix_ranks`: a recipe search at
    those ranks, `ranksearch.fixranks`) are folded into the space, so what a search records is
    what ran. `check_data=False` skips the local data folder (a cluster job
    reads its data on the cluster's nodes); a path given to a bundled dataset is refused either way.
    """
    from ranksearch.space import SearchSpace, load_space

    base = space if isinstance(space, SearchSpace) else load_space(space)
    effective = _with_overrides(base, strategy=strategy, budget=budget, seed=seed, options=options)
    if fix_ranks is not None:
        from ranksearch.fixranks import fixed_rank_space

        effective = fixed_rank_space(effective, fix_ranks)
    _check_function(effective)
    _check_constraints(effective)  # before the strategy, which would refuse them less clearly
    _check_training(effective)
    _check_strategy(effective, from_argument=strategy is not None and strategy != base.config.strategy.name,
                    options_from_argument=bool(options))
    check_data_path(effective, local=check_data)
    return effective


def _with_overrides(base: SearchSpace, *, strategy: str | None, budget: int | str | None, seed: int | None,
                    options: Mapping[str, Any] | None) -> SearchSpace:
    from ranksearch.space import SearchSpace

    if strategy is None and budget is None and seed is None and not options:
        return base
    spec = base.config.strategy
    if strategy is not None and (not isinstance(strategy, str) or not strategy.strip()):
        raise SettingError("strategy", "must be a strategy name", value=strategy,
                           hint=f"use one of: {', '.join(_strategy_names())}")
    if budget is not None:
        from ranksearch.budget import BudgetError, parse_budget

        try:
            budget = parse_budget(budget).to_json()
        except BudgetError as exc:
            raise SettingError("budget", str(exc).split(": ", 1)[-1], value=budget,
                               hint="e.g. 40 (trials), 600ep (full-epoch equivalents), 2e6samples") from None
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise SettingError("seed", "must be an integer", value=seed)
    name = strategy or spec.name
    opts = dict(spec.options) if name == spec.name else {}
    opts.update(options or {})
    data = base.to_dict()
    if seed is not None:
        data["seed"] = seed
    data["strategy"] = {**data.get("strategy", {}), "name": name, "options": opts,
                        "budget": spec.budget if budget is None else budget}
    return SearchSpace.from_dict(data, source=base.source)


def _strategy_names() -> list[str]:
    from ranksearch import strategies

    return list(strategies.available())


def _check_strategy(space: SearchSpace, *, from_argument: bool, options_from_argument: bool) -> None:
    """The strategy exists, takes the options given, accepts the seeds, and can be made."""
    from ranksearch import strategies
    from ranksearch.strategies.seeding import check_seeds

    spec = space.config.strategy
    names = _strategy_names()
    if spec.name not in names:
        hint = f"use one of: {', '.join(names)}"
        if from_argument:
            raise SettingError("strategy", "is not a registered strategy", value=spec.name, hint=hint)
        raise SpaceError("unknown strategy", file=space.source, field="strategy.name", value=spec.name,
                         hint=hint)
    if space.fixed_ranks is not None and not strategies.strategy_class(spec.name).varies_hparams:
        message = (f"strategy '{spec.name}' keeps the hyperparameters at their defaults, so with fixed ranks "
                   "it has one configuration to train")
        hint = "use a strategy that searches them: random, bayes, nsga2, pstrn, beam or rl"
        if from_argument:
            raise SettingError("strategy", message, value=spec.name, hint=hint)
        raise SpaceError(message, file=space.source, field="strategy.name", value=spec.name, hint=hint)
    valid = strategies.options(spec.name)
    unknown = sorted(set(spec.options) - set(valid))
    if unknown:
        listing = ", ".join(f"{k} (default {v!r})" for k, v in valid.items()) or "none"
        message = f"strategy '{spec.name}' has no option {', '.join(repr(u) for u in unknown)}"
        if options_from_argument:
            raise SettingError("options", message, value=dict(spec.options), hint=f"valid options: {listing}")
        raise SpaceError(message, file=space.source, field=f"strategy.options.{unknown[0]}",
                         value=spec.options[unknown[0]], hint=f"valid options: {listing}")
    check_seeds(space)
    opts = dict(spec.options)
    if "budget" in valid and "budget" not in opts:
        # a cost budget is turned into trials when the search starts; any count makes the strategy
        opts["budget"] = spec.trial_budget or 100
    try:
        strategies.get(spec.name, space, seed=space.seed, **opts)  # bad option values fail here
    except SpaceError as exc:
        raise (exc.with_file(space.source) if space.source and not exc.file else exc) from None
    except (RanksearchError, TypeError, ValueError) as exc:
        raise SpaceError(f"strategy '{spec.name}' cannot be made: {str(exc).splitlines()[0]}",
                         file=space.source, field="strategy.options", value=dict(spec.options),
                         hint="fix the option values") from None


def _check_function(space: SearchSpace) -> None:
    """A user training function is importable here (a worker would only fail each trial)."""
    if space.user_function is not None:
        from ranksearch.userfn import resolve_function

        resolve_function(space.user_function, source=space.source)


def _check_training(space: SearchSpace) -> None:
    """Recipe combinations that only the trial runner or scheduler would refuse."""
    cfg = space.config
    if cfg.data is None:
        return  # a user training function without a model: the function owns its recipe
    if cfg.scheduler is not None and cfg.scheduler.name == "mo_asha" and cfg.training.epochs is None:
        raise SpaceError("the mo_asha scheduler needs an epoch budget", file=space.source, field="scheduler.name",
                         value=cfg.scheduler.name, hint="set training.epochs instead of training.steps, or use "
                                                       "scheduler: {name: fifo}")
    for section in ("training", "final_training", "dense_training"):
        recipe = getattr(cfg, section)
        subset = recipe.subset if recipe is not None else None
        if subset is not None and subset >= 1 and int(subset) < space.num_classes:
            raise SpaceError(f"a training subset of {int(subset)} images is smaller than the "
                             f"{space.num_classes} classes", file=space.source, field=f"{section}.subset",
                             value=subset, hint=f"give at least {space.num_classes} images, or a fraction below 1")


def _check_constraints(space: SearchSpace) -> None:
    """Some configuration meets `max_params` and `min_compression` (the smallest one is the test:
    the parameter count grows with every rank)."""
    from ranksearch.space import count_params

    limits = space.config.constraints
    if limits.max_params is None and limits.min_compression is None:
        return
    smallest = count_params(space, space.lower)
    if limits.max_params is not None and smallest > limits.max_params:
        raise SpaceError(
            f"no configuration has that few parameters: the smallest (every rank at its minimum) "
            f"has {smallest:,}", file=space.source, field="constraints.max_params", value=limits.max_params,
            hint=f"raise max_params to at least {smallest}, lower ranks.min, or tensorize more layers")
    best = space.dense_params / smallest
    if limits.min_compression is not None and best < limits.min_compression:
        raise SpaceError(
            f"no configuration compresses that much: the smallest (every rank at its minimum) "
            f"reaches {best:.2f}x", file=space.source, field="constraints.min_compression",
            value=limits.min_compression,
            hint=f"lower min_compression to at most {best:.2f}, lower ranks.min, or tensorize more layers")


def check_data_path(space: SearchSpace, *, local: bool = True) -> None:
    """The data section names a folder only for datasets read from disk, and (when `local`) that
    folder exists on this machine; no data file is parsed."""
    from ranksearch.data.sources import get_source, resolve_options, resolve_path

    data = space.config.data
    if data is None:
        return  # a user training function reads its own data
    try:
        source = get_source(data.dataset)
        folder = resolve_path(source, data.path)
        if not local or not source.takes_path or (folder is not None and os.path.isdir(folder)):
            return
        # The loader's own first check says what is missing and how to install it.
        source.load(folder, resolve_options(source, data.options))
    except RanksearchError as exc:
        raise _as_space_error(exc, space) from None
    raise SpaceError("folder not found", file=space.source, field="data.path", value=data.path or folder,
                     hint=f"point data.path at the folder holding the {data.dataset} files")


def _as_space_error(exc: RanksearchError, space: SearchSpace) -> SpaceError:
    """A data error, attributed to the space file it came from."""
    return SpaceError(getattr(exc, "reason", str(exc)), file=space.source,
                      field=getattr(exc, "field", None) or "data", value=getattr(exc, "value", None),
                      hint=getattr(exc, "hint", None))
