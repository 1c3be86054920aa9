"""The observability deployment, checked against a real Prometheus.

``deploy/prometheus`` (scrape config, alert rules and their promtool unit tests) and
``deploy/grafana`` (dashboard and provisioning) are configuration that only fails when an
operator needs it, so these tests run the real tools: ``promtool check``/``test``, and a
``prometheus`` started on a free loopback port with a temporary TSDB and the repository's
config, its scrape targets pointed at small exporters served here with ``prometheus_client``.
Every PromQL expression of the dashboard is sent to that Prometheus, which answers a parse
error with HTTP 400 ``bad_data``.

Prometheus and promtool come from the Debian package ``prometheus``; the tests fail (never
skip) without them, saying that ``bash deploy/setup.sh`` installs them.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from faststream.prometheus.container import MetricsContainer
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[3]
PROMETHEUS_DIR = REPO_ROOT / "deploy" / "prometheus"
GRAFANA_DIR = REPO_ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA_DIR / "dashboards" / "cayg-pipeline.json"
DATASOURCES = GRAFANA_DIR / "provisioning" / "datasources" / "cayg.yml"
DASHBOARD_PROVIDERS = GRAFANA_DIR / "provisioning" / "dashboards" / "cayg.yml"

SETUP_HINT = "`bash deploy/setup.sh` installs them (Debian package `prometheus`)"

# The endpoints deploy/prometheus/prometheus.yml scrapes, by the exporter that stands in
# for each here (publish runs as two lanes in the demo). The demo's registry and CLR
# stand-ins serve no /metrics and are not scraped.
SCRAPED = {
    "127.0.0.1:8081": "ingest",
    "127.0.0.1:8082": "normalize",
    "127.0.0.1:8083": "publish",
    "127.0.0.1:8084": "publish-clr",
}

# cayg's own metric series, as the services export them (counters with ``_total``,
# histograms with their ``_bucket``/``_sum``/``_count``). FastStream's are read from the
# installed library, see ``known_series``.
CAYG_SERIES = {
    "cayg_ingest_accepted_total",
    "cayg_ingest_rejected_total",
    "cayg_normalize_changes_total",
    "cayg_normalize_rejected_total",
    "cayg_publish_outcomes_total",
    "cayg_publish_changes_total",
    "cayg_publish_documents",
    "cayg_publish_request_duration_seconds_bucket",
    "cayg_publish_request_duration_seconds_sum",
    "cayg_publish_request_duration_seconds_count",
    "cayg_consumer_lag",
    "cayg_build_info",
}

# Grafana's own variables, replaced by a duration before an expression goes to Prometheus.
GRAFANA_DURATIONS = ("__rate_interval", "__interval", "__range")
VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")
LABEL_VALUES = re.compile(r"^label_values\((?:(?P<selector>.+),\s*)?(?P<label>\w+)\)$")

T = TypeVar("T")


def tool(name: str) -> str:
    """The path of a Prometheus binary; the test fails when it is not installed."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found on PATH: {SETUP_HINT}")
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("promtool"), *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def wait_for(what: str, probe: Callable[[], T | None], timeout_s: float = 30.0) -> T:
    """Call ``probe`` until it returns something other than None."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = probe()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.25)


# ------------------------------------------------------------------ exporters


@dataclass
class Exporter:
    """A loopback ``/metrics`` endpoint serving one registry."""

    name: str
    registry: CollectorRegistry
    address: str
    stop: Callable[[], None]


def serve(name: str, registry: CollectorRegistry) -> Exporter:
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return Exporter(name, registry, f"127.0.0.1:{server.server_port}", stop)


def faststream_metrics(registry: CollectorRegistry, app_name: str, handler: str) -> None:
    """FastStream's Kafka middleware metrics for one handler, built by FastStream itself."""
    metrics = MetricsContainer(registry, custom_label_names=())
    labels = {"app_name": app_name, "broker": "kafka", "handler": handler}
    metrics.received_messages_total.labels(**labels).inc(10)
    metrics.received_messages_size_bytes.labels(**labels).observe(512)
    metrics.received_messages_in_process.labels(**labels).set(0)
    metrics.received_processed_messages_total.labels(**labels, status="acked").inc(10)
    metrics.received_processed_messages_duration_seconds.labels(**labels).observe(0.02)


def consumer_lag(
    registry: CollectorRegistry, service: str, topic: str, lag: int, lane: str = ""
) -> None:
    """The service's identity and its group's lag, labelled as ``cayg_shared.service`` does."""
    group = f"cayg-{service}" + (f".{lane}" if lane else "")
    gauge = Gauge(
        "cayg_consumer_lag",
        "lag",
        ["service", "lane", "group", "topic", "partition"],
        registry=registry,
    )
    gauge.labels(service=service, lane=lane, group=group, topic=topic, partition="0").set(lag)
    info = Gauge(
        "cayg_build_info", "build", ["service", "lane", "version", "python"], registry=registry
    )
    info.labels(service=service, lane=lane, version="0.1.0", python="3.11.2").set(1)


def ingest_registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    faststream_metrics(registry, "cayg-ingest", "sis.events.acme")
    accepted = Counter("cayg_ingest_accepted", "accepted", ["tenant", "format"], registry=registry)
    accepted.labels(tenant="acme", format="ethos").inc(10)
    rejected = Counter("cayg_ingest_rejected", "rejected", ["reason"], registry=registry)
    rejected.labels(reason="too-large").inc(2)
    consumer_lag(registry, "ingest", "sis.events.acme", 0)
    return registry


def normalize_registry() -> CollectorRegistry:
    """A normalize that has a backlog and has processed nothing: stuck."""
    registry = CollectorRegistry()
    consumer_lag(registry, "normalize", "cayg.ingested.v1", 7)
    return registry


def publish_registry(lane: str) -> CollectorRegistry:
    registry = CollectorRegistry()
    faststream_metrics(registry, "cayg-publish", "cayg.normalized.v1")
    outcomes = Counter(
        "cayg_publish_outcomes", "outcomes", ["target", "outcome"], registry=registry
    )
    outcomes.labels(target="registry", outcome="applied").inc(9)
    outcomes.labels(target="clr", outcome="applied").inc(9)
    Counter("cayg_publish_changes", "changes", ["tenant", "entity_type"], registry=registry).labels(
        tenant="t1", entity_type="award"
    ).inc(9)
    documents = Gauge(
        "cayg_publish_documents",
        "documents per state",
        ["target", "tenant", "state", "reason"],
        registry=registry,
    )
    documents.labels(target="registry", tenant="t1", state="clean", reason="").set(9)
    documents.labels(target="clr", tenant="t1", state="waiting", reason="learner-unknown").set(1)
    Histogram(
        "cayg_publish_request_duration_seconds", "request time", ["target"], registry=registry
    ).labels(target="registry").observe(0.3)
    consumer_lag(registry, "publish", "cayg.normalized.v1", 0, lane=lane)
    return registry


# ----------------------------------------------------------------- prometheus


@dataclass
class RunningPrometheus:
    url: str
    http: httpx.Client

    def api(self, path: str, **params: str) -> Any:
        response = self.http.get(f"{self.url}/api/v1/{path}", params=params)
        response.raise_for_status()
        body = response.json()
        assert body["status"] == "success", body
        return body["data"]


def rewritten_config(config: str, addresses: dict[str, str]) -> str:
    """The repository's config with its targets replaced and every interval at 1 s."""
    found = set(re.findall(r'"(127\.0\.0\.1:\d+)"', config))
    assert found == set(addresses), f"prometheus.yml scrapes {sorted(found)}"
    for original, replacement in addresses.items():
        config, count = re.subn(rf'"{re.escape(original)}"', f'"{replacement}"', config)
        assert count == 1, f"{original} appears {count} times in prometheus.yml"
    config, count = re.subn(
        r"^(\s*(?:scrape_interval|scrape_timeout|evaluation_interval)):\s*\S+",
        r"\1: 1s",
        config,
        flags=re.MULTILINE,
    )
    assert count >= 2, "prometheus.yml sets no global scrape/evaluation interval"
    return config


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPrometheus]:
    """Prometheus with deploy/prometheus's config, scraping exporters served here."""
    binary = tool("prometheus")
    registries = {
        "ingest": ingest_registry(),
        "normalize": normalize_registry(),
        "publish": publish_registry("registry"),
        "publish-clr": publish_registry("clr"),
    }
    exporters = {name: serve(name, registry) for name, registry in registries.items()}
    workdir = tmp_path_factory.mktemp("prometheus")
    config_dir = workdir / "config"
    # Rule files are resolved relative to the config file: copy them beside it.
    shutil.copytree(PROMETHEUS_DIR, config_dir, ignore=shutil.ignore_patterns("*.md"))
    config = (PROMETHEUS_DIR / "prometheus.yml").read_text()
    addresses = {original: exporters[name].address for original, name in SCRAPED.items()}
    (config_dir / "prometheus.yml").write_text(rewritten_config(config, addresses))

    port = free_port()
    log_path = workdir / "prometheus.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config_dir / 'prometheus.yml'}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    http = httpx.Client(timeout=10)

    def ready() -> bool | None:
        if process.poll() is not None:
            pytest.fail(f"prometheus exited at start-up:\n{log_path.read_text()[-4000:]}")
        try:
            return True if http.get(f"{url}/-/ready").status_code == 200 else None
        except httpx.HTTPError:
            return None

    try:
        wait_for("prometheus to be ready", ready)
        yield RunningPrometheus(url, http)
    finally:
        http.close()
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        for exporter in exporters.values():
            exporter.stop()


# -------------------------------------------------------------------- promtool


def test_promtool_check_config() -> None:
    result = run_promtool("check", "config", "deploy/prometheus/prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_scrape_config_targets_only_what_serves_metrics() -> None:
    """Every scraped endpoint is a port the demo runs a cayg service on (each serves
    /metrics); the stand-ins' ports, which answer 404 there, are not among them."""
    from cayg_ops.demo import SERVICE_PORTS

    config = (PROMETHEUS_DIR / "prometheus.yml").read_text()
    scraped = sorted(int(port) for port in re.findall(r'"127\.0\.0\.1:(\d+)"', config))
    assert scraped == sorted(SERVICE_PORTS.values())


def test_promtool_check_rules() -> None:
    result = run_promtool("check", "rules", "deploy/prometheus/alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_promtool_rule_unit_tests_pass() -> None:
    result = run_promtool("test", "rules", "deploy/prometheus/alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def unit_test_cases(text: str) -> dict[str, tuple[int, int]]:
    """Per alert name in alerts_test.yml: how many cases expect it firing / expect silence."""
    cases: dict[str, tuple[int, int]] = {}
    for match in re.finditer(r"alertname:\s*(\w+)\s*\n\s*exp_alerts:(.*)", text):
        firing, silent = cases.get(match.group(1), (0, 0))
        if match.group(2).strip() == "[]":
            silent += 1
        else:
            firing += 1
        cases[match.group(1)] = (firing, silent)
    return cases


# --------------------------------------------------------------------- series


def known_series() -> set[str]:
    """Every series name of FastStream's and cayg's that a rule or panel may select."""
    registry = CollectorRegistry()
    MetricsContainer(registry, custom_label_names=())
    suffixes = {
        "counter": ("_total",),
        "gauge": ("",),
        "histogram": ("_bucket", "_sum", "_count"),
    }
    names = {
        family.name + suffix for family in registry.collect() for suffix in suffixes[family.type]
    }
    assert any(name.startswith("faststream_") for name in names)
    return names | CAYG_SERIES


def series_in(text: str) -> set[str]:
    """Names of cayg's and FastStream's series that PromQL text selects."""
    return set(re.findall(r"\b(?:cayg|faststream)_[a-z_]+\b", text))


def test_rules_select_only_exported_series() -> None:
    unknown = series_in((PROMETHEUS_DIR / "alerts.yml").read_text()) - known_series()
    assert not unknown, f"alerts.yml selects series no service exports: {sorted(unknown)}"


# ---------------------------------------------------------------- alert rules


def test_prometheus_loads_every_alert_with_severity_annotations_runbook_and_tests(
    prometheus: RunningPrometheus,
) -> None:
    groups = prometheus.api("rules", type="alert")["groups"]
    alerts = [rule for group in groups for rule in group["rules"]]
    assert len(alerts) >= 8
    readme = (PROMETHEUS_DIR / "README.md").read_text()
    anchors = {
        re.sub(r"[^a-z0-9-]", "", heading.strip().lower().replace(" ", "-"))
        for heading in re.findall(r"^#+ (.+)$", readme, flags=re.MULTILINE)
    }
    cases = unit_test_cases((PROMETHEUS_DIR / "alerts_test.yml").read_text())
    for alert in alerts:
        name = alert["name"]
        assert alert["labels"].get("severity") in {"critical", "warning"}, name
        annotations = alert["annotations"]
        assert {"summary", "description", "runbook"} <= annotations.keys(), name
        path, _, anchor = annotations["runbook"].partition("#")
        assert path == "deploy/prometheus/README.md", name
        assert anchor == name.lower(), f"runbook of {name} points at #{anchor}"
        assert anchor in anchors, f"no runbook section for {name}"
        assert "cayg " in readme.split(f"### {name}", 1)[1].split("\n### ", 1)[0], (
            f"the runbook of {name} names no cayg command"
        )
        firing, silent = cases.get(name, (0, 0))
        assert firing >= 1, f"alerts_test.yml never expects {name} to fire"
        assert silent >= 1, f"alerts_test.yml never expects {name} to stay silent"


def test_prometheus_scrapes_the_repo_targets_and_evaluates_the_rules(
    prometheus: RunningPrometheus,
) -> None:
    def all_targets_up() -> list[dict[str, Any]] | None:
        active: list[dict[str, Any]] = prometheus.api("targets", state="active")["activeTargets"]
        healthy = len(active) == len(SCRAPED) and all(t["health"] == "up" for t in active)
        return active if healthy else None

    active = wait_for("every target to be scraped", all_targets_up)
    assert {t["labels"]["job"] for t in active} == {
        "cayg-ingest",
        "cayg-normalize",
        "cayg-publish",
    }

    accepted = prometheus.api("query", query="cayg_ingest_accepted_total")["result"]
    assert [(s["metric"]["job"], s["metric"]["tenant"], s["value"][1]) for s in accepted] == [
        ("cayg-ingest", "acme", "10")
    ]

    def alerts_settled() -> list[dict[str, Any]] | None:
        alerts: list[dict[str, Any]] = prometheus.api("alerts")["alerts"]
        states = {(a["labels"]["alertname"], a["state"]) for a in alerts}
        wanted = {("CaygMessagesDeadLettered", "firing"), ("CaygPipelineStuck", "pending")}
        return alerts if wanted <= states else None

    alerts = wait_for("the dead-letter alert to fire and the stuck alert to pend", alerts_settled)
    by_name = {a["labels"]["alertname"]: a for a in alerts}
    dead = by_name["CaygMessagesDeadLettered"]
    assert dead["labels"]["stage"] == "ingest"
    assert dead["labels"]["reason"] == "too-large"
    assert dead["annotations"]["summary"] == (
        "ingest dead-lettered messages in the last 15 minutes (reason too-large)"
    )
    assert by_name["CaygPipelineStuck"]["labels"]["service"] == "normalize"
    assert "CaygServiceDown" not in by_name
    # The exporters' histograms are far below every latency threshold.
    assert "CaygProcessingLatencyHigh" not in by_name

    def rules_evaluated() -> list[dict[str, Any]] | None:
        groups = prometheus.api("rules")["groups"]
        rules: list[dict[str, Any]] = [rule for group in groups for rule in group["rules"]]
        return rules if all(rule["health"] != "unknown" for rule in rules) else None

    rules = wait_for("every rule to be evaluated", rules_evaluated)
    broken = {rule["name"]: rule.get("lastError") for rule in rules if rule["health"] != "ok"}
    assert not broken, f"rules failing at evaluation: {broken}"


# ------------------------------------------------------------------ dashboard


def load_dashboard() -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return dashboard


def walk(node: Any) -> Iterator[dict[str, Any]]:
    """Every JSON object in a document, depth first."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from walk(item)


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Top-level panels and those nested in collapsed rows."""
    found: list[dict[str, Any]] = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def variable_values(dashboard: dict[str, Any]) -> dict[str, str]:
    """A value for each dashboard variable that keeps an expression's syntax intact."""
    values = dict.fromkeys(GRAFANA_DURATIONS, "5m")
    for variable in dashboard.get("templating", {}).get("list", []):
        values[variable["name"]] = variable.get("allValue") or ".*"
    return values


def substitute(expr: str, values: dict[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in values:
            raise KeyError(name)
        return values[name]

    return VARIABLE.sub(replace, expr)


def dashboard_queries(dashboard: dict[str, Any]) -> list[str]:
    """Every PromQL string in the dashboard: panel targets, annotations, variable queries."""
    queries = [node["expr"] for node in walk(dashboard) if isinstance(node.get("expr"), str)]
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") != "query":
            continue
        query = variable["query"]
        text = query["query"] if isinstance(query, dict) else query
        match = LABEL_VALUES.match(text.strip())
        if match is None:
            queries.append(text)
        elif match.group("selector"):
            queries.append(match.group("selector"))
    return queries


def provisioned_datasource_uid() -> str:
    match = re.search(r"^\s*uid:\s*(\S+)\s*$", DATASOURCES.read_text(), flags=re.MULTILINE)
    assert match is not None, f"{DATASOURCES} provisions no datasource uid"
    return match.group(1)


def test_dashboard_structure() -> None:
    dashboard = load_dashboard()
    assert dashboard.get("uid")
    assert dashboard.get("title")
    assert isinstance(dashboard.get("schemaVersion"), int)
    every = panels(dashboard)
    ids = [panel["id"] for panel in every]
    assert len(ids) == len(set(ids)), f"duplicate panel ids: {sorted(ids)}"

    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    datasource = variables.get("datasource")
    assert datasource is not None, "the dashboard has no `datasource` variable"
    assert datasource["type"] == "datasource"
    assert datasource["query"] == "prometheus"
    assert datasource["current"]["value"] == provisioned_datasource_uid()
    prometheus_ref = {"type": "prometheus", "uid": "${datasource}"}

    occupied: set[tuple[int, int]] = set()
    for panel in every:
        title = panel.get("title", panel["id"])
        grid = panel["gridPos"]
        assert 0 <= grid["x"] < grid["x"] + grid["w"] <= 24, title
        cells = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & occupied, f"panel {title!r} overlaps another"
        occupied |= cells
        if panel["type"] == "row":
            continue
        assert panel.get("datasource") == prometheus_ref, title
        targets = panel.get("targets", [])
        assert targets, f"panel {title!r} has no queries"
        ref_ids = [target["refId"] for target in targets]
        assert len(ref_ids) == len(set(ref_ids)), f"duplicate refIds in {title!r}"
        for target in targets:
            assert target.get("datasource") == prometheus_ref, title
            assert target.get("expr", "").strip(), f"empty query in {title!r}"

    for node in walk(dashboard):
        ref = node.get("datasource")
        if isinstance(ref, dict) and ref.get("type") != "grafana":
            assert ref == prometheus_ref, ref

    titles = " ".join(panel.get("title", "") for panel in every).lower()
    for subject in ("per stage", "dlq", "publish outcomes", "lag", "time"):
        assert subject in titles, f"no panel about {subject}"


def test_dashboard_variables_are_all_defined() -> None:
    dashboard = load_dashboard()
    values = variable_values(dashboard)
    for query in dashboard_queries(dashboard):
        try:
            substitute(query, values)
        except KeyError as unknown:
            pytest.fail(f"{query!r} uses undefined variable ${unknown.args[0]}")


def test_dashboard_selects_only_exported_series() -> None:
    known = known_series()
    for query in dashboard_queries(load_dashboard()):
        unknown = series_in(query) - known
        assert not unknown, f"{query!r} selects series no service exports: {sorted(unknown)}"


def test_every_dashboard_expression_parses_in_prometheus(prometheus: RunningPrometheus) -> None:
    dashboard = load_dashboard()
    values = variable_values(dashboard)
    queries = dashboard_queries(dashboard)
    assert len(queries) >= 20

    def rejected(expr: str) -> str | None:
        response = prometheus.http.get(f"{prometheus.url}/api/v1/query", params={"query": expr})
        if response.status_code == 200 and response.json()["status"] == "success":
            return None
        return f"{response.status_code} {response.text.strip()}"

    # The check can fail: a broken expression is refused with 400 bad_data.
    broken = rejected("sum by (target) (rate(cayg_publish_outcomes_total[5m])")
    assert broken is not None
    assert broken.startswith("400")
    assert "bad_data" in broken

    failures = {
        query: error
        for query in queries
        if (error := rejected(substitute(query, values))) is not None
    }
    assert not failures, "dashboard expressions Prometheus refuses:\n" + "\n".join(
        f"  {query!r}: {error}" for query, error in failures.items()
    )


def test_grafana_provisioning_points_at_the_dashboards() -> None:
    datasources = DATASOURCES.read_text()
    assert re.search(r"^apiVersion: 1$", datasources, flags=re.MULTILINE)
    assert re.search(r"^\s*type: prometheus$", datasources, flags=re.MULTILINE)
    providers = DASHBOARD_PROVIDERS.read_text()
    assert re.search(r"^apiVersion: 1$", providers, flags=re.MULTILINE)
    assert re.search(r"^\s*type: file$", providers, flags=re.MULTILINE)
    assert re.search(r"^\s*path: \$\{CAYG_GRAFANA_DASHBOARDS\}$", providers, flags=re.MULTILINE)
