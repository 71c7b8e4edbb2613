"""A pass-through HTTP proxy in front of the real scorer that records what a client sent and got.

It lets a test see what the Splunk command did on the wire (how many events each request held,
in what order, on how many TCP connections, with which token) while the answers come from the
real service. ``answer_next`` makes it answer a few requests itself with a status the service does
give (503 when full, 500), to see how the client copes, before it forwards again. ``body_limit``
makes it refuse larger bodies with 413 and an HTML page, as nginx's ``client_max_body_size`` does.
"""

from __future__ import annotations

import http.client
import itertools
import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

FORWARDED_REQUEST_HEADERS = ("Content-Type", "Accept", "Authorization", "Content-Encoding")
FORWARDED_RESPONSE_HEADERS = ("Content-Type", "Retry-After")
# nginx's answer to a body over client_max_body_size
TOO_LARGE_PAGE = (
    b"<html>\r\n<head><title>413 Request Entity Too Large</title></head>\r\n<body>\r\n"
    b"<center><h1>413 Request Entity Too Large</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n"
)


@dataclass
class Exchange:
    connection: int  # which TCP connection of the client carried it (1, 2, ...)
    method: str
    path: str
    authorization: str | None
    request: bytes
    status: int
    response: bytes

    @property
    def events(self) -> list[Any]:
        value = json.loads(self.request)
        return value if isinstance(value, list) else [value]


class RecordingProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.exchanges: list[Exchange] = []
        self._injected: list[tuple[int, bytes, dict[str, str]]] = []
        self.body_limit: int | None = None
        self._lock = threading.Lock()
        connection_ids = itertools.count(1)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the service

            def setup(self) -> None:
                super().setup()
                self.connection_id = next(connection_ids)
                self.upstream: http.client.HTTPConnection | None = None

            def finish(self) -> None:
                if self.upstream is not None:
                    self.upstream.close()
                super().finish()

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                self._relay()

            def do_GET(self) -> None:
                self._relay()

            def _relay(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                injected = proxy._take_injected()
                if proxy.body_limit is not None and len(body) > proxy.body_limit:
                    status, data, headers = 413, TOO_LARGE_PAGE, {"Content-Type": "text/html"}
                elif injected is not None:
                    status, data, headers = injected
                else:
                    status, data, headers = self._forward(body)
                with proxy._lock:
                    proxy.exchanges.append(
                        Exchange(
                            self.connection_id,
                            self.command,
                            self.path,
                            self.headers.get("Authorization"),
                            body,
                            status,
                            data,
                        )
                    )
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _forward(self, body: bytes) -> tuple[int, bytes, dict[str, str]]:
                if self.upstream is None:
                    self.upstream = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=300)
                headers = {
                    name: self.headers[name] for name in FORWARDED_REQUEST_HEADERS if self.headers[name]
                }
                self.upstream.request(self.command, self.path, body=body or None, headers=headers)
                response = self.upstream.getresponse()
                data = response.read()
                kept = {name: response.getheader(name) for name in FORWARDED_RESPONSE_HEADERS}
                return response.status, data, {name: value for name, value in kept.items() if value}

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def answer_next(
        self, count: int, status: int, error: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        """Answer the next ``count`` requests with ``status`` and the service's error shape."""
        body = json.dumps({"error": {"status": status, **error}}).encode()
        with self._lock:
            self._injected += [
                (status, body, {"Content-Type": "application/json", **(headers or {})})
            ] * count

    def answer_next_with(self, status: int, body: bytes) -> None:
        """Answer the next request with ``status`` and ``body`` as they are (JSON)."""
        with self._lock:
            self._injected.append((status, body, {"Content-Type": "application/json"}))

    def _take_injected(self) -> tuple[int, bytes, dict[str, str]] | None:
        with self._lock:
            return self._injected.pop(0) if self._injected else None

    def scoring(self) -> list[Exchange]:
        return [e for e in self.exchanges if e.path.startswith("/v1/score")]

    def __enter__(self) -> RecordingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
