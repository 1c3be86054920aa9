"""Settings shared by every service and the operator CLI: how to reach Kafka, where to serve
health and metrics.

One connection model, :class:`KafkaSettings`, is read under the same environment names by
every process:

* the services read ``CAYG_<SERVICE>_KAFKA__…`` and ``CAYG_<SERVICE>_TOPIC_PREFIX``
  (``CAYG_INGEST_``, ``CAYG_NORMALIZE_``, ``CAYG_PUBLISH_``), falling back to the unprefixed
  ``CAYG_KAFKA__…`` and ``CAYG_TOPIC_PREFIX``;
* the operator CLI reads ``CAYG_KAFKA__…`` and ``CAYG_TOPIC_PREFIX`` (:class:`ConnectionSettings`).

So one environment file (``CAYG_KAFKA__BOOTSTRAP_SERVERS``, ``CAYG_KAFKA__SECURITY_PROTOCOL``,
…) serves every process of a host, and a service-specific value (its own SASL user) wins.
Secrets may be given as a value or as a path to a file holding it (``…_FILE``); a file wins,
so orchestrators can mount secrets without putting them in the environment.
"""

from __future__ import annotations

import math
import os
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

#: The prefix of the settings every process shares (``CAYG_KAFKA__…``, ``CAYG_TOPIC_PREFIX``).
COMMON_ENV_PREFIX = "CAYG_"
#: The settings read from the common prefix as well as from a service's own.
COMMON_FIELDS = frozenset({"kafka", "topic_prefix"})


class KafkaSettings(BaseModel):
    """Connection to the Kafka cluster (TLS and SASL optional)."""

    bootstrap_servers: str = Field(
        default="127.0.0.1:9092",
        min_length=1,
        description="the cluster: host:port[,host:port…]",
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT", description="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        default=None, description="PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (SASL protocols)"
    )
    sasl_username: str | None = Field(default=None, description="the SASL user")
    sasl_password: SecretStr | None = Field(
        default=None, description="the SASL password (prefer SASL_PASSWORD_FILE)"
    )
    sasl_password_file: Path | None = Field(
        default=None, description="a file holding the SASL password (wins over SASL_PASSWORD)"
    )
    ssl_cafile: Path | None = Field(
        default=None, description="CA bundle (PEM) the brokers' certificates chain to"
    )
    ssl_certfile: Path | None = Field(
        default=None, description="client certificate (PEM), for mutual TLS"
    )
    ssl_keyfile: Path | None = Field(
        default=None, description="the client certificate's private key (PEM)"
    )
    metadata_max_age_ms: int = Field(
        default=30_000,
        ge=1_000,
        description="how often pattern subscriptions look for new topics (a new tenant's)",
    )

    @model_validator(mode="after")
    def _read_secret_file(self) -> KafkaSettings:
        if self.sasl_password_file is not None:
            try:
                text = self.sasl_password_file.read_text(encoding="utf-8").strip()
            except OSError as error:
                raise ValueError(
                    f"cannot read the SASL password file {self.sasl_password_file}: "
                    f"{error.strerror}"
                ) from None
            object.__setattr__(self, "sasl_password", SecretStr(text))
        if self.security_protocol.startswith("SASL"):
            if self.sasl_mechanism is None:
                raise ValueError(f"{self.security_protocol} needs sasl_mechanism")
            if not self.sasl_username or self.sasl_password is None:
                raise ValueError(
                    f"{self.security_protocol} needs sasl_username and a password "
                    "(sasl_password_file or sasl_password)"
                )
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            path: Path | None = getattr(self, name)
            if path is not None and not path.is_file():
                raise ValueError(f"{name} {path} is not a readable file")
        if self.ssl_keyfile is not None and self.ssl_certfile is None:
            raise ValueError("ssl_keyfile needs ssl_certfile")
        return self

    @property
    def uses_tls(self) -> bool:
        """Whether connections are encrypted."""
        return self.security_protocol in ("SSL", "SASL_SSL")

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context for the cluster (``None`` without TLS)."""
        if not self.uses_tls:
            return None
        context = ssl.create_default_context(
            cafile=str(self.ssl_cafile) if self.ssl_cafile else None
        )
        if self.ssl_certfile:
            context.load_cert_chain(
                str(self.ssl_certfile), str(self.ssl_keyfile) if self.ssl_keyfile else None
            )
        return context

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments for any aiokafka client (producer, consumer, admin)."""
        options: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "security_protocol": self.security_protocol,
        }
        context = self.ssl_context()
        if context is not None:
            options["ssl_context"] = context
        if self.security_protocol.startswith("SASL"):
            options["sasl_mechanism"] = self.sasl_mechanism or "PLAIN"
            options["sasl_plain_username"] = self.sasl_username or ""
            options["sasl_plain_password"] = (
                self.sasl_password.get_secret_value() if self.sasl_password else ""
            )
        return options

    def describe(self) -> str:
        """Where and how the cluster is reached, without secrets (for messages)."""
        how: str = self.security_protocol
        if self.security_protocol.startswith("SASL"):
            how += f" {self.sasl_mechanism} as {self.sasl_username}"
        return f"{self.bootstrap_servers} ({how})"


class _CommonEnvSource(EnvSettingsSource):
    """``CAYG_KAFKA__…`` and ``CAYG_TOPIC_PREFIX`` for a service, below its own prefix."""

    def __call__(self) -> dict[str, Any]:
        return {k: v for k, v in super().__call__().items() if k in COMMON_FIELDS}


#: Where a container's CPU limit is read: cgroup v2 (``quota period``), then cgroup v1.
CGROUP_CPU_MAX: Final = Path("/sys/fs/cgroup/cpu.max")
CGROUP_V1_QUOTA: Final = Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")
CGROUP_V1_PERIOD: Final = Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us")


def available_cpus() -> int:
    """CPUs this process may use: its affinity, capped by a container's CPU limit (a pod
    limited to one CPU on a 16-CPU node has one, not 16), at least one."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    quota = cgroup_cpu_limit()
    if quota is not None:
        cpus = min(cpus, math.ceil(quota))
    return max(1, cpus)


def cgroup_cpu_limit(
    cpu_max: Path = CGROUP_CPU_MAX,
    v1_quota: Path = CGROUP_V1_QUOTA,
    v1_period: Path = CGROUP_V1_PERIOD,
) -> float | None:
    """The container's CPU limit in CPUs (cgroup v2, else v1), or None without one."""
    try:
        quota, period = cpu_max.read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int(v1_quota.read_text())
        period_us = int(v1_period.read_text())
    except (OSError, ValueError):
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


def default_decide_workers() -> int:
    """Decision workers of ingest and normalize when none are configured: one per CPU this
    process may run on, or none on a single CPU (the service then decides in its own
    process; a worker would only add the hand-over).

    The service process itself mostly waits while its workers decide: profiled on two
    CPUs it was idle for half of the run with one worker, and two workers moved a third
    more records than one (normalize alone on 20,000 bench records: 4,423/s against
    3,713/s). See :mod:`cayg_shared.decide_pool`.
    """
    cpus = available_cpus()
    return cpus if cpus > 1 else 0


def _decide_workers_beside(data: dict[str, Any]) -> int:
    # Consumer processes use the cores already; workers would only add hand-overs.
    return 0 if data.get("consumers", 1) > 1 else default_decide_workers()


def decide_workers_field() -> Any:
    """The ``decide_workers`` setting of a service with a batch loop (ingest, normalize);
    declared after ``consumers``, whose value its default follows."""
    return Field(
        default_factory=_decide_workers_beside,
        ge=0,
        le=64,
        description="worker processes that decide records (0: the service process does); "
        "default one per CPU, none on a single CPU or with more than one consumer process",
    )


def consumers_field() -> Any:
    """The ``consumers`` setting of a service with a batch loop (ingest, normalize)."""
    return Field(
        default=1,
        ge=1,
        le=64,
        description="consumer processes of this instance, the service process included: "
        "each runs the whole batch loop as one member of the group (see "
        "cayg_shared.consumers); more than one needs as many input partitions",
    )


#: Ingest's and normalize's consumers: aiokafka's defaults, a fetch answers as soon as one
#: record is there. Measured end to end: ingest and normalize waiting for 16 KiB or 20 ms
#: raised the p99 to ``cayg.normalized.v1`` at 50 records/s from 26 to 126 ms and did not
#: lower it at 1,000/s (337 against 374 ms, one run each). Publish waits for a batch instead
#: (see :class:`cayg_publish.settings.PublishSettings`).
BATCH_FETCH_MIN_BYTES: Final = 1
BATCH_FETCH_MAX_WAIT_MS: Final = 500


def fetch_min_bytes_field(default: int) -> Any:
    """The ``fetch_min_bytes`` setting of a service's consumer, with its own default."""
    return Field(
        default=default,
        ge=1,
        le=4 * 1024 * 1024,
        description="bytes the broker gathers before it answers a fetch (or FETCH_MAX_WAIT_MS "
        "passes): a light stream is read in fewer, larger batches",
    )


def fetch_max_wait_ms_field(default: int) -> Any:
    """The ``fetch_max_wait_ms`` setting of a service's consumer, with its own default."""
    return Field(
        default=default,
        ge=0,
        le=10_000,
        description="longest the broker holds a fetch for FETCH_MIN_BYTES: the most a light "
        "stream waits at this stage",
    )


class ServiceSettings(BaseSettings):
    """What every cayg service is configured with; subclasses set the env prefix."""

    model_config = SettingsConfigDict(env_nested_delimiter="__", extra="ignore")

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    group_id: str = Field(
        default="cayg",
        min_length=1,
        description="consumer group; every instance of one service shares it",
    )
    http_host: str = Field(
        default="127.0.0.1", description="where /healthz, /readyz and /metrics are served"
    )
    http_port: int = Field(default=8080, ge=0, le=65535, description="the HTTP port")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="DEBUG, INFO, WARNING or ERROR (JSON lines on stdout)"
    )
    graceful_timeout_s: float = Field(
        default=20.0, gt=0, description="seconds SIGTERM waits for in-flight messages"
    )
    redelivery_backoff_s: float = Field(
        default=1.0,
        ge=0,
        description="pause before a message whose output was not durable is read again",
    )
    topic_prefix: str = Field(
        default="", description="prefix of every topic name (e.g. staging.); usually empty"
    )
    tenants_file: Path | None = Field(
        default=None, description="the tenant registry (JSON), e.g. deploy/config/tenants.json"
    )
    startup_timeout_s: float = Field(
        default=30.0,
        gt=0,
        le=600,
        description="how long the service waits for Kafka at start before it exits (status 1)",
    )
    otlp_endpoint: str | None = Field(
        default=None,
        description="OpenTelemetry: OTLP/HTTP traces endpoint of a collector "
        "(e.g. http://otel-collector:4318/v1/traces); unset, no span is exported",
    )
    fetch_min_bytes: int = fetch_min_bytes_field(BATCH_FETCH_MIN_BYTES)
    fetch_max_wait_ms: int = fetch_max_wait_ms_field(BATCH_FETCH_MAX_WAIT_MS)

    def consumer_options(self) -> dict[str, Any]:
        """How this service's consumer fetches (beside the cluster's client options)."""
        return {
            "fetch_min_bytes": self.fetch_min_bytes,
            "fetch_max_wait_ms": self.fetch_max_wait_ms,
        }

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """The service's own variables first, then the ones every process shares."""
        common = _CommonEnvSource(
            settings_cls, env_prefix=COMMON_ENV_PREFIX, env_nested_delimiter="__"
        )
        return init_settings, env_settings, common, dotenv_settings, file_secret_settings

    @classmethod
    def env_prefix(cls) -> str:
        """This service's environment prefix (``CAYG_INGEST_``…)."""
        return str(cls.model_config.get("env_prefix", ""))

    @classmethod
    def env_name(cls, *path: str) -> str:
        """The environment variable of a setting: ``env_name("kafka", "bootstrap_servers")``
        is ``CAYG_INGEST_KAFKA__BOOTSTRAP_SERVERS`` for ingest."""
        return cls.env_prefix() + "__".join(part.upper() for part in path)


class ConnectionSettings(BaseSettings):
    """What the operator CLI needs to reach the cluster: ``CAYG_KAFKA__…``,
    ``CAYG_TOPIC_PREFIX`` — the names the services fall back to."""

    model_config = SettingsConfigDict(
        env_prefix=COMMON_ENV_PREFIX, env_nested_delimiter="__", extra="ignore"
    )

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    topic_prefix: str = Field(default="", description="prefix of every topic name")


def settings_table(settings_cls: type[BaseSettings]) -> list[tuple[str, str, str]]:
    """Every setting of ``settings_cls`` as (environment variable, default, meaning), nested
    models flattened with ``__`` — what ``--help`` of a service prints."""
    prefix = str(settings_cls.model_config.get("env_prefix", ""))
    return list(_rows(settings_cls.model_fields, prefix))


def _rows(fields: dict[str, FieldInfo], prefix: str) -> Iterator[tuple[str, str, str]]:
    for name, info in fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from _rows(annotation.model_fields, f"{prefix}{name.upper()}__")
            continue
        if info.default_factory is not None:
            default = "(computed)"
        elif info.default is None:
            default = "—"
        elif isinstance(info.default, SecretStr):
            default = "(secret)"
        elif isinstance(info.default, tuple | list):
            default = "[" + ", ".join(map(str, info.default)) + "]"
        else:
            default = str(info.default) if info.default != "" else '""'
        yield f"{prefix}{name.upper()}", default, info.description or ""
