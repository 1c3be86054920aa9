"""The operator console: one web page served beside the stack (``cayg-console``).

Health per service and lane, consumer lag from committed offsets, dead letters with their
reasons (filters by stage, tenant, reason and time) and a replay that needs credentials,
and per tenant what publish delivered, holds back or cannot deliver, with each target's last
answer. Server-rendered HTML with one small script; no front-end build.
"""

from cayg_ops.console.app import create_app
from cayg_ops.console.settings import ConsoleSettings

__all__ = ["ConsoleSettings", "create_app"]
