"""``cayg backfill``: reading CSV/JSONL rows, checking them, and the records they become.

The records are checked against ingest's own admission and normalize's own mapping, so
the file format cannot drift from what the pipeline accepts.
"""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cayg_ingest.domain import InboundMessage, IngestLimits, admit
from cayg_normalize.domain import normalize
from cayg_ops import backfill
from cayg_ops.backfill import BackfillError, Plan, ProgressBar, plan_backfill
from cayg_ops.cli import main
from cayg_shared.ids import event_id
from cayg_shared.schema import Approach, CredentialAward, Operation
from cayg_shared.tenants import TenantProfile, TenantRegistry

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[3]
TENANTS_FILE = REPO / "deploy" / "config" / "tenants.json"
EXAMPLES = REPO / "deploy" / "ops" / "examples"
EMAIL = "hidden.learner@alumni.northfield.example"


@pytest.fixture(scope="module")
def registry() -> TenantRegistry:
    return TenantRegistry.load(TENANTS_FILE)


@pytest.fixture(scope="module")
def northfield(registry: TenantRegistry) -> TenantProfile:
    profile = registry.get("northfield-cc")
    assert profile is not None
    return profile


def _profile(registry: TenantRegistry, tenant: str) -> TenantProfile:
    profile = registry.get(tenant)
    assert profile is not None
    return profile


def _award(n: int, **data: Any) -> dict[str, Any]:
    return {
        "type": "award.issued",
        "recordedAt": "2025-01-15T09:30:00Z",
        "data": {
            "awardId": f"RA-{n:04d}",
            "learner": {"email": EMAIL},
            "definition": {"sourceId": "GENED-MS"},
            "awardedOn": "2016-05-13",
            **data,
        },
    }


def _jsonl(*rows: Any) -> bytes:
    return "\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows).encode()


def _problems(plan: Plan) -> dict[int, str]:
    return {p.line: p.reason for p in plan.problems}


# --------------------------------------------------------------------------- the examples


@pytest.mark.parametrize("name", ["northfield-onboarding.csv", "northfield-onboarding.jsonl"])
def test_every_example_row_is_admitted_by_ingest_and_mapped_by_normalize(
    registry: TenantRegistry, northfield: TenantProfile, name: str
) -> None:
    path = EXAMPLES / name
    plan = plan_backfill(path.read_bytes(), fmt=backfill.detect_format(path), profile=northfield)

    assert plan.valid
    assert plan.rows == len(plan.records) > 0
    retro = 0
    for record in plan.records:
        envelope = admit(
            InboundMessage(
                topic="sis.events.northfield-cc",
                partition=0,
                offset=record.line,
                timestamp_ms=None,
                key=record.key,
                value=record.value,
                headers=tuple(
                    (k, v.encode())
                    for k, v in backfill.headers_for(
                        plan.batch_id, "00-" + "1" * 32 + "-" + "2" * 16 + "-01"
                    ).items()
                ),
            ),
            registry,
            IngestLimits(),
            received_at=datetime(2025, 8, 1, tzinfo=UTC),
        )
        assert envelope.event_id == record.event_id, "the CLI predicts ingest's event id"
        assert envelope.correlation_id == f"backfill:{plan.batch_id}"
        [change] = normalize(envelope, northfield)
        if isinstance(change.entity, CredentialAward):
            says_retro = json.loads(record.value)["data"].get("approach") == "retro-award"
            assert (change.entity.approach is Approach.RETRO_AWARD) == says_retro
            retro += says_retro
        if record.type.value.endswith("award.revoked.v1"):
            assert change.operation is Operation.REVOKE
    assert retro >= 1


def test_csv_cells_become_typed_nested_data(northfield: TenantProfile) -> None:
    plan = plan_backfill(
        (EXAMPLES / "northfield-onboarding.csv").read_bytes(), fmt="csv", profile=northfield
    )
    by_line = {r.line: json.loads(r.value) for r in plan.records}

    milestone = by_line[2]
    assert milestone["recordId"] == "line:2"
    assert milestone["recordedAt"] == "2024-11-04T15:20:00-06:00"
    assert milestone["data"]["creditValue"] == {"value": 30.0, "unit": "creditUnit:SemesterHour"}
    assert milestone["data"]["approaches"] == ["retro-award", "transfer"]
    assert milestone["data"]["sourceVersion"] == 3
    assert "awardId" not in milestone["data"], "empty cells are left out"
    certificate = by_line[4]["data"]
    assert certificate["hasPart"] == [{"sourceId": "MC-XLS"}]
    award = by_line[5]["data"]
    assert award["learner"] == {
        "personId": "71F0B3D8-2E6C-4A19-9D45-8C3E0A7B5F12",
        "institutionId": "0412277",
    }, "learner identifiers travel in clear inside the record"
    assert award["results"] == [
        {"name": "General education GPA", "resultType": "GradePointAverage", "value": "3.41"}
    ]
    assert award["approach"] == "retro-award"
    assert by_line[5]["type"] == "org.caygsync.award.issued.v1"
    keys = {r.line: r.key for r in plan.records}
    assert keys[2] == b"GENED-MS"
    assert keys[5] == b"RA-2016-0042", "the entity's SIS id keys the record"


def test_a_byte_order_mark_and_blank_rows_are_tolerated(northfield: TenantProfile) -> None:
    text = (EXAMPLES / "northfield-onboarding.csv").read_text(encoding="utf-8")
    lines = text.splitlines()
    content = ("\ufeff" + "\n".join([*lines[:3], ",,,", *lines[3:]]) + "\n").encode()

    plan = plan_backfill(content, fmt="csv", profile=northfield)
    assert plan.valid
    assert len(plan.records) == len(lines) - 1


# --------------------------------------------------------------------------- ids


def test_the_same_file_gives_the_same_ids_and_an_edited_one_new_ones(
    northfield: TenantProfile,
) -> None:
    content = (EXAMPLES / "northfield-onboarding.jsonl").read_bytes()
    first = plan_backfill(content, fmt="jsonl", profile=northfield)
    again = plan_backfill(content, fmt="jsonl", profile=northfield)
    edited = plan_backfill(content.replace(b"3.41", b"3.42"), fmt="jsonl", profile=northfield)

    assert first.batch_id == again.batch_id
    assert [r.event_id for r in first.records] == [r.event_id for r in again.records]
    assert [r.value for r in first.records] == [r.value for r in again.records]
    assert edited.batch_id != first.batch_id
    assert not {r.event_id for r in edited.records} & {r.event_id for r in first.records}
    for record in first.records:
        message = f"{first.batch_id}/{record.record_id}"
        assert record.event_id == event_id("northfield-cc", "backfill-record", message)
    assert [r.record_id for r in first.records][:2] == ["orgs:STATEU", "defs:GENED-MS"]


def test_an_operator_batch_id_is_used_as_given_and_checked(northfield: TenantProfile) -> None:
    content = _jsonl(_award(1))
    plan = plan_backfill(content, fmt="jsonl", profile=northfield, batch_id="nfcc-2025-01")
    assert plan.batch_id == "nfcc-2025-01"
    assert json.loads(plan.records[0].value)["recordId"] == "line:1"
    with pytest.raises(BackfillError, match="batch id"):
        plan_backfill(content, fmt="jsonl", profile=northfield, batch_id="has spaces")


# --------------------------------------------------------------------------- problems


def test_bad_rows_are_reported_by_line_and_field_without_values(
    northfield: TenantProfile,
) -> None:
    no_learner = _award(3)
    del no_learner["data"]["learner"]
    other_tenant = {**_award(4), "tenant": "lakeshore-univ"}
    no_time = _award(5)
    del no_time["recordedAt"]
    content = _jsonl(
        _award(1),
        '{"type": "award.issued", ',
        no_learner,
        other_tenant,
        no_time,
        {**_award(6), "type": "grade.posted"},
        {**_award(7), "recordId": "dup"},
        {**_award(8), "recordId": "dup"},
        {**_award(9), "extra": 1},
        _award(10, awardedOn="last spring"),
        {"type": "award.issued", "recordedAt": "2025-01-15T09:30:00Z", "data": "x"},
        {**_award(12), "recordedAt": "not a time"},
    )

    plan = plan_backfill(content, fmt="jsonl", profile=northfield)

    problems = _problems(plan)
    assert sorted(problems) == [2, 3, 4, 5, 6, 8, 9, 10, 11, 12]
    assert problems[2] == "not valid JSON"
    assert problems[3].startswith("data.learner: Field required")
    assert "another tenant" in problems[4]
    assert "recordedAt is required" in problems[5]
    assert "'grade.posted' is not one of" in problems[6]
    assert problems[8] == "recordId repeats the one of line 7"
    assert "unknown keys ['extra']" in problems[9]
    assert problems[10].startswith("data.awardedOn")
    assert problems[11] == "data must be an object"
    assert problems[12].startswith("recordedAt")
    assert [r.line for r in plan.records] == [1, 7]
    assert plan.rows == 12
    assert not plan.valid
    assert EMAIL not in "\n".join(map(str, plan.problems))


def test_a_default_recorded_at_fills_rows_without_one(northfield: TenantProfile) -> None:
    row = _award(1)
    del row["recordedAt"]
    plan = plan_backfill(
        _jsonl(row), fmt="jsonl", profile=northfield, recorded_at="2025-02-01T00:00:00Z"
    )
    assert plan.valid
    assert json.loads(plan.records[0].value)["recordedAt"] == "2025-02-01T00:00:00Z"


@pytest.mark.parametrize("row", ["[1, 2]", '"award"', "42", "null"])
def test_a_file_whose_rows_are_not_objects_is_refused(northfield: TenantProfile, row: str) -> None:
    with pytest.raises(BackfillError, match=r"line 2 is a JSON \w+, not an object"):
        plan_backfill(_jsonl(_award(1), row), fmt="jsonl", profile=northfield)


def test_a_row_over_the_tenants_limit_is_refused(registry: TenantRegistry) -> None:
    # About 1.1 MB: over ingest's 1 MiB default, within Harbor Tech's own 2 MiB.
    big = _award(1, evidence=[{"narrative": "n" * 19_000} for _ in range(60)])
    content = _jsonl(big)
    northfield = _profile(registry, "northfield-cc")
    harbor = _profile(registry, "harbor-tech")

    refused = plan_backfill(content, fmt="jsonl", profile=northfield)
    assert "over northfield-cc's limit of 1048576" in _problems(refused)[1]
    big_harbor = {**big, "tenant": "harbor-tech"}
    assert plan_backfill(_jsonl(big_harbor), fmt="jsonl", profile=harbor).valid
    small = _award(2, evidence=[{"narrative": "n" * 19_000} for _ in range(5)])
    lowered = plan_backfill(
        _jsonl(small), fmt="jsonl", profile=northfield, max_message_bytes=65_536
    )
    assert "limit of 65536" in _problems(lowered)[1]


def test_what_normalize_would_refuse_for_the_tenant_is_caught_early(
    registry: TenantRegistry,
) -> None:
    definition = {
        "type": "definition.upserted",
        "recordedAt": "2024-11-04T15:20:00Z",
        "data": {"sourceId": "AAS-NURS", "name": "Nursing", "credentialType": "Degree"},
    }
    wrong_ctid = json.loads(json.dumps(definition))
    wrong_ctid["data"]["credentialType"] = "AssociateDegree"
    wrong_ctid["data"]["ctid"] = "ce-00000000-0000-4000-8000-000000000000"
    imported = json.loads(json.dumps(wrong_ctid))
    imported["data"]["ctid"] = "ce-0b1f7c52-3e8d-4a96-b2c1-7d5e9f0a4b63"
    content = _jsonl(definition, wrong_ctid, imported)

    northfield = plan_backfill(content, fmt="jsonl", profile=_profile(registry, "northfield-cc"))
    problems = _problems(northfield)
    assert "not a concrete CTDL credential class" in problems[1]
    assert "data.ctid differs" in problems[2]
    assert 3 not in problems, "the imported CTID is the right one"
    # Lakeshore's policy is use-default: a generic type is its business.
    lakeshore = plan_backfill(
        _jsonl(definition), fmt="jsonl", profile=_profile(registry, "lakeshore-univ")
    )
    assert lakeshore.valid


def test_a_tenant_without_backfill_refuses_the_file(registry: TenantRegistry) -> None:
    closed = _profile(registry, "northfield-cc").model_copy(update={"backfill_enabled": False})
    with pytest.raises(BackfillError, match="not enabled"):
        plan_backfill(_jsonl(_award(1)), fmt="jsonl", profile=closed)


def test_csv_rows_that_cannot_be_read_are_reported(northfield: TenantProfile) -> None:
    content = (
        "type,recordedAt,awardId,learner,learner.email,definition.sourceId,awardedOn,results,color\n"
        f"award.issued,2025-01-15T09:30:00Z,A1,,{EMAIL},GENED-MS,2016-05-13,,\n"
        f"award.issued,2025-01-15T09:30:00Z,A2,x,{EMAIL},GENED-MS,2016-05-13,,\n"
        f"award.issued,2025-01-15T09:30:00Z,A3,,{EMAIL},GENED-MS,2016-05-13,[oops,\n"
        f"award.issued,2025-01-15T09:30:00Z,A4,,{EMAIL},GENED-MS,2016-05-13,,red\n"
        f"award.issued,2025-01-15T09:30:00Z,A5,,{EMAIL},GENED-MS,2016-05-13,,,surplus\n"
    ).encode()

    plan = plan_backfill(content, fmt="csv", profile=northfield)

    problems = _problems(plan)
    assert [r.line for r in plan.records] == [2]
    assert "conflicts" in problems[3]
    assert "column 'results' starts like JSON but is not JSON" in problems[4]
    assert problems[5].startswith("data.color: Extra inputs are not permitted")
    assert problems[6] == "more cells than header columns"
    assert EMAIL not in "\n".join(map(str, plan.problems))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty"),
        (b"awardId,learner.email\nA1,x@y.example\n", "no 'type' column"),
        (b"type,awardId,awardId\naward.issued,A1,A2\n", "repeated"),
        (b"type\n\xff\xfe\n", "not UTF-8"),
    ],
)
def test_unusable_csv_files_are_refused(
    northfield: TenantProfile, content: bytes, message: str
) -> None:
    with pytest.raises(BackfillError, match=message):
        plan_backfill(content, fmt="csv", profile=northfield)


def test_the_format_comes_from_the_file_name() -> None:
    assert backfill.detect_format(Path("a.CSV")) == "csv"
    assert backfill.detect_format(Path("a.ndjson")) == "jsonl"
    with pytest.raises(BackfillError, match="--format"):
        backfill.detect_format(Path("awards.xlsx"))


# --------------------------------------------------------------------------- progress


def test_the_progress_line_shows_count_share_rate_and_eta() -> None:
    assert ProgressBar.render(500, 1000, 2.0, width=10) == (
        "[#####-----]  500/1000   50%  250 rows/s  ETA 0:02"
    )
    assert ProgressBar.render(1000, 1000, 4.0, width=4).endswith("100%  250 rows/s  done")
    assert ProgressBar.render(0, 1000, 0.0, width=4).endswith("ETA --:--")


def test_off_a_terminal_the_bar_writes_a_line_now_and_then_and_the_last() -> None:
    now = [0.0]
    stream = io.StringIO()
    bar = ProgressBar(
        1000, stream=stream, width=4, every_s=2.0, clock=lambda: now[0], interactive=False
    )
    for _ in range(10):
        now[0] += 0.5
        bar.advance(100)

    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("backfill [")
    assert "\r" not in stream.getvalue()
    assert len(lines) == 4, "at 0.5 s (first), 2.5 s, 4.5 s, and the last"
    assert lines[-1].endswith("done")


def test_on_a_terminal_the_bar_redraws_one_line() -> None:
    now = [0.0]
    stream = io.StringIO()
    bar = ProgressBar(2, stream=stream, clock=lambda: now[0], interactive=True)
    now[0] = 1.0
    bar.advance(1)
    now[0] = 2.0
    bar.advance(1)
    text = stream.getvalue()
    assert text.count("\r") == 2
    assert text.endswith("done\n")


# --------------------------------------------------------------------------- the command


def _cli(*args: str) -> int:
    return main(["--bootstrap", "127.0.0.1:1", "backfill", *args, "--tenants", str(TENANTS_FILE)])


def test_a_dry_run_checks_and_sends_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    example = EXAMPLES / "northfield-onboarding.csv"
    assert _cli(str(example), "--tenant", "northfield-cc", "--dry-run") == 0

    out, err = capsys.readouterr()
    assert "rows: 10, valid: 10, invalid: 0" in out
    assert "retro-awards: 3" in out
    assert "dry run: nothing sent (would send 10 to sis.events.northfield-cc)" in out
    assert err == ""


def test_bad_rows_stop_the_run_before_kafka(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "awards.jsonl"
    file.write_bytes(_jsonl(_award(1), {**_award(2), "type": "nope"}))
    # The bootstrap address is unreachable: reaching Kafka would fail differently.
    assert _cli(str(file), "--tenant", "northfield-cc") == 1

    out, err = capsys.readouterr()
    assert "line 2: type 'nope' is not one of" in err
    assert "nothing sent" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tenant", "nowhere-college"], "not in"),
        (["--tenant", "northfield-cc", "--format", "jsonl"], "not an object"),
    ],
)
def test_unusable_input_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    file = tmp_path / "rows.jsonl"
    file.write_text("[1, 2, 3]\n")
    assert _cli(str(file), *args) == 2
    assert message in capsys.readouterr().err


def test_a_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _cli(str(tmp_path / "missing.csv"), "--tenant", "northfield-cc") == 2
    assert "cannot read" in capsys.readouterr().err


def test_skip_invalid_goes_on_with_the_valid_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "awards.jsonl"
    file.write_bytes(_jsonl(_award(1), {**_award(2), "type": "nope"}, _award(3)))
    args = (str(file), "--tenant", "northfield-cc", "--skip-invalid", "--dry-run")
    assert _cli(*args) == 0

    out, err = capsys.readouterr()
    assert "rows: 3, valid: 2, invalid: 1" in out
    assert "would send 2 to sis.events.northfield-cc" in out
    assert "line 2:" in err


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_a_line_longer_than_any_message_is_refused_without_reading_it_whole(
    fmt: backfill.FileFormat,
) -> None:
    # A file without line breaks (or a binary one) must not be read into memory whole.
    header = b"type,learner.id\n" if fmt == "csv" else b""
    stream = io.BytesIO(header + b"x" * (backfill.MAX_LINE_BYTES + 4096))

    with pytest.raises(BackfillError, match=r"line \d+ is longer than 16,777,216 bytes"):
        list(backfill.read_rows(stream, fmt))
    assert stream.tell() <= len(header) + backfill.MAX_LINE_BYTES + 1


def test_a_line_of_exactly_the_longest_length_is_read() -> None:
    row = json.dumps(_award(1)).encode() + b"\n"
    lines = backfill._Lines(io.BytesIO(row + row), backfill.START, max_bytes=len(row))

    assert len(list(lines)) == 2
    with pytest.raises(BackfillError, match="line 1 is longer than"):
        list(backfill._Lines(io.BytesIO(row), backfill.START, max_bytes=len(row) - 1))
