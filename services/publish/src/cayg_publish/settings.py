"""Publish settings, from the environment (prefix ``CAYG_PUBLISH_``).

Targets, credentials references and the ledger are described in a targets file (JSON, see
``deploy/config/publish.json``); secrets inside it are references to files or environment
variables, never values.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from cayg_shared.settings import ServiceSettings


class PublishSettings(ServiceSettings):
    """How publish runs. Example: ``CAYG_PUBLISH_TARGETS_FILE=/etc/cayg/publish.json``."""

    model_config = SettingsConfigDict(env_prefix="CAYG_PUBLISH_", env_nested_delimiter="__")

    group_id: str = "cayg-publish"
    http_port: int = Field(default=8083, ge=0, le=65535)
    #: Targets per tenant and the ledger backend.
    targets_file: Path | None = None
    #: Delay of each retry tier, in seconds; after the last tier a change goes to the DLQ.
    retry_tiers_s: tuple[float, ...] = (10.0, 60.0, 600.0)
    #: Attempts within one delivery before a change is handed to a retry tier.
    in_process_attempts: int = Field(default=3, ge=1, le=10)
    #: A retry consumer never sleeps longer than this at once, so shutdown stays prompt.
    retry_poll_s: float = Field(default=2.0, gt=0, le=30)

    @field_validator("retry_tiers_s")
    @classmethod
    def _tiers(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if not value or any(delay <= 0 for delay in value):
            raise ValueError("retry tiers are one or more positive delays")
        return value
