"""Where a ``cayg backfill`` run stands, so that an interrupted run can resume.

A checkpoint is one small JSON file, rewritten atomically (a temporary file in the same
directory, then ``os.replace``) after every chunk the broker acknowledged. It names

* the file — its path, size and SHA-256 — so that a resume against a changed file is
  refused instead of sending a mixture of two files;
* the run's settings (tenant, topic, batch id, …), which decide the bytes and ids of every
  record, so that a resume sends exactly what the first run would have sent;
* how far the run got: the byte offset just past the last row of the last acknowledged
  chunk, that row's line, and how many records and chunks were acknowledged.

A kill between an acknowledgement and the checkpoint write re-sends that one chunk on
resume. That is harmless: record ids, and the event ids ingest derives from them, are
deterministic, so downstream drops the repeats.
"""

from __future__ import annotations

import hashlib
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from pydantic import BaseModel, ConfigDict, ValidationError

#: Bumped when the layout changes; an older checkpoint is refused, not misread.
CHECKPOINT_VERSION: Final = 1
#: Where checkpoints go by default, under the current directory (ignored by git, beside
#: the demo's ``.cayg/demo``): not next to the file, which may sit in a read-only or
#: version-controlled directory.
DEFAULT_DIRECTORY: Final = Path(".cayg") / "backfill"


class CheckpointError(Exception):
    """A checkpoint cannot be used: unreadable, of another file, or of other settings."""


class FileIdentity(BaseModel):
    """What a file was when it was checked: a changed byte changes the SHA-256."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str
    size: int
    sha256: str

    @classmethod
    def of(cls, path: Path) -> FileIdentity:
        """Read the whole file once, streaming (raises ``OSError``)."""
        with path.open("rb") as stream:
            digest = hashlib.file_digest(stream, "sha256").hexdigest()
            size = os.fstat(stream.fileno()).st_size
        return cls(path=str(path.resolve()), size=size, sha256=digest)


class RunSettings(BaseModel):
    """Everything besides the file that decides the records a run sends."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tenant: str
    topic: str
    format: str
    batch_id: str
    recorded_at: str | None
    skip_invalid: bool
    limit: int


class Checkpoint(BaseModel):
    """One run's progress through one file."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: int = CHECKPOINT_VERSION
    file: FileIdentity
    settings: RunSettings
    #: Records the check found valid (the progress bar's total).
    records: int
    #: Lines whose record id repeats an earlier one; only with ``skip_invalid`` (otherwise
    #: such a file is never sent). The send pass skips them without a set of every id.
    duplicate_lines: tuple[int, ...] = ()
    #: Byte offset just past the last row of the last acknowledged chunk, and its line.
    offset: int = 0
    line: int = 0
    #: Records and chunks the broker acknowledged (acks=all), over every run of this file.
    sent: int = 0
    chunks: int = 0
    complete: bool = False
    updated_at: str = ""

    def advanced(self, *, offset: int, line: int, records: int) -> Checkpoint:
        """After one more acknowledged chunk ending at ``offset``/``line``."""
        return self.model_copy(
            update={
                "offset": offset,
                "line": line,
                "sent": self.sent + records,
                "chunks": self.chunks + 1,
            }
        )

    def refusal(self, file: FileIdentity, settings: RunSettings) -> str | None:
        """Why this checkpoint cannot resume a run of ``file`` with ``settings``, or None."""
        if file.size != self.file.size or file.sha256 != self.file.sha256:
            return (
                f"{Path(file.path).name} changed since the checkpoint was written "
                f"({'size' if file.size != self.file.size else 'content'} differs): run "
                "without --resume to send it from the start"
            )
        ours, theirs = settings.model_dump(), self.settings.model_dump()
        differ = sorted(name for name in ours if ours[name] != theirs[name])
        if differ:
            return (
                f"the checkpoint was written with other settings ({', '.join(differ)}): "
                "give the same options, or run without --resume"
            )
        return None


def default_path(file: Path, tenant: str, directory: Path = DEFAULT_DIRECTORY) -> Path:
    """``.cayg/backfill/<file name>.<tenant>.<8 hex of the file's full path>.json``.

    The path's hash keeps two ``awards.csv`` of different directories apart; the name
    keeps the file findable by eye.
    """
    where = hashlib.sha256(str(file.resolve()).encode("utf-8")).hexdigest()[:8]
    return directory / f"{file.name}.{tenant}.{where}.json"


def save(path: Path, checkpoint: Checkpoint) -> None:
    """Write ``checkpoint`` so that a reader sees the old one or the new one, never half.

    The data is flushed to disk before the rename, so that a power cut does not leave an
    empty file under the checkpoint's name either.
    """
    stamped = checkpoint.model_copy(update={"updated_at": datetime.now(UTC).isoformat()})
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with partial.open("w", encoding="utf-8") as stream:
        stream.write(stamped.model_dump_json(indent=1))
        stream.write("\n")
        stream.flush()
        os.fsync(stream.fileno())
    os.replace(partial, path)


def load(path: Path) -> Checkpoint | None:
    """The checkpoint at ``path``, None when there is none."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as error:
        raise CheckpointError(f"cannot read the checkpoint {path}: {error.strerror}") from None
    try:
        checkpoint = Checkpoint.model_validate_json(text)
    except ValidationError:
        raise CheckpointError(f"{path} is not a backfill checkpoint") from None
    if checkpoint.version != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path} was written by another version of cayg backfill (layout "
            f"{checkpoint.version}, this one reads {CHECKPOINT_VERSION})"
        )
    return checkpoint
