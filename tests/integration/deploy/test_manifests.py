"""The Kubernetes manifests in ``deploy/k8s``, checked against Kubernetes and the services.

* Every object validates against the Kubernetes API schemas of :data:`KUBERNETES_VERSION`
  (``kubernetes-validate``, strict: unknown fields fail), and KEDA's ScaledObjects and
  TriggerAuthentications against ``keda.schema.json`` beside this file (KEDA is a CRD the
  Kubernetes schemas do not know). The kustomization is rendered with ``kubectl kustomize``
  and what it renders (generated ConfigMaps included) is validated too.
* Each Deployment is read the way its pod would see it: environment from literals,
  ConfigMaps and the example Secrets, files from its volumes written into a temporary
  directory. Every variable must name a setting of the service's settings class, the
  settings must load from that environment, and probes, ports, consumer groups, the KEDA
  triggers and the secret files ``publish.toml`` refers to must agree with them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import jsonschema
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml  # type: ignore[import-untyped]
from pydantic_settings import BaseSettings

from cayg_ingest.app import create_app as create_ingest_app
from cayg_ingest.settings import IngestSettings
from cayg_normalize.app import create_app as create_normalize_app
from cayg_normalize.settings import NormalizeSettings
from cayg_publish.config import ClrTargetConfig, PublishTargetsConfig, SecretRef
from cayg_publish.settings import PublishSettings
from cayg_shared.settings import KafkaSettings, ServiceSettings
from cayg_shared.tenants import TenantRegistry
from cayg_shared.topics import Topics
from support.deploy import (
    REPO_ROOT,
    SETTINGS_BY_COMMAND,
    env_prefix,
    field_path,
    workspace_scripts,
)

pytestmark = pytest.mark.integration

K8S = REPO_ROOT / "deploy" / "k8s"
KEDA_SCHEMA = Path(__file__).with_name("keda.schema.json")
#: The oldest Kubernetes the manifests are written for. Validating against its schemas
#: makes a field that only later versions know fail here.
KUBERNETES_VERSION = "1.31.0"
#: Files under deploy/k8s that are not applied: the kustomization itself, and the shape of
#: the Secrets an operator creates (never applied with placeholder values).
NOT_RESOURCES = {"kustomization.yaml", "secrets.example.yaml"}
#: One Deployment per service and per publish lane.
DEPLOYMENTS = ("cayg-ingest", "cayg-normalize", "cayg-publish-registry", "cayg-publish-clr")
#: The topic each service's consumer group reads, by command (None: ingest subscribes to
#: the SIS topics by pattern, so its scaler must count every topic of its group).
CONSUMED_TOPIC = {"cayg-ingest": None, "cayg-normalize": "ingested", "cayg-publish": "normalized"}
#: Kafka's SASL mechanism names in KEDA's spelling.
KEDA_SASL = {"PLAIN": "plaintext", "SCRAM-SHA-256": "scram_sha256", "SCRAM-SHA-512": "scram_sha512"}

Object = dict[str, Any]


# ---------------------------------------------------------------- reading


def documents(path: Path) -> list[Object]:
    """The YAML documents of ``path`` (empty ones dropped)."""
    with path.open() as stream:
        return [doc for doc in yaml.safe_load_all(stream) if doc is not None]


def manifest_files() -> list[Path]:
    return sorted(K8S.glob("*.yaml"))


def kustomization() -> Object:
    loaded: Object = documents(K8S / "kustomization.yaml")[0]
    return loaded


def resources() -> list[Object]:
    """Every object the kustomization applies, as written in its files."""
    return [doc for name in kustomization()["resources"] for doc in documents(K8S / name)]


def find(objects: list[Object], kind: str, name: str) -> Object:
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"{len(matches)} {kind} named {name}"
    return matches[0]


def config_maps() -> dict[str, dict[str, str]]:
    """The kustomization's generated ConfigMaps: name -> key -> content."""
    generated: dict[str, dict[str, str]] = {}
    for generator in kustomization().get("configMapGenerator", []):
        data: dict[str, str] = {}
        for file in generator.get("files", []):
            data[Path(file).name] = (K8S / file).read_text()
        for literal in generator.get("literals", []):
            key, separator, value = literal.partition("=")
            assert separator, f"literal {literal!r} has no '='"
            data[key] = value
        generated[generator["name"]] = data
    return generated


def example_secrets() -> dict[str, dict[str, str]]:
    """The Secrets of secrets.example.yaml: name -> key -> value."""
    secrets: dict[str, dict[str, str]] = {}
    for doc in documents(K8S / "secrets.example.yaml"):
        assert doc["kind"] == "Secret"
        secrets[doc["metadata"]["name"]] = dict(doc["stringData"])
    return secrets


def keda_validator(kind: str) -> jsonschema.Draft202012Validator:
    """A validator for one KEDA kind (a ScaledObject's errors then name its own fields)."""
    keda = json.loads(KEDA_SCHEMA.read_text())
    assert kind in keda["$defs"], f"no schema for KEDA kind {kind}"
    return jsonschema.Draft202012Validator({"$ref": f"#/$defs/{kind}", "$defs": keda["$defs"]})


# ------------------------------------------------------- what a pod sees


class Mounted(NamedTuple):
    """A file a container sees: the ConfigMap or Secret it comes from, and its content."""

    source: str
    content: str


def mounted_files(
    pod: Object, container: Object, maps: dict[str, dict[str, str]], secrets: Object
) -> dict[str, Mounted]:
    """Every file ``container`` sees from its ConfigMap and Secret volumes, by path."""
    volumes = {volume["name"]: volume for volume in pod.get("volumes", [])}
    files: dict[str, Mounted] = {}
    for mount in container.get("volumeMounts", []):
        assert mount["name"] in volumes, f"volumeMount {mount['name']} has no volume"
        assert "subPath" not in mount, "subPath mounts do not see updated ConfigMaps/Secrets"
        volume = volumes[mount["name"]]
        if "configMap" in volume:
            name, items = volume["configMap"]["name"], volume["configMap"].get("items")
            source = maps.get(name)
        elif "secret" in volume:
            name, items = volume["secret"]["secretName"], volume["secret"].get("items")
            source = secrets.get(name)
        else:
            continue
        assert source is not None, f"volume {mount['name']} mounts {name}, which is not defined"
        if items is None:
            entries = dict(source)
        else:
            for item in items:
                assert item["key"] in source, f"{name} has no key {item['key']}"
            entries = {item["path"]: source[item["key"]] for item in items}
        for relative, content in entries.items():
            files[f"{mount['mountPath'].rstrip('/')}/{relative}"] = Mounted(name, content)
    return files


def environment(
    container: Object, maps: dict[str, dict[str, str]], secrets: dict[str, dict[str, str]]
) -> dict[str, str]:
    """The container's environment, references resolved."""
    env: dict[str, str] = {}
    for var in container.get("env", []):
        name = var["name"]
        assert name not in env, f"{name} is set twice"
        if "value" in var:
            env[name] = str(var["value"])
            continue
        source = var["valueFrom"]
        if "configMapKeyRef" in source:
            ref, table, kind = source["configMapKeyRef"], maps, "ConfigMap"
        else:
            ref, table, kind = source["secretKeyRef"], secrets, "Secret"
        assert ref["name"] in table, f"{name}: {kind} {ref['name']} is not defined"
        assert ref["key"] in table[ref["name"]], f"{name}: {ref['name']} has no key {ref['key']}"
        env[name] = table[ref["name"]][ref["key"]]
    return env


def under(root: Path, absolute: str) -> Path:
    return root / absolute.lstrip("/")


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No CAYG_* variable of this process leaks into the settings under test."""
    for name in list(os.environ):
        if name.startswith("CAYG_"):
            monkeypatch.delenv(name)
    return monkeypatch


def load_settings(
    deployment: Object, root: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[str, BaseSettings, dict[str, Mounted]]:
    """Load the settings the Deployment's container would start with.

    The container's mounted files are written under ``root``; environment values naming
    a mounted file are pointed there. Returns the command, the settings and the files.
    """
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    command = container["command"][0]
    assert command in SETTINGS_BY_COMMAND, f"{command} is not a cayg service"
    settings_class = SETTINGS_BY_COMMAND[command]
    maps, secrets = config_maps(), example_secrets()
    files = mounted_files(pod, container, maps, secrets)
    for path, mounted in files.items():
        under(root, path).parent.mkdir(parents=True, exist_ok=True)
        under(root, path).write_text(mounted.content)
    env = environment(container, maps, secrets)
    for name, value in env.items():
        field_path(settings_class, name)  # fails on a name no setting reads
        if value.startswith("/"):
            assert value in files, f"{name}={value}: no volume of the pod provides that file"
            env[name] = str(under(root, value))
        monkeypatch.setenv(name, env[name])
    return command, settings_class(), files


# ------------------------------------------------------------ the tests


def test_the_kustomization_applies_every_manifest_and_its_config_files_exist() -> None:
    listed = set(kustomization()["resources"])
    on_disk = {path.name for path in manifest_files()} - NOT_RESOURCES
    assert listed == on_disk, "deploy/k8s files and kustomization resources differ"
    for generator in kustomization()["configMapGenerator"]:
        for file in generator.get("files", []):
            assert (K8S / file).is_file(), f"{file} is missing"


@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: p.name)
def test_every_manifest_validates_against_the_kubernetes_and_keda_schemas(path: Path) -> None:
    docs = documents(path)
    if path.name == "kustomization.yaml":
        assert docs[0]["kind"] == "Kustomization"
        return
    assert docs, f"{path.name} holds no object"
    for doc in docs:
        name = f"{path.name}: {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        if doc["apiVersion"].startswith("keda.sh/"):
            error = jsonschema.exceptions.best_match(keda_validator(doc["kind"]).iter_errors(doc))
            assert error is None, f"{name}: {error.message} at {list(error.absolute_path)}"
            continue
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{name}: {error.message} at {list(error.absolute_path)}")


def test_what_kubectl_kustomize_renders_validates() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl not found on PATH: it renders the kustomization (kubectl kustomize)")
    rendered = subprocess.run(
        [kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=60, check=False
    )
    assert rendered.returncode == 0, rendered.stderr
    objects = [doc for doc in yaml.safe_load_all(rendered.stdout) if doc is not None]
    for doc in objects:
        assert doc["metadata"].get("namespace", "cayg") == "cayg" or doc["kind"] == "Namespace"
        if doc["apiVersion"].startswith("keda.sh/"):
            keda_validator(doc["kind"]).validate(doc)
        else:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    kinds = sorted(doc["kind"] for doc in objects)
    assert kinds.count("Deployment") == len(DEPLOYMENTS)
    assert kinds.count("ConfigMap") == len(kustomization()["configMapGenerator"])
    # Generated names carry a content hash; every reference was rewritten to it.
    text = rendered.stdout
    for generator in kustomization()["configMapGenerator"]:
        assert f"name: {generator['name']}\n" not in text, f"{generator['name']} not rewritten"


def test_one_deployment_per_service_and_publish_lane() -> None:
    objects = resources()
    deployments = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Deployment"}
    assert sorted(deployments) == sorted(DEPLOYMENTS)
    lanes = {}
    for name, deployment in deployments.items():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        env = {v["name"]: v.get("value") for v in container.get("env", [])}
        if container["command"][0] == "cayg-publish":
            lanes[env.get("CAYG_PUBLISH_LANE")] = name
    assert lanes == {"registry": "cayg-publish-registry", "clr": "cayg-publish-clr"}


@pytest.mark.parametrize("name", DEPLOYMENTS)
def test_deployment_matches_the_service_it_runs(
    name: str, tmp_path: Path, clean_environment: pytest.MonkeyPatch
) -> None:
    objects = resources()
    deployment = find(objects, "Deployment", name)
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    command, settings, files = load_settings(deployment, tmp_path, clean_environment)
    assert isinstance(settings, ServiceSettings)
    assert command in workspace_scripts()

    # Probes and ports: what the settings make the service listen on.
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"http": settings.http_port}
    assert settings.http_host == "0.0.0.0", "probes from the kubelet need every interface"
    for probe, path in (
        ("startupProbe", "/healthz"),
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
    ):
        get = container[probe]["httpGet"]
        assert get["path"] == path, f"{probe} asks {get['path']}"
        assert ports.get(get["port"], get["port"]) == settings.http_port, f"{probe} port"
    # SIGTERM waits GRACEFUL_TIMEOUT_S for in-flight work, uvicorn 5 s more.
    assert pod["terminationGracePeriodSeconds"] > settings.graceful_timeout_s + 5

    # Security and resources.
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["automountServiceAccountToken"] is False
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    for bound in ("requests", "limits"):
        assert set(container["resources"][bound]) == {"cpu", "memory"}, bound

    # The service reaches Kafka as its own principal, with the password from a file.
    username_ref = next(
        v["valueFrom"]["secretKeyRef"]
        for v in container["env"]
        if v["name"] == f"{env_prefix(type(settings))}KAFKA__SASL_USERNAME"
    )
    service = command.removeprefix("cayg-")
    assert username_ref["name"] == f"cayg-kafka-{service}"
    for file_setting in ("KAFKA__SASL_PASSWORD_FILE", "KAFKA__SSL_CAFILE"):
        path = next(v["value"] for v in container["env"] if v["name"].endswith(f"_{file_setting}"))
        assert files[path].source == username_ref["name"], f"{file_setting} from another Secret"
    assert settings.kafka.sasl_password is not None
    assert settings.kafka.sasl_password_file is not None
    assert settings.kafka.ssl_cafile is not None
    assert settings.kafka.ssl_cafile.is_file()
    assert settings.tenants_file is not None
    TenantRegistry.load(settings.tenants_file)

    # Scaling: a ScaledObject on this Deployment's consumer group and topic.
    scaled = find(objects, "ScaledObject", name)
    assert scaled["spec"]["scaleTargetRef"]["name"] == name
    assert scaled["spec"]["minReplicaCount"] >= 1, "never to zero: the services keep state"
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "kafka"
    group = settings.consumer_group if isinstance(settings, PublishSettings) else settings.group_id
    assert trigger["metadata"]["consumerGroup"] == group
    topic = CONSUMED_TOPIC[command]
    expected = None if topic is None else getattr(Topics(settings.topic_prefix), topic)
    assert trigger["metadata"].get("topic") == expected
    assert trigger["metadata"]["bootstrapServers"] == settings.kafka.bootstrap_servers
    auth = find(objects, "TriggerAuthentication", trigger["authenticationRef"]["name"])
    refs = {ref["parameter"]: ref for ref in auth["spec"]["secretTargetRef"]}
    assert {ref["name"] for ref in refs.values()} == {username_ref["name"]}
    secret = example_secrets()[username_ref["name"]]
    for ref in refs.values():
        assert ref["key"] in secret, f"{ref['name']} has no key {ref['key']}"
    assert secret[refs["sasl"]["key"]] == KEDA_SASL[settings.kafka.sasl_mechanism or "PLAIN"]
    assert (secret[refs["tls"]["key"]] == "enable") == settings.kafka.security_protocol.endswith(
        "SSL"
    )

    # A metrics Service and a disruption budget selecting exactly these pods.
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"] == labels
    metrics = find(objects, "Service", name)
    assert metrics["spec"]["selector"] == labels
    assert [(p["port"], p["targetPort"]) for p in metrics["spec"]["ports"]] == [
        (settings.http_port, "http")
    ]
    assert metrics["metadata"]["annotations"]["prometheus.io/path"] == "/metrics"
    assert metrics["metadata"]["annotations"]["prometheus.io/port"] == str(settings.http_port)
    budget = find(objects, "PodDisruptionBudget", name)
    assert budget["spec"]["selector"]["matchLabels"] == labels


def test_publish_lanes_split_the_targets_and_can_read_every_secret_they_name(
    tmp_path: Path, clean_environment: pytest.MonkeyPatch
) -> None:
    objects = resources()
    served: dict[str, list[str]] = {}
    for name in ("cayg-publish-registry", "cayg-publish-clr"):
        root = tmp_path / name
        _, settings, files = load_settings(
            find(objects, "Deployment", name), root, clean_environment
        )
        assert isinstance(settings, PublishSettings)
        assert settings.targets_file is not None
        config = PublishTargetsConfig.load(settings.targets_file)
        assert config.ledger.kind == "postgres", "lanes in separate pods share one ledger"
        tenants = TenantRegistry.load(settings.tenants_file or "")
        for tenant in config.tenants:
            assert tenant in tenants, f"publish.toml names tenant {tenant}, tenants.json not"
            for target in config.targets_for(tenant):
                if settings.serves(target.name):
                    served.setdefault(target.name, []).append(name)
        # Every secret file publish.toml names is in a Secret this pod mounts.
        for path in secret_files(config):
            assert path in files, f"{name}: publish.toml reads {path}, no volume provides it"
            SecretRef(file=under(root, path)).resolve()
    every_target = {
        target.name
        for tenant in PublishTargetsConfig.load(K8S / "config" / "publish.toml").tenants.values()
        for target in tenant.targets
    }
    assert set(served) == every_target, "a target no lane delivers to"
    assert all(len(lanes) == 1 for lanes in served.values()), f"served twice: {served}"


def secret_files(config: PublishTargetsConfig) -> list[str]:
    """The files ``config`` reads secrets and keys from."""
    paths: list[str] = []
    refs: list[SecretRef] = []
    if config.ledger.kind == "postgres":
        refs.append(config.ledger.dsn)
    for tenant in config.tenants.values():
        for target in tenant.targets:
            if isinstance(target, ClrTargetConfig):
                refs += [target.client_secret, target.identity_salt]
                paths.append(str(target.signing_key_file))
            else:
                refs.append(target.api_key)
    for ref in refs:
        assert ref.file is not None, f"a secret from the environment ({ref.env}); mount files"
        paths.append(str(ref.file))
    return paths


@pytest.mark.parametrize(
    ("name", "settings_class", "create_app"),
    [
        ("cayg-ingest", IngestSettings, create_ingest_app),
        ("cayg-normalize", NormalizeSettings, create_normalize_app),
    ],
)
async def test_the_probed_paths_are_served(
    name: str, settings_class: type[ServiceSettings], create_app: Any
) -> None:
    """The service, built as the Deployment configures its HTTP side, answers the probes'
    paths (readiness 503 here: no broker) and the metrics Service's path."""
    (container,) = find(resources(), "Deployment", name)["spec"]["template"]["spec"]["containers"]
    tenants = TenantRegistry.load(K8S / "config" / "tenants.json")
    settings = settings_class(kafka=KafkaSettings(bootstrap_servers="127.0.0.1:9"))
    app = create_app(settings, tenants)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://pod") as client:
        live = await client.get(container["livenessProbe"]["httpGet"]["path"])
        assert live.status_code == 200
        ready = await client.get(container["readinessProbe"]["httpGet"]["path"])
        assert ready.status_code == 503
        assert ready.json()["checks"]["kafka"] is False
        metrics_path = find(resources(), "Service", name)["metadata"]["annotations"][
            "prometheus.io/path"
        ]
        metrics = await client.get(metrics_path)
        assert metrics.status_code == 200
        assert "# TYPE" in metrics.text
