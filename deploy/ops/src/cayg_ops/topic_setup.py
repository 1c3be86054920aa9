"""``cayg topics apply`` / ``cayg topics acls``: the topics and ACLs a cluster needs.

Every topic is named by :class:`cayg_shared.topics.Topics` (under the deployment's prefix)
and sized by ``deploy/config/topics.toml``: partitions, replication, retention, compaction.
``apply`` creates what is missing and reports what differs on topics that exist
(``--alter`` raises partition counts and sets the configured settings, keeping any other
setting the topic has). ``acls`` lists what each service principal, each institution's SIS
principal and the operator's principal need — as a table, JSON, or ``kafka-acls.sh``
commands.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from cayg_ops.kafka_view import Cluster, client_options
from cayg_shared.config_check import Problem, validation_problems
from cayg_shared.topics import Topics

Principal = Annotated[str, StringConstraints(pattern=r"^[A-Za-z]+:[^\s]+$", max_length=200)]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TopicClass(_Model):
    """How the topics of one kind are made."""

    partitions: int = Field(ge=1, le=10_000)
    retention_ms: int | None = Field(default=None, ge=-1)
    compacted: bool = False


class TenantTopic(_Model):
    """One tenant's SIS topic, where it differs from the others."""

    partitions: int | None = Field(default=None, ge=1, le=10_000)
    retention_ms: int | None = Field(default=None, ge=-1)


class SisTopics(TopicClass):
    """``sis.events.<tenant>``."""

    tenants: dict[str, TenantTopic] = Field(default_factory=dict)


class Principals(_Model):
    """Who the ACLs are for (``{tenant}`` is replaced in ``sis``)."""

    ingest: Principal = "User:cayg-ingest"
    normalize: Principal = "User:cayg-normalize"
    publish: Principal = "User:cayg-publish"
    operator: Principal = "User:cayg-operator"
    sis: Principal = "User:sis-{tenant}"


class TopicsConfig(_Model):
    """``deploy/config/topics.toml``."""

    replication_factor: int = Field(default=3, ge=1, le=16)
    min_insync_replicas: int = Field(default=2, ge=1, le=16)
    pipeline: TopicClass = TopicClass(partitions=12, retention_ms=7 * 86_400_000)
    dead_letters: TopicClass = TopicClass(partitions=3, retention_ms=90 * 86_400_000)
    dlq_actions: TopicClass = TopicClass(partitions=1, compacted=True)
    sis: SisTopics = SisTopics(partitions=6, retention_ms=7 * 86_400_000)
    principals: Principals = Principals()

    @classmethod
    def load(cls, path: Path) -> tuple[TopicsConfig | None, list[Problem]]:
        """The file, or its problems."""
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as error:
            return None, [Problem(str(path), "", f"cannot read: {error.strerror}")]
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
            return None, [Problem(str(path), "", f"not valid TOML: {error}")]
        try:
            return cls.model_validate(data), []
        except ValidationError as error:
            return None, validation_problems(path, error)


@dataclass(frozen=True)
class TopicSpec:
    """One topic as it should be."""

    name: str
    kind: str
    partitions: int
    replication_factor: int
    configs: dict[str, str]

    def as_json(self) -> dict[str, Any]:
        return {
            "topic": self.name,
            "kind": self.kind,
            "partitions": self.partitions,
            "replication_factor": self.replication_factor,
            "configs": self.configs,
        }


def plan(
    config: TopicsConfig,
    topics: Topics,
    tenants: list[str],
    *,
    replication_factor: int | None = None,
) -> list[TopicSpec]:
    """Every topic with its partitions and settings."""
    replicas = replication_factor or config.replication_factor
    min_isr = min(config.min_insync_replicas, replicas)

    def spec(name: str, kind: str, cls: TopicClass | TenantTopic, base: TopicClass) -> TopicSpec:
        retention = cls.retention_ms if cls.retention_ms is not None else base.retention_ms
        configs = {
            "min.insync.replicas": str(min_isr),
            "cleanup.policy": "compact" if base.compacted else "delete",
        }
        if retention is not None and not base.compacted:
            configs["retention.ms"] = str(retention)
        return TopicSpec(name, kind, cls.partitions or base.partitions, replicas, configs)

    specs = [
        spec(topics.ingested, "pipeline", config.pipeline, config.pipeline),
        spec(topics.normalized, "pipeline", config.pipeline, config.pipeline),
        spec(topics.ingest_dlq, "dead-letters", config.dead_letters, config.dead_letters),
        spec(topics.normalize_dlq, "dead-letters", config.dead_letters, config.dead_letters),
        spec(topics.publish_dlq, "dead-letters", config.dead_letters, config.dead_letters),
        spec(topics.dlq_actions, "dlq-actions", config.dlq_actions, config.dlq_actions),
    ]
    for tenant in tenants:
        own = config.sis.tenants.get(tenant, TenantTopic())
        specs.append(spec(topics.sis(tenant), "sis", own, config.sis))
    return specs


@dataclass
class TopicResult:
    """What ``apply`` found or did for one topic."""

    spec: TopicSpec
    action: Literal["created", "exists", "differs", "altered", "would-create", "failed"]
    differences: list[str]
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            **self.spec.as_json(),
            "action": self.action,
            "differences": self.differences,
            "error": self.error,
        }


class TopicSetupError(Exception):
    """The cluster cannot take the plan as it is (e.g. too few brokers)."""


async def apply(
    cluster: Cluster, specs: list[TopicSpec], *, dry_run: bool = False, alter: bool = False
) -> list[TopicResult]:
    """Create missing topics; compare (and with ``alter``, fix) existing ones."""
    admin = AIOKafkaAdminClient(**client_options(cluster))
    await admin.start()
    try:
        brokers = len((await admin.describe_cluster()).get("brokers", []))
        needed = max(spec.replication_factor for spec in specs)
        if brokers and needed > brokers:
            raise TopicSetupError(
                f"replication factor {needed} needs {needed} brokers; the cluster has "
                f"{brokers} (a development broker: --replication-factor {brokers})"
            )
        existing = set(await admin.list_topics())
        results: list[TopicResult] = []
        missing = [spec for spec in specs if spec.name not in existing]
        if missing and not dry_run:
            response = await admin.create_topics(
                [
                    NewTopic(
                        spec.name,
                        num_partitions=spec.partitions,
                        replication_factor=spec.replication_factor,
                        topic_configs=spec.configs,
                    )
                    for spec in missing
                ]
            )
            errors = {
                str(entry[0]): (int(entry[1]), entry[2] if len(entry) > 2 else None)
                for entry in response.topic_errors
            }
        else:
            errors = {}
        for spec in missing:
            code, message = errors.get(spec.name, (0, None))
            if dry_run:
                results.append(TopicResult(spec, "would-create", []))
            elif code in (0, 36):  # 36: created meanwhile by someone else
                results.append(TopicResult(spec, "created", []))
            else:
                results.append(
                    TopicResult(spec, "failed", [], error=f"error {code}: {message or ''}")
                )
        present = [spec for spec in specs if spec.name in existing]
        if present:
            results += await _compare(admin, present, dry_run=dry_run, alter=alter)
        order = {spec.name: n for n, spec in enumerate(specs)}
        return sorted(results, key=lambda r: order[r.spec.name])
    finally:
        await admin.close()


async def _compare(
    admin: AIOKafkaAdminClient, specs: list[TopicSpec], *, dry_run: bool, alter: bool
) -> list[TopicResult]:
    described = {
        entry["topic"]: entry for entry in await admin.describe_topics([s.name for s in specs])
    }
    current = await _topic_configs(admin, [spec.name for spec in specs])
    results: list[TopicResult] = []
    for spec in specs:
        partitions = len(described.get(spec.name, {}).get("partitions", []))
        have = current.get(spec.name, {})
        differences = []
        if partitions < spec.partitions:
            differences.append(f"partitions {partitions}, configured {spec.partitions}")
        elif partitions > spec.partitions:
            differences.append(
                f"partitions {partitions}, configured {spec.partitions} (never reduced)"
            )
        for key, value in spec.configs.items():
            if have.get(key, (None, False))[0] != value:
                differences.append(
                    f"{key} {have.get(key, ('unset', False))[0]}, configured {value}"
                )
        if not differences:
            results.append(TopicResult(spec, "exists", []))
            continue
        if not alter or dry_run:
            results.append(TopicResult(spec, "differs", differences))
            continue
        if partitions < spec.partitions:
            await admin.create_partitions({spec.name: NewPartitions(spec.partitions)})
        # AlterConfigs replaces every dynamic setting of the topic: keep the others.
        kept = {key: value for key, (value, dynamic) in have.items() if dynamic}
        await admin.alter_configs(
            [ConfigResource(ConfigResourceType.TOPIC, spec.name, {**kept, **spec.configs})]
        )
        results.append(TopicResult(spec, "altered", differences))
    return results


#: DescribeConfigs ``config_source`` of a setting made on the topic itself.
_TOPIC_CONFIG_SOURCE = 1


async def _topic_configs(
    admin: AIOKafkaAdminClient, names: list[str]
) -> dict[str, dict[str, tuple[str | None, bool]]]:
    """Each topic's settings: value and whether it was set on the topic (dynamic)."""
    responses = await admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
    )
    out: dict[str, dict[str, tuple[str | None, bool]]] = {}
    for response in responses:
        for resource in response.resources:
            name = str(resource[3])
            entries: dict[str, tuple[str | None, bool]] = {}
            for entry in resource[4]:
                key, value = str(entry[0]), entry[1]
                source = entry[3] if response.API_VERSION >= 1 else None
                dynamic = source == _TOPIC_CONFIG_SOURCE if source is not None else not entry[3]
                entries[key] = (None if value is None else str(value), bool(dynamic))
            out[name] = entries
    return out


@dataclass(frozen=True)
class Acl:
    """One ACL: ``principal`` may do ``operations`` on ``resource``."""

    principal: str
    who: str
    operations: tuple[str, ...]
    resource_type: Literal["topic", "group", "cluster"]
    resource: str
    pattern: Literal["literal", "prefixed"] = "literal"

    def as_json(self) -> dict[str, Any]:
        return {
            "principal": self.principal,
            "for": self.who,
            "operations": list(self.operations),
            "resource_type": self.resource_type,
            "resource": self.resource,
            "pattern": self.pattern,
        }

    def command(self) -> str:
        """The ``kafka-acls.sh`` arguments that add it (after ``$A --add``)."""
        ops = " ".join(f"--operation {op}" for op in self.operations)
        where = {
            "topic": f"--topic {self.resource}",
            "group": f"--group {self.resource}",
            "cluster": "--cluster",
        }[self.resource_type]
        pattern = " --resource-pattern-type prefixed" if self.pattern == "prefixed" else ""
        return f"--allow-principal {self.principal} {ops} {where}{pattern}"


def acls(config: TopicsConfig, topics: Topics, tenants: list[str]) -> list[Acl]:
    """What every principal needs, no more. Idempotent producers need only ``Write`` on the
    topic (Kafka ≥ 3.0); no transactions are used."""
    p = config.principals
    prefix = topics.prefix
    sis_prefix = topics.prefix + "sis.events."
    rw = ("Read", "Describe")
    ww = ("Write", "Describe")
    out = [
        Acl(p.ingest, "ingest", rw, "topic", sis_prefix, "prefixed"),
        Acl(p.ingest, "ingest", ww, "topic", topics.ingested),
        Acl(p.ingest, "ingest", ww, "topic", topics.ingest_dlq),
        Acl(p.ingest, "ingest", ("Read",), "group", f"{prefix}cayg-ingest"),
        Acl(p.normalize, "normalize", rw, "topic", topics.ingested),
        Acl(p.normalize, "normalize", ww, "topic", topics.normalized),
        Acl(p.normalize, "normalize", ww, "topic", topics.normalize_dlq),
        Acl(p.normalize, "normalize", ("Read",), "group", f"{prefix}cayg-normalize"),
        Acl(p.publish, "publish", rw, "topic", topics.normalized),
        Acl(p.publish, "publish", ww, "topic", topics.publish_dlq),
        # cayg-publish and every lane's cayg-publish.<lane>
        Acl(p.publish, "publish", ("Read",), "group", f"{prefix}cayg-publish", "prefixed"),
    ]
    for tenant in tenants:
        principal = p.sis.replace("{tenant}", tenant)
        out.append(Acl(principal, f"SIS of {tenant}", ww, "topic", topics.sis(tenant)))
    op = p.operator
    out += [
        # status (lag, depth), dlq list, published: describe groups, read topics' offsets
        Acl(op, "operator", ("Describe",), "group", f"{prefix}cayg-", "prefixed"),
        Acl(
            op,
            "operator",
            ("Describe", "DescribeConfigs"),
            "topic",
            prefix or "*",
            "prefixed" if prefix else "literal",
        ),
        Acl(op, "operator", ("Read",), "topic", topics.ingest_dlq),
        Acl(op, "operator", ("Read",), "topic", topics.normalize_dlq),
        Acl(op, "operator", ("Read",), "topic", topics.publish_dlq),
        Acl(op, "operator", ("Read", "Write"), "topic", topics.dlq_actions),
        # dlq replay sends letters back; backfill writes a tenant's SIS topic
        Acl(op, "operator", ("Write",), "topic", sis_prefix, "prefixed"),
        Acl(op, "operator", ("Write",), "topic", topics.ingested),
        Acl(op, "operator", ("Write",), "topic", topics.normalized),
        # topics apply
        Acl(
            op,
            "operator",
            ("Create", "AlterConfigs", "Alter"),
            "topic",
            prefix or "*",
            "prefixed" if prefix else "literal",
        ),
    ]
    return out
