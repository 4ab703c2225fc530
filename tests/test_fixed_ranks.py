"""Recipe search at fixed ranks (`run --fix-ranks`, `ranksearch.fixranks`): the fixed space, its
clear errors, a rank-config file as the source of ranks and first values, and every strategy
that varies hyperparameters searching only the values there."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ranksearch import load_space, strategies
from ranksearch.checks import check_space
from ranksearch.errors import SettingError, SpaceError
from ranksearch.rankconfig import RankConfigFile
from ranksearch.space import SearchSpace, count_params
from ranksearch.testing import drive_proposals, spaces

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "search_spaces" / "digits_ranks_and_recipe.yaml"
RANK_ONLY = ROOT / "search_spaces" / "quickstart_digits.yaml"
LR, OPT, MOM = "training.optimizer.lr", "training.optimizer.name", "training.optimizer.momentum"
#: The shipped strategies that search hyperparameters (`varies_hparams`).
SEARCHING = sorted(n for n in strategies.available()
                   if not n.startswith("test-") and strategies.strategy_class(n).varies_hparams)


@pytest.fixture(scope="module")
def space():
    return load_space(RECIPE)


def test_a_fixed_space_allows_exactly_the_fixed_ranks_and_round_trips(space):
    ranks = [3, 4, 5, 6, 7, 8, 2, 3, 4, 5, 6, 7]
    fixed = space.with_fixed_ranks(",".join(map(str, ranks)))
    assert fixed.fixed_ranks == tuple(ranks)
    assert [e.name for e in fixed.elements] == [e.name for e in space.elements]
    assert [e.values for e in fixed.elements] == [(r,) for r in ranks]
    assert fixed.search_size == 1 and fixed.lower == fixed.upper == tuple(ranks)
    assert count_params(fixed, fixed.lower) == count_params(space, tuple(ranks))
    assert fixed.config.strategy.seeds == (tuple(ranks),)  # the first trial: the defaults at these ranks
    assert fixed.hyper.to_dict() == space.hyper.to_dict()  # values are searched as before
    again = SearchSpace.from_dict(fixed.to_dict())  # what search.json, space.yaml and best carry
    assert again == fixed and again.fixed_ranks == tuple(ranks)
    with pytest.raises(SpaceError, match=r"ranks are fixed \(ranks.fixed\)"):
        fixed.check_ranks(space.equal_ranks(2))
    # the rank vocabulary of --ranks: one int, 'same', a fraction
    assert space.with_fixed_ranks(4).fixed_ranks == space.equal_ranks(4)
    assert space.with_fixed_ranks("same").fixed_ranks == space.resolve_ranks("same")
    assert space.with_fixed_ranks("0.1").fixed_ranks == space.resolve_ranks(0.1)


@pytest.mark.parametrize(("spec", "words"), [
    ("1,2,3", ["fix_ranks", "has 3 values", "12 rank elements", "fc1.r0"]),
    ("1,1,1,1,1,1,1,1,1,1,1,99", ["fix_ranks", "'fc2.r5' is 99", "between 1 and 12", "'1,1,1,1,1,1,1,1,1,1,1,99'"]),
    ("many", ["fix_ranks", "'many'", "'same'"]),
    ("missing.yaml", ["fix_ranks", "cannot read the rank config", "'missing.yaml' not found"]),
])
def test_bad_ranks_are_errors_naming_the_setting_and_value(space, spec, words):
    with pytest.raises(SettingError) as info:
        check_space(space, fix_ranks=spec)
    for w in words:
        assert w in str(info.value), (w, str(info.value))


def test_a_space_without_hyperparameters_cannot_fix_its_ranks():
    with pytest.raises(SpaceError) as info:
        check_space(RANK_ONLY, fix_ranks="4")
    err = info.value
    assert err.file == str(RANK_ONLY) and err.field == "hyperparameters"
    assert "add a hyperparameters block" in str(err).lower()


def test_a_strategy_that_keeps_the_defaults_is_refused(space):
    for name in ("uniform", "learned"):
        with pytest.raises(SettingError, match=f"strategy '{name}' keeps the hyperparameters at their defaults"):
            check_space(space, strategy=name, fix_ranks="4")
    assert check_space(space, strategy="random", fix_ranks="4").fixed_ranks == space.equal_ranks(4)


def test_a_rank_config_file_gives_the_ranks_and_the_first_values(space, tmp_path):
    values = {OPT: "sgd", LR: 0.01, MOM: 0.95, "training.batch_size": 32}
    ranks = space.equal_ranks(5)
    path = tmp_path / "best.yaml"
    RankConfigFile(space=space, ranks=ranks, hparams=values).save(path)
    fixed = check_space(space, strategy="random", budget=8, fix_ranks=str(path))
    assert fixed.fixed_ranks == ranks
    defaults = fixed.hyper.defaults()
    assert {k: defaults[k] for k in values} == values  # the file's values are the defaults now
    first = strategies.from_space(fixed).ask_proposal()  # as the driver makes it: with its seed
    assert first.ranks == ranks and {k: first.hparams[k] for k in values} == values
    # a rank config of another space (other rank elements: one per layer) is refused, naming both
    data = space.to_dict()
    data["ranks"]["uniform"] = True
    other = SearchSpace.from_dict(data)
    path2 = tmp_path / "other.yaml"
    RankConfigFile(space=other, ranks=other.equal_ranks(3)).save(path2)
    with pytest.raises(SettingError, match="other rank elements") as info:
        check_space(space, fix_ranks=str(path2))
    assert str(path2) in str(info.value) and "fc1.r0" in str(info.value)


def test_a_rank_config_value_outside_the_domains_keeps_its_default(space, tmp_path):
    data = space.to_dict()
    data["hyperparameters"][LR] = {"low": 0.05, "high": 0.5, "log": True}  # the file's 0.01 lies outside
    narrower = SearchSpace.from_dict(data)
    path = tmp_path / "best.yaml"
    RankConfigFile(space=space, ranks=space.equal_ranks(5), hparams={OPT: "sgd", LR: 0.01}).save(path)
    fixed = check_space(narrower, fix_ranks=str(path))
    assert fixed.hyper.defaults()[OPT] == "sgd" and fixed.hyper.defaults()[LR] == narrower.hyper.defaults()[LR]


@pytest.mark.parametrize("name", SEARCHING)
def test_every_searching_strategy_proposes_the_fixed_ranks_and_distinct_values(name):
    base = spaces.mixed()
    ranks = base.equal_ranks(4)
    fixed = base.with_fixed_ranks(ranks)
    s = strategies.get(name, fixed, seed=0, budget=30)
    asked = drive_proposals(s, fixed)
    assert len(asked) == 30  # the search used its budget: never declared exhausted early
    assert {p.ranks for p in asked} == {ranks}
    keys = [fixed.hyper.key(p.hparams) for p in asked]
    assert len(set(keys)) == len(keys)  # each configuration once, so values differ
    assert len({p.hparams[LR] for p in asked}) >= 3 and {p.hparams[OPT] for p in asked} == {"adam", "sgd"}


def test_cli_without_hyperparameters_exits_2_before_ray_or_mlflow(tmp_path):
    code = ("import sys\nfrom ranksearch.cli import main\n"
            "try:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n"
            "    print('exit', e.code, 'ray' in sys.modules, 'mlflow' in sys.modules)\n")
    proc = subprocess.run([sys.executable, "-c", code, "run", str(RANK_ONLY), "--fix-ranks", "4"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip() == "exit 2 False False", (proc.stdout, proc.stderr)
    err = " ".join(proc.stderr.split())
    assert str(RANK_ONLY) in err and "'hyperparameters'" in err and "add a hyperparameters block" in err.lower()
    assert list(tmp_path.iterdir()) == []  # no experiment folder, no tracking store


def test_validate_checks_fix_ranks_as_run_does(tmp_path):
    def validate(*args):
        proc = subprocess.run([sys.executable, "-m", "ranksearch.cli", "validate", *args], cwd=tmp_path,
                              capture_output=True, text=True, timeout=120)
        return proc.returncode, " ".join((proc.stdout + proc.stderr).split())

    code, text = validate(str(RECIPE), "--fix-ranks", "6")
    assert code == 0 and "fixed ranks" in text and "6,6,6,6,6,6,6,6,6,6,6,6" in text, text
    code, text = validate(str(RANK_ONLY), "--fix-ranks", "6")  # what run would refuse, validate refuses
    assert code == 2 and "'hyperparameters'" in text, text
    code, text = validate(str(RECIPE), "--fix-ranks", "1,2,3")
    assert code == 2 and "--fix-ranks" in text and "'1,2,3'" in text and "12 rank elements" in text, text
