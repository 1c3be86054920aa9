"""CTIDs and event ids: the same thing always gets the same id, different things never."""

from __future__ import annotations

import re
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cayg_shared.ids import CAYG_NAMESPACE, ctid, event_id
from cayg_shared.schema import CredentialRef

pytestmark = pytest.mark.unit

CTID_RE = re.compile(r"^ce-[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def test_a_known_ctid_never_changes() -> None:
    # Pinned: changing the derivation would re-mint every published credential.
    assert ctid(
        "northfield-cc", "credential-definition", "9b2e4c71-5a3d-4f0e-8c6b-1d7a2e9f3b58"
    ) == ("ce-ec4976fa-6c88-5e12-84f7-318ee330e069")
    assert ctid("northfield-cc", "organization", "northfield-cc") == (
        "ce-f14c0753-01b1-54ab-bb17-6e08d520801a"
    )


def test_sis_codes_are_compared_without_case_or_surrounding_space() -> None:
    assert ctid("t1", "credential-definition", " MC-SQL ") == ctid(
        "t1", "credential-definition", "mc-sql"
    )


@given(
    tenant=st.from_regex(r"[a-z0-9][a-z0-9-]{0,20}[a-z0-9]", fullmatch=True),
    code=st.text(min_size=1, max_size=40).filter(lambda s: s.strip()),
)
def test_ctids_are_deterministic_well_formed_and_scoped(tenant: str, code: str) -> None:
    first = ctid(tenant, "credential-definition", code)
    assert first == ctid(tenant, "credential-definition", code)
    assert CTID_RE.match(first)
    assert CredentialRef(ctid=first).ctid == first
    assert first != ctid(tenant + "x", "credential-definition", code)
    assert first != ctid(tenant, "organization", code)


def test_event_ids_depend_on_every_part() -> None:
    base = event_id("t1", "ethos-change-notification", "p/104233")
    assert base == event_id("t1", "ethos-change-notification", "p/104233")
    assert base != event_id("t2", "ethos-change-notification", "p/104233")
    assert base != event_id("t1", "backfill-record", "p/104233")
    assert base != event_id("t1", "ethos-change-notification", "p/104234")


@given(st.text(max_size=40), st.text(max_size=40))
def test_event_ids_are_the_uuid5_they_always_were(tenant: str, message_id: str) -> None:
    # Pinned to the standard library's UUIDv5: a redelivered message must keep its id
    # across versions of cayg, or downstream duplicates stop being recognisable.
    name = f"event\x1f{tenant}\x1fethos-change-notification\x1f{message_id}"
    expected = uuid.uuid5(CAYG_NAMESPACE, name)
    assert event_id(tenant, "ethos-change-notification", message_id) == expected
