"""Ingest settings, from the environment (prefix ``CAYG_INGEST_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from cayg_shared.settings import ServiceSettings, consumers_field, decide_workers_field


class IngestSettings(ServiceSettings):
    """How ingest runs. Example: ``CAYG_INGEST_KAFKA__BOOTSTRAP_SERVERS=broker:9092``."""

    model_config = SettingsConfigDict(env_prefix="CAYG_INGEST_", env_nested_delimiter="__")

    group_id: str = Field(
        default="cayg-ingest", min_length=1, description="consumer group of every instance"
    )
    http_port: int = Field(
        default=8081, ge=0, le=65535, description="/healthz, /readyz and /metrics port"
    )
    max_message_bytes: int = Field(
        default=1_048_576,
        ge=1_024,
        le=16 * 1_048_576,
        description="largest SIS message accepted, in bytes (a tenant may set a lower one)",
    )
    batch_max_records: int = Field(
        default=500,
        ge=1,
        le=10_000,
        description="most records read, processed and committed as one batch",
    )
    consumers: int = consumers_field()
    decide_workers: int = decide_workers_field()
