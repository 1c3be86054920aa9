"""The campaign's own checks find what they are meant to find (issue 10): a check that
cannot fail would make every campaign pass."""

from __future__ import annotations

import base64
import json
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from cayg_campaign.checks import leaks, secret_forms, tally_writes

pytestmark = pytest.mark.unit


def _write(t: float, resource: str, body: str, *, status: int | None = 200, **extra: Any) -> Any:
    outcome = extra.pop("outcome", "answered")
    return {
        "t": t,
        "method": "POST",
        "path": "/ims/clr/v2p0/credentials",
        "resource": resource,
        "body": body,
        "status": status,
        "outcome": outcome,
        **extra,
    }


def test_writes_tell_duplicates_from_retries_and_unknown_outcomes() -> None:
    clr = [
        _write(1, "A", "a1"),
        _write(2, "A", "a1"),  # confirmed, then the same content again: a duplicate effect
        _write(3, "B", "b1", status=None, outcome="client-gone"),
        _write(4, "B", "b1"),  # publish could not know: an unknown-outcome re-send
        _write(5, "C", "c1", status=503),
        _write(6, "C", "c1"),  # the first one was refused: a plain retry
        _write(7, "D", "d1"),
        _write(8, "D", "d2"),
        _write(9, "D", "d1"),  # changed back: not a duplicate
        _write(10, "E", "e1", status=None, outcome="upstream-error"),
        {**_write(11, "F", "f1"), "path": "/oauth/token"},  # not a write with an effect
        _write(12, "G", "g1", elapsed_s=3.9),
        _write(17, "G", "g1"),  # answered as publish's 3.8 s timeout fired: unknown outcome
        _write(20, "H", "h1", sender="publish-1"),
        _write(30, "H", "h1", sender="publish-0"),  # publish-1 was killed at 21: crash window
    ]
    found = tally_writes(
        {"clr": clr},
        owners={},
        senders={},
        late_after_s=3.8,
        killed_at={"publish-1": [21.0], "publish-0": [40.0]},
    )

    assert len(found.duplicates) == 1
    assert " A: " in found.duplicates[0]
    assert found.unknown_outcome_resends == 2
    assert found.crash_window_resends == [
        "clr H: publish-1 then publish-0, 10.0 s apart, the first sender SIGKILLed in between"
    ]
    assert found.total == 14
    assert found.applied == 12
    assert found.refused == {"clr:503": 1, "clr:upstream-error": 1}


def test_a_registry_write_with_another_tenants_key_is_cross_tenant() -> None:
    registry = [
        {**_write(1, "ce-1", "x", credential="key-a"), "path": "/assistant/credential/publish"},
        {**_write(2, "ce-2", "y", credential="key-b"), "path": "/assistant/credential/publish"},
    ]
    found = tally_writes(
        {"registry": registry},
        owners={"ce-1": "tenant-a", "ce-2": "tenant-a"},
        senders={"key-a": "tenant-a", "key-b": "tenant-b"},
    )
    assert found.cross_tenant == ["registry ce-2 of tenant-a by tenant-b"]


def test_leaks_finds_secrets_in_every_encoding_and_raw_learner_ids(tmp_path: Path) -> None:
    secret = "s3cr3t/key+with=chars"
    clean = tmp_path / "clean.log"
    clean.write_text('{"event": "batch settled", "records": 3}\n')
    dirty = tmp_path / "dirty.log"
    dirty.write_text(
        "\n".join(
            [
                f"plain {secret}",
                f"basic {base64.b64encode(secret.encode()).decode()}",
                f"url {urllib.parse.quote(secret, safe='')}",
                "learner S00700042 was here",
            ]
        )
    )
    found = leaks([clean, dirty], {"an API key": secret}, {"S00700042"})

    assert found.lines_scanned == 5
    assert found.found == [
        "dirty.log: a raw learner identifier (1 line(s))",
        "dirty.log: an API key (3 line(s))",
    ]
    assert leaks([clean], {"an API key": secret}, {"S00700042"}).found == []


def test_secret_forms_cover_standard_urlsafe_unpadded_and_url_encoding() -> None:
    forms = secret_forms("~~~secret?value")
    assert {
        "~~~secret?value",
        "fn5+c2VjcmV0P3ZhbHVl",  # standard base64
        "fn5-c2VjcmV0P3ZhbHVl",  # URL-safe base64
        "~~~secret%3Fvalue",  # URL-encoded
    } <= forms
    assert secret_forms("short") == set()


def _letter(stage: str, offset: int, sis_offset: int) -> Any:
    from cayg_shared.envelope import DeadLetter

    envelope = {"event_id": "x", "source": {"topic": "sis", "partition": 1, "offset": sis_offset}}
    return DeadLetter.model_validate(
        {
            "stage": stage,
            "reason": "unmappable",
            "detail": "-",
            "source": {"topic": "ingested", "partition": 0, "offset": offset},
            "failed_at": "2026-01-01T00:00:00Z",
            "value_b64": base64.b64encode(json.dumps(envelope).encode()).decode(),
        }
    )


def test_a_sis_record_forwarded_twice_counts_as_one_rejected_input() -> None:
    from cayg_campaign.targets import _sis_record

    # Two copies on the ingested topic of one SIS record: one input.
    assert _sis_record(_letter("normalize", 10, 5)) == _sis_record(_letter("normalize", 11, 5))
    # An exact re-send by the SIS is another SIS record: another input.
    assert _sis_record(_letter("normalize", 12, 6)) != _sis_record(_letter("normalize", 10, 5))
    # Ingest's letters name the SIS record themselves.
    assert _sis_record(_letter("ingest", 10, 5)) == ("ingested", 0, 10)
