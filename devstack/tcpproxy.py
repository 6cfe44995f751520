"""A loopback TCP proxy in front of one server, that a test or the soak can cut and restore.

:class:`TcpProxy` listens on a free port of 127.0.0.1 and forwards every connection to its
upstream (``host:port``) in both directions, one thread per direction. :meth:`TcpProxy.cut`
is a network cut: every live connection is dropped (reset) and new connections are accepted
but black-holed (nothing forwarded, nothing answered) until :meth:`TcpProxy.restore`, so a
client sees what a partition shows it: resets on the connections it had, timeouts on new ones.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Iterator

BUFFER_BYTES = 65536
ACCEPT_POLL_SECONDS = 0.2
"""How often the accept loop looks at the stop flag, seconds."""


def _reset(sock: socket.socket) -> None:
    """Close ``sock`` with a TCP RST (SO_LINGER 0), as a cut link's peer would see it."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


class TcpProxy:
    """Forward ``127.0.0.1:<port>`` to ``upstream``; see the module docstring.

    Args:
        upstream_host: the server's address.
        upstream_port: the server's port.

    Attributes:
        port: the proxy's own port (bound in the constructor).
        cuts: how many times :meth:`cut` was called.
    """

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(256)
        self._listener.settimeout(ACCEPT_POLL_SECONDS)
        self.port = int(self._listener.getsockname()[1])
        self.cuts = 0
        self._lock = threading.Lock()
        self._live: set[socket.socket] = set()
        self._held: list[socket.socket] = []
        self._is_cut = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, name="tcp-proxy", daemon=True)

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT``, the address clients use instead of the upstream's."""
        return f"127.0.0.1:{self.port}"

    def start(self) -> TcpProxy:
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop accepting and drop every connection."""
        self._stop.set()
        self._thread.join(timeout=5)
        self._listener.close()
        self._drop_all()

    def cut(self) -> None:
        """Drop every live connection and black-hole new ones until :meth:`restore`."""
        with self._lock:
            self._is_cut = True
            self.cuts += 1
        self._drop_all()

    def restore(self) -> None:
        """Forward new connections again (the black-holed ones are reset)."""
        with self._lock:
            self._is_cut = False
            held, self._held = self._held, []
        for sock in held:
            _reset(sock)

    @contextlib.contextmanager
    def cut_for(self) -> Iterator[None]:
        """:meth:`cut` on entry, :meth:`restore` on exit."""
        self.cut()
        try:
            yield
        finally:
            self.restore()

    def _drop_all(self) -> None:
        with self._lock:
            live, self._live = self._live, set()
            held = self._held if self._stop.is_set() else []
        for sock in live | set(held):
            _reset(sock)

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                if self._is_cut:
                    self._held.append(client)
                    continue
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                _reset(client)
                continue
            server.settimeout(None)
            client.settimeout(None)
            with self._lock:
                self._live.update((client, server))
            ends = [2]  # pumps still running for this pair; the last one closes both sockets
            for src, dst in ((client, server), (server, client)):
                threading.Thread(
                    target=self._pump, args=(src, dst, ends), name="tcp-proxy-pump", daemon=True
                ).start()

    def _pump(self, src: socket.socket, dst: socket.socket, ends: list[int]) -> None:
        try:
            while True:
                data = src.recv(BUFFER_BYTES)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass  # reset by a cut or by either side
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)
        with self._lock:
            ends[0] -= 1
            last = ends[0] == 0
            if last:
                self._live.discard(src)
                self._live.discard(dst)
        if last:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.close()
