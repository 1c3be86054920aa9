"""Publish settings, from the environment (prefix ``CAYG_PUBLISH_``).

Targets, credentials references and the ledger are described in a targets file (JSON, see
``deploy/config/publish.json``); secrets inside it are references to files or environment
variables, never values.
"""

from __future__ import annotations

from fnmatch import fnmatch
from pathlib import Path

from pydantic import Field, field_validator, model_validator
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
    #: Lanes: run one group of publish instances per lane, each delivering only to the
    #: targets whose names match its patterns (shell-style, e.g. ``*-registry``), so a slow
    #: target never holds up the others. Empty: this instance serves every target.
    lane: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9_-]{0,40}$")
    lane_targets: tuple[str, ...] = ()

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

    @field_validator("retry_tiers_s")
    @classmethod
    def _tiers(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if not value or any(delay <= 0 for delay in value):
            raise ValueError("retry tiers are one or more positive delays")
        return value
