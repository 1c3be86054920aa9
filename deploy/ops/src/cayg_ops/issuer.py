"""``cayg issuer export``: what an institution hosts so verifiers can resolve its issuer.

For every issuer of a tenant's CLR/OB targets (in the publish targets file) this writes,
under ``--out``, one directory per web host, laid out as the URLs they must be served at:

* ``did:web:<domain>[:path]`` — the DID document (``/.well-known/did.json`` or
  ``/<path>/did.json``) and, beside it, ``issuer-profile.json``, the OB issuer ``Profile``
  (name, url, email, image) with the DID as its id;
* an https issuer id — one document at that URL (written as ``<path>/index.json``): the
  controller document with the Profile merged in;
* a ``did:key`` issuer needs nothing hosted (and cannot be tied to a domain).

Each document lists the current signing key and the ``previous_keys`` of the issuer's
configuration, all as assertion methods, so credentials signed before a rotation keep
verifying. Nothing secret is written: only public keys.

``cayg issuer revoke-all --tenant T`` is for a leaked key: it sets the status bit of every
credential the tenant's issuers ever issued (their lists are re-published by the running
publish instances); a following ``cayg reconcile --tenant T`` re-issues every live
credential with a fresh status entry, signed with the new key (see the runbook).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Final

import click
import typer

from cayg_publish.adapters.factory import create_ledger
from cayg_publish.adapters.ledger import StatusScope, status_target_name
from cayg_publish.config import ClrTargetConfig, ConfigError, IssuerProfile, PublishTargetsConfig
from cayg_publish.domain.projection import DocumentKind, DocumentRef
from cayg_signing import (
    KeyFormatError,
    PublishedKey,
    SigningKey,
    controller_document,
    controller_document_url,
)

__all__ = ["Exported", "export_issuers", "issuer_app", "issuer_profile", "revoke_everything"]

VC_CONTEXT: Final = "https://www.w3.org/ns/credentials/v2"
OB_CONTEXT: Final = "https://purl.imsglobal.org/spec/ob/v3p0/context-3.0.3.json"
PROFILE_FILE: Final = "issuer-profile.json"

issuer_app = typer.Typer(
    help="The issuer documents an institution hosts (DID / controller document, OB Profile).",
    no_args_is_help=True,
)


@dataclass(frozen=True)
class Exported:
    """One file written, and the URL it must be served at."""

    path: Path
    url: str
    what: str


def issuer_profile(issuer: IssuerProfile) -> dict[str, Any]:
    """The OB 3.0 issuer ``Profile`` of ``issuer`` (as credentials embed it)."""
    profile: dict[str, Any] = {
        "@context": [VC_CONTEXT, OB_CONTEXT],
        "id": issuer.id,
        "type": ["Profile"],
        "name": issuer.name,
    }
    if issuer.url:
        profile["url"] = str(issuer.url)
    if issuer.email:
        profile["email"] = issuer.email
    if issuer.image:
        profile["image"] = {"id": issuer.image, "type": "Image"}
    return profile


def _file_for(url: str, out: Path) -> Path:
    parts = urllib.parse.urlsplit(url)
    path = urllib.parse.unquote(parts.path).lstrip("/")
    if any(p in {"", ".", ".."} for p in path.split("/") if path):
        raise ValueError(f"{url}: a path segment is not a plain name")
    target = out / parts.netloc / path
    return target / "index.json" if not path or not path.endswith(".json") else target


def _write(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def export_issuers(config: PublishTargetsConfig, tenant: str, out: Path) -> list[Exported]:
    """Write the documents of every issuer of ``tenant``'s CLR/OB targets under ``out``.

    Raises:
        ValueError: the tenant has no CLR/OB target, a key file cannot be read or does not
            belong to its issuer, or an issuer cannot be hosted.
    """
    targets = [t for t in config.targets_for(tenant) if isinstance(t, ClrTargetConfig)]
    if not targets:
        raise ValueError(f"{tenant} has no CLR/OB target (no issuer) in the targets file")
    written: list[Exported] = []
    seen: set[str] = set()
    for target in targets:
        issuer = target.issuer
        key = SigningKey.from_file(target.signing_key_file)
        if key.verification_method.partition("#")[0] != issuer.id:
            raise ValueError(
                f"{target.name}: the signing key's verificationMethod "
                f"{key.verification_method} does not belong to issuer {issuer.id}"
            )
        if issuer.id in seen or issuer.id.startswith("did:key:"):
            seen.add(issuer.id)
            continue
        seen.add(issuer.id)
        keys = [PublishedKey(key.verification_method, key.public_key_multibase)]
        keys += [
            PublishedKey(k.id, k.public_key_multibase)
            for k in issuer.previous_keys
            if k.id != key.verification_method
        ]
        profile = issuer_profile(issuer)
        url = controller_document_url(issuer.id)
        if issuer.id.startswith("did:web:"):
            document = controller_document(issuer.id, keys)
            did_file = _file_for(url, out)
            _write(did_file, document)
            written.append(Exported(did_file, url, f"DID document of {issuer.id}"))
            profile_url = url.rsplit("/", 1)[0] + "/" + PROFILE_FILE
            profile_file = did_file.parent / PROFILE_FILE
            _write(profile_file, profile)
            written.append(Exported(profile_file, profile_url, "OB issuer Profile"))
        else:
            merged = {**profile, "@context": profile["@context"]}
            document = controller_document(issuer.id, keys, profile=merged)
            document["@context"] = [*document["@context"], *profile["@context"]]
            path = _file_for(url, out)
            _write(path, document)
            written.append(
                Exported(path, url, f"controller document and OB Profile of {issuer.id}")
            )
    return written


@issuer_app.command("export")
def export_command(
    tenant: Annotated[str, typer.Option("--tenant", help="the tenant whose issuers to export")],
    out: Annotated[
        Path, typer.Option("--out", help="directory to write (one subdirectory per host)")
    ] = Path("issuer-documents"),
    targets_file: Annotated[
        Path | None,
        typer.Option(
            "--targets-file",
            envvar="CAYG_PUBLISH_TARGETS_FILE",
            help="publish's targets file (default: $CAYG_PUBLISH_TARGETS_FILE)",
        ),
    ] = None,
) -> None:
    """Write the DID / controller documents and OB issuer Profiles of a tenant's issuers,
    each at the path of the URL it must be served at."""
    if targets_file is None:
        raise click.ClickException(
            "no publish targets file: give --targets-file or set CAYG_PUBLISH_TARGETS_FILE"
        )
    try:
        config = PublishTargetsConfig.load(targets_file)
        written = export_issuers(config, tenant, out)
    except (ConfigError, KeyFormatError, ValueError) as error:
        raise click.ClickException(str(error).splitlines()[0]) from None
    for item in written:
        typer.echo(f"{item.path}  ->  {item.url}  ({item.what})")
    if not written:
        typer.echo(f"{tenant}: its issuers are did:key: nothing to host")
    for target in config.targets_for(tenant):
        if isinstance(target, ClrTargetConfig) and target.status_lists is not None:
            typer.echo(
                f"status lists: route {target.status_lists.base_url}<id> to publish's "
                "/status-lists/<id> (any instance)"
            )


async def revoke_everything(config: PublishTargetsConfig, tenant: str) -> dict[str, int]:
    """Set the status bit of every credential ``tenant``'s issuers ever issued and make
    their lists due; the number of lists changed per issuer."""
    owners: dict[str, str] = {}
    for target in config.targets_for(tenant):
        if isinstance(target, ClrTargetConfig) and target.status_lists is not None:
            owners.setdefault(target.issuer.id, target.name)
    if not owners:
        raise ValueError(f"{tenant} has no CLR/OB target with status_lists")
    ledger = create_ledger(config.ledger)
    changed: dict[str, int] = {}
    try:
        await ledger.migrate()
        now = int(time.time() * 1000)
        for issuer, owner in owners.items():
            lists = await ledger.status.revoke_all(StatusScope(tenant, issuer), now_ms=now)
            for list_id in lists:
                ref = DocumentRef(tenant, DocumentKind.STATUS_LIST, list_id)
                await ledger.status.mark_dirty(
                    status_target_name(owner), ref, now_ms=now, not_before_ms=now
                )
            changed[issuer] = len(lists)
    finally:
        await ledger.close()
    return changed


@issuer_app.command("revoke-all")
def revoke_all_command(
    tenant: Annotated[str, typer.Option("--tenant", help="the tenant whose credentials to revoke")],
    yes: Annotated[bool, typer.Option("--yes", help="really revoke (there is no undo)")] = False,
    targets_file: Annotated[
        Path | None,
        typer.Option(
            "--targets-file",
            envvar="CAYG_PUBLISH_TARGETS_FILE",
            help="publish's targets file (default: $CAYG_PUBLISH_TARGETS_FILE)",
        ),
    ] = None,
) -> None:
    """A signing key leaked: revoke every credential the tenant's issuers issued (then
    ``cayg reconcile --tenant T`` re-issues the live ones with fresh entries)."""
    if targets_file is None:
        raise click.ClickException(
            "no publish targets file: give --targets-file or set CAYG_PUBLISH_TARGETS_FILE"
        )
    if not yes:
        raise click.ClickException(
            "this revokes every credential the tenant ever issued, for good: add --yes"
        )
    try:
        config = PublishTargetsConfig.load(targets_file)
        changed = asyncio.run(revoke_everything(config, tenant))
    except (ConfigError, ValueError) as error:
        raise click.ClickException(str(error).splitlines()[0]) from None
    for issuer, lists in changed.items():
        typer.echo(f"{issuer}: every entry revoked ({lists} list(s) to re-publish)")
    typer.echo(f"next: cayg reconcile --tenant {tenant} (re-issues what is live, new entries)")
