"""Strict local stand-ins for the Credential Engine Registry Assistant API and for
1EdTech CLR 2.0 / Open Badges 3.0 hosts, served over real HTTP for demos and tests.

Build an app with :func:`create_registry_app` or :func:`create_clr_app` and serve it with
any ASGI server; ``cayg-standins`` (see :mod:`cayg_standins.__main__`) does that from
the command line.
"""

from cayg_standins.clr.app import ClrConfig, create_clr_app, imsx_error
from cayg_standins.clr.oauth import OAuthClient
from cayg_standins.conformance import ConformanceDataMissingError, default_conformance_dir
from cayg_standins.faults import FaultInjector, FaultPlan
from cayg_standins.registry.app import RegistryConfig, create_registry_app

__all__ = [
    "ClrConfig",
    "ConformanceDataMissingError",
    "FaultInjector",
    "FaultPlan",
    "OAuthClient",
    "RegistryConfig",
    "create_clr_app",
    "create_registry_app",
    "default_conformance_dir",
    "imsx_error",
]
