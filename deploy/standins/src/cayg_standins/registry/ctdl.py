"""Registry Assistant input -> CTDL JSON-LD, the way the Assistant renders it.

What the converter does, following the documented request/output pair:

* ``PascalCase`` keys become ``ceterms:camelCase`` terms; keys already written as terms
  (``ceterms:name``) are kept; ``Name_Map`` style keys are language maps.
* Plain strings of language properties become language maps in ``DefaultLanguage``; the
  language tags of maps are lower-cased (``ar-SA`` -> ``ar-sa``), values are trimmed.
* References (``OwnedBy``, ``TargetLearningOpportunity``, ...) given as ``{"CTID": ...}``
  or a bare CTID become resource URLs; full objects become blank nodes added to ``@graph``
  (ids are derived from the content, so an identical republish renders identically).
* Concept values (``CredentialStatusType: "Active"``) become CredentialAlignmentObjects;
  ``CostItems`` expand into one CostProfile each; durations become ISO 8601 (``P8W``);
  URLs lose a trailing slash; empty objects and lists are dropped.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from cayg_standins.registry.vocab import (
    CONCEPT_PROPERTIES,
    CONNECTION_PROPERTIES,
    CTID_PATTERN,
    DURATION_PROPERTIES,
    ENTITY_TYPES,
    LANGUAGE_PROPERTIES,
    PROFILE_PROPERTIES,
    REFERENCE_PROPERTIES,
    SCHEMA_NAMESPACE_PROPERTIES,
    URL_PROPERTIES,
    ConceptScheme,
    camel_label,
)

__all__ = ["AssistantConverter", "canonical_json", "is_http_url"]

_CAO = "ceterms:CredentialAlignmentObject"
_LANGUAGE_TAG = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$")
_ISO_DURATION = re.compile(
    r"^P(?!$)(\d+Y)?(\d+M)?(\d+W)?(\d+D)?(T(?=\d)(\d+H)?(\d+M)?(\d+(\.\d+)?S)?)?$"
)
_DURATION_PARTS = (("Years", "Y"), ("Months", "M"), ("Weeks", "W"), ("Days", "D"))
_TIME_PARTS = (("Hours", "H"), ("Minutes", "M"))
_BLANK_NODE_NAMESPACE = uuid.UUID("5d0e7a3c-1f0b-4f44-9a55-c0a1e6b7d201")


def canonical_json(value: Any) -> str:
    """Key-sorted compact JSON: equal content gives equal text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def is_http_url(text: str) -> bool:
    """An absolute http(s) URL with a host."""
    parts = urlsplit(text)
    return parts.scheme in ("http", "https") and bool(parts.netloc) and " " not in text


def _is_empty(value: Any) -> bool:
    if value is None or value in ("", [], {}):
        return True
    return isinstance(value, dict) and set(value) <= {"@type"}


class AssistantConverter:
    """Converts one Assistant request's entity into CTDL, collecting errors as it goes."""

    def __init__(self, resource_base: str, default_language: str, seed: str) -> None:
        """``resource_base`` is ``<registry>/resources``; ``seed`` keeps blank ids stable."""
        self.resource_base = resource_base.rstrip("/")
        self.language = default_language.strip().lower() or "en-us"
        self.seed = seed
        self.errors: list[str] = []
        self.blank_nodes: dict[str, dict[str, Any]] = {}

    # -- entry points ---------------------------------------------------------------------

    def resource_url(self, ctid: str) -> str:
        """The registry URL of a CTID."""
        return f"{self.resource_base}/{ctid}"

    def convert_entity(
        self, data: Mapping[str, Any], ctdl_class: str, ctid: str, skip: frozenset[str]
    ) -> dict[str, Any]:
        """The top-level node: ``@type``, ``@id``, ``ceterms:ctid`` then the properties."""
        node: dict[str, Any] = {
            "@type": ctdl_class,
            "@id": self.resource_url(ctid),
            "ceterms:ctid": ctid,
        }
        node.update(self.convert_object(data, "", ctdl_class=None, skip=skip | {"CTID", "Type"}))
        return node

    # -- objects and values ---------------------------------------------------------------

    def convert_object(
        self,
        data: Mapping[str, Any],
        path: str,
        *,
        ctdl_class: str | None,
        skip: frozenset[str] = frozenset(),
        schema_namespace: bool = False,
    ) -> dict[str, Any]:
        """Convert every property of an object (``Type`` is the caller's business)."""
        out: dict[str, Any] = {}
        if ctdl_class:
            out["@type"] = ctdl_class
        for key, value in data.items():
            if key in skip or key == "Type":
                continue
            term = self.term_for(key, schema_namespace=schema_namespace)
            converted = self.convert_value(term, value, f"{path}.{key}" if path else key)
            if not _is_empty(converted):
                out[term] = converted
        return out

    @staticmethod
    def term_for(key: str, *, schema_namespace: bool = False) -> str:
        """``SubjectWebpage`` -> ``ceterms:subjectWebpage``; ``ceterms:name`` stays."""
        if ":" in key:
            prefix, local = key.split(":", 1)
            if schema_namespace and prefix == "ceterms" and local in SCHEMA_NAMESPACE_PROPERTIES:
                return f"schema:{local}"
            return key
        base = key[:-4] if key.endswith("_Map") else key
        if base == "CTID":
            return "ceterms:ctid"
        local = base[:1].lower() + base[1:]
        if schema_namespace and local in SCHEMA_NAMESPACE_PROPERTIES:
            return f"schema:{local}"
        return f"ceterms:{local}"

    def convert_value(self, term: str, value: Any, path: str) -> Any:
        """Convert one property value according to what kind of property it is."""
        if value is None:
            return None
        local = term.split(":", 1)[1]
        if local in LANGUAGE_PROPERTIES:
            return self.language_map(value, path)
        if local in CONCEPT_PROPERTIES:
            scheme, single = CONCEPT_PROPERTIES[local]
            return self.concepts(scheme, single, value, path)
        if local == "subject":
            return self.subjects(value, path)
        if local in DURATION_PROPERTIES:
            return self.duration(value, path)
        if local in REFERENCE_PROPERTIES:
            return self.references(value, path)
        if local in PROFILE_PROPERTIES:
            return self.profiles(local, value, path)
        if local in URL_PROPERTIES:
            return self.urls(value, path)
        return self.plain(term, value, path)

    def plain(self, term: str, value: Any, path: str) -> Any:
        """Anything without special handling: trimmed strings, nested objects, lists."""
        if isinstance(value, str):
            return value.strip()
        if isinstance(value, bool | int | float):
            return value
        if isinstance(value, list):
            items = [self.plain(term, item, f"{path}[{i}]") for i, item in enumerate(value)]
            return [item for item in items if not _is_empty(item)]
        if isinstance(value, Mapping):
            type_raw = value.get("Type")
            ctdl_class = self.entity_class(type_raw) if isinstance(type_raw, str) else None
            return self.convert_object(value, path, ctdl_class=ctdl_class)
        self.errors.append(f"{path}: unsupported value {value!r}")
        return None

    # -- language maps --------------------------------------------------------------------

    def language_map(self, value: Any, path: str) -> Any:
        """A string, a list of strings or a ``{tag: text}`` map -> a lower-cased-tag map."""
        if isinstance(value, str):
            text = value.strip()
            return {self.language: text} if text else None
        if isinstance(value, list):
            texts = self._strings(value, path)
            return {self.language: texts} if texts else None
        if isinstance(value, Mapping):
            out: dict[str, Any] = {}
            for tag, text in value.items():
                if not isinstance(tag, str) or not _LANGUAGE_TAG.match(tag):
                    self.errors.append(f"{path}: {tag!r} is not a language tag")
                    continue
                if isinstance(text, str):
                    if text.strip():
                        out[tag.lower()] = text.strip()
                elif isinstance(text, list):
                    texts = self._strings(text, f"{path}.{tag}")
                    if texts:
                        out[tag.lower()] = texts
                else:
                    self.errors.append(f"{path}.{tag}: must be text or a list of text")
            return out
        self.errors.append(f"{path}: must be text or a language map")
        return None

    def _strings(self, values: list[Any], path: str) -> list[str]:
        out: list[str] = []
        for i, item in enumerate(values):
            if not isinstance(item, str):
                self.errors.append(f"{path}[{i}]: must be text")
            elif item.strip():
                out.append(item.strip())
        return out

    # -- concepts -------------------------------------------------------------------------

    def concepts(self, scheme: ConceptScheme, single: bool, value: Any, path: str) -> Any:
        """Concept terms (or explicit alignment objects) -> CredentialAlignmentObjects."""
        items = value if isinstance(value, list) else [value]
        out: list[dict[str, Any]] = []
        for i, item in enumerate(items):
            where = f"{path}[{i}]" if isinstance(value, list) else path
            if isinstance(item, str):
                concept = self.concept(scheme, item, where)
                if concept is not None:
                    out.append(concept)
            elif isinstance(item, Mapping):
                if item:
                    out.append(self.convert_object(item, where, ctdl_class=_CAO))
            else:
                self.errors.append(f"{where}: must be a {scheme.prefix} term")
        if single:
            if len(out) > 1:
                self.errors.append(f"{path}: only one value is allowed")
            return out[0] if out else None
        return out

    def concept(self, scheme: ConceptScheme, raw: str, path: str) -> dict[str, Any] | None:
        """One term, with or without its ``prefix:`` -> a CredentialAlignmentObject."""
        text = raw.strip()
        term = text
        if ":" in text:
            prefix, term = text.split(":", 1)
            if prefix != scheme.prefix:
                self.errors.append(f"{path}: {text!r} is not a {scheme.prefix} term")
                return None
        description: str | None = None
        known = scheme.terms or {}
        if term in known:
            label, description = known[term]
        elif scheme.closed:
            allowed = ", ".join(f"{scheme.prefix}:{t}" for t in known)
            self.errors.append(f"{path}: unknown value {text!r} (allowed: {allowed})")
            return None
        elif re.fullmatch(r"[A-Za-z][A-Za-z0-9]*", term):
            label = camel_label(term)
        else:
            self.errors.append(f"{path}: {text!r} is not a {scheme.prefix} term")
            return None
        node: dict[str, Any] = {
            "@type": _CAO,
            "ceterms:framework": scheme.framework,
            "ceterms:frameworkName": {"en-US": scheme.framework_name},
            "ceterms:targetNode": f"{scheme.prefix}:{term}",
            "ceterms:targetNodeName": {"en-US": label},
        }
        if description:
            node["ceterms:targetNodeDescription"] = {"en-US": description}
        return node

    def subjects(self, value: Any, path: str) -> list[dict[str, Any]]:
        """Free-text subjects -> alignment objects naming them."""
        items = value if isinstance(value, list) else [value]
        out: list[dict[str, Any]] = []
        for i, item in enumerate(items):
            if isinstance(item, str) and item.strip():
                out.append({"@type": _CAO, "ceterms:targetNodeName": {self.language: item.strip()}})
            elif isinstance(item, Mapping) and item:
                out.append(self.convert_object(item, f"{path}[{i}]", ctdl_class=_CAO))
        return out

    # -- durations ------------------------------------------------------------------------

    def duration(self, value: Any, path: str) -> str | None:
        """``{"Weeks": 8}`` -> ``P8W``; an ISO 8601 duration string is checked and kept."""
        if isinstance(value, str):
            if not _ISO_DURATION.match(value.strip()):
                self.errors.append(f"{path}: {value!r} is not an ISO 8601 duration")
                return None
            return value.strip()
        if not isinstance(value, Mapping):
            self.errors.append(f"{path}: must be a duration object or an ISO 8601 duration")
            return None
        known = {name for name, _ in _DURATION_PARTS + _TIME_PARTS}
        for key in value:
            if key not in known:
                self.errors.append(f"{path}.{key}: unknown duration part")
        date_part = ""
        for name, unit in _DURATION_PARTS:
            date_part += self._duration_part(value, name, unit, path)
        time_part = ""
        for name, unit in _TIME_PARTS:
            time_part += self._duration_part(value, name, unit, path)
        if not date_part and not time_part:
            return None
        return "P" + date_part + (f"T{time_part}" if time_part else "")

    def _duration_part(self, value: Mapping[str, Any], name: str, unit: str, path: str) -> str:
        amount = value.get(name)
        if amount is None or amount == 0:
            return ""
        if isinstance(amount, bool) or not isinstance(amount, int | float) or amount < 0:
            self.errors.append(f"{path}.{name}: must be a non-negative number")
            return ""
        shown = int(amount) if float(amount).is_integer() else amount
        return f"{shown}{unit}"

    # -- references -----------------------------------------------------------------------

    def references(self, value: Any, path: str) -> list[str]:
        """Every reference rendered as a URL or a blank-node id."""
        items = value if isinstance(value, list) else [value]
        out: list[str] = []
        for i, item in enumerate(items):
            ref = self.reference(item, f"{path}[{i}]" if isinstance(value, list) else path)
            if ref is not None:
                out.append(ref)
        return out

    def reference(self, item: Any, path: str) -> str | None:
        """A CTID, a URL, ``{"CTID": ...}``, ``{"Id": url}`` or a described entity."""
        if isinstance(item, str):
            text = item.strip()
            if CTID_PATTERN.match(text):
                return self.resource_url(text)
            if is_http_url(text):
                return text
            self.errors.append(f"{path}: {text!r} is neither a valid CTID nor a URL")
            return None
        if not isinstance(item, Mapping):
            self.errors.append(f"{path}: a reference must be a CTID, a URL or an object")
            return None
        if not item:
            return None
        if "CTID" in item:
            ctid = item["CTID"]
            if not isinstance(ctid, str) or not CTID_PATTERN.match(ctid):
                self.errors.append(
                    f"{path}.CTID: {ctid!r} is not a valid CTID "
                    "('ce-' followed by a lower-case UUID)"
                )
                return None
            return self.resource_url(ctid)
        if "Id" in item:
            target = item["Id"]
            if not isinstance(target, str) or not is_http_url(target):
                self.errors.append(f"{path}.Id: {target!r} is not a URL")
                return None
            return target
        return self._blank_node(item, path)

    def _blank_node(self, item: Mapping[str, Any], path: str) -> str | None:
        type_raw = item.get("Type")
        has_name = any(k in item for k in ("Name", "Name_Map", "ceterms:name"))
        missing = [
            label
            for label, present in (
                ("Type", isinstance(type_raw, str) and type_raw.strip()),
                ("Name", has_name),
                # The Assistant also needs the webpage of an organization it cannot look up.
                (
                    "SubjectWebpage",
                    "SubjectWebpage" in item or "Organization" not in str(type_raw),
                ),
            )
            if not present
        ]
        if missing:
            self.errors.append(
                f"{path}: a reference to an entity that is not in the registry needs "
                f"{', '.join(missing)} (or give its CTID)"
            )
            return None
        assert isinstance(type_raw, str)
        node_id = "_:" + str(uuid.uuid5(_BLANK_NODE_NAMESPACE, self.seed + canonical_json(item)))
        node: dict[str, Any] = {"@id": node_id}
        node.update(self.convert_object(item, path, ctdl_class=self.entity_class(type_raw)))
        self.blank_nodes.setdefault(node_id, node)
        return node_id

    @staticmethod
    def entity_class(type_raw: str) -> str:
        """``LearningOpportunity`` -> ``ceterms:LearningOpportunityProfile`` etc."""
        text = type_raw.strip()
        local = text.split(":", 1)[1] if ":" in text else text
        if local in ENTITY_TYPES:
            return ENTITY_TYPES[local]
        return text if ":" in text else f"ceterms:{text}"

    # -- profiles -------------------------------------------------------------------------

    def profiles(self, local: str, value: Any, path: str) -> list[dict[str, Any]]:
        """Nested profiles (cost, duration, condition, value, identifier ...)."""
        ctdl_class = PROFILE_PROPERTIES[local]
        items = value if isinstance(value, list) else [value]
        out: list[dict[str, Any]] = []
        for i, item in enumerate(items):
            where = f"{path}[{i}]" if isinstance(value, list) else path
            if not isinstance(item, Mapping):
                self.errors.append(f"{where}: must be an object")
                continue
            if local in CONNECTION_PROPERTIES and "CTID" in item and set(item) <= {"CTID", "Type"}:
                self.errors.append(
                    f"{where}: this is a condition profile, not a reference: put the "
                    "credential in TargetCredential (or TargetAssessment/"
                    "TargetLearningOpportunity) of the profile"
                )
                continue
            type_raw = item.get("Type")
            node_class = self.entity_class(type_raw) if isinstance(type_raw, str) else ctdl_class
            schema_ns = node_class == "schema:ValueProfile"
            if local == "estimatedCost" and "CostItems" in item:
                out.extend(self._cost_items(item, where, node_class))
                continue
            node = self.convert_object(
                item, where, ctdl_class=node_class, schema_namespace=schema_ns
            )
            if not _is_empty(node):
                out.append(node)
        return out

    def _cost_items(
        self, item: Mapping[str, Any], path: str, node_class: str
    ) -> list[dict[str, Any]]:
        cost_items = item["CostItems"]
        if not isinstance(cost_items, list):
            self.errors.append(f"{path}.CostItems: must be a list")
            return []
        common = {k: v for k, v in item.items() if k != "CostItems"}
        out: list[dict[str, Any]] = []
        for j, cost in enumerate(cost_items):
            if not isinstance(cost, Mapping):
                self.errors.append(f"{path}.CostItems[{j}]: must be an object")
                continue
            merged = {**common, **cost}
            out.append(self.convert_object(merged, f"{path}.CostItems[{j}]", ctdl_class=node_class))
        return out

    # -- URLs -----------------------------------------------------------------------------

    def urls(self, value: Any, path: str) -> Any:
        """Absolute http(s) URLs; a trailing slash is dropped as the registry does."""
        if isinstance(value, list):
            items = [self.urls(item, f"{path}[{i}]") for i, item in enumerate(value)]
            return [item for item in items if item]
        if not isinstance(value, str):
            self.errors.append(f"{path}: must be a URL")
            return None
        text = value.strip()
        if not text:
            return None
        if not is_http_url(text):
            self.errors.append(f"{path}: {text!r} is not an absolute http(s) URL")
            return None
        parts = urlsplit(text)
        if not parts.query and not parts.fragment:
            text = text.rstrip("/")
        return text
