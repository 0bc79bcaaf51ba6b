#!/usr/bin/env python3
"""Server benchmark: end-to-end latency through `pe serve` with warm VMs, made either way
(`PE_WARM_START=boot`: pre-booted; `snapshot`: restored from a saved template), against cold
boots; the pipeline overhead (end-to-end minus the program's own time in the guest); cache-hit
latency; throughput with 1 and 2 slots; and the host memory of a waiting VM. Every figure comes
from one invocation on one machine, so the ratios hold wherever it runs.

    bench/server.py [--runs N]        (needs scripts/setup.sh and the busybox, python, gcc images)

Prints Markdown tables for docs/PERFORMANCE.md.
"""

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PE = os.path.join(ROOT, "target", "release", "pe")

CASES = [
    ("busybox `true`", {"container": "busybox", "files": [{"path": "main.sh", "content": "true"}]}),
    ("python `print(1)`", {"container": "python", "files": [{"path": "main.py", "content": "print(1)"}]}),
    ("gcc hello.c compile + run", {"container": "gcc", "files": [{"path": "main.c", "content":
        "#include <stdio.h>\nint main(void) { puts(\"hello\"); return 0; }\n"}]}),
]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, warm, slots=1, queue=64, start="snapshot"):
        self.port = free_port()
        self.data = tempfile.mkdtemp(prefix="pe-bench-data-")
        self.work = tempfile.mkdtemp(prefix="pe-bench-work-")
        env = dict(os.environ, PE_WARM=warm, PE_DATA_DIR=self.data, PE_WORK_DIR=self.work,
                   PE_SLOTS=str(slots), PE_QUEUE=str(queue), PE_WARM_START=start, PE_RATE_PER_MINUTE="0", RUST_LOG="warn")
        self.proc = subprocess.Popen([PE, "serve", "--listen", f"127.0.0.1:{self.port}"], env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                status, body = self.get("/readyz")
                if status == 200 and (warm == "none" or json.loads(body)["warm_ready"] >= warm_count(warm)):
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise SystemExit("pe serve did not become ready")

    def get(self, path):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read()

    def run(self, body, bypass=True):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        t0 = time.perf_counter()
        conn.request("POST", "/api/v1/run" + ("?cache=bypass" if bypass else ""), json.dumps(body),
                     {"Content-Type": "application/json"})
        r = conn.getresponse()
        data = r.read()
        took = (time.perf_counter() - t0) * 1000
        if r.status != 200:
            raise SystemExit(f"run failed: {r.status} {data[:300]!r}")
        return took, json.loads(data)

    def wait_warm(self, n):
        deadline = time.time() + 60
        while time.time() < deadline:
            if json.loads(self.get("/readyz")[1])["warm_ready"] >= n:
                return
            time.sleep(0.05)

    def qemu_memory_kib(self):
        """(RSS, private memory, processes) of this server's QEMUs: RSS counts the pages of a
        clone's template RAM file that it maps, private memory only what it has of its own."""
        total, private, count = 0, 0, 0
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                cmd = open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace")
                if "qemu-system" in cmd and self.work in cmd:
                    for line in open(f"/proc/{pid}/smaps_rollup"):
                        if line.startswith("Rss:"):
                            total += int(line.split()[1])
                        if line.startswith(("Private_Clean:", "Private_Dirty:")):
                            private += int(line.split()[1])
                    count += 1
            except OSError:
                pass
        return total, private, count

    def metric(self, name):
        for line in self.get("/metrics")[1].decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return 0.0

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.data, ignore_errors=True)
        shutil.rmtree(self.work, ignore_errors=True)


def warm_count(spec):
    return sum(int(item.split("=")[1]) for item in spec.split(",")) if spec != "none" else 0


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


def latency(server, body, runs, warm_n, start=None):
    e2e, overhead, run_ms = [], [], []
    for i in range(runs):
        if warm_n:
            server.wait_warm(warm_n)  # a steady state: the replacement has booted
        b = dict(body, stdin=f"run {i} {time.time()}")
        took, result = server.run(b)
        e2e.append(took)
        run_ms.append(result["timings_ms"]["run"])
        overhead.append(took - result["timings_ms"]["run"])
        if start and result["backend"].get("start") != start:
            raise SystemExit(f"expected a {start} VM, got {result['backend']}")
    return e2e, overhead, run_ms


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=8)
    args = ap.parse_args()
    subprocess.run(["cargo", "build", "--quiet", "--release", "-p", "server"], cwd=ROOT, check=True)
    print(f"Server benchmark, {args.runs} runs per case, {os.cpu_count()} cores, "
          f"{time.strftime('%Y-%m-%d')}, command: bench/server.py --runs {args.runs}\n")

    spec = "busybox=1,python=1,gcc=1"
    cold = Server("none")
    modes = [("pre-booted", "boot", "warm"), ("snapshot", "snapshot", "snapshot")]
    rows, memory = [], []
    try:
        for label, start, kind in modes:
            server = Server(spec, start=start)
            try:
                for name, body in CASES:
                    e2e, over, run = latency(server, body, args.runs, 3, kind)
                    rows.append((name, label, e2e, over, run))
                rss, private, count = server.qemu_memory_kib()
                templates = server.metric("pe_snapshot_template_bytes") / 1024
                memory.append((label, count, rss, private, templates))
            finally:
                server.stop()
        for name, body in CASES:
            e2e, over, run = latency(cold, body, args.runs, 0, "cold")
            rows.append((name, "cold", e2e, over, run))
        # Cache hits: the same request again and again.
        body = CASES[0][1]
        cold.run(body, bypass=False)
        hits = []
        for _ in range(200):
            took, result = cold.run(body, bypass=False)
            assert result["cached"]
            hits.append(took)
    finally:
        cold.stop()

    print("| case | start | p50 ms | p95 ms | program in guest p50 | overhead p50 | p50 / cold p50 |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for name, _ in CASES:
        cold_p50 = next(statistics.median(r[2]) for r in rows if r[0] == name and r[1] == "cold")
        for label in ["cold", "pre-booted", "snapshot"]:
            _, _, e2e, over, run = next(r for r in rows if r[0] == name and r[1] == label)
            print(f"| {name} | {label} | {statistics.median(e2e):.0f} | {pct(e2e, 95):.0f} | "
                  f"{statistics.median(run):.0f} | {statistics.median(over):.0f} | "
                  f"{statistics.median(e2e) / cold_p50:.2f} |")
    print()
    print(f"Cache hit (200 requests, loopback, JSON form): p50 {statistics.median(hits):.2f} ms, "
          f"p99 {pct(hits, 99):.2f} ms, max {max(hits):.2f} ms.")
    print()
    print("| waiting VMs (1 GiB guests) | QEMUs | RSS each MiB | private each MiB | template RAM files MiB |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for label, count, rss, private, templates in memory:
        print(f"| {label} | {count} | {rss / 1024 / max(count, 1):.0f} | "
              f"{private / 1024 / max(count, 1):.0f} | {templates / 1024:.0f} |")
    print()

    # Throughput: a steady stream (more jobs than slots at all times), busybox `true`.
    print("| throughput, 16 busybox `true` jobs | slots | jobs/s | per-job guest time p50 ms | "
          "jobs/s / (slots / guest time) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for label, warm_spec, start in [("cold", "none", "boot"), ("pre-booted", "busybox=2", "boot"),
                                    ("snapshot", "busybox=2", "snapshot")]:
        for slots in [1, 2]:
            server = Server(warm_spec, slots=slots, start=start)
            try:
                jobs = 16
                t0 = time.perf_counter()
                with ThreadPoolExecutor(max_workers=slots * 2) as ex:
                    results = list(ex.map(lambda i: server.run(dict(CASES[0][1], stdin=f"t{i}")), range(jobs)))
                elapsed = time.perf_counter() - t0
            finally:
                server.stop()
            guest = statistics.median([r[1]["timings_ms"]["run"] for r in results]) / 1000
            rate = jobs / elapsed
            ideal = slots / guest
            print(f"| {label} | {slots} | {rate:.2f} | {guest * 1000:.0f} | {rate / ideal:.2f} |")


if __name__ == "__main__":
    sys.exit(main())
