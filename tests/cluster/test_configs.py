"""Every config in cluster/ parses and uses only fields its target tool defines.

- cluster/aws.yaml: Ray's own cluster-config JSON schema (ray/autoscaler/ray-schema.json), then
  what `ray up` does before it calls AWS (`prepare_config` + `validate_config`); each
  node_config is checked against EC2 RunInstances as botocore (what Ray calls) defines it; every
  `ray start` line against `ray start`'s own options.
- cluster/kuberay/*.yaml: no schema ships with any Python package here, so a field whitelist,
  written by hand from KubeRay's API reference (ray.io/v1: RayCluster, RayJob, RayClusterSpec,
  HeadGroupSpec, WorkerGroupSpec, AuthOptions, AutoscalerOptions, SubmitterConfig) and the
  Kubernetes core/v1 reference for the pod-template fields these manifests use. A field outside
  it fails the test: add it here only after checking it in those references.
  `rayStartParams` keys must be `ray start` options and the RayJob entrypoint must parse as a
  `ranksearch run` command line.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "cluster"
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Ray's own pydantic use


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


# -- Ray cluster launcher ----------------------------------------------------------------------------
def test_aws_config_matches_rays_schema_and_prepares_like_ray_up():
    import jsonschema
    import ray.autoscaler
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = _load(CLUSTER / "aws.yaml")
    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    jsonschema.validate(config, schema)  # additionalProperties: false at every level Ray defines
    prepared = prepare_config(copy.deepcopy(config))  # what `ray up` runs before any AWS call
    validate_config(prepared)

    assert config["provider"]["type"] == "aws"
    types = config["available_node_types"]
    assert types[config["head_node_type"]]["resources"] == {"CPU": 0}  # drivers only
    assert types["cpu_worker"]["resources"]["CPU"] > 0 and "GPU" not in types["cpu_worker"]["resources"]
    assert types["gpu_worker"]["resources"]["GPU"] >= 1
    for name, t in types.items():
        if name != config["head_node_type"]:
            assert 0 <= t.get("min_workers", 0) <= t["max_workers"] <= config["max_workers"]
    assert any("ranksearch" in c for c in config["setup_commands"])  # installs ranksearch


def test_aws_node_configs_are_ec2_run_instances_parameters():
    import botocore.session
    from botocore.validate import ParamValidator

    model = botocore.session.get_session().get_service_model("ec2")
    shape = model.operation_model("RunInstances").input_shape
    for name, node_type in _load(CLUSTER / "aws.yaml")["available_node_types"].items():
        params = dict(node_type["node_config"], MinCount=1, MaxCount=1)  # Ray adds the counts
        report = ParamValidator().validate(params, shape)
        assert not report.has_errors(), f"{name}: {report.generate_report()}"


def _ray_start_options() -> set[str]:
    from ray.scripts.scripts import start

    return {opt.lstrip("-") for p in start.params for opt in (*p.opts, *p.secondary_opts)}


def _ray_start_args(command: str) -> list[str]:
    words = shlex.split(command.replace(";", " ; "))
    i = words.index("start")
    assert words[i - 1] == "ray"
    return words[i + 1:]


def test_aws_ray_start_lines_use_real_options_and_token_auth():
    from ray.scripts.scripts import start

    config = _load(CLUSTER / "aws.yaml")
    lines = [c for c in config["head_start_ray_commands"] + config["worker_start_ray_commands"]
             if "ray start" in c]
    assert len(lines) == 2
    for line in lines:
        args = [a.replace("$RAY_HEAD_IP", "10.0.0.1") for a in _ray_start_args(line)]
        start.make_context("start", args)  # unknown options or bad values raise here
        assert "RAY_AUTH_MODE=token" in line
    head = lines[0]
    assert "--num-cpus=0" in head and "--dashboard-host=127.0.0.1" in head


def test_aws_config_holds_no_credentials():
    text = (CLUSTER / "aws.yaml").read_text()
    assert not re.search(r"AKIA[0-9A-Z]{16}|aws_secret_access_key|AWS_SECRET_ACCESS_KEY|RAY_AUTH_TOKEN=", text)
    assert "~/.ray/auth_token" in text  # the token travels as a file mount


# -- KubeRay -------------------------------------------------------------------------------------------
# A whitelist schema: {"field": sub-schema}; "str", "int", "bool", "number", "quantity" (str or
# number), ("list", s), ("map", s) for free keys with values of schema s.
STR, INT, BOOL, QTY = "str", "int", "bool", "quantity"
STR_MAP = ("map", STR)

_ENV_VAR = {"name": STR, "value": STR, "valueFrom": {
    "secretKeyRef": {"name": STR, "key": STR, "optional": BOOL},
    "configMapKeyRef": {"name": STR, "key": STR, "optional": BOOL},
    "fieldRef": {"fieldPath": STR, "apiVersion": STR}}}
_RESOURCES = {"requests": ("map", QTY), "limits": ("map", QTY)}
_CONTAINER = {  # core/v1 Container: the fields these manifests may use
    "name": STR, "image": STR, "imagePullPolicy": STR, "command": ("list", STR), "args": ("list", STR),
    "workingDir": STR, "env": ("list", _ENV_VAR),
    "envFrom": ("list", {"secretRef": {"name": STR}, "configMapRef": {"name": STR}, "prefix": STR}),
    "ports": ("list", {"containerPort": INT, "name": STR, "protocol": STR}),
    "resources": _RESOURCES,
    "volumeMounts": ("list", {"name": STR, "mountPath": STR, "readOnly": BOOL, "subPath": STR}),
    "securityContext": {"runAsUser": INT, "runAsNonRoot": BOOL, "allowPrivilegeEscalation": BOOL},
}
_VOLUME = {"name": STR, "persistentVolumeClaim": {"claimName": STR, "readOnly": BOOL},
           "emptyDir": {"medium": STR, "sizeLimit": QTY}, "secret": {"secretName": STR},
           "configMap": {"name": STR}}
_POD_TEMPLATE = {  # core/v1 PodTemplateSpec
    "metadata": {"labels": STR_MAP, "annotations": STR_MAP},
    "spec": {
        "containers": ("list", _CONTAINER), "initContainers": ("list", _CONTAINER),
        "volumes": ("list", _VOLUME), "serviceAccountName": STR, "nodeSelector": STR_MAP,
        "tolerations": ("list", {"key": STR, "operator": STR, "value": STR, "effect": STR}),
        "imagePullSecrets": ("list", {"name": STR}), "priorityClassName": STR,
        "terminationGracePeriodSeconds": INT,
    },
}
_HEAD_GROUP = {  # ray.io/v1 HeadGroupSpec
    "template": _POD_TEMPLATE, "headService": ("map", "any"), "enableIngress": BOOL,
    "rayStartParams": STR_MAP, "serviceType": STR,
}
_WORKER_GROUP = {  # ray.io/v1 WorkerGroupSpec
    "suspend": BOOL, "groupName": STR, "replicas": INT, "minReplicas": INT, "maxReplicas": INT,
    "idleTimeoutSeconds": INT, "rayStartParams": STR_MAP, "template": _POD_TEMPLATE,
    "scaleStrategy": {"workersToDelete": ("list", STR)}, "numOfHosts": INT,
}
_CLUSTER_SPEC = {  # ray.io/v1 RayClusterSpec
    "suspend": BOOL, "managedBy": STR, "headServiceAnnotations": STR_MAP, "enableInTreeAutoscaling": BOOL,
    "rayVersion": STR, "headGroupSpec": _HEAD_GROUP, "workerGroupSpecs": ("list", _WORKER_GROUP),
    "authOptions": {"mode": STR},  # AuthOptions (KubeRay >= 1.5.1): disabled | token
    "autoscalerOptions": {  # AutoscalerOptions
        "resources": _RESOURCES, "image": STR, "imagePullPolicy": STR, "securityContext": ("map", "any"),
        "idleTimeoutSeconds": INT, "upscalingMode": STR, "version": STR, "env": ("list", _ENV_VAR),
        "envFrom": ("list", ("map", "any")), "volumeMounts": ("list", ("map", "any")),
    },
    "gcsFaultToleranceOptions": ("map", "any"),
}
_META = {"name": STR, "namespace": STR, "labels": STR_MAP, "annotations": STR_MAP}
KUBERAY = {
    "RayCluster": {"apiVersion": STR, "kind": STR, "metadata": _META, "spec": _CLUSTER_SPEC},
    "RayJob": {"apiVersion": STR, "kind": STR, "metadata": _META, "spec": {  # ray.io/v1 RayJobSpec
        "activeDeadlineSeconds": INT, "backoffLimit": INT, "rayClusterSpec": _CLUSTER_SPEC,
        "submitterPodTemplate": _POD_TEMPLATE, "metadata": STR_MAP, "clusterSelector": STR_MAP,
        "submitterConfig": {"backoffLimit": INT}, "managedBy": STR,
        "deletionStrategy": {"onSuccess": {"policy": STR}, "onFailure": {"policy": STR}},
        "entrypoint": STR, "runtimeEnvYAML": STR, "jobId": STR, "submissionMode": STR,
        "entrypointResources": STR, "entrypointNumCpus": "number", "entrypointNumGpus": "number",
        "ttlSecondsAfterFinished": INT, "shutdownAfterJobFinishes": BOOL, "suspend": BOOL, "schedule": STR,
    }},
}
_ENUMS = {"authOptions.mode": {"token", "disabled"}, "upscalingMode": {"Default", "Aggressive", "Conservative"},
          "submissionMode": {"K8sJobMode", "HTTPMode", "InteractiveMode"},
          "serviceType": {"ClusterIP", "NodePort", "LoadBalancer"}}


def check_fields(value: Any, schema: Any, where: str = "") -> list[str]:
    """Paths in `value` that the whitelist `schema` does not allow (empty: all fields known)."""
    errors: list[str] = []
    if schema == "any":
        return errors
    if isinstance(schema, dict):
        if not isinstance(value, dict):
            return [f"{where}: expected an object, got {type(value).__name__}"]
        for key, sub in value.items():
            path = f"{where}.{key}" if where else key
            if key not in schema:
                errors.append(f"{path}: not a field of this object (known: {', '.join(sorted(schema))})")
            else:
                errors += check_fields(sub, schema[key], path)
        return errors
    if isinstance(schema, tuple):
        kind, sub = schema
        if kind == "list":
            if not isinstance(value, list):
                return [f"{where}: expected a list"]
            return [e for i, v in enumerate(value) for e in check_fields(v, sub, f"{where}[{i}]")]
        if not isinstance(value, dict):
            return [f"{where}: expected a map"]
        return [e for k, v in value.items() for e in check_fields(v, sub, f"{where}.{k}")]
    ok = {STR: isinstance(value, str), INT: isinstance(value, int) and not isinstance(value, bool),
          BOOL: isinstance(value, bool), "number": isinstance(value, (int, float)) and not isinstance(value, bool),
          QTY: isinstance(value, (str, int, float)) and not isinstance(value, bool)}[schema]
    if not ok:
        return [f"{where}: {value!r} is not a {schema}"]
    for suffix, allowed in _ENUMS.items():
        if where == suffix or where.endswith("." + suffix):
            if value not in allowed:
                errors.append(f"{where}: {value!r} not one of {sorted(allowed)}")
    return errors


def test_the_whitelist_catches_unknown_and_mistyped_fields():
    doc = {"apiVersion": "ray.io/v1", "kind": "RayCluster", "metadata": {"name": "x"},
           "spec": {"headGroupSpec": {"rayStartParams": {"num-cpus": 0}, "template": {"spec": {
               "containers": [{"name": "h", "imagePullPolicy": "Always", "resourcez": {}}]}}},
               "authOptions": {"mode": "tokens"}, "workerGroupSpecs": {"groupName": "a"}}}
    errors = check_fields(doc, KUBERAY["RayCluster"])
    assert any("rayStartParams.num-cpus: 0 is not a str" in e for e in errors)
    assert any("containers[0].resourcez: not a field" in e for e in errors)
    assert any("authOptions.mode" in e for e in errors)
    assert any("workerGroupSpecs: expected a list" in e for e in errors)


def _cluster_specs(doc: dict) -> list[dict]:
    return [doc["spec"]] if doc["kind"] == "RayCluster" else [doc["spec"]["rayClusterSpec"]]


@pytest.mark.parametrize("name", ["raycluster.yaml", "rayjob.yaml"])
def test_kuberay_manifests_use_only_documented_fields(name):
    doc = _load(CLUSTER / "kuberay" / name)
    assert doc["apiVersion"] == "ray.io/v1" and doc["kind"] in KUBERAY
    assert check_fields(doc, KUBERAY[doc["kind"]]) == []
    start_options = _ray_start_options()
    for spec in _cluster_specs(doc):
        assert spec["authOptions"] == {"mode": "token"}
        assert spec["rayVersion"].startswith("2.60")
        groups = [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
        for group in groups:
            assert set(group["rayStartParams"]) <= start_options, group["rayStartParams"]
            for c in group["template"]["spec"]["containers"]:
                assert c["resources"]["requests"] == c["resources"]["limits"]  # per-group resources
        assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
        assert {g["groupName"] for g in spec["workerGroupSpecs"]} == {"cpu", "gpu"}
        gpu = next(g for g in spec["workerGroupSpecs"] if g["groupName"] == "gpu")
        assert gpu["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
        for g in spec["workerGroupSpecs"]:
            assert 0 <= g["minReplicas"] <= g["replicas"] <= g["maxReplicas"]


def test_rayjob_runs_a_real_ranksearch_command_line_and_stops_gracefully():
    import typer

    from ranksearch.cli import app

    job = _load(CLUSTER / "kuberay" / "rayjob.yaml")["spec"]
    words = shlex.split(job["entrypoint"])
    assert words[:3] == ["python", "-m", "ranksearch.cli"]
    command = typer.main.get_command(app)
    ctx = command.make_context("ranksearch", words[3:], resilient_parsing=False)
    sub = command.get_command(ctx, words[3])
    assert sub is not None and sub.name == "run"
    sub.make_context("run", words[4:])  # unknown options raise here
    assert (ROOT / words[4]).is_file()  # the space file the image holds
    assert "--storage" in words and words[words.index("--storage") + 1].startswith("s3://")
    runtime_env = yaml.safe_load(job["runtimeEnvYAML"])
    assert runtime_env["env_vars"]["RAY_JOB_STOP_SIGNAL"] == "SIGINT"
    assert not any(re.search(r"secret|token|password", k, re.I) for k in runtime_env["env_vars"])


def test_dockerfile_installs_ranksearch_on_the_matching_ray_image():
    text = (CLUSTER / "Dockerfile").read_text()
    assert re.search(r"rayproject/ray:2\.60\.0-py311", text)
    assert 'pip install --no-cache-dir "/home/ray/ranksearch[all]"' in text


# -- the local stack's scripts ---------------------------------------------------------------------------
def test_local_stack_scripts_exist_and_show_their_usage():
    import subprocess
    import sys

    for script in ("start.sh", "stop.sh", "stack.py"):
        path = CLUSTER / "local" / script
        assert path.is_file() and os.access(path, os.X_OK), path
    out = subprocess.run([sys.executable, str(CLUSTER / "local" / "stack.py"), "--help"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and "start" in out.stdout and "kill-worker" in out.stdout
    out = subprocess.run(["bash", str(CLUSTER / "local" / "stop.sh")], capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "usage" in out.stderr
