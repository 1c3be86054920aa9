"""Everything that can be known wrong about a targets file before publish starts.

Beyond the file's schema (:class:`~cayg_publish.config.PublishTargetsConfig`): every secret
reference resolves, each issuer's signing key loads and belongs to the issuer, URLs that
carry credentials are https (plain http only on the loopback interface), the contexts
directory and the SQLite ledger's directory exist, and — given the tenant registry — every
tenant is registered and its registry account publishes for the tenant's own organization.
``cayg config check`` and ``cayg-publish`` at start run exactly this.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Mapping
from pathlib import Path

from pydantic import HttpUrl, ValidationError

from cayg_publish.config import (
    ClrTargetConfig,
    ConfigError,
    CredentialEngineTargetConfig,
    PublishTargetsConfig,
    SecretRef,
    SqliteLedgerConfig,
)
from cayg_shared.config_check import Problem, validation_problems
from cayg_shared.tenants import TenantRegistry
from cayg_signing import KeyFormatError, SigningKey


def check_targets_file(
    path: Path,
    *,
    tenants: TenantRegistry | None = None,
    environ: Mapping[str, str] | None = None,
) -> tuple[PublishTargetsConfig | None, list[Problem]]:
    """Load the targets file at ``path`` and check what it refers to.

    Returns the configuration (``None`` when it cannot be read or fails its schema) and
    every problem found. Secrets are resolved to be checked and then dropped; messages name
    where a secret was looked for, never its value.
    """
    try:
        config = PublishTargetsConfig.load(path)
    except ConfigError as error:
        return None, [Problem(str(path), "", str(error).removeprefix(f"{path} "))]
    except ValidationError as error:
        return None, validation_problems(path, error)
    return config, list(_problems(config, str(path), tenants, environ))


def _problems(
    config: PublishTargetsConfig,
    file: str,
    tenants: TenantRegistry | None,
    environ: Mapping[str, str] | None,
) -> Iterator[Problem]:
    ledger = config.ledger
    if isinstance(ledger, SqliteLedgerConfig):
        if not ledger.path.parent.is_dir():
            yield Problem(
                file, "ledger.path", f"directory {ledger.path.parent} of the ledger does not exist"
            )
    else:
        yield from _secret(file, "ledger.dsn", ledger.dsn, environ)
    if not config.tenants:
        yield Problem(file, "tenants", "no tenant has a target")
    for tenant, entry in config.tenants.items():
        profile = tenants.get(tenant) if tenants is not None else None
        if tenants is not None and profile is None:
            yield Problem(file, f"tenants.{tenant}", "not a tenant of the tenant registry")
        if not entry.targets:
            yield Problem(file, f"tenants.{tenant}.targets", "no targets")
        for index, target in enumerate(entry.targets):
            where = f"tenants.{tenant}.targets[{index}] ({target.name})"
            if isinstance(target, CredentialEngineTargetConfig):
                yield from _url(file, f"{where}.base_url", target.base_url)
                yield from _secret(file, f"{where}.api_key", target.api_key, environ)
                if profile is not None and target.publish_for_organization != profile.org_ctid:
                    yield Problem(
                        file,
                        f"{where}.publish_for_organization",
                        f"{target.publish_for_organization} is not {tenant}'s organization "
                        f"({profile.org_ctid} in the tenant registry)",
                    )
            else:
                yield from _clr(file, where, target, environ)


def _clr(
    file: str, where: str, target: ClrTargetConfig, environ: Mapping[str, str] | None
) -> Iterator[Problem]:
    yield from _url(file, f"{where}.base_url", target.base_url)
    if target.token_url is not None:
        yield from _url(file, f"{where}.token_url", target.token_url)
    yield from _secret(file, f"{where}.client_secret", target.client_secret, environ)
    yield from _secret(file, f"{where}.identity_salt", target.identity_salt, environ)
    if not target.contexts_dir.is_dir():
        yield Problem(file, f"{where}.contexts_dir", f"{target.contexts_dir} is not a directory")
    try:
        key = SigningKey.from_file(target.signing_key_file)
    except KeyFormatError as error:
        yield Problem(file, f"{where}.signing_key_file", str(error))
        return
    method = key.verification_method
    controller = method.split("#", 1)[0]
    if controller != target.issuer.id:
        hint = (
            f"its did:key issuer id is {key.did_key.split('#', 1)[0]}"
            if method.startswith("did:key:")
            else f"its verificationMethod should be {target.issuer.id}#<key id>"
        )
        yield Problem(
            file,
            f"{where}.issuer.id",
            f"the signing key in {target.signing_key_file} (verificationMethod {method}) does "
            f"not belong to issuer {target.issuer.id}: {hint}",
        )


def _secret(
    file: str, where: str, ref: SecretRef, environ: Mapping[str, str] | None
) -> Iterator[Problem]:
    try:
        ref.resolve(environ)
    except ConfigError as error:
        yield Problem(file, where, str(error))


def _url(file: str, where: str, url: HttpUrl) -> Iterator[Problem]:
    if url.scheme == "https":
        return
    host = (url.host or "").strip("[]")
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        yield Problem(
            file,
            where,
            f"{url} is plain http: credentials would cross the network unencrypted (use "
            "https; http is accepted only on the loopback interface)",
        )
