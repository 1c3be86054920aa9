"""cayg-shared: the contract between the cayg-sync services.

Topic names, headers, the ingest envelope and dead-letter record, deterministic ids, and
(in :mod:`cayg_shared.schema`) the incremental-credential schema every service speaks.
"""

from cayg_shared.envelope import (
    DeadLetter,
    IngestEnvelope,
    InputFormat,
    SourceCoordinates,
    Stage,
)
from cayg_shared.ids import ctid, derived_id, event_id

__all__ = [
    "DeadLetter",
    "IngestEnvelope",
    "InputFormat",
    "SourceCoordinates",
    "Stage",
    "ctid",
    "derived_id",
    "event_id",
]
