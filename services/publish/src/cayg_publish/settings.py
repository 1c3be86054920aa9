"""Publish settings, from the environment (prefix ``CAYG_PUBLISH_``).

Targets, credentials references and the ledger are described in a targets file (JSON, see
``deploy/config/publish.json``); secrets inside it are references to files or environment
variables, never values.
"""

from __future__ import annotations

from fnmatch import fnmatch
from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from cayg_shared.settings import ServiceSettings


class PublishSettings(ServiceSettings):
    """How publish runs. Example: ``CAYG_PUBLISH_TARGETS_FILE=/etc/cayg/publish.json``."""

    model_config = SettingsConfigDict(env_prefix="CAYG_PUBLISH_", env_nested_delimiter="__")

    group_id: str = "cayg-publish"
    http_port: int = Field(default=8083, ge=0, le=65535)
    #: Targets per tenant and the ledger backend.
    targets_file: Path | None = None
    #: Attempts within one delivery (jittered backoff, ``Retry-After`` honoured) before
    #: the document is marked failing and its next attempt scheduled in the ledger.
    in_process_attempts: int = Field(default=3, ge=1, le=10)
    #: The first and the longest interval between attempts at a failing document; it keeps
    #: being retried at the longest interval for as long as it fails.
    retry_first_s: float = Field(default=5.0, gt=0)
    retry_max_s: float = Field(default=600.0, gt=0)
    #: Documents delivered at once by one instance (each target's limits still apply).
    max_in_flight: int = Field(default=64, ge=1, le=4096)
    #: How long a leased document stays with this instance; a crashed instance's documents
    #: are taken over after this.
    lease_ttl_s: float = Field(default=30.0, ge=5, le=600)
    #: Processes that sign credentials (None: one per CPU; 0: sign in a thread).
    signing_workers: int | None = Field(default=None, ge=0, le=64)
    #: How often the projector looks for documents due for a retry or dirtied elsewhere.
    poll_s: float = Field(default=0.5, gt=0, le=30)
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
