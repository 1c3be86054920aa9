"""Offline, pinned JSON-LD context loading.

Signatures over JSON-LD are only as trustworthy as the contexts used to expand the
document: a context that changed (or was swapped in transit) changes which RDF statements
a signature covers. So contexts are never fetched from the network. They are read from a
directory given by the caller, and every file must match the sha256 pinned in
:data:`PINNED_CONTEXTS` before it is used.
"""

from __future__ import annotations

import copy
import hashlib
import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

from pyld.context_resolver import ContextResolver

from ._nodes import ExpandedNodes
from .errors import ContextError

__all__ = ["CONTEXTS_MAP_FILE", "PINNED_CONTEXTS", "ContextLoader", "PinnedContext"]

#: Name of the optional map (canonical URL -> file name) inside a contexts directory.
CONTEXTS_MAP_FILE: Final = "contexts.json"


@dataclass(frozen=True, slots=True)
class PinnedContext:
    """A context we accept: its canonical URL, usual file name and sha256 of its bytes."""

    url: str
    filename: str
    sha256: str


def _pin(url: str, filename: str, sha256: str) -> tuple[str, PinnedContext]:
    return url, PinnedContext(url=url, filename=filename, sha256=sha256)


#: The contexts this package will load, keyed by canonical URL. The hashes are of the
#: exact bytes of the files 1EdTech's validator ships (the OB 3.0.3 file is the
#: validator's copy, which adds ``endorsementJwt``/``jti``; it yields the same N-Quads for
#: the spec's test vectors). Adding a context means adding a reviewed pin here.
PINNED_CONTEXTS: Final[Mapping[str, PinnedContext]] = MappingProxyType(
    dict(
        [
            _pin(
                "https://www.w3.org/ns/credentials/v2",
                "credentials-v2.jsonld",
                "59955ced6697d61e03f2b2556febe5308ab16842846f5b586d7f1f7adec92734",
            ),
            _pin(
                "https://purl.imsglobal.org/spec/ob/v3p0/context-3.0.3.json",
                "ob-v3p0-3.0.3.json",
                "3d34f4d4ef1bce691106e63798beb5e7b862ba841423f5ee1e53ab7ddf3bca84",
            ),
            _pin(
                "https://purl.imsglobal.org/spec/clr/v2p0/context-2.0.1.json",
                "clr-v2p0-2.0.1.json",
                "880f1902d4158f2f33ce06af41b90719977cd1ea337a9de2e41edb3ff5e543d6",
            ),
            _pin(
                "https://purl.imsglobal.org/spec/ob/v3p0/extensions.json",
                "ob-v3p0-extensions.json",
                "146f85aa16effd7ca1da8056eb443f53ce1eca8a34186cb062832c0a97d889c3",
            ),
        ]
    )
)

# pyld keeps processed contexts in a cache keyed by URL. Its default cache is global to
# the process, so a context loaded elsewhere (another loader, another library) under the
# same URL could be reused by us. Each ContextLoader therefore owns its cache. Inline
# contexts in documents are cached too (keyed by their text), so the cache is bounded:
# a stream of documents with distinct inline contexts must not grow it without limit.
_RESOLVED_CACHE_SIZE: Final = 64


class _BoundedCache:
    """The small dict-like cache pyld's ContextResolver needs, dropping the oldest entry."""

    def __init__(self, maxsize: int) -> None:
        self._maxsize = maxsize
        self._data: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return self._data.get(key, default)

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._data.pop(key, None)
        if len(self._data) >= self._maxsize:
            # dicts keep insertion order: the first key is the oldest one.
            del self._data[next(iter(self._data))]
        self._data[key] = value

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __len__(self) -> int:
        return len(self._data)


class ContextLoader:
    """Serves pinned JSON-LD contexts to pyld; never touches the network.

    Build it with :meth:`from_directory` (or directly from ``{url: file bytes}``). Every
    document must be pinned in :data:`PINNED_CONTEXTS` and match its sha256, otherwise
    construction fails with :class:`ContextError`. An instance is a pyld document loader
    (``loader(url, options)``); asking it for any other URL raises :class:`ContextError`.
    Instances are immutable after construction and safe to share between threads.
    """

    def __init__(self, documents: Mapping[str, bytes]) -> None:
        """Check ``documents`` (canonical URL -> raw file bytes) against the pins.

        Raises:
            ContextError: a URL is not pinned, bytes do not match the pin, or a file is not
                a JSON object.
        """
        if not documents:
            raise ContextError("no JSON-LD contexts given")
        parsed: dict[str, dict[str, Any]] = {}
        for url, raw in documents.items():
            pin = PINNED_CONTEXTS.get(url)
            if pin is None:
                raise ContextError(f"context {url!r} is not pinned; refusing to load it")
            digest = hashlib.sha256(raw).hexdigest()
            if digest != pin.sha256:
                raise ContextError(
                    f"context {url!r} has sha256 {digest}, expected pinned {pin.sha256}; "
                    "refusing to load it"
                )
            try:
                value = json.loads(raw)
            except ValueError as exc:  # covers UnicodeDecodeError and JSONDecodeError
                raise ContextError(f"context {url!r} is not valid JSON: {exc}") from exc
            if not isinstance(value, dict):
                raise ContextError(f"context {url!r} is not a JSON object")
            parsed[url] = value
        self._documents: Mapping[str, dict[str, Any]] = MappingProxyType(parsed)
        self._resolved_cache = _BoundedCache(_RESOLVED_CACHE_SIZE)
        # Processed active contexts, reused across documents (see canon.py).
        self._processed_contexts: dict[tuple[Any, ...], Any] = {}
        # IRI expansions per finished context (cayg_signing.canon), same lock.
        self._expanded_iris: dict[tuple[Any, ...], Any] = {}
        self._finished_contexts: set[Any] = set()
        # Expanded nodes that recur across documents (cayg_signing.canon), same lock.
        self._expanded_nodes = ExpandedNodes()
        # Canonical proof options by their JSON (cayg_signing.proof).
        self._options_nquads: dict[str, str] = {}
        # pyld mutates its caches while processing; canonicalization holds this lock so
        # threads sharing one loader never interleave inside those caches.
        self._lock = threading.Lock()

    @classmethod
    def from_directory(cls, path: Path) -> ContextLoader:
        """Load the contexts in ``path``.

        If ``path/contexts.json`` exists it maps canonical URLs to file names in ``path``
        and exactly those are loaded. Otherwise every pinned context is expected under its
        usual file name (:attr:`PinnedContext.filename`).

        Raises:
            ContextError: missing or unreadable files, a malformed map, an unpinned URL or
                a file whose sha256 does not match its pin.
        """
        directory = Path(path)
        if not directory.is_dir():
            raise ContextError(f"contexts directory {directory} does not exist")
        names = cls._file_names(directory)
        documents: dict[str, bytes] = {}
        for url, name in names.items():
            try:
                documents[url] = (directory / name).read_bytes()
            except OSError as exc:
                raise ContextError(f"cannot read context {url!r} from {name!r}: {exc}") from exc
        return cls(documents)

    @staticmethod
    def _file_names(directory: Path) -> dict[str, str]:
        map_path = directory / CONTEXTS_MAP_FILE
        if not map_path.exists():
            return {url: pin.filename for url, pin in PINNED_CONTEXTS.items()}
        try:
            mapping = json.loads(map_path.read_bytes())
        except (OSError, ValueError) as exc:
            raise ContextError(f"cannot read {map_path}: {exc}") from exc
        if not isinstance(mapping, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()
        ):
            raise ContextError(f"{map_path} must be a JSON object of URL -> file name")
        for url, name in mapping.items():
            # Only plain names: the map must not be able to point outside the directory.
            if Path(name).name != name or name in {"", ".", ".."}:
                raise ContextError(f"{map_path}: file name {name!r} for {url!r} is not plain")
        return dict(mapping)

    @property
    def urls(self) -> frozenset[str]:
        """The canonical URLs this loader serves."""
        return frozenset(self._documents)

    def load_document(self, url: str, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Return a pyld ``RemoteDocument`` for ``url``.

        ``options`` is accepted (and ignored) for pyld's loader calling convention.

        Raises:
            ContextError: ``url`` is not one of the loaded contexts. There is no network
                fallback, by design.
        """
        del options
        document = self._documents.get(url)
        if document is None:
            raise ContextError(
                f"JSON-LD context {url!r} is not available offline (known: "
                f"{', '.join(sorted(self._documents))}); it will not be fetched"
            )
        return {
            "contentType": "application/ld+json",
            "contextUrl": None,
            "documentUrl": url,
            # pyld rewrites context documents in place, so it gets its own copy.
            "document": copy.deepcopy(document),
            # "static" lets pyld keep the processed context in this loader's cache.
            "tag": "static",
        }

    __call__ = load_document

    def _pyld_options(self) -> dict[str, Any]:
        """pyld options routing every context lookup through this loader and its cache.

        Call with ``self._lock`` held.
        """
        return {
            # No document base: pyld would otherwise resolve relative IRIs against a
            # made-up "http://example.org/base/", signing identifiers nobody wrote.
            # Left relative, they are caught by the strict checks in canon.py.
            "base": None,
            "documentLoader": self.load_document,
            "contextResolver": ContextResolver(self._resolved_cache, self.load_document),
        }

    def __repr__(self) -> str:
        return f"ContextLoader(urls={sorted(self._documents)!r})"
