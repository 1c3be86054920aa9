"""The console's HTML: server-rendered, escaped, one small script (the health page refreshes
itself). Learner data never appears: dead letters are shown by reason and detail, not by
their payload, and document subjects are the ledger's opaque keys."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from html import escape
from typing import Any
from urllib.parse import urlencode

from cayg_ops import kafka_view, ledger_view
from cayg_ops.console.data import STAGES, Overview, lag_of
from cayg_shared.logging import is_sensitive_key

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#1d2430;background:#f6f7f9}
header{background:#1d2430;color:#fff;padding:10px 20px;display:flex;gap:24px;align-items:center}
header a{color:#cfe0ff;text-decoration:none} header a.here{color:#fff;font-weight:600}
main{padding:16px 20px} h1{font-size:18px;margin:0} h2{font-size:16px;margin:20px 0 8px}
table{border-collapse:collapse;background:#fff;width:100%;margin-bottom:12px}
th,td{border:1px solid #dde1e7;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#eef1f5} .ok{color:#17692f;font-weight:600} .bad{color:#a1161b;font-weight:600}
.warn{color:#8a5a00;font-weight:600} .muted{color:#667} code{font-size:12px}
form.inline{display:flex;gap:8px;flex-wrap:wrap;align-items:end;margin-bottom:12px}
label{display:flex;flex-direction:column;font-size:12px} .box{background:#fff;padding:12px;
border:1px solid #dde1e7;margin-bottom:12px} .problem{background:#fff3f3;border-color:#e7b6b6}
"""

_REFRESH = """
<script>
// The health page reloads itself every 15 s unless the operator unticks the box.
const box = document.getElementById("auto-refresh");
setInterval(() => { if (box && box.checked) { location.reload(); } }, 15000);
</script>
"""


def _e(value: object) -> str:
    return escape("" if value is None else str(value))


def page(title: str, here: str, body: str, *, script: str = "") -> str:
    """A whole page with the navigation bar."""
    nav = "".join(
        f'<a href="{href}" id="nav-{key}"{" class=here" if key == here else ""}>{label}</a>'
        for key, href, label in (
            ("health", "/", "Health"),
            ("dlq", "/dlq", "Dead letters"),
            ("published", "/published", "Published"),
        )
    )
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{_e(title)} · cayg-sync console</title><style>{_STYLE}</style></head>"
        f"<body><header><h1>cayg-sync</h1>{nav}</header><main>{body}</main>{script}</body></html>"
    )


def _table(table_id: str, headings: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headings)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    if not body:
        body = f'<tr><td colspan="{len(headings)}" class=muted>none</td></tr>'
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _when(moment: datetime | None) -> str:
    return "" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def health(view: Overview) -> str:
    """Services and lanes, consumer lag, DLQ depth, documents per target and state."""
    rows = []
    for svc in view.services:
        lag = lag_of(view.lags, svc.group)
        if not svc.alive:
            status = f"<span class=bad>down</span> <span class=muted>{_e(svc.error)}</span>"
        elif svc.ready:
            status = "<span class=ok>ready</span>"
        else:
            failing = ", ".join(k for k, v in svc.checks.items() if not v) or "?"
            status = f"<span class=warn>alive, not ready</span> ({_e(failing)})"
        rows.append(
            [
                f'<span data-service="{_e(svc.name)}">{_e(svc.name)}</span>',
                _e(svc.group),
                status,
                "" if lag is None else f'<span class="lag">{lag.lag}</span>',
                _e(svc.version),
                f'<a href="{_e(svc.url)}/metrics">{_e(svc.url)}</a>',
            ]
        )
    services = _table(
        "services",
        ["service / lane", "consumer group", "health", "lag (messages)", "version", "endpoint"],
        rows,
    )
    lags = _table(
        "lag",
        ["consumer group", "messages not committed", "partitions"],
        ([_e(g.group), str(g.lag), str(g.partitions)] for g in view.lags),
    )
    dlq = _table(
        "dlq-depth",
        ["stage", "parked"],
        (
            [f'<a href="/dlq?{urlencode({"stage": s})}">{s}</a>', _e(view.dlq_depth.get(s, "?"))]
            for s in STAGES
        ),
    )
    per: dict[tuple[str, str], dict[str, int]] = {}
    for target, tenant, state, _reason, count in view.documents:
        cell = per.setdefault((tenant, target), {})
        cell[state] = cell.get(state, 0) + count
    states = ("clean", "dirty", "waiting", "failing", "rejected")
    documents = _table(
        "documents",
        ["tenant", "target", "published", "to deliver", "waiting", "failing", "rejected"],
        (
            [
                f'<a href="/published?{urlencode({"tenant": tenant})}">{_e(tenant)}</a>',
                _e(target),
                *(_count(counts.get(s, 0), s, tenant) for s in states),
            ]
            for (tenant, target), counts in sorted(per.items())
        ),
    )
    problems = "".join(f'<div class="box problem">{_e(p)}</div>' for p in view.problems)
    body = (
        f'<p class=muted>as of {_when(view.at)} · <label style="display:inline">'
        "<input type=checkbox id=auto-refresh checked> refresh every 15 s</label></p>"
        f"{problems}<h2>Services</h2>{services}<h2>Consumer lag (committed offsets)</h2>{lags}"
        f"<h2>Dead-letter queues</h2>{dlq}<h2>Publish documents</h2>{documents}"
    )
    return page("Health", "health", body, script=_REFRESH)


def _count(count: int, state: str, tenant: str) -> str:
    if not count:
        return "<span class=muted>0</span>"
    css = {"failing": "warn", "rejected": "bad", "waiting": "warn"}.get(state, "")
    link = f"/published?{urlencode({'tenant': tenant, 'state': state})}"
    return f'<a class="{css}" href="{link}">{count}</a>'


def letters(
    found: Sequence[tuple[str, kafka_view.ParkedMessage]],
    filters: Mapping[str, str],
    tenants: Sequence[str],
) -> str:
    """Dead letters, newest first, with filters by stage, tenant, reason and time."""

    def option(name: str, values: Sequence[str]) -> str:
        chosen = filters.get(name, "")
        opts = '<option value="">any</option>' + "".join(
            f"<option{' selected' if v == chosen else ''}>{_e(v)}</option>" for v in values
        )
        return f'<label>{name}<select name="{name}" id="filter-{name}">{opts}</select></label>'

    reasons = sorted({i.letter.reason for _, i in found if i.letter} | {filters.get("reason", "")})
    form = (
        '<form class=inline method=get action="/dlq" id=filters>'
        f"{option('stage', STAGES)}{option('tenant', tenants)}"
        f"{option('reason', [r for r in reasons if r])}"
        f"<label>since (UTC)<input type=datetime-local name=since id=filter-since "
        f'value="{_e(filters.get("since", ""))}"></label>'
        "<button type=submit>filter</button></form>"
    )
    rows = []
    for stage, item in found:
        letter = item.letter
        link = f"/dlq/{stage}/{item.partition}/{item.offset}"
        if letter is None:
            rows.append(
                [
                    _e(stage),
                    f'<a class=letter href="{link}">{item.partition}:{item.offset}</a>',
                    "",
                    "",
                    "<span class=bad>not a dead-letter record</span>",
                    "",
                    "",
                ]
            )
            continue
        rows.append(
            [
                _e(stage),
                f'<a class=letter href="{link}">{item.partition}:{item.offset}</a>',
                _e(_when(letter.failed_at)),
                _e(letter.tenant or "—"),
                f"<b>{_e(letter.reason)}</b>",
                _e(letter.detail[:200]),
                _e(letter.event_id or ""),
            ]
        )
    table = _table(
        "letters", ["stage", "letter", "failed at", "tenant", "reason", "detail", "event id"], rows
    )
    return page("Dead letters", "dlq", f"<h2>Dead letters ({len(found)})</h2>{form}{table}")


def letter(
    stage: str,
    item: kafka_view.ParkedMessage,
    *,
    replay_enabled: bool,
    outcome: str = "",
) -> str:
    """One dead letter: why it was parked, where it came from, and the replay form."""
    parked = item.letter
    if parked is None:
        facts = [("record", "not a dead-letter record: it cannot be decoded as one")]
    else:
        source = parked.source
        facts = [
            ("stage", stage),
            ("reason", parked.reason),
            ("detail", parked.detail),
            ("field", parked.field_path or "—"),
            ("tenant", parked.tenant or "—"),
            ("event id", str(parked.event_id or "—")),
            ("failed at", _when(parked.failed_at)),
            ("came from", f"{source.topic} partition {source.partition} offset {source.offset}"),
            (
                "value",
                f"{len(parked.original_value())} bytes"
                + (" (truncated: cannot be replayed)" if parked.value_truncated else ""),
            ),
            ("target's answer", str(parked.target_response) if parked.target_response else "—"),
        ]
        headers = ", ".join(
            f"{k}={'[redacted]' if is_sensitive_key(k) else v}"
            for k, v in sorted(parked.original_headers.items())
        )
        facts.append(("original headers", headers or "—"))
    rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in facts)
    why_not = item.unreplayable
    if why_not:
        action = (
            '<div class="box problem" id=replay-unavailable>'
            f"Cannot be replayed: {_e(why_not)}</div>"
        )
    elif not replay_enabled:
        action = (
            "<div class=box id=replay-disabled>Replay is disabled: no console credentials are "
            "configured (CAYG_CONSOLE_USERNAME and CAYG_CONSOLE_PASSWORD_FILE).</div>"
        )
    else:
        action = (
            f'<form class="inline box" method=post id=replay '
            f'action="/dlq/{_e(stage)}/{item.partition}/{item.offset}/replay">'
            "<span>Send the original record back to where it came from "
            "(fix the cause first, or it is parked again).</span>"
            "<label>user<input name=username id=username autocomplete=username></label>"
            "<label>password<input type=password name=password id=password "
            "autocomplete=current-password></label>"
            "<button type=submit id=replay-button>replay</button></form>"
        )
    result = f"<div class=box id=replay-result>{outcome}</div>" if outcome else ""
    body = (
        f'<p><a href="/dlq">← all dead letters</a></p>{result}'
        f"<h2>Dead letter {_e(stage)} {item.partition}:{item.offset}</h2>"
        f"<table id=letter>{rows}</table>{action}"
    )
    return page("Dead letter", "dlq", body)


def published(
    tenants: Sequence[str],
    filters: Mapping[str, str],
    items: Sequence[ledger_view.Published] | None,
    problem: str | None = None,
) -> str:
    """A tenant's documents per target: state, version, content hash, remote id, last
    outcome (or what a document waits for, or the target's error)."""
    tenant_options = "".join(
        f"<option{' selected' if t == filters.get('tenant') else ''}>{_e(t)}</option>"
        for t in tenants
    )
    state_options = '<option value="">any</option>' + "".join(
        f"<option{' selected' if s == filters.get('state') else ''}>{s}</option>"
        for s in ("clean", "dirty", "waiting", "failing", "rejected")
    )
    form = (
        '<form class=inline method=get action="/published" id=published-filters>'
        f"<label>tenant<select name=tenant id=filter-tenant>{tenant_options}</select></label>"
        f"<label>state<select name=state id=filter-state>{state_options}</select></label>"
        f'<label>CTID<input name=ctid id=filter-ctid value="{_e(filters.get("ctid", ""))}">'
        "</label>"
        f"<label>learner key<input name=learner id=filter-learner "
        f'value="{_e(filters.get("learner", ""))}"></label>'
        "<button type=submit>show</button></form>"
    )
    rows: list[list[str]] = []
    for item in items or ():
        row: dict[str, Any] = item.as_json()
        version = row.get("applied_version") or {}
        said = [str(row.get("last_outcome") or "")]
        if row.get("waiting_for"):
            said.append(f"waiting for {row['waiting_for']}")
        if row.get("last_error"):
            said.append(str(row["last_error"]))
        answer = " — ".join(part for part in said if part)
        state = row["state"]
        css = {"clean": "ok", "failing": "warn", "waiting": "warn", "rejected": "bad"}.get(
            state, ""
        )
        rows.append(
            [
                _e(row["target"]),
                _e(row["kind"]),
                f"<code>{_e(row['subject'])}</code>",
                f'<span class="{css} state">{_e(state)}</span>',
                _e(_version_text(version)),
                f"<code>{_e(str(row.get('content_hash') or '')[:16])}</code>",
                _e(row.get("remote_id") or ""),
                _e(answer),
            ]
        )
    table = _table(
        "published",
        [
            "target",
            "kind",
            "subject",
            "state",
            "version",
            "content hash",
            "remote id",
            "last answer",
        ],
        rows,
    )
    note = f'<div class="box problem">{_e(problem)}</div>' if problem else ""
    heading = f"<h2>Published for {_e(filters.get('tenant', ''))}</h2>" if items is not None else ""
    return page("Published", "published", f"{form}{note}{heading}{table}")


def _version_text(version: Mapping[str, Any]) -> str:
    if not version:
        return ""
    return ", ".join(f"{k} {v}" for k, v in version.items() if v is not None)


def message(title: str, text: str, *, here: str = "health") -> str:
    """A short page saying one thing (errors, refusals)."""
    return page(title, here, f'<div class="box problem" id=message>{_e(text)}</div>')
