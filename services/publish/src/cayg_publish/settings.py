"""Publish settings, from the environment (prefix ``CAYG_PUBLISH_``).

Targets, credentials references and the ledger are described in a targets file (TOML or
JSON, see ``deploy/config/publish.toml``); secrets inside it are references to files or
environment variables, never values.
"""

from __future__ import annotations

from fnmatch import fnmatch
from pathlib import Path
from typing import Final

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from cayg_shared.settings import ServiceSettings, fetch_max_wait_ms_field, fetch_min_bytes_field

#: Publish's consumer waits up to 100 ms for 64 KiB of changes (about a hundred), so a light
#: stream costs one ledger transaction, one commit and one fetch per batch rather than per
#: change. Measured at 50 events/s end to end: its two lanes used 36-39% of a core instead
#: of 61-74% when each change was read at once, and the p99 from an award to its learner's
#: CLR was 259 ms.
PUBLISH_FETCH_MIN_BYTES: Final = 64 * 1024
PUBLISH_FETCH_MAX_WAIT_MS: Final = 100


class PublishSettings(ServiceSettings):
    """How publish runs. Example: ``CAYG_PUBLISH_TARGETS_FILE=/etc/cayg/publish.toml``."""

    model_config = SettingsConfigDict(env_prefix="CAYG_PUBLISH_", env_nested_delimiter="__")

    group_id: str = Field(
        default="cayg-publish",
        min_length=1,
        description="consumer group (a lane's is <GROUP_ID>.<LANE>)",
    )
    fetch_min_bytes: int = fetch_min_bytes_field(PUBLISH_FETCH_MIN_BYTES)
    fetch_max_wait_ms: int = fetch_max_wait_ms_field(PUBLISH_FETCH_MAX_WAIT_MS)
    http_port: int = Field(
        default=8083, ge=0, le=65535, description="/healthz, /readyz and /metrics port"
    )
    targets_file: Path | None = Field(
        default=None,
        description="targets per tenant and the ledger (TOML or JSON, see "
        "deploy/config/publish.toml)",
    )
    in_process_attempts: int = Field(
        default=3,
        ge=1,
        le=10,
        description="attempts within one delivery before the document is marked failing",
    )
    retry_first_s: float = Field(
        default=5.0, gt=0, description="first interval between attempts at a failing document"
    )
    retry_max_s: float = Field(
        default=600.0,
        gt=0,
        description="longest interval between attempts (kept for as long as it fails)",
    )
    max_in_flight: int = Field(
        default=64,
        ge=1,
        le=4096,
        description="documents one instance delivers at once (target limits still apply)",
    )
    batch_max_records: int = Field(
        default=500,
        ge=1,
        le=10_000,
        description="most changes read and recorded in one ledger transaction",
    )
    batch_timeout_ms: int = Field(
        default=100,
        ge=1,
        le=10_000,
        description="longest wait for a batch to fill once a first change is there",
    )
    lease_ttl_s: float = Field(
        default=30.0,
        ge=5,
        le=600,
        description="how long a leased document stays with an instance before takeover "
        "(a running delivery renews it every third of this)",
    )
    delivery_timeout_s: float = Field(
        default=300.0,
        ge=1,
        le=3600,
        description="longest one delivery (its requests and in-process retries) may take",
    )
    signing_workers: int | None = Field(
        default=None,
        ge=0,
        le=64,
        description="processes that sign credentials (unset: one per CPU less one, at least "
        "one; 0: in a thread)",
    )
    signing_nice: int = Field(
        default=10,
        ge=0,
        le=19,
        description="how much lower the signing processes' CPU priority is (nice): bulk "
        "signing yields to the consume paths sharing the machine",
    )
    poll_s: float = Field(
        default=0.5,
        gt=0,
        le=30,
        description="how often the projector looks for documents due or dirtied elsewhere",
    )
    lane: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9][a-z0-9_-]{0,40}$",
        description="this instance's lane (its own consumer group); needs LANE_TARGETS",
    )
    lane_targets: tuple[str, ...] = Field(
        default=(),
        description='target name patterns the lane delivers to, JSON: ["*-registry"]',
    )

    @property
    def consumer_group(self) -> str:
        """The group id actually used: each lane has its own group (``cayg-publish.<lane>``),
        so two lanes never split one partition between them."""
        return self.group_id if self.lane is None else f"{self.group_id}.{self.lane}"

    def serves(self, target: str) -> bool:
        """Whether this instance delivers to ``target``."""
        return not self.lane_targets or any(fnmatch(target, p) for p in self.lane_targets)

    @model_validator(mode="after")
    def _lane_complete(self) -> PublishSettings:
        if (self.lane is None) != (not self.lane_targets):
            raise ValueError("a lane needs both LANE (its name) and LANE_TARGETS (patterns)")
        return self
