"""``cayg backfill`` in chunks: where rows end in the file, chunks, the record-id set on disk,
the checkpoint, and an interrupted run resumed — with an outlet of our own instead of Kafka.
"""

from __future__ import annotations

import asyncio
import io
import json
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from cayg_ops import backfill
from cayg_ops import checkpoint as checkpoint_store
from cayg_ops.backfill import (
    Checked,
    DiskRecordIds,
    MemoryRecordIds,
    Options,
    Position,
    PreparedRecord,
    Problem,
    ProgressBar,
    check_rows,
    chunked,
    read_rows,
    rules_for,
)
from cayg_ops.checkpoint import Checkpoint, CheckpointError, FileIdentity, RunSettings
from cayg_shared.schema import CaygEventType
from cayg_shared.tenants import TenantProfile, TenantRegistry

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[3]
TENANTS_FILE = REPO / "deploy" / "config" / "tenants.json"
EXAMPLES = REPO / "deploy" / "ops" / "examples"
TOPIC = "sis.events.northfield-cc"


@pytest.fixture(scope="module")
def northfield() -> TenantProfile:
    profile = TenantRegistry.load(TENANTS_FILE).get("northfield-cc")
    assert profile is not None
    return profile


def _award(n: int) -> dict[str, Any]:
    return {
        "type": "award.issued",
        "recordId": f"awards:{n}",
        "recordedAt": "2025-01-15T09:30:00Z",
        "data": {
            "awardId": f"RA-{n:05d}",
            "learner": {"institutionId": f"{700_000 + n:07d}"},
            "definition": {"sourceId": "GENED-MS"},
            "awardedOn": "2016-05-13",
        },
    }


def _awards(count: int) -> bytes:
    return "".join(json.dumps(_award(n)) + "\n" for n in range(count)).encode()


# --------------------------------------------------------------------------- positions


def _tail_from_each_row(content: bytes, fmt: backfill.FileFormat) -> None:
    """Reading on from where any row ends gives exactly the rows after it."""
    whole = list(read_rows(io.BytesIO(content), fmt))
    assert whole
    for index, (_, end) in enumerate(whole):
        rest = list(read_rows(io.BytesIO(content), fmt, end))
        assert rest == whole[index + 1 :]


def test_jsonl_rows_end_where_the_next_begins_across_blank_lines_crlf_and_a_bom() -> None:
    lines = [json.dumps(_award(n)) for n in range(4)]
    content = (
        "\ufeff" + lines[0] + "\r\n\r\n" + lines[1] + "\n" + "   \n" + lines[2] + "\n"
    ).encode()
    content += lines[3].encode()  # no newline at the end

    rows = list(read_rows(io.BytesIO(content), "jsonl"))
    assert [row.line for row, _ in rows] == [1, 3, 5, 6]
    assert rows[-1][1] == Position(len(content), 6)
    _tail_from_each_row(content, "jsonl")


def test_csv_rows_spanning_lines_resume_after_their_last_line() -> None:
    content = (EXAMPLES / "northfield-onboarding.csv").read_bytes()
    header, first, *rest = content.decode().splitlines(keepends=True)
    # A quoted cell with a line break in it: one row over two lines.
    name_at = header.split(",").index("name")
    cells = first.rstrip("\r\n").split(",")
    cells[name_at] = '"Milestone,\nspread over two lines"'
    spanning = (header + ",".join(cells) + "\n" + "".join(rest)).encode()

    rows = list(read_rows(io.BytesIO(spanning), "csv"))
    assert rows[0][0].line == 3, "a row is numbered by its last line"
    assert rows[0][1].line == 3
    assert rows[1][0].line == 4
    _tail_from_each_row(spanning, "csv")


def test_checking_from_a_position_gives_the_same_records_as_from_the_start(
    northfield: TenantProfile,
) -> None:
    content = (EXAMPLES / "northfield-onboarding.jsonl").read_bytes()
    rules = rules_for(northfield, batch_id="nfcc-test")
    whole = list(check_rows(io.BytesIO(content), "jsonl", rules, MemoryRecordIds()))
    middle = whole[len(whole) // 2].end

    # The set of ids starts empty on resume; the checks that need earlier rows are in the
    # checkpoint (its duplicate lines), not in the set.
    tail = list(check_rows(io.BytesIO(content), "jsonl", rules, MemoryRecordIds(), middle))
    assert tail == whole[len(whole) // 2 + 1 :]


def test_an_undecodable_line_names_its_byte_in_the_file() -> None:
    content = b'{"a": 1}\n{"b": "\xff"}\n'
    with pytest.raises(backfill.BackfillError, match=r"not UTF-8 \(byte 16\)"):
        list(read_rows(io.BytesIO(content), "jsonl"))


# --------------------------------------------------------------------------- chunks


def _checked(lines: Sequence[int | str]) -> list[Checked]:
    """Records for ints, problems for strings ("3" is a problem on line 3)."""
    items: list[Checked] = []
    for offset, item in enumerate(lines, start=1):
        if isinstance(item, str):
            items.append(Checked(Problem(int(item), "wrong"), Position(offset * 10, int(item))))
            continue
        record = PreparedRecord(
            line=item,
            record_id=f"r{item}",
            type=CaygEventType.AWARD_ISSUED,
            key=b"k",
            value=b"{}",
            event_id=uuid.uuid4(),
            approach=None,
        )
        items.append(Checked(record, Position(offset * 10, item)))
    return items


def test_chunks_hold_size_records_and_end_after_their_last_row() -> None:
    chunks = list(chunked(_checked([1, 2, "3", 4, 5, "6"]), 2, skip_invalid=True))

    assert [[r.line for r in c.records] for c in chunks] == [[1, 2], [4, 5], []]
    assert [c.skipped for c in chunks] == [0, 1, 1]
    assert [c.end for c in chunks] == [Position(20, 2), Position(50, 5), Position(60, 6)]


def test_a_problem_in_the_send_pass_stops_it_unless_skipping() -> None:
    items = _checked([1, 2, "3", 4])
    chunks = chunked(items, 2, skip_invalid=False)
    assert next(chunks).end == Position(20, 2)
    with pytest.raises(backfill.BackfillError, match="changed after it was checked"):
        next(chunks)


def test_nothing_read_gives_no_chunk() -> None:
    assert list(chunked([], 5, skip_invalid=False)) == []


# --------------------------------------------------------------------------- record ids


def test_record_ids_on_disk_name_the_first_line_as_the_dict_does(tmp_path: Path) -> None:
    memory = MemoryRecordIds()
    with DiskRecordIds(tmp_path) as disk:
        for line in range(1, 120_001):
            # Every 1,000th id repeats the one 500 lines before; crosses commit batches.
            record_id = f"id-{line - 500}" if line % 1000 == 0 else f"id-{line}"
            assert disk.claim(record_id, line) == memory.claim(record_id, line)
        assert disk.claim("id-7", 999_999) == 7
        assert disk.claim("brand-new", 999_999) == 999_999


# --------------------------------------------------------------------------- checkpoint


def _settings(**changes: Any) -> RunSettings:
    base: dict[str, Any] = {
        "tenant": "northfield-cc",
        "topic": TOPIC,
        "format": "jsonl",
        "batch_id": "bf-1",
        "recorded_at": None,
        "skip_invalid": False,
        "limit": 1_048_576,
    }
    return RunSettings(**{**base, **changes})


def test_a_checkpoint_is_replaced_whole_and_read_back(tmp_path: Path) -> None:
    file = tmp_path / "awards.jsonl"
    file.write_bytes(_awards(3))
    path = checkpoint_store.default_path(file, "northfield-cc", tmp_path / "state")
    assert path.parent == tmp_path / "state"
    assert path.name.startswith("awards.jsonl.northfield-cc.")
    elsewhere = tmp_path / "other" / "awards.jsonl"
    assert checkpoint_store.default_path(elsewhere, "northfield-cc", tmp_path / "state") != path
    assert checkpoint_store.default_path(file, "x").parts[:2] == (".cayg", "backfill")
    first = Checkpoint(file=FileIdentity.of(file), settings=_settings(), records=3)

    checkpoint_store.save(path, first)
    checkpoint_store.save(path, first.advanced(offset=100, line=2, records=2))

    loaded = checkpoint_store.load(path)
    assert loaded is not None
    assert (loaded.offset, loaded.line, loaded.sent, loaded.chunks) == (100, 2, 2, 1)
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".partial")] == []
    assert checkpoint_store.load(tmp_path / "none.json") is None


def test_a_checkpoint_refuses_another_file_or_other_settings(tmp_path: Path) -> None:
    file = tmp_path / "awards.jsonl"
    file.write_bytes(_awards(3))
    saved = Checkpoint(file=FileIdentity.of(file), settings=_settings(), records=3)

    assert saved.refusal(FileIdentity.of(file), _settings()) is None
    file.write_bytes(_awards(3).replace(b"RA-00001", b"RA-00009"))
    same_size = saved.refusal(FileIdentity.of(file), _settings())
    assert same_size is not None
    assert "awards.jsonl changed since the checkpoint was written (content differs)" in same_size
    file.write_bytes(_awards(4))
    assert "(size differs)" in str(saved.refusal(FileIdentity.of(file), _settings()))
    file.write_bytes(_awards(3))
    other = saved.refusal(FileIdentity.of(file), _settings(batch_id="bf-2", topic="x"))
    assert other is not None
    assert "other settings (batch_id, topic)" in other
    assert "\n" not in same_size + other


def test_a_file_that_is_not_a_checkpoint_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text('{"offset": 3}')
    with pytest.raises(CheckpointError, match="not a backfill checkpoint"):
        checkpoint_store.load(path)


# --------------------------------------------------------------------------- resuming


class FlakyOutlet:
    """Keeps what it was given; fails (as a broker outage or Ctrl-C would) on one call."""

    def __init__(self, fail_on_call: int | None = None, error: BaseException | None = None) -> None:
        self.delivered: list[list[PreparedRecord]] = []
        self.calls = 0
        self.fail_on_call = fail_on_call
        self.error = error or ConnectionError("broker went away")

    async def deliver(self, records: Sequence[PreparedRecord]) -> None:
        self.calls += 1
        if self.calls == self.fail_on_call:
            raise self.error
        await asyncio.sleep(0)
        self.delivered.append(list(records))

    @property
    def record_ids(self) -> list[str]:
        return [r.record_id for chunk in self.delivered for r in chunk]


def _checkpoint_of(file: Path) -> Path:
    return file.parent / "state" / "checkpoint.json"


def _run(
    file: Path, profile: TenantProfile, outlet: FlakyOutlet, **options: Any
) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    options.setdefault("checkpoint", _checkpoint_of(file))
    status = backfill.run(
        Options(file=file, tenant="northfield-cc", batch_size=7, **options),
        profile=profile,
        bootstrap="127.0.0.1:1",
        topic=TOPIC,
        out=out,
        err=err,
        outlet=outlet,
    )
    return status, out.getvalue(), err.getvalue()


def test_a_failed_run_resumes_after_the_last_acknowledged_chunk(
    tmp_path: Path, northfield: TenantProfile
) -> None:
    file = tmp_path / "awards.jsonl"
    file.write_bytes(_awards(50))
    first = FlakyOutlet(fail_on_call=4)

    status, _, err = _run(file, northfield, first)
    assert status == 1
    assert "sending failed after 21 confirmed records" in err
    assert "`--resume` goes on after line 21" in err
    saved = checkpoint_store.load(_checkpoint_of(file))
    assert saved is not None
    assert (saved.sent, saved.chunks, saved.line, saved.complete) == (21, 3, 21, False)
    assert saved.offset == len(b"".join(_awards(50).splitlines(keepends=True)[:21]))

    second = FlakyOutlet()
    status, out, err = _run(file, northfield, second, resume=True)
    assert status == 0, err
    assert "resuming after line 21 (21 of 50 records sent and acknowledged)" in out
    assert "sent 29 records" in out
    assert "(50 in all)" in out
    assert first.record_ids + second.record_ids == [f"awards:{n}" for n in range(50)]
    assert "50/50" in err

    third = FlakyOutlet()
    status, out, _ = _run(file, northfield, third, resume=True)
    assert status == 0
    assert "all 50 records were already sent" in out
    assert third.calls == 0


def test_an_interrupted_run_exits_130_and_resumes(
    tmp_path: Path, northfield: TenantProfile
) -> None:
    file = tmp_path / "awards.jsonl"
    file.write_bytes(_awards(20))
    status, _, err = _run(file, northfield, FlakyOutlet(2, KeyboardInterrupt()))
    assert status == 130
    assert "interrupted after 7 confirmed records" in err

    rest = FlakyOutlet()
    assert _run(file, northfield, rest, resume=True)[0] == 0
    assert rest.record_ids == [f"awards:{n}" for n in range(7, 20)]


def test_a_resume_against_a_changed_file_or_without_checkpoint_is_refused(
    tmp_path: Path, northfield: TenantProfile
) -> None:
    file = tmp_path / "awards.jsonl"
    file.write_bytes(_awards(20))
    status, _, err = _run(file, northfield, FlakyOutlet(), resume=True)
    assert status == 2
    assert "no checkpoint at" in err

    assert _run(file, northfield, FlakyOutlet(fail_on_call=2))[0] == 1
    file.write_bytes(_awards(21))
    untouched = FlakyOutlet()
    status, _, err = _run(file, northfield, untouched, resume=True)
    assert status == 2
    assert err.count("\n") == 1, "one line"
    assert "cannot resume: awards.jsonl changed since the checkpoint was written" in err
    assert untouched.calls == 0
    status, _, err = _run(file, northfield, FlakyOutlet(), resume=True, batch_id="manual-1")
    assert status == 2


def test_skipped_rows_stay_skipped_on_resume(tmp_path: Path, northfield: TenantProfile) -> None:
    rows = [json.dumps(_award(n)) for n in range(30)]
    rows[3] = json.dumps({**_award(3), "type": "nope"})
    rows[12] = json.dumps({**_award(99), "recordId": "awards:2"})  # repeats line 3's id
    rows[25] = json.dumps({**_award(99), "recordId": "awards:2"})
    file = tmp_path / "awards.jsonl"
    file.write_bytes(("\n".join(rows) + "\n").encode())

    first = FlakyOutlet(fail_on_call=2)
    status, out, _ = _run(file, northfield, first, skip_invalid=True)
    assert status == 1
    assert "rows: 30, valid: 27, invalid: 3" in out
    rest = FlakyOutlet()
    assert _run(file, northfield, rest, resume=True, skip_invalid=True)[0] == 0

    sent = first.record_ids + rest.record_ids
    assert len(sent) == len(set(sent)) == 27
    assert "awards:99" not in sent
    assert "awards:3" not in sent


def test_invalid_rows_send_nothing_and_write_no_checkpoint(
    tmp_path: Path, northfield: TenantProfile
) -> None:
    file = tmp_path / "awards.jsonl"
    file.write_bytes(_awards(5) + b'{"type": "nope"}\n')
    outlet = FlakyOutlet()
    status, out, err = _run(file, northfield, outlet)
    assert status == 1
    assert "nothing sent" in out
    assert "line 6:" in err
    assert outlet.calls == 0
    assert not _checkpoint_of(file).exists()


def test_a_checkpoint_that_cannot_be_written_stops_the_run_before_sending(
    tmp_path: Path, northfield: TenantProfile
) -> None:
    file = tmp_path / "awards.jsonl"
    file.write_bytes(_awards(5))
    outlet = FlakyOutlet()
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    status, _, err = _run(file, northfield, outlet, checkpoint=blocked / "c.json")
    assert status == 2
    assert "cannot write the checkpoint" in err
    assert outlet.calls == 0


def test_the_rate_of_a_resumed_run_counts_only_its_own_rows() -> None:
    now = [0.0]
    stream = io.StringIO()
    bar = ProgressBar(
        1000, stream=stream, width=4, clock=lambda: now[0], interactive=False, start=600
    )
    now[0] = 2.0
    bar.advance(400)
    assert stream.getvalue().strip().endswith("1000/1000  100%  200 rows/s  done")


def test_a_large_file_shows_a_bar_while_it_is_checked(
    tmp_path: Path, northfield: TenantProfile
) -> None:
    rows = []
    for n in range(60):
        row = _award(n)
        row["data"]["evidence"] = [{"narrative": "n" * 20_000}]
        rows.append(json.dumps(row) + "\n")
    file = tmp_path / "awards.jsonl"
    file.write_text("".join(rows))
    assert file.stat().st_size >= backfill.CHECK_PROGRESS_BYTES

    status, out, err = _run(file, northfield, FlakyOutlet(), dry_run=True)
    assert status == 0
    assert "rows: 60, valid: 60, invalid: 0" in out
    checking = [line for line in err.splitlines() if line.startswith("checking [")]
    assert checking
    assert checking[-1].endswith("done")
    assert f"{file.stat().st_size // 1024}/{file.stat().st_size // 1024}" in checking[-1]
    assert "KiB/s" in checking[-1]


def test_a_fresh_run_over_an_unfinished_one_says_so_and_starts_at_the_top(
    tmp_path: Path, northfield: TenantProfile
) -> None:
    file = tmp_path / "awards.jsonl"
    file.write_bytes(_awards(20))
    assert _run(file, northfield, FlakyOutlet(fail_on_call=2))[0] == 1

    again = FlakyOutlet()
    status, out, _ = _run(file, northfield, again)
    assert status == 0
    assert "the unfinished run in" in out
    assert "(after line 7) is replaced" in out
    assert again.record_ids == [f"awards:{n}" for n in range(20)]


def test_a_file_edited_during_the_check_is_not_sent(
    tmp_path: Path, northfield: TenantProfile, monkeypatch: pytest.MonkeyPatch
) -> None:
    file = tmp_path / "awards.jsonl"
    file.write_bytes(_awards(5))
    checked = backfill.check_file

    def check_then_edit(*args: Any, **kwargs: Any) -> backfill.Tally:
        tally = checked(*args, **kwargs)
        with file.open("ab") as stream:  # an export still being written, say
            stream.write(json.dumps(_award(5)).encode() + b"\n")
        return tally

    monkeypatch.setattr(backfill, "check_file", check_then_edit)
    outlet = FlakyOutlet()
    status, _, err = _run(file, northfield, outlet)
    assert status == 2
    assert "awards.jsonl changed while it was being checked" in err
    assert outlet.calls == 0
