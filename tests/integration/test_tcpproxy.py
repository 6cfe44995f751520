"""``devstack.tcpproxy.TcpProxy``: forwards, cuts (live connections reset, new ones unanswered)
and restores, over real loopback sockets to a real echo server."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

import pytest

from devstack.tcpproxy import TcpProxy


@pytest.fixture
def echo_port() -> Iterator[int]:
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):  # the proxy's cut resets this side too
            while data := conn.recv(4096):
                conn.sendall(data)

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield int(server.getsockname()[1])
    stop.set()
    thread.join(timeout=5)
    server.close()


def _echo(port: int, payload: bytes, timeout: float = 2.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(payload)
        return sock.recv(4096)


def test_a_cut_resets_live_connections_blackholes_new_ones_and_a_restore_forwards_again(
    echo_port: int,
) -> None:
    proxy = TcpProxy("127.0.0.1", echo_port).start()
    try:
        assert _echo(proxy.port, b"before") == b"before"
        live = socket.create_connection(("127.0.0.1", proxy.port), timeout=2)
        live.sendall(b"x")
        assert live.recv(16) == b"x"

        proxy.cut()
        with contextlib.suppress(OSError):
            live.sendall(b"y")
        try:
            got = live.recv(16)
        except ConnectionResetError:
            got = b""
        assert got == b"", "the live connection still answers after the cut"
        live.close()
        with pytest.raises(TimeoutError):  # accepted, never answered
            _echo(proxy.port, b"during", timeout=0.5)

        proxy.restore()
        assert _echo(proxy.port, b"after") == b"after"
        assert proxy.cuts == 1
    finally:
        proxy.close()
