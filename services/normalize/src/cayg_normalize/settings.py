"""Normalize settings, from the environment (prefix ``CAYG_NORMALIZE_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from cayg_shared.settings import ServiceSettings, consumers_field, decide_workers_field


class NormalizeSettings(ServiceSettings):
    """How normalize runs. Stateless: scale it by adding instances (up to the partitions)."""

    model_config = SettingsConfigDict(env_prefix="CAYG_NORMALIZE_", env_nested_delimiter="__")

    group_id: str = Field(
        default="cayg-normalize", min_length=1, description="consumer group of every instance"
    )
    http_port: int = Field(
        default=8082, ge=0, le=65535, description="/healthz, /readyz and /metrics port"
    )
    batch_max_records: int = Field(
        default=500,
        ge=1,
        le=10_000,
        description="most records read, processed and committed as one batch",
    )
    consumers: int = consumers_field()
    decide_workers: int = decide_workers_field()
