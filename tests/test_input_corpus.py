"""Malformed input, through the real command line: each case exits 2 with one clear message.

Every case runs `ranksearch.cli.main` in one fresh subprocess (one interpreter for all cases,
so the corpus takes seconds, not minutes), plus a few true `python -m ranksearch.cli`
subprocesses for what only a separate process shows (the exit status, stderr). For each case:
exit code 2; exactly one `error:` line naming the file (where there is one), the field and
the value; no traceback; and after all of them no Ray started, no MLflow imported, no store
created, no process left behind.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "search_spaces" / "quickstart_digits.yaml"
BASE = yaml.safe_load(QUICKSTART.read_text())


def _space(tmp: Path, name: str, edit: Any = None, *, text: str | bytes | None = None) -> str:
    """Write a variant of the quickstart space (`edit(data)` changes it) and return its path."""
    path = tmp / f"{name}.yaml"
    if text is not None:
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        return str(path)
    data = json.loads(json.dumps(BASE))
    if edit is not None:
        edit(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


def _set(dotted: str, value: Any):
    def edit(data: dict) -> None:
        *parents, leaf = dotted.split(".")
        node = data
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return edit


def _drop(key: str):
    return lambda data: data.pop(key)


DUPLICATE = QUICKSTART.read_text() + "training:\n  epochs: 3\n"
# Line numbers of the two `training:` keys in the file above.
DUP_LINES = (QUICKSTART.read_text().splitlines().index("training:") + 1, len(QUICKSTART.read_text().splitlines()) + 1)


def _cases(tmp: Path) -> list[tuple[str, list[str], list[str]]]:
    """(case id, argv, words the one error line must hold): file, field and value where known."""
    q = str(QUICKSTART)
    s = _space
    cases: list[tuple[str, list[str], list[str]]] = []

    def add(cid: str, argv: list[str], words: list[str]) -> None:
        cases.append((cid, argv, words))

    # -- YAML syntax, binary junk, empty files, duplicate keys
    p = s(tmp, "unclosed", text="name: [unclosed\nmodel: {}\n")
    add("yaml-unclosed-bracket", ["validate", p], [p, "malformed YAML", "line"])
    p = s(tmp, "badindent", text="name: x\n  model: y\n bad: [\n")
    add("yaml-bad-indent", ["validate", p], [p, "malformed YAML", "line"])
    p = s(tmp, "tab", text="name: x\n\tmodel: y\n")
    add("yaml-tab", ["inspect", p], [p, "malformed YAML"])
    p = s(tmp, "binary", text=bytes(range(256)) * 4)
    add("binary-junk", ["validate", p], [p, "not a text file"])
    p = s(tmp, "nul", text=b"name: x\x00\x01\x02\n")
    add("control-bytes", ["validate", p], [p, "malformed YAML"])
    p = s(tmp, "empty", text="")
    add("empty-file", ["validate", p], [p, "empty"])
    p = s(tmp, "blank", text="\n   \n# only a comment\n")
    add("comment-only-file", ["run", p], [p, "empty"])
    p = s(tmp, "scalar", text="just a string\n")
    add("scalar-document", ["validate", p], [p, "mapping"])
    p = s(tmp, "list", text="- a\n- b\n")
    add("list-document", ["validate", p], [p, "mapping"])
    p = s(tmp, "dup", text=DUPLICATE)
    add("duplicate-training", ["validate", p],
        [p, "'training'", "twice", f"lines {DUP_LINES[0]} and {DUP_LINES[1]}"])
    p = s(tmp, "dupnested", text=QUICKSTART.read_text().replace("  max: 12\n", "  max: 12\n  max: 8\n"))
    add("duplicate-nested-key", ["validate", p], [p, "'max'", "twice", "lines"])
    p = s(tmp, "dup-run", text=DUPLICATE)
    add("duplicate-key-on-run", ["run", p], [p, "'training'", "twice"])

    # -- unknown keys, missing sections, wrong types, out-of-range values
    add("unknown-top-key", ["validate", s(tmp, "k1", _set("colour", "red"))], ["k1.yaml", "'colour'", "unknown key"])
    add("unknown-training-key", ["validate", s(tmp, "k2", _set("training.epoch", 3))],
        ["k2.yaml", "training.epoch", "unknown key", "epochs"])
    add("missing-model", ["validate", s(tmp, "k3", _drop("model"))], ["k3.yaml", "'model'", "missing"])
    add("missing-budget", ["validate", s(tmp, "k4", _set("training", {"batch_size": 8}))],
        ["k4.yaml", "'training'", "epochs"])
    add("epochs-string", ["validate", s(tmp, "t1", _set("training.epochs", "many"))],
        ["t1.yaml", "training.epochs", "'many'"])
    add("batch-size-list", ["validate", s(tmp, "t2", _set("training.batch_size", [1, 2]))],
        ["t2.yaml", "training.batch_size", "[1, 2]"])
    add("layers-not-mapping", ["validate", s(tmp, "t3", _set("model.layers", "fc1"))],
        ["t3.yaml", "model.layers", "'fc1'"])
    add("epochs-zero", ["validate", s(tmp, "r1", _set("training.epochs", 0))], ["r1.yaml", "training.epochs", "0"])
    add("lr-negative", ["validate", s(tmp, "r2", _set("training.optimizer.lr", -0.1))],
        ["r2.yaml", "training.optimizer.lr", "-0.1"])
    add("val-fraction-too-big", ["validate", s(tmp, "r3", _set("data.val_fraction", 0.9))],
        ["r3.yaml", "data.val_fraction", "0.9"])
    add("ranks-min-above-max", ["validate", s(tmp, "r4", _set("ranks.min", 20))], ["r4.yaml", "ranks", "20"])
    add("budget-zero", ["validate", s(tmp, "r5", _set("strategy.budget", 0))], ["r5.yaml", "strategy.budget", "0"])
    add("min-accuracy-above-one", ["validate", s(tmp, "r6", _set("constraints.min_accuracy", 1.5))],
        ["r6.yaml", "constraints.min_accuracy", "1.5"])
    add("bad-in-shape", ["validate", s(tmp, "r7", _set("model.layers.fc1", {"in_shape": [4, 4, 5]}))],
        ["r7.yaml", "model.layers.fc1.in_shape", "[4, 4, 5]"])

    # -- unknown names
    add("unknown-model", ["validate", s(tmp, "n1", _set("model.name", "lenet9000"))],
        ["n1.yaml", "model.name", "'lenet9000'"])
    add("unknown-dataset", ["validate", s(tmp, "n2", _set("data.dataset", "imagenet"))],
        ["n2.yaml", "data", "'imagenet'"])
    add("unknown-strategy", ["validate", s(tmp, "n3", _set("strategy.name", "genetic"))],
        ["n3.yaml", "strategy.name", "'genetic'", "random"])
    add("unknown-strategy-option", ["validate", s(tmp, "n4", _set("strategy.options", {"colour": "red"}))],
        ["n4.yaml", "strategy.options.colour", "'red'"])
    add("unknown-optimizer", ["validate", s(tmp, "n5", _set("training.optimizer.name", "lion"))],
        ["n5.yaml", "training.optimizer.name", "'lion'", "adam"])
    add("unknown-objective", ["validate", s(tmp, "n6", _set("objectives", [{"name": "speed"}]))],
        ["n6.yaml", "objectives.0.name", "'speed'"])
    add("unknown-format", ["validate", s(tmp, "n7", _set("model.format", "svd"))], ["n7.yaml", "model.format", "'svd'"])
    add("unknown-layer", ["validate", s(tmp, "n8", _set("model.layers", {"fc9": None}))],
        ["n8.yaml", "model.layers.fc9", "fc1"])
    add("unknown-strategy-on-run", ["run", s(tmp, "n9", _set("strategy.name", "genetic"))],
        ["n9.yaml", "strategy.name", "'genetic'"])
    add("unknown-strategy-flag", ["run", q, "--strategy", "genetic"], ["--strategy", "'genetic'"])

    # -- constraints no configuration meets
    add("max-params-too-small", ["validate", s(tmp, "c1", _set("constraints.max_params", 100))],
        ["c1.yaml", "constraints.max_params", "100", "smallest"])
    add("min-compression-too-big", ["validate", s(tmp, "c2", _set("constraints.min_compression", 1e6))],
        ["c2.yaml", "constraints.min_compression", "1000000.0", "smallest"])
    add("max-params-on-train", ["train", s(tmp, "c3", _set("constraints.max_params", 100)), "--ranks", "2"],
        ["c3.yaml", "constraints.max_params", "100"])

    add("asha-without-epochs", ["validate", s(tmp, "c4", lambda d: (d["training"].pop("epochs"),
                                                                 d["training"].update(steps=50),
                                                                 d.update(scheduler={"name": "mo_asha"})))],
        ["c4.yaml", "scheduler.name", "'mo_asha'", "training.epochs"])
    add("subset-below-classes", ["validate", s(tmp, "c5", _set("training.subset", 3))],
        ["c5.yaml", "training.subset", "3"])

    # -- missing files: the space, the data folder, a rank config, dense weights
    add("missing-space", ["validate", str(tmp / "nope.yaml")], ["nope.yaml", "file not found", "quickstart_digits"])
    add("space-is-a-folder", ["inspect", str(tmp)], [str(tmp), "not a file"])
    fashion = yaml.safe_load((ROOT / "search_spaces" / "pstrn_lenet5_fashion.yaml").read_text())
    fashion["data"]["path"] = str(tmp / "no-data-here")
    fp = tmp / "fashion.yaml"
    fp.write_text(yaml.safe_dump(fashion))
    add("missing-data-folder", ["validate", str(fp)], ["fashion.yaml", "data.path", "no-data-here"])
    add("data-path-on-bundled-no-check", ["validate", s(tmp, "m2", _set("data.path", "/srv/digits")),
                                           "--no-data-check"], ["m2.yaml", "data.path", "/srv/digits"])
    add("data-path-on-bundled", ["validate", s(tmp, "m1", _set("data.path", "/srv/digits"))],
        ["m1.yaml", "data.path", "/srv/digits"])
    add("missing-rank-config", ["train", "models:/"], ["models:/"])
    add("missing-dense-weights", ["train", q, "--ranks", "2", "--dense", str(tmp / "none.pt")],
        ["--dense", "none.pt"])

    # -- malformed rank vectors
    add("ranks-too-few", ["inspect", q, "--ranks", "1,2,3"], ["quickstart_digits.yaml", "field 'ranks'", "[1, 2, 3]"])
    add("ranks-not-numbers", ["inspect", q, "--ranks", "a,b"], ["field 'ranks'", "'a,b'"])
    add("ranks-out-of-bounds", ["inspect", q, "--ranks", ",".join(["99"] * 12)], ["field 'ranks'", "99", "bounds"])
    add("ranks-fraction-too-big", ["inspect", q, "--ranks", "1.5"], ["field 'ranks'", "1.5"])
    add("ranks-negative", ["inspect", q, "--ranks", "-3"], ["field 'ranks'"])
    add("ranks-float-list", ["train", q, "--ranks", "1.5,2"], ["field 'ranks'", "'1.5,2'"])

    # -- searches that do not exist, pick rules that do not parse
    add("front-unknown-search", ["front", "no-such-search"], ["no-such-search"])
    add("best-unknown-search", ["best", "no-such-search"], ["no-such-search"])
    add("best-bad-pick", ["best", "whatever", "--pick", "maximize val_accuracy"], ["maximize val_accuracy"])
    add("best-pick-no-metric", ["best", "whatever", "--pick", "max"], ["'max'"])
    add("best-pick-bad-condition", ["best", "whatever", "--pick", "max val_accuracy where params ~ 3"], ["~"])

    # -- settings given on the command line
    add("workers-zero", ["run", q, "--workers", "0"], ["--workers", "0"])
    add("bad-address", ["run", q, "--address", "not an address"], ["--address", "'not an address'"])
    add("bad-tracking-scheme", ["run", q, "--tracking-uri", "ftp://x/y"], ["--tracking-uri", "ftp://x/y"])
    add("bad-name", ["run", q, "--name", "bad name!"], ["--name", "'bad name!'"])
    add("bad-device", ["train", q, "--ranks", "2", "--device", "tpu"], ["--device", "'tpu'"])
    return cases


_PROBE = textwrap.dedent("""
    import contextlib, io, json, os, sys, traceback
    from ranksearch.cli import main

    def children():
        # Processes whose parent is this one (a Ray raylet, an MLflow server...), from /proc.
        found = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/stat") as f:
                    if f.read().rsplit(")", 1)[1].split()[1] == str(os.getpid()):
                        found.append(pid)
            except OSError:
                pass
        return found

    results = []
    for cid, argv in json.loads(sys.argv[1]):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            try:
                main(argv)
                code = 0
            except SystemExit as exc:
                code = exc.code
            except BaseException:
                code = "raised"
                err.write(traceback.format_exc())
        results.append({"id": cid, "code": code, "stdout": out.getvalue(), "stderr": err.getvalue()})
    ray = sys.modules.get("ray")
    print(json.dumps({
        "results": results,
        "ray_initialized": bool(ray is not None and ray.is_initialized()),
        "mlflow_imported": "mlflow" in sys.modules,
        "files": sorted(os.listdir(".")),
        "children": children(),
    }))
""")


def _env() -> dict[str, str]:
    """This environment without a tracking store or Ray cluster a developer may have set."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "RAY_"))}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("corpus")
    work = tmp / "cwd"
    work.mkdir()
    cases = _cases(tmp)
    proc = subprocess.run([sys.executable, "-c", _PROBE, json.dumps([(c, a) for c, a, _ in cases])],
                          cwd=work, capture_output=True, text=True, timeout=300, env=_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    return cases, report


def test_corpus_has_at_least_40_cases(corpus):
    cases, _ = corpus
    assert len(cases) >= 40 and len({c for c, _, _ in cases}) == len(cases)


def test_each_malformed_input_exits_2_with_one_clear_message(corpus):
    cases, report = corpus
    failures = []
    for (cid, argv, words), res in zip(cases, report["results"], strict=True):
        text = res["stdout"] + res["stderr"]
        problems = []
        if res["code"] != 2:
            problems.append(f"exit {res['code']}")
        if "Traceback" in text:
            problems.append("traceback")
        errors = [line for line in res["stderr"].splitlines() if line.startswith("error:")]
        if len(errors) != 1:
            problems.append(f"{len(errors)} error lines")
        missing = [w for w in words if w not in res["stderr"]]
        if missing:
            problems.append(f"missing {missing}")
        if problems:
            failures.append(f"{cid} {argv}: {'; '.join(problems)}\n{res['stderr'][-600:]}")
    assert not failures, "\n".join(failures)


def test_nothing_is_started_or_left_behind(corpus):
    _, report = corpus
    assert not report["ray_initialized"]  # no case got as far as Ray
    assert not report["mlflow_imported"]  # no store opened, no run left open
    assert report["files"] == []  # no mlruns/, mlflow.db or runs/ in the working directory
    assert report["children"] == []  # no process left running


@pytest.mark.parametrize("argv, words", [
    (["validate", "{dup}"], ["'training'", "twice", "lines"]),
    (["validate", "{junk}"], ["not a text file"]),
    (["run", str(QUICKSTART), "--budget", "0"], ["--budget"]),
    (["bench", "strategies", "--nonsense"], ["usage: ranksearch bench strategies", "error:"]),
])
def test_true_subprocesses_exit_2_without_traceback(argv, words, tmp_path):
    dup = _space(tmp_path, "dup", text=DUPLICATE)
    junk = _space(tmp_path, "junk", text=os.urandom(2048) + b"\xff\xfe")
    argv = [a.format(dup=dup, junk=junk) for a in argv]
    proc = subprocess.run([sys.executable, "-m", "ranksearch.cli", *argv], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, env=_env())
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    for w in words:
        assert w in proc.stderr
    assert not (tmp_path / "mlruns").exists() and not (tmp_path / "mlflow.db").exists()
