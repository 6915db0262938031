"""A TCP proxy the tests can cut and restore: a real server made unreachable, then back."""

from __future__ import annotations

import contextlib
import socket
import threading


class Proxy:
    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.open = True
        self.flowing = threading.Event()
        """Cleared by :meth:`hold`: what the server sends waits in the proxy."""
        self.flowing.set()
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            if not self.open:
                client.close()
                continue
            upstream = socket.create_connection(self.target)
            with self.lock:
                self.sockets += [client, upstream]
            for source, sink, gate in ((client, upstream, None), (upstream, client, self.flowing)):
                threading.Thread(target=self._pipe, args=(source, sink, gate), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket, gate: threading.Event | None) -> None:
        try:
            while data := source.recv(65536):
                if gate is not None:
                    gate.wait()
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.close()

    def cut(self) -> None:
        """Every open connection drops; new ones are closed at once."""
        self.open = False
        with self.lock:
            for end in self.sockets:
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)
                end.close()
            self.sockets.clear()

    def hold(self) -> None:
        """The server's answers and messages stop at the proxy (a stalled network)."""
        self.flowing.clear()

    def release(self) -> None:
        self.flowing.set()

    def restore(self) -> None:
        self.open = True

    def close(self) -> None:
        self.release()
        self.cut()
        self.server.close()
