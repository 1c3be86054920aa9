"""The harness never hands out one port twice, even when the kernel offers it again."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from cayg_bench import procs

pytestmark = pytest.mark.unit


def test_a_port_the_kernel_offers_again_is_not_handed_out_twice(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    offered = iter([41001, 41001, 41001, 41002])

    class _Socket:
        def __init__(self, *args: Any) -> None:
            self.port = 0

        def __enter__(self) -> _Socket:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

        def bind(self, address: tuple[str, int]) -> None:
            self.port = next(offered)

        def getsockname(self) -> tuple[str, int]:
            return ("127.0.0.1", self.port)

    monkeypatch.setattr(procs, "_GIVEN", set())
    monkeypatch.setattr(socket, "socket", _Socket)
    assert [procs.free_port(), procs.free_port()] == [41001, 41002]


def test_ports_are_free_and_distinct() -> None:
    ports = [procs.free_port() for _ in range(50)]
    assert len(set(ports)) == len(ports)
    for port in ports[:5]:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))  # free: nothing holds it
