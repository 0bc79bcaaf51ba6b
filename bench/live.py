#!/usr/bin/env python3
"""Live-run benchmark: through `pe serve` with a warm (snapshot) python VM,

1. time to the first output byte against the whole run, for a program that prints a line,
   sleeps 1 s and prints another (`GET /api/v1/run/live`);
2. a live run's overhead against `POST /api/v1/run` for the same job (`print(1)`), the two
   forms alternating, each run made unique so none is a cache hit.

Every figure comes from one invocation on one machine. The WebSocket client is the few lines
below (RFC 6455, text frames only): no package to install.

    bench/live.py [--runs N] [--pe target/release/pe]

Prints Markdown tables for docs/PERFORMANCE.md.
"""

import argparse
import base64
import http.client
import json
import os
import shutil
import socket
import statistics
import struct
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, pe):
        self.port = free_port()
        self.data = tempfile.mkdtemp(prefix="pe-bench-data-")
        self.work = tempfile.mkdtemp(prefix="pe-bench-work-")
        env = dict(os.environ, PE_WARM="python=1", PE_WARM_START="snapshot", PE_DATA_DIR=self.data,
                   PE_WORK_DIR=self.work, PE_SLOTS="1", PE_RATE_PER_MINUTE="0", RUST_LOG="warn")
        self.proc = subprocess.Popen([pe, "serve", "--listen", f"127.0.0.1:{self.port}"], env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("GET", "/readyz")
                body = conn.getresponse().read()
                if json.loads(body).get("warm_ready", 0) >= 1:
                    return
            except (OSError, ValueError):
                pass
            time.sleep(0.2)
        raise SystemExit("pe serve did not get a warm python VM ready")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=20)
        shutil.rmtree(self.data, ignore_errors=True)
        shutil.rmtree(self.work, ignore_errors=True)

    def post(self, body):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        conn.request("POST", "/api/v1/run", json.dumps(body), {"Content-Type": "application/json"})
        response = conn.getresponse()
        result = json.loads(response.read())
        if response.status != 200:
            raise SystemExit(f"POST /api/v1/run: {response.status} {result}")
        return result


class Live:
    """A minimal WebSocket client for /api/v1/run/live."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=120)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((
            "GET /api/v1/run/live HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += self.sock.recv(1)
        if b" 101 " not in head.split(b"\r\n")[0]:
            raise SystemExit(f"no WebSocket: {head!r}")

    def send_text(self, text):
        payload = text.encode()
        mask = os.urandom(4)
        n = len(payload)
        if n < 126:
            header = struct.pack("!BB", 0x81, 0x80 | n)
        elif n < 1 << 16:
            header = struct.pack("!BBH", 0x81, 0x80 | 126, n)
        else:
            header = struct.pack("!BBQ", 0x81, 0x80 | 127, n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def _exact(self, n):
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise EOFError
            data += chunk
        return data

    def events(self):
        """Yields (arrival time, event) until the server closes."""
        while True:
            b0, b1 = self._exact(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack("!H", self._exact(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", self._exact(8))[0]
            payload = self._exact(n)
            opcode = b0 & 0x0F
            if opcode == 8:
                self.sock.close()
                return
            if opcode == 1:
                yield time.perf_counter(), json.loads(payload)


def live_run(port, body):
    """(seconds to the first stdout byte, seconds to the exit event, the result)."""
    started = time.perf_counter()
    live = Live(port)
    live.send_text(json.dumps(body))
    first = None
    for at, event in live.events():
        if event["type"] == "stdout" and first is None:
            first = at - started
        if event["type"] == "exit":
            return first, at - started, event["result"]
        if event["type"] == "error":
            raise SystemExit(f"live run refused: {event}")
    raise SystemExit("the live socket closed without an exit event")


def python(program, nonce):
    # A unique comment: no run is a cache hit. stdin is given, as a cacheable live run has it.
    return {"container": "python", "stdin": "",
            "files": [{"path": "main.py", "content": f"# run {nonce}\n{program}"}]}


def median_ms(values):
    return round(statistics.median(values) * 1000)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--pe", default=os.path.join(ROOT, "target", "release", "pe"))
    args = parser.parse_args()
    server = Server(args.pe)
    try:
        nonce = 0
        sleeper = "import time\nprint('first', flush=True)\ntime.sleep(1)\nprint('second')\n"
        firsts, totals = [], []
        for _ in range(args.runs):
            nonce += 1
            first, total, result = live_run(server.port, python(sleeper, nonce))
            assert result["stdout"] == "first\nsecond\n", result
            firsts.append(first)
            totals.append(total)
        post_totals, live_totals = [], []
        for _ in range(args.runs):
            nonce += 1
            started = time.perf_counter()
            result = server.post(python("print(1)", nonce))
            post_totals.append(time.perf_counter() - started)
            assert result["stdout"] == "1\n", result
            nonce += 1
            _, total, result = live_run(server.port, python("print(1)", nonce))
            assert result["stdout"] == "1\n", result
            live_totals.append(total)
    finally:
        server.stop()

    print(f"Live runs, warm python VMs (snapshot clones), {args.runs} runs each, medians:\n")
    print("| program | first output byte | exit event | first / exit |")
    print("| --- | --- | --- | --- |")
    f, t = median_ms(firsts), median_ms(totals)
    print(f"| print, sleep 1 s, print | {f} ms | {t} ms | {f / t:.2f} |")
    print()
    print("| python `print(1)` | POST /api/v1/run | live | live / POST |")
    print("| --- | --- | --- | --- |")
    p, l = median_ms(post_totals), median_ms(live_totals)
    print(f"| end to end | {p} ms | {l} ms | {l / p:.2f} |")


if __name__ == "__main__":
    main()
