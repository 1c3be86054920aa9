"""Normalize settings, from the environment (prefix ``CAYG_NORMALIZE_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from cayg_shared.settings import ServiceSettings


class NormalizeSettings(ServiceSettings):
    """How normalize runs. Stateless: scale it by adding instances (up to the partitions)."""

    model_config = SettingsConfigDict(env_prefix="CAYG_NORMALIZE_", env_nested_delimiter="__")

    group_id: str = "cayg-normalize"
    http_port: int = Field(default=8082, ge=0, le=65535)
    #: Most records read, processed and committed as one batch.
    batch_max_records: int = Field(default=500, ge=1, le=10_000)
