"""The container image recipe (``deploy/image/Containerfile``) and its build context.

No container engine runs on the development machines, so the image is not built here;
what can be checked without building is: the stages, that uv installs the locked
dependencies without dev tools, that the image runs as a fixed non-root uid (the one the
Kubernetes manifests assert), that the entry points it promises are the workspace's
``[project.scripts]`` and the ones the manifests and units start, and that
``.dockerignore`` sends every workspace member and nothing local to the builder.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml  # type: ignore[import-untyped]

from cayg_publish.config import ClrTargetConfig, PublishTargetsConfig
from cayg_signing import ContextLoader
from support.deploy import REPO_ROOT, workspace_members, workspace_scripts

pytestmark = pytest.mark.integration

CONTAINERFILE = REPO_ROOT / "deploy" / "image" / "Containerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"
SERVICE_COMMANDS = {"cayg-ingest", "cayg-normalize", "cayg-publish", "cayg"}


def instructions() -> list[tuple[str, str]]:
    """The Containerfile's instructions as (KEYWORD, arguments), continuations joined."""
    logical: list[str] = []
    pending = ""
    for raw in CONTAINERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, "the Containerfile ends inside a continued line"
    parsed = []
    for text in logical:
        keyword, _, arguments = text.partition(" ")
        parsed.append((keyword.upper(), arguments.strip()))
    return parsed


def stages() -> list[list[tuple[str, str]]]:
    """Instructions grouped by build stage (each starts with FROM)."""
    grouped: list[list[tuple[str, str]]] = []
    for keyword, arguments in instructions():
        if keyword == "FROM":
            grouped.append([])
        elif not grouped:
            assert keyword == "ARG", f"{keyword} before the first FROM"
            continue
        grouped[-1].append((keyword, arguments))
    return grouped


def promised_commands() -> set[str]:
    """The entry points the build checks for (``for command in …; do test -x``)."""
    for keyword, arguments in instructions():
        match = re.search(r"for command in ([\w\s-]+?); do\s+test -x", arguments)
        if keyword == "RUN" and match:
            return set(match[1].split())
    pytest.fail("the Containerfile does not check its entry points exist")


def test_the_image_is_built_in_stages_and_runs_from_the_last() -> None:
    froms = [arguments for keyword, arguments in instructions() if keyword == "FROM"]
    assert len(froms) >= 2, "multi-stage: a build stage and a runtime stage"
    names = [re.search(r"\bAS (\S+)$", f, re.IGNORECASE) for f in froms]
    assert all(names), "every stage is named"
    runtime = stages()[-1]
    copies = [arguments for keyword, arguments in runtime if keyword == "COPY"]
    build_name = names[0][1] if names[0] else ""
    assert any(f"--from={build_name} /opt/cayg/venv" in copy for copy in copies), (
        "the runtime stage takes the built environment, not the sources"
    )
    assert not any(keyword == "RUN" and "uv " in args for keyword, args in runtime)


def test_uv_comes_from_pypi_pinned_and_installs_only_the_lock() -> None:
    runs = [arguments for keyword, arguments in stages()[0] if keyword == "RUN"]
    installs = [run for run in runs if "pip install" in run]
    assert installs, "uv is installed with pip (from PyPI)"
    assert any(re.search(r'"?uv==\$\{UV_VERSION\}"?', run) for run in installs)
    version_args = [
        arguments
        for keyword, arguments in instructions()
        if keyword == "ARG" and arguments.startswith("UV_VERSION=")
    ]
    assert version_args, "UV_VERSION has a pinned default"
    assert re.fullmatch(r"UV_VERSION=\d+\.\d+\.\d+", version_args[0])
    syncs = [run for run in runs if "uv sync" in run]
    assert syncs, "the workspace is installed with uv sync"
    for sync in syncs:
        assert "--frozen" in sync.split(), f"not from the lock as it is: {sync}"
        assert "--no-dev" in sync.split(), f"dev tools in the image: {sync}"
    assert any("--no-editable" in sync.split() for sync in syncs), (
        "workspace packages installed editable point at sources the runtime stage lacks"
    )


def test_the_image_runs_as_the_non_root_uid_the_manifests_require() -> None:
    users = [arguments for keyword, arguments in stages()[-1] if keyword == "USER"]
    assert users, "the runtime stage sets USER"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit(), "a numeric uid lets Kubernetes check runAsNonRoot"
    assert int(uid) != 0
    assert gid.isdigit()
    assert int(gid) != 0
    for path in sorted((REPO_ROOT / "deploy" / "k8s").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "Deployment":
                pod = doc["spec"]["template"]["spec"]["securityContext"]
                assert (pod["runAsUser"], pod["runAsGroup"]) == (int(uid), int(gid)), path.name


def test_the_entry_points_are_the_workspace_scripts_the_deployments_start() -> None:
    promised = promised_commands()
    assert promised == SERVICE_COMMANDS
    scripts = workspace_scripts()
    assert promised <= set(scripts), f"not in any [project.scripts]: {promised - set(scripts)}"
    started: set[str] = set()
    for path in sorted((REPO_ROOT / "deploy" / "k8s").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "Deployment":
                for container in doc["spec"]["template"]["spec"]["containers"]:
                    started.add(container["command"][0])
    for unit in sorted((REPO_ROOT / "deploy" / "systemd").glob("*.service")):
        (exec_start,) = re.findall(r"^ExecStart=(\S+)", unit.read_text(), re.MULTILINE)
        started.add(Path(exec_start).name)
    assert started <= promised, f"started but not promised by the image: {started - promised}"
    assert started == SERVICE_COMMANDS - {"cayg"}


# ------------------------------------------------------------ .dockerignore


def ignore_patterns() -> list[tuple[bool, re.Pattern[str]]]:
    """``.dockerignore`` as (negated, regex) pairs, in order (the last match decides)."""
    patterns = []
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        text = line.lstrip("!").strip("/")
        regex = ""
        index = 0
        while index < len(text):
            if text.startswith("**/", index):
                regex, index = regex + "(?:.*/)?", index + 3
            elif text.startswith("**", index):
                regex, index = regex + ".*", index + 2
            elif text[index] == "*":
                regex, index = regex + "[^/]*", index + 1
            elif text[index] == "?":
                regex, index = regex + "[^/]", index + 1
            else:
                regex, index = regex + re.escape(text[index]), index + 1
        patterns.append((negated, re.compile(regex)))
    return patterns


def sent_to_the_builder(path: str) -> bool:
    """Whether the build context includes ``path`` (Docker's rule: the last pattern that
    matches the path or one of its parent folders decides)."""
    parts = path.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for negated, pattern in ignore_patterns():
        if any(pattern.fullmatch(candidate) for candidate in candidates):
            excluded = not negated
    return not excluded


def test_the_build_context_holds_the_workspace_and_nothing_local() -> None:
    for needed in ("pyproject.toml", "uv.lock", "README.md"):
        assert sent_to_the_builder(needed), needed
    for member in workspace_members():
        assert sent_to_the_builder(f"{member}/pyproject.toml"), member
        sources = sorted((REPO_ROOT / member / "src").rglob("*.py"))
        assert sources, f"{member} has no sources"
        for source in sources:
            relative = source.relative_to(REPO_ROOT).as_posix()
            if "__pycache__" not in relative:
                assert sent_to_the_builder(relative), relative
    for local in (
        ".venv/bin/python",
        ".git/HEAD",
        ".cayg/demo/logs/ingest.log",
        "tests/conftest.py",
        "shared/src/cayg_shared/__pycache__/topics.cpython-311.pyc",
        "services/publish/.venv/lib/x.py",
        ".mypy_cache/3.11/x.json",
    ):
        assert not sent_to_the_builder(local), local


def test_the_image_holds_the_contexts_where_the_kubernetes_publish_toml_looks(
    conformance_dir: Path,
) -> None:
    copies = [
        args for keyword, args in stages()[-1] if keyword == "COPY" and "--from=contexts" in args
    ]
    assert len(copies) == 1, "the runtime stage copies the pinned contexts"
    destination = copies[0].split()[-1].rstrip("/")
    config = PublishTargetsConfig.load(REPO_ROOT / "deploy" / "k8s" / "config" / "publish.toml")
    clr_targets = [
        target
        for tenant in config.tenants.values()
        for target in tenant.targets
        if isinstance(target, ClrTargetConfig)
    ]
    assert clr_targets, "the example signs for at least one CLR host"
    for target in clr_targets:
        assert str(target.contexts_dir) == destination, target.name
    # The build context DEPLOY.md passes as `contexts` is a complete, pinned set.
    ContextLoader.from_directory(conformance_dir / "1edtech" / "contexts")


def test_the_dependency_layer_sees_every_workspace_member() -> None:
    """The first ``uv sync`` (third-party packages only) mounts uv.lock and each member's
    pyproject.toml, nothing else: a member missing there makes ``--frozen`` fail in the
    build, a source mounted there rebuilds the layer on every change."""
    (first, *_) = [args for keyword, args in stages()[0] if keyword == "RUN" and "uv sync" in args]
    assert "--no-install-workspace" in first.split()
    mounted = set(re.findall(r"--mount=type=bind,source=(\S+?),target=(\S+)", first))
    assert {source for source, target in mounted if source != target} == set()
    wanted = {"uv.lock", "pyproject.toml"} | {f"{m}/pyproject.toml" for m in workspace_members()}
    assert {source for source, _ in mounted} == wanted
