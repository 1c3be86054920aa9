"""Turning Assistant requests into CTDL graphs, and the registry's documented rules.

The rules are checked on the rendered CTDL node, so the ``publish`` (Assistant format)
and ``publishGraph`` (CTDL format) paths share one implementation. Messages name the
Assistant property and the CTDL term.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from cayg_standins.conformance import load_json
from cayg_standins.registry.ctdl import AssistantConverter, is_http_url
from cayg_standins.registry.vocab import (
    CONCEPT_PROPERTIES,
    CREDENTIAL_STATUS,
    CTDL_CONTEXT,
    CTID_PATTERN,
    LANGUAGE_PROPERTIES,
    PROFILE_PROPERTIES,
    REFERENCE_PROPERTIES,
    URL_PROPERTIES,
)

__all__ = [
    "ORGANIZATION_TYPES",
    "Kind",
    "RegistryRules",
    "RegistryUrls",
    "Rendered",
]

Kind = Literal["credential", "organization", "transfervalue"]
ORGANIZATION_TYPES = frozenset(
    {"ceterms:CredentialOrganization", "ceterms:QACredentialOrganization"}
)
_TVP_TYPE = "ceterms:TransferValueProfile"
_GENERIC_CREDENTIALS = frozenset({"ceterms:Credential", "ceterms:Degree"})
_MIN_DESCRIPTION = 15
# Current CTDL terms that the older registry JSON schema does not list yet.
_EXTRA_CREDENTIAL_TERMS = frozenset(
    {
        "instructionalProgramType",
        "learningDeliveryType",
        "assessmentDeliveryType",
        "sameAs",
        "isPreparationFor",
        "targetPathway",
        "identifier",
        "usesVerificationService",
        "hasRatingType",
        "isNonCredit",
    }
)


@dataclass(frozen=True)
class RegistryUrls:
    """Where the stand-in's resources, graphs and envelopes live."""

    base: str

    @property
    def resources(self) -> str:
        """Prefix of resource URLs."""
        return f"{self.base.rstrip('/')}/resources"

    def resource(self, ctid: str) -> str:
        """The URL of a resource."""
        return f"{self.resources}/{ctid}"

    def graph(self, ctid: str) -> str:
        """The URL of a resource's graph."""
        return f"{self.base.rstrip('/')}/graph/{ctid}"

    def envelope(self, envelope_id: str) -> str:
        """The URL of an envelope."""
        return f"{self.base.rstrip('/')}/envelopes/{envelope_id}"


@dataclass
class Rendered:
    """An entity rendered from a request: its CTID, graph, and what is wrong with it."""

    kind: Kind
    ctid: str | None
    ctdl_type: str | None
    graph: dict[str, Any] | None
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No errors."""
        return not self.errors and self.graph is not None and self.ctid is not None


class RegistryRules:
    """The credential types and property list, loaded from the conformance data."""

    def __init__(self, credential_types: frozenset[str], known_terms: frozenset[str]) -> None:
        """Normally built with :meth:`from_conformance`."""
        self.credential_types = credential_types
        self.known_terms = known_terms

    @classmethod
    def from_conformance(cls, conformance_dir: Path) -> RegistryRules:
        """Concrete credential subclasses from subclasses_map.json; terms from the schema."""
        ce_dir = conformance_dir / "credential-engine"
        subclasses = load_json(ce_dir / "subclasses_map.json")
        if not isinstance(subclasses, dict) or "ceterms:Credential" not in subclasses:
            raise ValueError("subclasses_map.json has no ceterms:Credential tree")
        types: set[str] = set()
        _collect_descendants(subclasses["ceterms:Credential"], types)
        schema = load_json(ce_dir / "schemas" / "credential.json")
        terms: set[str] = set()
        for name, definition in schema.get("definitions", {}).items():
            if name in types and isinstance(definition, dict):
                terms.update(
                    key.split(":", 1)[1]
                    for key in definition.get("properties", {})
                    if key.startswith("ceterms:")
                )
        terms |= _EXTRA_CREDENTIAL_TERMS | LANGUAGE_PROPERTIES | set(CONCEPT_PROPERTIES)
        terms |= set(PROFILE_PROPERTIES) | REFERENCE_PROPERTIES | URL_PROPERTIES
        return cls(frozenset(types - _GENERIC_CREDENTIALS), frozenset(terms))

    # -- requests in Assistant format -----------------------------------------------------

    def render_credential(self, body: Mapping[str, Any], urls: RegistryUrls) -> Rendered:
        """``credential/publish`` and ``credential/format``."""
        data = body.get("Credential")
        if not isinstance(data, Mapping):
            return Rendered("credential", None, None, None, ["Credential: an object is required"])
        ctid = _ctid_of(data.get("CTID"))
        errors: list[str] = []
        raw_type = data.get("CredentialType")
        ctdl_type = self._credential_type(raw_type, errors)
        converter = AssistantConverter(urls.resources, _language(body), ctid or "")
        node = converter.convert_entity(
            data, ctdl_type or "ceterms:Credential", ctid or "", frozenset({"CredentialType"})
        )
        if not any(k in data for k in ("CredentialStatusType", "ceterms:credentialStatusType")):
            # The Assistant records a credential without a status as Active.
            node["ceterms:credentialStatusType"] = converter.concept(
                CREDENTIAL_STATUS, "Active", "CredentialStatusType"
            )
        warnings = self._drop_unknown_terms(node)
        errors.extend(converter.errors)
        errors.extend(check_credential_node(node, self.credential_types, check_type=False))
        graph = _graph(node, list(converter.blank_nodes.values()), urls, ctid)
        return Rendered("credential", ctid, ctdl_type, graph, _unique(errors), warnings)

    def render_organization(self, body: Mapping[str, Any], urls: RegistryUrls) -> Rendered:
        """``organization/publish``."""
        data = body.get("Organization")
        if not isinstance(data, Mapping):
            return Rendered(
                "organization", None, None, None, ["Organization: an object is required"]
            )
        ctid = _ctid_of(data.get("CTID"))
        errors: list[str] = []
        raw_type = data.get("Type")
        ctdl_type = _prefixed(raw_type) if isinstance(raw_type, str) else None
        if ctdl_type not in ORGANIZATION_TYPES:
            errors.append(
                f"Type: {raw_type!r} is not an organization type "
                "(ceterms:CredentialOrganization or ceterms:QACredentialOrganization)"
            )
        converter = AssistantConverter(urls.resources, _language(body), ctid or "")
        node = converter.convert_entity(
            data, ctdl_type or "ceterms:CredentialOrganization", ctid or "", frozenset()
        )
        errors.extend(converter.errors)
        errors.extend(check_common_node(node))
        graph = _graph(node, list(converter.blank_nodes.values()), urls, ctid)
        return Rendered("organization", ctid, ctdl_type, graph, _unique(errors))

    def render_transfer_value(self, body: Mapping[str, Any], urls: RegistryUrls) -> Rendered:
        """``transfervalue/publish``."""
        data = body.get("TransferValueProfile")
        if not isinstance(data, Mapping):
            return Rendered(
                "transfervalue", None, None, None, ["TransferValueProfile: an object is required"]
            )
        ctid = _ctid_of(data.get("CTID"))
        errors: list[str] = []
        raw_type = data.get("Type")
        if raw_type is not None and _prefixed(str(raw_type)) != _TVP_TYPE:
            errors.append(f"Type: {raw_type!r} must be ceterms:TransferValueProfile")
        converter = AssistantConverter(urls.resources, _language(body), ctid or "")
        node = converter.convert_entity(data, _TVP_TYPE, ctid or "", frozenset())
        errors.extend(converter.errors)
        # A transfer value profile's minimum data is CTID, Name, OwnedBy, SubjectWebpage and
        # TransferValue. The Registry Assistant's input model lists Description among the
        # required fields (RA.Models Input/TransferValueProfileRequest.cs), but Credential
        # Engine's own published sample of a transfer value profile
        # (conformance/credential-engine/samples/assistant_transfervalueprofile.json, an
        # ACE/CLEP record) has none, and the registry holds such records: a description is
        # checked (15 characters at least) when given, not demanded. cayg-sync's renderer
        # always sends one, so it satisfies either reading.
        errors.extend(check_common_node(node, description_required=False))
        errors.extend(_check_owner(node))
        graph = _graph(node, list(converter.blank_nodes.values()), urls, ctid)
        return Rendered("transfervalue", ctid, _TVP_TYPE, graph, _unique(errors))

    # -- requests in CTDL format ----------------------------------------------------------

    def render_graph(self, body: Mapping[str, Any], urls: RegistryUrls) -> Rendered:
        """``credential/publishGraph``: the graph is stored as given once it passes."""
        graph_input = body.get("GraphInput")
        if not isinstance(graph_input, Mapping):
            return Rendered("credential", None, None, None, ["GraphInput: an object is required"])
        errors: list[str] = []
        context = graph_input.get("@context")
        if context not in (CTDL_CONTEXT, CTDL_CONTEXT.replace("https://", "http://")):
            errors.append(f"GraphInput.@context must be {CTDL_CONTEXT}")
        nodes = graph_input.get("@graph")
        if not isinstance(nodes, list) or not all(isinstance(n, dict) for n in nodes):
            errors.append("GraphInput.@graph must be a list of objects")
            return Rendered("credential", None, None, None, errors)
        mains = [n for n in nodes if n.get("@type") in self.credential_types]
        if len(mains) != 1:
            generic = [n.get("@type") for n in nodes if n.get("@type") in _GENERIC_CREDENTIALS]
            if generic:
                errors.append(
                    f"@type {generic[0]} is too generic: use a concrete credential type "
                    "such as ceterms:Certificate or ceterms:BachelorDegree"
                )
            else:
                errors.append(
                    "GraphInput.@graph must hold exactly one credential of a concrete "
                    f"credential type (found {len(mains)})"
                )
            return Rendered("credential", None, None, None, errors)
        main = mains[0]
        ctid = _ctid_of(main.get("ceterms:ctid"))
        errors.extend(check_credential_node(main, self.credential_types, check_type=True))
        status = main.get("ceterms:credentialStatusType")
        if status is None:
            errors.append("ceterms:credentialStatusType is required")
        graph = {
            "@context": CTDL_CONTEXT,
            "@id": graph_input.get("@id") or (urls.graph(ctid) if ctid else None),
            "@graph": nodes,
        }
        return Rendered("credential", ctid, str(main["@type"]), graph, _unique(errors))

    # -- helpers --------------------------------------------------------------------------

    def _credential_type(self, raw: Any, errors: list[str]) -> str | None:
        if not isinstance(raw, str) or not raw.strip():
            errors.append("CredentialType is required (e.g. ceterms:Certificate)")
            return None
        ctdl_type = _prefixed(raw)
        if ctdl_type in _GENERIC_CREDENTIALS:
            errors.append(
                f"CredentialType {raw!r} is too generic: use a concrete credential type "
                "such as ceterms:Certificate, ceterms:MicroCredential or ceterms:BachelorDegree"
            )
            return None
        if ctdl_type not in self.credential_types:
            errors.append(f"CredentialType {raw!r} is not a CTDL credential type")
            return None
        return ctdl_type

    def _drop_unknown_terms(self, node: dict[str, Any]) -> list[str]:
        warnings: list[str] = []
        for term in list(node):
            if term.startswith("ceterms:") and term.split(":", 1)[1] not in self.known_terms:
                warnings.append(
                    f"Warning: {term} is not a property of a CTDL credential and was ignored"
                )
                del node[term]
        return warnings


def _collect_descendants(tree: Any, into: set[str]) -> None:
    if isinstance(tree, dict):
        for name, sub in tree.items():
            into.add(name)
            _collect_descendants(sub, into)
    elif isinstance(tree, list):
        for name in tree:
            if isinstance(name, str):
                into.add(name)


def _prefixed(raw: str) -> str:
    text = raw.strip()
    return text if ":" in text else f"ceterms:{text}"


def _ctid_of(raw: Any) -> str | None:
    return raw.strip() if isinstance(raw, str) and raw.strip() else None


def _language(body: Mapping[str, Any]) -> str:
    raw = body.get("DefaultLanguage")
    return raw if isinstance(raw, str) and raw.strip() else "en-US"


def _unique(messages: list[str]) -> list[str]:
    return list(dict.fromkeys(messages))


def _graph(
    node: dict[str, Any], blank_nodes: list[dict[str, Any]], urls: RegistryUrls, ctid: str | None
) -> dict[str, Any]:
    return {
        "@context": CTDL_CONTEXT,
        "@id": urls.graph(ctid or ""),
        "@graph": [node, *blank_nodes],
    }


def _texts(value: Any) -> list[str]:
    """Every text of a plain string or a language map (whose values may be lists)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, Mapping):
        out: list[str] = []
        for text in value.values():
            if isinstance(text, str):
                out.append(text)
            elif isinstance(text, list):
                out.extend(t for t in text if isinstance(t, str))
        return out
    return []


def check_common_node(node: Mapping[str, Any], *, description_required: bool = True) -> list[str]:
    """CTID, Name, Description and SubjectWebpage: required of every top-level entity
    (a description, when given, has at least 15 characters)."""
    errors: list[str] = []
    ctid = node.get("ceterms:ctid")
    if not isinstance(ctid, str) or not ctid:
        errors.append("CTID (ceterms:ctid) is required")
    elif not CTID_PATTERN.match(ctid):
        errors.append(
            f"CTID (ceterms:ctid) {ctid!r} is invalid: it must be 'ce-' followed by a "
            "lower-case UUID"
        )
    if not any(text.strip() for text in _texts(node.get("ceterms:name"))):
        errors.append("Name (ceterms:name) is required")
    descriptions = [text.strip() for text in _texts(node.get("ceterms:description"))]
    if not any(descriptions):
        if description_required:
            errors.append("Description (ceterms:description) is required")
    elif any(len(text) < _MIN_DESCRIPTION for text in descriptions):
        errors.append(
            f"Description (ceterms:description) must be at least {_MIN_DESCRIPTION} characters"
        )
    webpage = node.get("ceterms:subjectWebpage")
    if webpage is None:
        errors.append("SubjectWebpage (ceterms:subjectWebpage) is required")
    elif not isinstance(webpage, str) or not is_http_url(webpage):
        errors.append(f"SubjectWebpage (ceterms:subjectWebpage) {webpage!r} is not a URL")
    return errors


def _check_owner(node: Mapping[str, Any]) -> list[str]:
    owners = [
        ref
        for term in ("ceterms:ownedBy", "ceterms:offeredBy")
        for ref in (node.get(term) or [])
        if isinstance(ref, str) and ref
    ]
    if not owners:
        return [
            "At least one of OwnedBy (ceterms:ownedBy) or OfferedBy (ceterms:offeredBy) is required"
        ]
    return []


def check_credential_node(
    node: Mapping[str, Any], credential_types: frozenset[str], *, check_type: bool
) -> list[str]:
    """The documented rules for a credential, on its CTDL node."""
    errors = check_common_node(node)
    if check_type:
        ctdl_type = node.get("@type")
        if ctdl_type not in credential_types:
            errors.append(f"@type {ctdl_type!r} is not a concrete CTDL credential type")
    languages = node.get("ceterms:inLanguage")
    if (
        not isinstance(languages, list)
        or not languages
        or not all(isinstance(lang, str) and lang.strip() for lang in languages)
    ):
        errors.append("InLanguage (ceterms:inLanguage) is required: a list of language codes")
    errors.extend(_check_owner(node))
    status = node.get("ceterms:credentialStatusType")
    if status is not None:
        target = status.get("ceterms:targetNode") if isinstance(status, Mapping) else None
        known = {f"credentialStat:{term}" for term in CREDENTIAL_STATUS.terms or {}}
        if target not in known:
            errors.append(
                f"CredentialStatusType (ceterms:credentialStatusType) {target!r} is not one "
                f"of {', '.join(sorted(known))}"
            )
    return errors
