"""The catalog's read side, written once for both SQL backends.

SQLite and PostgreSQL differ in how a query runs (a worker thread vs an async connection)
and in their placeholders, not in what the catalog asks: each backend supplies
:meth:`SqlCatalogReads._rows` and its statements; the lookups live here.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from datetime import datetime
from typing import Any

from cayg_publish.adapters.ledger._rows import CatalogStatements
from cayg_publish.domain.catalog import CatalogRow, CatalogStatus, HeldAward
from cayg_shared.schema import CredentialDefinition, CredentialRef, EntityType, LearnerIdentity


class SqlCatalogReads(ABC):
    """Catalog lookups over one backend's ``_rows`` query runner."""

    _sql: CatalogStatements

    @abstractmethod
    async def _rows(self, sql: str, params: tuple[Any, ...]) -> list[CatalogRow]:
        """Run a catalog query and return its rows."""

    async def _one(self, sql: str, params: tuple[Any, ...]) -> CatalogRow | None:
        rows = await self._rows(sql, params)
        return rows[0] if rows else None

    async def definition(self, tenant: str, ctid: str) -> CredentialDefinition | None:
        """The last known definition with ``ctid``."""
        row = await self.definition_row(tenant, ctid)
        entity = None if row is None else row.entity
        return entity if isinstance(entity, CredentialDefinition) else None

    async def definition_row(self, tenant: str, ctid: str) -> CatalogRow | None:
        """The newest catalog row of the definition with ``ctid``."""
        return await self._one(self._sql.definition_by_ctid, (tenant, ctid))

    async def row(
        self, tenant: str, entity_type: EntityType, source_id: str, part: str = ""
    ) -> CatalogRow | None:
        """The catalog row of one entity, whatever its status."""
        return await self._one(self._sql.select_one, (tenant, entity_type.value, source_id, part))

    async def programs(self, tenant: str) -> list[CatalogRow]:
        """Current program rows of the tenant."""
        return await self._rows(self._sql.programs, (tenant,))

    async def definition_named(self, tenant: str, ref: CredentialRef) -> CatalogRow | None:
        """A definition row by CTID, else by SIS id."""
        row = await self.definition_row(tenant, ref.ctid)
        if row is None and ref.source_id is not None:
            row = await self.row(tenant, EntityType.CREDENTIAL_DEFINITION, ref.source_id)
        return row

    async def award_rows_of(self, tenant: str, learner: str) -> list[CatalogRow]:
        """Every award row of a learner: current, revoked and deleted."""
        return await self._rows(self._sql.award_history_of, (tenant, learner))

    async def definition_by_source(
        self, tenant: str, source_id: str
    ) -> CredentialDefinition | None:
        """The last known definition with SIS id ``source_id``."""
        params = (tenant, EntityType.CREDENTIAL_DEFINITION.value, source_id, "")
        row = await self._one(self._sql.select_one, params)
        entity = None if row is None else row.entity
        return entity if isinstance(entity, CredentialDefinition) else None

    async def learner(self, tenant: str, person_ref: str) -> LearnerIdentity | None:
        """The current identity of a learner."""
        params = (tenant, EntityType.LEARNER_IDENTITY.value, person_ref, "")
        row = await self._one(self._sql.select_one, params)
        if row is None or row.status is not CatalogStatus.CURRENT:
            return None
        return row.entity if isinstance(row.entity, LearnerIdentity) else None

    async def awards_of(self, tenant: str, learner: str) -> tuple[HeldAward, ...]:
        """The current awards of a learner."""
        rows = await self._rows(self._sql.awards_of, (tenant, learner))
        return tuple(h for h in map(HeldAward.of, rows) if h is not None)

    async def last_award_change(self, tenant: str, learner: str) -> datetime | None:
        """The newest source time of any award row of the learner."""
        rows = await self._rows(self._sql.award_history_of, (tenant, learner))
        return max((row.version.time for row in rows), default=None)
