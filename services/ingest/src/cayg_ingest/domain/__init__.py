"""Ingest's domain: admission of SIS records at the trust boundary. Pure: no I/O, no logging.

The tenant comes from the topic, never from the payload; everything else is checked
against it. :func:`admit` returns the canonical :class:`~cayg_shared.envelope.IngestEnvelope`
or raises :class:`Rejection` with a short ``reason`` (see :class:`Reason`).
"""

from cayg_ingest.domain.admit import Admission, admit
from cayg_ingest.domain.ethos import ETHOS_OPERATIONS, ETHOS_RESOURCES
from cayg_ingest.domain.model import InboundMessage, IngestLimits, Reason, Rejection

__all__ = [
    "ETHOS_OPERATIONS",
    "ETHOS_RESOURCES",
    "Admission",
    "InboundMessage",
    "IngestLimits",
    "Reason",
    "Rejection",
    "admit",
]
