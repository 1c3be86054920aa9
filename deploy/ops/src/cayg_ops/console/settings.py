"""The console's settings, from the environment (prefix ``CAYG_CONSOLE_``).

Kafka is reached with the settings every cayg process shares (``CAYG_KAFKA__…``,
``CAYG_TOPIC_PREFIX``: :class:`cayg_shared.settings.ConnectionSettings`), the ledger through
publish's targets file. Replay needs credentials: without ``USERNAME`` and a password
(``PASSWORD_FILE`` or ``PASSWORD``) the console is read-only.
"""

from __future__ import annotations

import hmac
from pathlib import Path

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: The demo's services (ingest, normalize, the publish registry and CLR lanes).
DEMO_SERVICES = (
    "http://127.0.0.1:8081",
    "http://127.0.0.1:8082",
    "http://127.0.0.1:8083",
    "http://127.0.0.1:8084",
)


class ConsoleSettings(BaseSettings):
    """How the console runs. Example: ``CAYG_CONSOLE_SERVICES='["http://ingest:8081"]'``."""

    model_config = SettingsConfigDict(
        env_prefix="CAYG_CONSOLE_", env_nested_delimiter="__", extra="ignore"
    )

    http_host: str = Field(
        default="127.0.0.1", description="where the console listens (loopback by default)"
    )
    http_port: int = Field(default=8090, ge=0, le=65535, description="the console's port")
    services: tuple[str, ...] = Field(
        default=DEMO_SERVICES,
        description="base URLs of the services' HTTP ports (/healthz, /readyz, /metrics)",
    )
    targets_file: Path | None = Field(
        default=None,
        description="publish's targets file, which names the ledger (the one publish reads); "
        "without one the published view is empty",
    )
    username: str | None = Field(default=None, description="who may replay dead letters")
    password: SecretStr | None = Field(
        default=None, description="their password (prefer PASSWORD_FILE)"
    )
    password_file: Path | None = Field(
        default=None, description="a file holding the password (wins over PASSWORD)"
    )
    probe_timeout_s: float = Field(
        default=2.0, gt=0, le=30, description="how long a service's /healthz may take"
    )

    @model_validator(mode="after")
    def _read_password_file(self) -> ConsoleSettings:
        if self.password_file is not None:
            try:
                text = self.password_file.read_text(encoding="utf-8").strip()
            except OSError as error:
                raise ValueError(
                    f"cannot read the console password file {self.password_file}: {error.strerror}"
                ) from None
            object.__setattr__(self, "password", SecretStr(text))
        if self.password is not None and not self.password.get_secret_value():
            raise ValueError("the console password is empty")
        return self

    @property
    def replay_enabled(self) -> bool:
        """Replay is offered only when credentials are configured (never open by default)."""
        return bool(self.username) and self.password is not None

    def accepts(self, username: str, password: str) -> bool:
        """Whether ``username``/``password`` are the configured credentials (constant time)."""
        if not self.replay_enabled or self.password is None or self.username is None:
            return False
        user_ok = hmac.compare_digest(username.encode(), self.username.encode())
        secret = self.password.get_secret_value().encode()
        return hmac.compare_digest(password.encode(), secret) and user_ok
