"""``python -m cayg_bench.profiled MODULE REPORT``: run a service module under pyinstrument
and, when it stops (SIGTERM, as operators stop it), write a summary of where time went.

The service runs as ``python -m MODULE`` would run it (its ``main()``), sampled from after
its imports. uvicorn handles SIGTERM
itself and re-raises it once it has shut down; the handler installed here turns that re-raised
signal into a normal exit, so the profile is written instead of the process dying mid-way.
The full text report is written beside REPORT (``.txt``).
"""

from __future__ import annotations

import importlib
import json
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any, Final

from pyinstrument import Profiler
from pyinstrument.frame import Frame

#: How many frames the summary lists.
TOP = 15


def _exit_on_term(_signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(0)


_OWNERS = (
    "faststream",
    "aiokafka",
    "pydantic_core",
    "pydantic",
    "structlog",
    "prometheus_client",
    "uvicorn",
    "starlette",
    "jsonschema",
    "json",
    "asyncio",
    "logging",
)


def _walk(frame: Frame, owner: str = "python") -> Iterator[tuple[Frame, str]]:
    """Every real frame with the code it belongs to; built-ins (C functions) count for the
    code that called them, except the event loop's wait for I/O, which is idle time."""
    if not frame.is_synthetic:
        owner = _where(frame, owner)
        yield frame, owner
    for child in frame.children:
        yield from _walk(child, owner)


def _where(frame: Frame, caller: str) -> str:
    """Which code a frame belongs to: the project's, a library's, Python's own."""
    path = frame.file_path or ""
    if path.startswith("<built-in>"):
        return "idle (waiting for I/O)" if frame.function in ("epoll.poll", "select") else caller
    if "/cayg_" in path:
        return "cayg (the project's code)"
    for name in _OWNERS:
        if f"/{name}/" in path or path.endswith(f"/{name}.py"):
            return name
    return "other Python/libraries"


#: Parts of the consume loop the summary times (total time, callees included), each named
#: by (function, file name).
_PARTS: Final = {
    "the batch loop (fetch, decide, send, await, commit)": [("_consume", "batching.py")],
    "per-record decisions (handler, domain, serialisation)": [("_decide", "batching.py")],
    "the domain logic (admit / normalize)": [
        ("admit", "admit.py"),
        ("normalize", "__init__.py"),
    ],
    "serialising outputs to JSON": [
        ("model_dump_json", "main.py"),
        ("to_kafka_value", "change.py"),
    ],
    "handing outputs to the producer (record batches)": [
        ("_send_all", "batching.py"),
        ("flush", "batching.py"),
    ],
    "fetching records (aiokafka getmany)": [("getmany", "consumer.py")],
}


def _part_time(frame: Frame, names: list[tuple[str, str]]) -> float:
    """Total time under frames matching ``names`` (a match's own callees are not searched
    again, so nothing counts twice)."""
    path = frame.file_path or ""
    if not frame.is_synthetic and any(
        frame.function.endswith(fn) and path.endswith(file) for fn, file in names
    ):
        return frame.time
    return sum(_part_time(child, names) for child in frame.children)


def summarise(profiler: Profiler) -> dict[str, Any]:
    """Top frames by own (self) time and by total time, and own time per code owner."""
    session = profiler.last_session
    if session is None:
        return {"error": "nothing was sampled"}
    root = session.root_frame()
    if root is None:
        return {"error": "nothing was sampled"}
    total = root.time or 1e-9
    own: dict[str, float] = {}
    cumulative: dict[str, float] = {}
    owners: dict[str, float] = {}
    for frame, owner in _walk(root):
        label = f"{frame.function} ({Path(frame.file_path or '?').name}:{frame.line_no})"
        own[label] = own.get(label, 0.0) + frame.total_self_time
        cumulative[label] = max(cumulative.get(label, 0.0), frame.time)
        owners[owner] = owners.get(owner, 0.0) + frame.total_self_time

    def top(table: dict[str, float]) -> list[dict[str, Any]]:
        ranked = sorted(table.items(), key=lambda item: item[1], reverse=True)[:TOP]
        return [{"frame": k, "share": round(v / total, 3)} for k, v in ranked]

    return {
        "sampled_s": round(total, 2),
        "cpu_s": round(session.cpu_time, 2),
        "parts": {
            name: round(_part_time(root, names) / total, 3) for name, names in _PARTS.items()
        },
        "top_self": top(own),
        "top_total": top(cumulative),
        "self_by_owner": {
            k: round(v / total, 3) for k, v in sorted(owners.items(), key=lambda i: -i[1])
        },
    }


def main(argv: list[str]) -> int:
    """Profile ``argv[1]`` (a module) and write the summary to ``argv[2]``."""
    module, report = argv[1], Path(argv[2])
    signal.signal(signal.SIGTERM, _exit_on_term)
    # Imports happen before sampling starts: start-up cost is not what is being profiled.
    entry: Callable[[], object] = importlib.import_module(f"{module}.__main__").main
    profiler = Profiler(interval=0.001, async_mode="disabled")
    profiler.start()
    try:
        sys.argv = [module]
        entry()
    except SystemExit:
        pass
    finally:
        profiler.stop()
        report.with_suffix(".txt").write_text(profiler.output_text(unicode=True, show_all=False))
        report.write_text(json.dumps(summarise(profiler), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
