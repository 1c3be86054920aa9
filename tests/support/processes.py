"""Run cayg services as real OS processes, the way an operator runs them.

Integration and e2e tests start ingest, normalize and publish as subprocesses with their
settings in the environment, wait for ``/readyz``, and stop them with SIGTERM (graceful)
or SIGKILL (a crash).
"""

from __future__ import annotations

from pathlib import Path

from cayg_campaign.processes import ServiceProcess

__all__ = ["ServiceProcess", "service_env"]


def service_env(
    service: str,
    bootstrap: str,
    prefix: str,
    tenants_file: Path,
    **settings: str,
) -> dict[str, str]:
    """The environment of one service of a test: its own topics (``prefix``) and consumer
    group, the tenant registry, quick metadata refresh and redelivery, one decision worker
    for ingest and normalize; ``settings`` add
    more (``MAX_MESSAGE_BYTES="65536"`` → ``CAYG_<SERVICE>_MAX_MESSAGE_BYTES``)."""
    p = f"CAYG_{service.upper()}_"
    return {
        f"{p}KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        f"{p}KAFKA__METADATA_MAX_AGE_MS": "1000",
        f"{p}TOPIC_PREFIX": prefix,
        f"{p}GROUP_ID": f"{prefix}cayg-{service}",
        f"{p}TENANTS_FILE": str(tenants_file),
        f"{p}REDELIVERY_BACKOFF_S": "0.2",
        # One decision worker: the worker path runs in every test that starts ingest or
        # normalize, at half the processes of the default on two CPUs (tests start many).
        **({f"{p}DECIDE_WORKERS": "1"} if service in ("ingest", "normalize") else {}),
        **{f"{p}{name}": value for name, value in settings.items()},
    }
