"""A pass-through HTTP proxy that stalls one blob mid-body until released (for kill tests)."""
from __future__ import annotations

import http.server
import socketserver
import threading

import requests


class StallProxy:
    def __init__(self, upstream: str, stall_digest: str, after: int = 4096):
        self.upstream = upstream.rstrip("/")
        self.stall_digest = stall_digest
        self.after = after
        self.stalled = threading.Event()     # set once the stalled blob has sent `after` bytes
        self.release = threading.Event()
        self.server = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> "StallProxy":
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _relay(self, method: str) -> None:
                up = requests.request(method, proxy.upstream + self.path, stream=True,
                                      headers={k: v for k, v in self.headers.items()
                                               if k.lower() not in ("host", "connection")},
                                      allow_redirects=False, timeout=30)
                self.send_response(up.status_code)
                for k, v in up.headers.items():
                    if k.lower() not in ("connection", "transfer-encoding", "keep-alive"):
                        self.send_header(k, v)
                self.send_header("Connection", "close")
                self.end_headers()
                if method == "HEAD":
                    return
                sent = 0
                stall = proxy.stall_digest in self.path
                for chunk in up.raw.stream(4096, decode_content=False):
                    if stall and sent + len(chunk) > proxy.after:
                        head = proxy.after - sent
                        self.wfile.write(chunk[:head])
                        self.wfile.flush()
                        proxy.stalled.set()
                        proxy.release.wait(60)
                        stall = False
                        chunk = chunk[head:]
                    self.wfile.write(chunk)
                    sent += len(chunk)
                self.close_connection = True

            def do_GET(self):
                self._relay("GET")

            def do_HEAD(self):
                self._relay("HEAD")

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True

        self.server = Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.release.set()
        if self.server:
            self.server.shutdown()
            self.server.server_close()
