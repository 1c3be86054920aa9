"""Per-tenant target configuration: files, secret references, validation."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest
from pydantic import ValidationError

from cayg_publish.adapters.factory import default_signing_workers
from cayg_publish.config import (
    CLR_UPSERT_SCOPE,
    ClrTargetConfig,
    ConfigError,
    CredentialEngineTargetConfig,
    PublishTargetsConfig,
    SecretRef,
    SqliteLedgerConfig,
)
from cayg_publish.publisher import Publisher
from cayg_signing import SigningKey

pytestmark = pytest.mark.unit

ORG = "ce-a588a18b-2616-4c74-bdcd-6507c0693d0e"
API_KEY = "0f1e2d3c-4b5a-6978-8695-a4b3c2d1e0f9"

TOML = f"""
[ledger]
kind = "sqlite"
path = "{{ledger}}"

[[tenants.northfield-cc.targets]]
kind = "credential-engine"
name = "northfield-registry"
publish_for_organization = "{ORG}"
api_key = {{{{ env = "NF_CE_KEY" }}}}
limits = {{{{ max_concurrency = 2, rate_per_second = 1.5, burst = 3 }}}}

[[tenants.northfield-cc.targets]]
kind = "clr"
name = "northfield-clr"
base_url = "https://clr.example.edu/ims/clr/v2p0"
client_id = "cayg"
client_secret = {{{{ file = "{{secret}}" }}}}
identity_salt = {{{{ env = "NF_SALT" }}}}
signing_key_file = "{{key}}"
contexts_dir = "{{contexts}}"
issuer = {{{{ id = "https://northfield.example/issuers/1", name = "Northfield CC" }}}}
"""


def write_toml(tmp_path: Path, conformance_dir: Path) -> Path:
    secret = tmp_path / "clr-secret"
    secret.write_text("s3cret\n")
    key = tmp_path / "key.json"
    SigningKey.generate("https://northfield.example/issuers/1#key-1").write(key)
    path = tmp_path / "publish.toml"
    path.write_text(
        TOML.format(
            ledger=tmp_path / "ledger.sqlite3",
            secret=secret,
            key=key,
            contexts=conformance_dir / "1edtech" / "contexts",
        )
    )
    return path


def test_a_toml_file_loads_with_defaults(tmp_path: Path, conformance_dir: Path) -> None:
    config = PublishTargetsConfig.load(write_toml(tmp_path, conformance_dir))

    registry, clr = config.targets_for("northfield-cc")
    assert isinstance(registry, CredentialEngineTargetConfig)
    assert str(registry.base_url) == "https://sandbox.credentialengine.org/assistant/"
    assert registry.limits.to_domain().rate_per_second == 1.5
    assert registry.on_delete == "deprecate"
    assert isinstance(clr, ClrTargetConfig)
    assert clr.effective_scopes == (CLR_UPSERT_SCOPE,)
    assert clr.api == "clr"
    assert config.targets_for("unknown-tenant") == ()
    assert isinstance(config.ledger, SqliteLedgerConfig)


def test_a_json_file_loads_too(tmp_path: Path) -> None:
    path = tmp_path / "publish.json"
    path.write_text(
        json.dumps(
            {
                "tenants": {
                    "harbor-tech": {
                        "targets": [
                            {
                                "kind": "credential-engine",
                                "name": "harbor",
                                "publish_for_organization": ORG,
                                "api_key": {"env": "HARBOR_KEY"},
                            }
                        ]
                    }
                }
            }
        )
    )

    assert [t.name for t in PublishTargetsConfig.load(path).targets_for("harbor-tech")] == [
        "harbor"
    ]


def test_secrets_resolve_from_files_and_environment(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("  from-a-file \n")

    assert SecretRef(file=secret).resolve().get_secret_value() == "from-a-file"
    assert SecretRef(env="X").resolve({"X": "from-env"}).get_secret_value() == "from-env"
    assert "from-env" not in repr(SecretRef(env="X").resolve({"X": "from-env"}))


@pytest.mark.parametrize(
    ("ref", "environ", "message"),
    [
        (SecretRef(env="MISSING"), {}, "MISSING"),
        (SecretRef(file=Path("/nonexistent/secret")), {}, "/nonexistent/secret"),
    ],
)
def test_unresolvable_secrets_say_where_they_were_looked_for(
    ref: SecretRef, environ: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        ref.resolve(environ)


def test_a_secret_reference_names_exactly_one_place() -> None:
    with pytest.raises(ValidationError, match="exactly one"):
        SecretRef()
    with pytest.raises(ValidationError, match="exactly one"):
        SecretRef(env="A", file=Path("/a"))


def test_target_names_are_unique_across_tenants() -> None:
    target = {
        "kind": "credential-engine",
        "name": "shared",
        "publish_for_organization": ORG,
        "api_key": {"env": "K"},
    }
    with pytest.raises(ValidationError, match="unique"):
        PublishTargetsConfig.model_validate(
            {"tenants": {"aa": {"targets": [target]}, "bb": {"targets": [target]}}}
        )


def test_unknown_settings_are_refused() -> None:
    with pytest.raises(ValidationError):
        PublishTargetsConfig.model_validate({"tenants": {}, "ledgr": {}})


def test_broken_files_are_config_errors(tmp_path: Path) -> None:
    path = tmp_path / "publish.toml"
    path.write_text("[ledger\n")

    with pytest.raises(ConfigError, match="not valid toml"):
        PublishTargetsConfig.load(path)


async def test_publisher_builds_every_tenants_targets(
    tmp_path: Path, conformance_dir: Path
) -> None:
    config = PublishTargetsConfig.load(write_toml(tmp_path, conformance_dir))

    publisher = Publisher.from_config(config, environ={"NF_CE_KEY": API_KEY, "NF_SALT": "salt"})
    await publisher.start()

    assert [t.name for t in publisher.targets_for("northfield-cc")] == [
        "northfield-registry",
        "northfield-clr",
    ]
    assert API_KEY not in repr(publisher)
    assert "s3cret" not in repr(publisher.targets_for("northfield-cc"))
    await publisher.aclose()


async def test_a_lane_starts_the_signing_workers_of_its_own_targets_before_it_is_ready(
    tmp_path: Path, conformance_dir: Path
) -> None:
    # Workers started lazily made a lane's first credentials wait for process start-up
    # (about 2 s after the first award); a registry lane signs nothing and needs none.
    config = PublishTargetsConfig.load(write_toml(tmp_path, conformance_dir))
    environ = {"NF_CE_KEY": API_KEY, "NF_SALT": "salt"}
    before = {p.pid for p in multiprocessing.active_children()}

    registry_lane = Publisher.from_config(config, environ=environ, signing_workers=1)
    await registry_lane.start(lambda target: target == "northfield-registry")
    started_by_registry = {p.pid for p in multiprocessing.active_children()} - before
    await registry_lane.aclose()

    clr_lane = Publisher.from_config(config, environ=environ, signing_workers=1)
    await clr_lane.start(lambda target: target == "northfield-clr")
    started_by_clr = {p.pid for p in multiprocessing.active_children()} - before
    await clr_lane.aclose()

    assert started_by_registry == set()
    assert len(started_by_clr) == 1


def test_a_missing_secret_stops_the_publisher_from_starting(
    tmp_path: Path, conformance_dir: Path
) -> None:
    config = PublishTargetsConfig.load(write_toml(tmp_path, conformance_dir))

    with pytest.raises(ConfigError, match="NF_CE_KEY"):
        Publisher.from_config(config, environ={"NF_SALT": "salt"})


@pytest.mark.parametrize(("cpus", "workers"), [(1, 1), (2, 1), (4, 3), (16, 15)])
def test_signing_workers_default_to_the_cpus_the_service_leaves(
    monkeypatch: pytest.MonkeyPatch, cpus: int, workers: int
) -> None:
    monkeypatch.setattr("os.sched_getaffinity", lambda _pid: set(range(cpus)))
    monkeypatch.setattr("cayg_shared.settings.cgroup_cpu_limit", lambda: None)

    assert default_signing_workers() == workers
