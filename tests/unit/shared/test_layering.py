"""Layering: the domain imports only the standard library, pydantic and cayg_shared.

The same rule as the import-linter contract in ``pyproject.toml``, checked on the source
so it also holds where import-linter is not run, and stricter: it names what *is*
allowed rather than what is not.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[3]
DOMAIN_CODE = {
    "cayg_ingest": REPO / "services/ingest/src/cayg_ingest/domain",
    "cayg_normalize": REPO / "services/normalize/src/cayg_normalize/domain",
    "cayg_shared": REPO / "shared/src/cayg_shared/schema",
}
SHARED_CONTRACT = [
    REPO / "shared/src/cayg_shared/tenants.py",
    REPO / "shared/src/cayg_shared/export_schemas.py",
]
#: cayg_shared modules the domain may use: the contract, not the service plumbing.
SHARED_ALLOWED = {
    "cayg_shared",
    "cayg_shared.schema",
    "cayg_shared.tenants",
    "cayg_shared.envelope",
    "cayg_shared.ids",
    "cayg_shared.topics",
    "cayg_shared.headers",
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def _allowed(module: str, own: str) -> bool:
    top = module.split(".", maxsplit=1)[0]
    if top in sys.stdlib_module_names or top in ("pydantic", own):
        return True
    # ``from cayg_shared import x`` names the package itself; anything deeper must be listed.
    return module == "cayg_shared" or any(
        module == m or module.startswith(f"{m}.") for m in SHARED_ALLOWED - {"cayg_shared"}
    )


@pytest.mark.parametrize("package", sorted(DOMAIN_CODE))
def test_domain_modules_import_only_stdlib_pydantic_and_the_shared_contract(package: str) -> None:
    files = sorted(DOMAIN_CODE[package].rglob("*.py"))
    assert files
    bad = {
        f"{path.relative_to(REPO)}: {module}"
        for path in files
        for module in _imports(path)
        if not _allowed(module, package)
    }
    assert bad == set()


def test_the_shared_contract_modules_need_no_infrastructure() -> None:
    bad = {
        f"{path.relative_to(REPO)}: {module}"
        for path in SHARED_CONTRACT
        for module in _imports(path)
        if not _allowed(module, "cayg_shared")
    }
    assert bad == set()


def test_the_services_do_not_import_each_other() -> None:
    for package, other in (("cayg_ingest", "cayg_normalize"), ("cayg_normalize", "cayg_ingest")):
        for path in DOMAIN_CODE[package].rglob("*.py"):
            assert not any(m.split(".")[0] == other for m in _imports(path)), path
