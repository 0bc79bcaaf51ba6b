#!/usr/bin/env python3
"""Warm-path benchmark, before against after: the same jobs through two `pe` binaries serving
side by side in one invocation (their runs alternate), each with warm VMs restored from
snapshots.

For busybox `true`, python `print(1)` and a gcc hello compile + run: end-to-end latency as
the client sees it (p50), the program's own time (`timings_ms.exec`: from its execve to its
exit; a binary without it reports `run`, which then includes creating the container) and the
overhead, end to end less the program's own time. Runs are uncached (a nonce per run) and
spaced so each job finds its VM ready.

    bench/warm_path.py --before /tmp/pe-before --after target/release/pe [--runs N]

Prints a Markdown table for docs/PERFORMANCE.md.
"""

import argparse
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import time

CASES = [
    ("busybox `true`", "busybox", "main.sh", "true # {n}\n"),
    ("python `print(1)`", "python", "main.py", "print(1)  # {n}\n"),
    ("gcc hello.c compile + run", "gcc", "main.c",
     "#include <stdio.h>\n// {n}\nint main(void) {{ puts(\"hello\"); return 0; }}\n"),
]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(conn, method, path, body=None):
    headers = {"Content-Type": "application/json"} if body is not None else {}
    conn.request(method, path, body, headers)
    response = conn.getresponse()
    return response.status, response.read()


class Server:
    def __init__(self, pe):
        self.port = free_port()
        self.data = tempfile.mkdtemp(prefix="pe-bench-data-")
        self.work = tempfile.mkdtemp(prefix="pe-bench-work-")
        env = dict(os.environ, PE_WARM="busybox=1,python=1,gcc=1", PE_WARM_START="snapshot",
                   PE_DATA_DIR=self.data, PE_WORK_DIR=self.work, PE_SLOTS="1",
                   PE_RATE_PER_MINUTE="0", RUST_LOG="warn")
        self.proc = subprocess.Popen([pe, "serve", "--listen", f"127.0.0.1:{self.port}"], env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.wait_ready(3, 180)

    def conn(self):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)

    def wait_ready(self, warm, within):
        deadline = time.time() + within
        while time.time() < deadline:
            try:
                status, body = request(self.conn(), "GET", "/readyz")
                if status == 200 and json.loads(body).get("warm_ready", 0) >= warm:
                    return
            except (OSError, ValueError):
                pass
            time.sleep(0.2)
        raise SystemExit("the warm VMs did not get ready")

    def run(self, container, path, content):
        body = json.dumps({"container": container, "files": [{"path": path, "content": content}]})
        started = time.perf_counter()
        status, answer = request(self.conn(), "POST", "/api/v1/run", body)
        total = (time.perf_counter() - started) * 1000
        result = json.loads(answer)
        if status != 200 or result["status"] != "exited" or result.get("exit_code") != 0:
            raise SystemExit(f"{container}: {status} {result}")
        timings = result["timings_ms"]
        return total, timings.get("exec") or timings["run"], result["backend"]

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)
        shutil.rmtree(self.data, ignore_errors=True)
        shutil.rmtree(self.work, ignore_errors=True)


def measure(before_pe, after_pe, runs):
    """Both servers up at once, their runs alternating: a change in the machine's load hits
    both alike."""
    servers = {"before": Server(before_pe), "after": Server(after_pe)}
    samples = {side: {name: ([], []) for name, *_ in CASES} for side in servers}
    backends = {}
    try:
        nonce = 0
        for name, container, path, template in CASES:
            for _ in range(runs):
                for side, server in servers.items():
                    nonce += 1
                    server.wait_ready(3, 60)
                    time.sleep(0.5)
                    total, program, backend = server.run(container, path, template.format(n=nonce))
                    samples[side][name][0].append(total)
                    samples[side][name][1].append(program)
                    backends[(side, name)] = backend
    finally:
        for server in servers.values():
            server.stop()
    figures = {}
    for side in servers:
        figures[side] = {}
        for name, *_ in CASES:
            totals, execs = samples[side][name]
            figures[side][name] = (statistics.median(totals), statistics.median(execs),
                                   statistics.median([t - e for t, e in zip(totals, execs)]),
                                   backends[(side, name)])
    return figures


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--before", required=True)
    parser.add_argument("--after", required=True)
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    figures = measure(args.before, args.after, args.runs)
    before, after = figures["before"], figures["after"]
    print(f"Warm path (snapshot clones, 1 slot), {args.runs} uncached runs per case, p50 ms:\n")
    print("| case | before: end to end | program | overhead | after: end to end | program (exec) "
          "| overhead | after / before |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, *_ in CASES:
        bt, be, bo, _ = before[name]
        at, ae, ao, backend = after[name]
        print(f"| {name} | {bt:.0f} | {be:.0f} | {bo:.0f} | {at:.0f} | {ae:.0f} | {ao:.0f} "
              f"| {at / bt:.2f} |")
    print()
    print("after: container =", {name: after[name][3].get("container") for name, *_ in CASES})


if __name__ == "__main__":
    main()
