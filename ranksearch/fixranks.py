"""Recipe search at fixed ranks: what `run --fix-ranks` (`service.search(fix_ranks=...)`) means.

`fixed_rank_space(space, spec)` turns a space with a `hyperparameters:` block into one whose
rank elements each allow exactly one value (`SearchSpace.with_fixed_ranks`), so every strategy
that varies hyperparameters searches only the recipe. `spec` is what `--ranks` takes elsewhere
(`8,14,...`, one integer for equal ranks, a fraction of the dense parameters, `same`) or a
rank-config file (a path, `s3://`, `runs:/`, `models:/`, or a loaded `RankConfigFile`): its
ranks are fixed, and its `hyperparameters:` values become the parameters' defaults, so the first
trial retrains the winner's recipe and the search looks for a better one. Such a file's space
must have the same rank elements as the searched space.

Parameter counts, compression and FLOPs are then the same for every trial: a cost objective
stays in the front, constant, and the front holds the best accuracy.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ranksearch.errors import ServiceError, SettingError, SpaceError

if TYPE_CHECKING:
    from ranksearch.rankconfig import RankConfigFile
    from ranksearch.space import SearchSpace

log = logging.getLogger(__name__)

#: The setting errors name (`--fix-ranks` on the command line).
SETTING = "fix_ranks"


def fixed_rank_space(space: SearchSpace, spec: Any) -> SearchSpace:
    """`space` with its ranks fixed by `spec` (see the module docstring)."""
    from ranksearch.rankconfig import RankConfigFile

    config = spec if isinstance(spec, RankConfigFile) else _rank_config(spec)
    if config is None:
        ranks, defaults = spec, None
    else:
        ranks, defaults = _from_rank_config(space, config)
    try:
        return space.with_fixed_ranks(ranks, defaults=defaults)
    except SpaceError as exc:
        if exc.field != "ranks":  # the space itself (no hyperparameters block): its own error
            raise
        raise SettingError(SETTING, exc.reason, value=spec if config is None else config.source,
                           hint=exc.hint or "give one rank per element (8,14,...), one integer, a fraction "
                                            "like 0.1, 'same', or a rank-config file from `ranksearch best`"
                           ) from None


def _rank_config(spec: Any) -> RankConfigFile | None:
    """The rank config `spec` names, or None when it is rank vocabulary."""
    from ranksearch.rankconfig import is_rank_config_ref, load_rank_config

    if not isinstance(spec, str):
        return None
    text = spec.strip()
    if not (is_rank_config_ref(text) or text.endswith((".yaml", ".yml"))):
        return None
    try:
        return load_rank_config(text)
    except ServiceError as exc:
        raise SettingError(SETTING, f"cannot read the rank config: {exc}", value=text, show_value=False) from None


def _from_rank_config(space: SearchSpace, config: RankConfigFile) -> tuple[Sequence[int], dict[str, Any]]:
    """The file's ranks and those of its hyperparameter values the space's domains hold."""
    where = config.source or "the rank config"
    mine = [e.name for e in space.elements]
    theirs = [e.name for e in config.space.elements]
    if mine != theirs:
        raise SettingError(SETTING, f"{where} has other rank elements than {space.source or 'the space'}",
                           value=where, hint=f"its elements are {', '.join(theirs) or 'none'}; the space's are "
                                             f"{', '.join(mine) or 'none'}: give a rank config of this space")
    defaults: dict[str, Any] = {}
    for name, value in config.hparams.items():
        p = space.hyper.by_name.get(name)
        if p is not None and p.contains(value):
            defaults[name] = value
        else:
            log.warning("%s: hyperparameter %s=%r is not in the space's domains; it keeps its default",
                        where, name, value)
    return list(config.ranks), defaults
