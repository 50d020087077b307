"""A TCP relay for outage tests: nothing listens on its port until `open`, so connecting
is refused (a broker or database that is down); once open it forwards every connection
to `target`. `pause` stalls every connection (bytes wait, nothing is closed: a link
that hangs); `close` cuts every connection; a new relay on the same `port` brings the
server back at the same address.

A paused relay still takes what its clients send into its socket buffers, and its
host answers their TCP keepalives: to a client that only waits for an answer the link
looks alive for ever. With a small `receive_buffer` the relay soon takes nothing
more, so a client with more to send sees a dead link, as when packets are dropped,
and its TCP_USER_TIMEOUT applies. (Dropping packets on loopback takes privileges a
test does not have.)"""

from __future__ import annotations

import selectors
import socket
import threading

from ports import free_port


class TcpRelay:
    def __init__(
        self, target: tuple[str, int], port: int | None = None, receive_buffer: int | None = None
    ) -> None:
        self.target = target
        self.port = port or free_port()
        self.receive_buffer = receive_buffer  # bytes, for what clients send; None: the OS's
        self._selector = selectors.DefaultSelector()
        self._stop = threading.Event()
        self._paused = threading.Event()
        self._thread = threading.Thread(target=self._run, name="test-tcp-relay", daemon=True)

    def open(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if self.receive_buffer is not None:  # accepted connections inherit it
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.receive_buffer)
        listener.bind(("127.0.0.1", self.port))
        listener.listen()
        self._selector.register(listener, selectors.EVENT_READ, None)
        self._thread.start()

    def pause(self) -> None:
        """Forward nothing more, either way, until `resume`; connections stay open."""
        self._paused.set()

    def resume(self) -> None:
        self._paused.clear()

    def close(self) -> None:
        """Cut every connection and stop listening (again: nothing more)."""
        if self._selector.get_map() is None:
            return  # closed already
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)
        for key in list(self._selector.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        self._selector.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            if self._paused.is_set():
                self._stop.wait(0.05)  # paused: poll for resume or stop
                continue
            for key, _events in self._selector.select(timeout=0.05):
                sock: socket.socket = key.fileobj  # type: ignore[assignment]
                if key.data is None:
                    self._accept(sock)
                else:
                    self._forward(sock, key.data)

    def _accept(self, listener: socket.socket) -> None:
        client, _address = listener.accept()
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            client.close()
            return
        self._selector.register(client, selectors.EVENT_READ, upstream)
        self._selector.register(upstream, selectors.EVENT_READ, client)

    def _forward(self, sock: socket.socket, peer: socket.socket) -> None:
        if sock.fileno() < 0:
            # Its peer, ready in the same round, ended the pair already. (Unregistering
            # it again raised and ended the relay's thread: every connection through it
            # hung, new ones too, accepted by the kernel and never answered.)
            return
        try:
            data = sock.recv(65536)
            if data:
                peer.sendall(data)
                return
        except OSError:
            pass
        for end in (sock, peer):
            self._selector.unregister(end)
            end.close()
