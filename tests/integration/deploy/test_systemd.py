"""The systemd units in ``deploy/systemd`` for VM installs.

``systemd-analyze verify`` checks each unit as systemd would load it (unknown keys and
unparsable values are warnings there, failures here), with ``ExecStart`` pointed from the
install location (``/opt/cayg/venv``) at this checkout's environment, where ``uv sync``
installed the same entry points; ``systemd-analyze security --offline`` scores the
hardening. The example environment files are read the way systemd reads them and loaded
into the services' settings classes: a variable no setting reads fails, and so does a
lane, port or file that does not fit the unit it belongs to.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cayg_ops.demo import SERVICE_PORTS
from cayg_publish.config import PublishTargetsConfig, SqliteLedgerConfig
from cayg_publish.settings import PublishSettings
from cayg_shared.settings import ServiceSettings
from support.deploy import SETTINGS_BY_COMMAND, field_path, read_environment_file

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[3]
SYSTEMD = REPO_ROOT / "deploy" / "systemd"
INSTALLED_BIN = "/opt/cayg/venv/bin/"
#: Where the example environment files expect the configuration files, and the
#: repository's examples of them.
CONFIG_FILES = {
    "/etc/cayg/tenants.json": REPO_ROOT / "deploy" / "config" / "tenants.json",
    "/etc/cayg/publish.toml": REPO_ROOT / "deploy" / "config" / "publish.toml",
}
#: One unit per service and publish lane: unit -> (command, lane).
UNITS = {
    "cayg-ingest.service": ("cayg-ingest", None),
    "cayg-normalize.service": ("cayg-normalize", None),
    "cayg-publish-registry.service": ("cayg-publish", "registry"),
    "cayg-publish-clr.service": ("cayg-publish", "clr"),
}
#: systemd-analyze security's scale: 0 is fully locked down, 10 is unprotected; "OK"
#: ends below 2.
MAX_EXPOSURE = 2.0

Unit = dict[str, list[tuple[str, str]]]


def systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        pytest.fail("systemd-analyze not found on PATH: install Debian's `systemd` package")
    return path


def parse_unit(path: Path) -> Unit:
    """A unit file as sections of (key, value) pairs, repeated keys kept in order."""
    sections: Unit = {}
    current: list[tuple[str, str]] | None = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), [])
            continue
        assert current is not None, f"{path.name}: {line!r} outside a section"
        key, separator, value = line.partition("=")
        assert separator, f"{path.name}: {line!r}"
        current.append((key.strip(), value.strip()))
    return sections


def value(unit: Unit, section: str, key: str) -> str:
    values = [v for k, v in unit.get(section, []) if k == key]
    assert len(values) == 1, f"{key} in [{section}]: {values}"
    return values[0]


@pytest.fixture(scope="module")
def testable_units(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The units with ExecStart pointed at this checkout's entry points."""
    directory = tmp_path_factory.mktemp("units")
    here = f"{Path(sys.executable).parent}/"
    for path in sorted(SYSTEMD.glob("*.service")) + sorted(SYSTEMD.glob("*.target")):
        text = path.read_text()
        assert text.count(INSTALLED_BIN) <= 1, path.name
        (directory / path.name).write_text(text.replace(INSTALLED_BIN, here))
    return directory


def test_one_unit_per_service_and_lane_all_wanted_by_the_target() -> None:
    assert sorted(p.name for p in SYSTEMD.glob("*.service")) == sorted(UNITS)
    target = parse_unit(SYSTEMD / "cayg.target")
    assert sorted(value(target, "Unit", "Wants").split()) == sorted(UNITS)
    for name in UNITS:
        unit = parse_unit(SYSTEMD / name)
        assert value(unit, "Install", "WantedBy") == "cayg.target"
        assert value(unit, "Unit", "PartOf") == "cayg.target"


@pytest.mark.parametrize("name", sorted(UNITS))
def test_unit_passes_systemd_analyze_verify(name: str, testable_units: Path) -> None:
    result = subprocess.run(
        [systemd_analyze(), "verify", "--man=no", name],
        cwd=testable_units,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # Unknown keys and bad values are only warnings to systemd (exit 0): refuse them too.
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr


@pytest.mark.parametrize("name", sorted(UNITS))
def test_unit_is_hardened(name: str, testable_units: Path) -> None:
    result = subprocess.run(
        [systemd_analyze(), "security", "--offline=yes", "--no-pager", name],
        cwd=testable_units,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match[1]) <= MAX_EXPOSURE, result.stdout
    unit = parse_unit(SYSTEMD / name)
    assert value(unit, "Service", "User") not in {"root", "0"}
    assert value(unit, "Service", "NoNewPrivileges") == "yes"
    assert value(unit, "Service", "ProtectSystem") == "strict"


@pytest.mark.parametrize("name", sorted(UNITS))
def test_unit_environment_file_loads_into_the_service_settings(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    unit = parse_unit(SYSTEMD / name)
    command, lane = UNITS[name]
    exec_start = value(unit, "Service", "ExecStart")
    assert exec_start == f"{INSTALLED_BIN}{command}"
    assert value(unit, "Service", "Restart") in {"on-failure", "always"}

    environment_file = value(unit, "Service", "EnvironmentFile")
    assert (
        environment_file == f"/etc/cayg/{name.removeprefix('cayg-').removesuffix('.service')}.env"
    )
    env = read_environment_file(SYSTEMD / Path(environment_file).name)

    settings_class = SETTINGS_BY_COMMAND[command]
    for variable in list(env):
        field_path(settings_class, variable)  # fails on a name no setting reads
        if env[variable].startswith("/"):
            env[variable] = str(stand_in_file(env[variable], tmp_path))
    for variable in [v for v in os.environ if v.startswith("CAYG_")]:
        monkeypatch.delenv(variable)
    for variable, text in env.items():
        monkeypatch.setenv(variable, text)
    settings = settings_class()
    assert isinstance(settings, ServiceSettings)

    # The ports the demo and deploy/prometheus/prometheus.yml use for this service/lane.
    component = command.removeprefix("cayg-") + ("-clr" if lane == "clr" else "")
    assert settings.http_port == SERVICE_PORTS[component]
    # systemd waits for the graceful stop (GRACEFUL_TIMEOUT_S, uvicorn 5 s more).
    stop = value(unit, "Service", "TimeoutStopSec")
    assert float(stop.removesuffix("s")) > settings.graceful_timeout_s + 5
    assert settings.kafka.sasl_password is not None, "the password file was read"

    if isinstance(settings, PublishSettings):
        assert settings.lane == lane
        assert settings.consumer_group == f"cayg-publish.{lane}"
        assert settings.targets_file is not None
        config = PublishTargetsConfig.load(settings.targets_file)
        served = [
            target.name
            for tenant in config.tenants.values()
            for target in tenant.targets
            if settings.serves(target.name)
        ]
        assert served, f"lane {lane} serves no target of publish.toml"
        if isinstance(config.ledger, SqliteLedgerConfig):
            state = f"/var/lib/{value(unit, 'Service', 'StateDirectory')}/"
            assert str(config.ledger.path).startswith(state), (
                "ProtectSystem=strict leaves only the StateDirectory writable"
            )
    else:
        assert lane is None


def stand_in_file(path: str, root: Path) -> Path:
    """A file standing in for ``path`` on an installed host: the repository's example of
    a configuration file, or a placeholder secret under /etc/cayg/secrets."""
    if path in CONFIG_FILES:
        return CONFIG_FILES[path]
    assert path.startswith("/etc/cayg/secrets/"), f"{path}: secrets belong in /etc/cayg/secrets"
    stand_in = root / path.lstrip("/")
    stand_in.parent.mkdir(parents=True, exist_ok=True)
    stand_in.write_text("placeholder\n")
    return stand_in
