"""A tiny system under test for load-test tools, on 127.0.0.1 only.

Routes: ``/`` answers 200, ``/fail`` 500, ``/slow`` waits (``?ms=200`` by default) then
answers 200. Run it on its own (``python -m loadbell.testing.target --port 0`` prints the
URL on its first line) so the tool and the target do not share one Python's CPU.
"""

from __future__ import annotations

import argparse
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as load tools expect
    disable_nagle_algorithm = True  # headers and body in separate writes must not wait 40 ms

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        status = 500 if url.path == "/fail" else 200
        if url.path == "/slow":
            ms = float(parse_qs(url.query).get("ms", ["200"])[0])
            time.sleep(ms / 1000)
        body = b"fail" if status == 500 else b"ok"
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # a load test would flood the terminal


def serve(port: int = 0) -> ThreadingHTTPServer:
    """A started-but-not-serving server on 127.0.0.1 (call ``serve_forever``)."""
    server = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
    server.daemon_threads = True
    return server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="0: pick a free port")
    args = parser.parse_args(argv)
    server = serve(args.port)
    print(f"http://127.0.0.1:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        sys.stdout.flush()


if __name__ == "__main__":
    main()
