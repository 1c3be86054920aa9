"""The operator console in a real browser (Debian's ``chromium`` through ``chromium-driver``
and selenium), against a real broker, a real ingest process and a real SQLite ledger.

One session clicks through what an operator does: the health page (a running service and
lane, one that is down, lag from committed offsets, DLQ depth), a dead letter found with the
filters, a replay refused with a wrong password and done with the right one (the original
record is back on its SIS topic), and the published view (a delivered document with its
version, content hash and remote id; a failing one with the target's answer). A screenshot
of each page is kept under the test's tmp directory (the path is printed).

``bash deploy/setup.sh`` installs chromium and chromium-driver; without them this fails.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select, WebDriverWait

from cayg_ops import dlq, ledger_view
from cayg_ops.demo import TENANTS_FILE, publish_config, tenant_secrets
from cayg_publish.domain.catalog import Version
from cayg_publish.domain.projection import DeliveryResult, RetrySchedule, Settlement
from cayg_shared.envelope import Stage
from cayg_shared.service import InboundRecord, dead_letter
from cayg_shared.tenants import TenantRegistry
from cayg_shared.topics import Topics
from support.kafka import REPO_ROOT, free_port
from support.processes import ServiceProcess
from support.topics import consume_all, create_topics, produce
from unit.publish.publish_factories import TENANT, award, change, definition, learner_identity

pytestmark = pytest.mark.integration

USER, PASSWORD = "operator", "correct horse battery staple"
REGISTRY, CLR = f"{TENANT}-registry", f"{TENANT}-clr"
BROKEN = b'{"id": "104999", "published": '


def _browser() -> WebDriver:
    chromium = shutil.which("chromium")
    driver_path = shutil.which("chromedriver")
    if chromium is None or driver_path is None:
        pytest.fail("chromium and chromium-driver are not installed: run bash deploy/setup.sh")
    options = Options()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    options.add_argument("--window-size=1400,1000")
    return webdriver.Chrome(service=Service(driver_path), options=options)


def _navigate(browser: WebDriver, element: WebElement) -> None:
    """Click a link or a form's button and wait until the next page has replaced this one
    (reading the old page's elements in between raises StaleElementReferenceException)."""
    page = browser.find_element(By.TAG_NAME, "html")
    element.click()
    WebDriverWait(browser, 30).until(lambda _b: _replaced(page))
    WebDriverWait(browser, 30).until(
        lambda b: b.execute_script("return document.readyState") == "complete"
    )


def _replaced(element: WebElement) -> bool:
    """Whether ``element``'s page has been replaced. ChromeDriver says so with a stale
    element error, or (some versions, while the new document loads) with an inspector
    error that the node "does not belong to the document"."""
    try:
        element.is_enabled()
    except StaleElementReferenceException:
        return True
    except WebDriverException as error:
        if "does not belong to the document" in str(error):
            return True
        raise
    return False


async def _seed_ledger(view: ledger_view.TargetsView) -> None:
    """A definition delivered to the registry; a learner's record failing at the CLR host."""
    async with view.ledger() as ledger:
        kinds = view.kinds_by_target(TENANT)
        for item in (definition(), award(), learner_identity()):
            await ledger.record_change(change(item), kinds)
        for lease in await ledger.lease_documents([REGISTRY, CLR], limit=10, ttl_ms=30_000):
            if lease.target == REGISTRY:
                key = ledger_view.ledger_key_of(lease.ref)
                assert key is not None
                await ledger.record_success(
                    REGISTRY,
                    key,
                    Version(
                        stream="sis-row-version", sequence=7, time=datetime(2025, 6, 1, tzinfo=UTC)
                    ),
                    "sha256-feedface0123456789",
                    remote_id=definition().ctid,
                    remote_url="https://registry.example/resources/" + definition().ctid,
                )
                result = DeliveryResult(Settlement.DELIVERED)
            else:
                result = DeliveryResult(
                    Settlement.FAILING, "http-503: the CLR host answered 503 Service Unavailable"
                )
            await ledger.settle_document(lease, result, RetrySchedule())


async def _park(bootstrap: str, topics: Topics) -> None:
    """Two dead letters on the ingest DLQ, as ingest writes them."""
    letters: list[tuple[bytes | None, bytes | None, dict[str, str]]] = []
    for offset, (tenant, reason, value) in enumerate(
        (
            ("northfield-cc", "not-json", BROKEN),
            ("harbor-tech", "unknown-format", b'{"hello": "world"}'),
        )
    ):
        record = InboundRecord(
            topic=topics.sis(tenant),
            partition=0,
            offset=offset,
            timestamp_ms=None,
            key=b"broken",
            value=value,
            headers=(("traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),),
        )
        letter = dead_letter(
            record,
            stage=Stage.INGEST,
            reason=reason,
            detail=f"{reason} at character 30",
            tenant=tenant,
            now=datetime(2025, 6, 5, 10, offset, tzinfo=UTC),
        )
        letters.append((b"broken", letter.model_dump_json().encode(), {}))
    await produce(bootstrap, topics.ingest_dlq, letters)


@pytest.fixture
def stack(kafka_bootstrap: str, topic_prefix: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    """Kafka with parked letters, an ingest process, a ledger, and the console on top."""
    topics = Topics(topic_prefix)
    registry = TenantRegistry.load(TENANTS_FILE)
    targets_file = publish_config(tmp_path, tenant_secrets(tmp_path, registry), registry)
    asyncio.run(_seed_ledger(ledger_view.TargetsView.load(targets_file)))
    asyncio.run(
        create_topics(kafka_bootstrap, [topics.sis(p.tenant_id) for p in registry.profiles()])
    )
    asyncio.run(_park(kafka_bootstrap, topics))
    ingest = ServiceProcess(
        "ingest",
        env={
            "CAYG_INGEST_KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap,
            "CAYG_INGEST_TOPIC_PREFIX": topic_prefix,
            "CAYG_INGEST_GROUP_ID": f"{topic_prefix}cayg-ingest",
            "CAYG_INGEST_TENANTS_FILE": str(TENANTS_FILE),
        },
        log_dir=tmp_path,
    )
    ingest.start()
    password_file = tmp_path / "console-password"
    password_file.write_text(PASSWORD + "\n")
    port, nothing = free_port(), free_port()
    env = {
        **os.environ,
        "CAYG_KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap,
        "CAYG_TOPIC_PREFIX": topic_prefix,
        "CAYG_CONSOLE_HTTP_PORT": str(port),
        "CAYG_CONSOLE_SERVICES": f'["{ingest.url}", "http://127.0.0.1:{nothing}"]',
        "CAYG_CONSOLE_TARGETS_FILE": str(targets_file),
        "CAYG_CONSOLE_USERNAME": USER,
        "CAYG_CONSOLE_PASSWORD_FILE": str(password_file),
    }
    log = (tmp_path / "console.log").open("wb")
    console = subprocess.Popen(
        [sys.executable, "-m", "cayg_ops.console"],
        env=env,
        cwd=REPO_ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert console.poll() is None, (tmp_path / "console.log").read_text()
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the console did not start"
            time.sleep(0.2)
        yield {"url": url, "ingest": ingest.url, "down": f"http://127.0.0.1:{nothing}"}
    finally:
        console.terminate()
        console.wait(timeout=15)
        log.close()
        ingest.kill()


def test_an_operator_clicks_through_health_a_dead_letter_a_replay_and_the_published_view(
    stack: dict[str, str],
    kafka_bootstrap: str,
    topic_prefix: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    shots = tmp_path_factory.mktemp("console-screenshots")
    topics = Topics(topic_prefix)
    browser = _browser()
    try:
        # Health: the ingest process, ready, with its group's lag; the other URL is down.
        browser.get(stack["url"] + "/")
        services = browser.find_element(By.ID, "services").text
        assert "ingest" in services
        assert "ready" in services
        assert f"{topic_prefix}cayg-ingest" in services
        assert "down" in services
        # Its group's lag, from committed offsets: it has read everything (nothing sent).
        ingest_row = browser.find_element(By.CSS_SELECTOR, '[data-service="ingest"]')
        row = ingest_row.find_element(By.XPATH, "./ancestor::tr")
        assert row.find_element(By.CSS_SELECTOR, ".lag").text == "0"
        depth = browser.find_element(By.ID, "dlq-depth").text
        assert "ingest 2" in depth
        browser.save_screenshot(str(shots / "1-health.png"))

        # Dead letters: both, then one with the reason filter.
        _navigate(browser, browser.find_element(By.LINK_TEXT, "ingest"))
        rows = browser.find_elements(By.CSS_SELECTOR, "#letters tbody tr")
        assert len(rows) == 2
        Select(browser.find_element(By.ID, "filter-reason")).select_by_visible_text("not-json")
        _navigate(browser, browser.find_element(By.CSS_SELECTOR, "#filters button"))
        rows = browser.find_elements(By.CSS_SELECTOR, "#letters tbody tr")
        assert len(rows) == 1
        assert "northfield-cc" in rows[0].text
        browser.save_screenshot(str(shots / "2-dead-letters.png"))
        _navigate(browser, rows[0].find_element(By.CSS_SELECTOR, "a.letter"))
        letter = browser.find_element(By.ID, "letter").text
        assert "not-json" in letter
        assert topics.sis("northfield-cc") in letter

        # Replay: a wrong password changes nothing; the right one sends the record back.
        browser.find_element(By.ID, "username").send_keys(USER)
        browser.find_element(By.ID, "password").send_keys("guess")
        _navigate(browser, browser.find_element(By.ID, "replay-button"))
        assert "Wrong user or password" in browser.find_element(By.ID, "replay-result").text
        browser.find_element(By.ID, "username").send_keys(USER)
        browser.find_element(By.ID, "password").send_keys(PASSWORD)
        _navigate(browser, browser.find_element(By.ID, "replay-button"))
        result = browser.find_element(By.ID, "replay-result").text
        assert f"Replayed to {topics.sis('northfield-cc')}@" in result
        browser.save_screenshot(str(shots / "3-replayed.png"))
        back = asyncio.run(
            consume_all(kafka_bootstrap, [topics.sis("northfield-cc")], expect=1, idle_s=0.5)
        )
        assert [r.value for r in back] == [BROKEN]
        # Recorded on the actions topic as replayed, by the console's user, as the CLI
        # records it (so `cayg dlq list` hides or folds it the same way).
        actions = asyncio.run(dlq.read_actions(kafka_bootstrap, topics))
        assert [(a.kind, a.reason, a.by) for a in actions] == [
            ("replayed", "not-json", f"console:{USER}")
        ]

        # Published: the delivered definition and the failing learner record.
        _navigate(browser, browser.find_element(By.ID, "nav-published"))
        Select(browser.find_element(By.ID, "filter-tenant")).select_by_visible_text(TENANT)
        _navigate(browser, browser.find_element(By.CSS_SELECTOR, "#published-filters button"))
        table = browser.find_element(By.ID, "published")
        rows = table.find_elements(By.CSS_SELECTOR, "tbody tr")
        by_target = {row.find_element(By.TAG_NAME, "td").text: row.text for row in rows}
        assert set(by_target) == {REGISTRY, CLR}
        assert "clean" in by_target[REGISTRY]
        assert definition().ctid in by_target[REGISTRY]
        assert "sha256-feedfa" in by_target[REGISTRY]
        assert "sequence 7" in by_target[REGISTRY]
        assert "failing" in by_target[CLR]
        assert "503" in by_target[CLR]
        browser.save_screenshot(str(shots / "4-published.png"))
    finally:
        browser.quit()
    print(f"console screenshots: {shots}")
    assert (shots / "4-published.png").stat().st_size > 0
