"""Settings shared by every service: how to reach Kafka, where to serve health and metrics.

Each service subclasses :class:`ServiceSettings` with its own environment prefix
(``CAYG_INGEST_``, ``CAYG_NORMALIZE_``, ``CAYG_PUBLISH_``). Secrets may be given as a value
or as a path to a file holding it (``…_FILE``); a file wins, so orchestrators can mount
secrets without putting them in the environment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class KafkaSettings(BaseModel):
    """Connection to the Kafka cluster (TLS and SASL optional)."""

    bootstrap_servers: str = "127.0.0.1:9092"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    sasl_password_file: Path | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    #: How often pattern subscriptions look for new topics (a new tenant's topic).
    metadata_max_age_ms: int = Field(default=30_000, ge=1_000)

    @model_validator(mode="after")
    def _read_secret_file(self) -> KafkaSettings:
        if self.sasl_password_file is not None:
            text = self.sasl_password_file.read_text(encoding="utf-8").strip()
            object.__setattr__(self, "sasl_password", SecretStr(text))
        if self.security_protocol.startswith("SASL") and self.sasl_mechanism is None:
            raise ValueError("SASL security protocols need sasl_mechanism")
        return self


class ServiceSettings(BaseSettings):
    """What every cayg service is configured with; subclasses set the env prefix."""

    model_config = SettingsConfigDict(env_nested_delimiter="__", extra="ignore")

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    #: Consumer group id; every instance of one service shares it to split partitions.
    group_id: str = "cayg"
    #: Where /healthz, /readyz and /metrics are served.
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8080, ge=0, le=65535)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    #: Seconds SIGTERM waits for in-flight messages before the service stops.
    graceful_timeout_s: float = Field(default=20.0, gt=0)
    #: Pause before a message whose output could not be produced is read again.
    redelivery_backoff_s: float = Field(default=1.0, ge=0)
    #: Prefix for every topic name (e.g. ``staging.``); empty in most deployments.
    topic_prefix: str = ""
    #: Tenant registry file (JSON), see ``deploy/config/tenants.json``.
    tenants_file: Path | None = None
