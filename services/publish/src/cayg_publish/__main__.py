"""``cayg-publish``: run the publish service until SIGTERM (``--help`` lists its
settings)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from cayg_publish.app import create_app
from cayg_publish.config_check import check_targets_file
from cayg_publish.settings import PublishSettings
from cayg_shared.config_check import Problem
from cayg_shared.startup import ServiceEntry, run_service, tenant_problems
from cayg_shared.tenants import TenantRegistry


def check(settings: PublishSettings) -> list[Problem]:
    """The tenant registry (when set) and the targets file, as ``cayg config check`` does."""
    problems: list[Problem] = []
    tenants: TenantRegistry | None = None
    if settings.tenants_file is not None:
        problems += tenant_problems(settings)
        if not problems:
            tenants = TenantRegistry.load(settings.tenants_file)
    if settings.targets_file is None:
        name = PublishSettings.env_name("targets_file")
        return [*problems, Problem(name, "", "not set: publish needs its targets file")]
    _, found = check_targets_file(settings.targets_file, tenants=tenants)
    return problems + found


ENTRY = ServiceEntry(
    name="publish",
    summary="Applies each change of cayg.normalized.v1 to its catalog in the ledger, marks "
    "the target documents it affects dirty, and delivers them — rendered from the catalog — "
    "to the Credential Registry and CLR / Open Badges hosts of publish.toml.",
    settings=PublishSettings,
    check=check,
    create_app=create_app,
    extra_help="Run as lanes (LANE, LANE_TARGETS) so a slow target never holds up others.",
)


def main(argv: Sequence[str] | None = None) -> None:
    """Check, connect, serve; exit with the status :func:`run_service` documents."""
    sys.exit(run_service(ENTRY, argv))


if __name__ == "__main__":
    main()
