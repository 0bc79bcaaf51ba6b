#!/usr/bin/env python3
"""Server benchmark: end-to-end latency through `pe serve` with pre-booted (warm) VMs against
cold boots, the pipeline overhead (end-to-end minus the program's own time in the guest), cache-hit
latency, throughput with 1 and 2 slots, and the memory of a waiting VM. Every figure comes from
one invocation on one machine, so the ratios hold wherever it runs.

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
    def __init__(self, warm, slots=1, queue=64):
        self.port = free_port()
        self.data = tempfile.mkdtemp(prefix="pe-bench-data-")
        self.work = tempfile.mkdtemp(prefix="pe-bench-work-")
        env = dict(os.environ, PE_WARM=warm, PE_DATA_DIR=self.data, PE_WORK_DIR=self.work,
                   PE_SLOTS=str(slots), PE_QUEUE=str(queue), PE_RATE_PER_MINUTE="0", RUST_LOG="warn")
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

    def qemu_rss_kib(self):
        total, count = 0, 0
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                cmd = open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace")
                if "qemu-system" in cmd and self.work in cmd:
                    for line in open(f"/proc/{pid}/status"):
                        if line.startswith("VmRSS:"):
                            total += int(line.split()[1])
                            count += 1
            except OSError:
                pass
        return total, count

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


def latency(server, body, runs, warm_n):
    e2e, overhead, run_ms = [], [], []
    for i in range(runs):
        if warm_n:
            server.wait_warm(warm_n)  # a steady state: the replacement has booted
        b = dict(body, stdin=f"run {i} {time.time()}")
        took, result = server.run(b)
        e2e.append(took)
        run_ms.append(result["timings_ms"]["run"])
        overhead.append(took - result["timings_ms"]["run"])
        if warm_n and result["backend"].get("start") != "warm":
            raise SystemExit(f"expected a warm VM, got {result['backend']}")
    return e2e, overhead, run_ms


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=8)
    args = ap.parse_args()
    subprocess.run(["cargo", "build", "--quiet", "--release", "-p", "server"], cwd=ROOT, check=True)
    print(f"Server benchmark, {args.runs} runs per case, {os.cpu_count()} cores, "
          f"{time.strftime('%Y-%m-%d')}, command: bench/server.py --runs {args.runs}\n")

    cold = Server("none")
    warm = Server("busybox=1,python=1,gcc=1")
    rows = []
    try:
        for name, body in CASES:
            c_e2e, c_over, c_run = latency(cold, body, args.runs, 0)
            w_e2e, w_over, w_run = latency(warm, body, args.runs, 3)
            rows.append((name, c_e2e, c_over, c_run, w_e2e, w_over, w_run))
        rss, count = warm.qemu_rss_kib()
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
        warm.stop()

    print("| case | cold p50 ms | cold p95 | warm p50 ms | warm p95 | program in guest p50 | "
          "overhead cold p50 | overhead warm p50 | warm / cold |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, c_e2e, c_over, c_run, w_e2e, w_over, w_run in rows:
        ratio = statistics.median(w_e2e) / statistics.median(c_e2e)
        print(f"| {name} | {statistics.median(c_e2e):.0f} | {pct(c_e2e, 95):.0f} | "
              f"{statistics.median(w_e2e):.0f} | {pct(w_e2e, 95):.0f} | {statistics.median(w_run):.0f} | "
              f"{statistics.median(c_over):.0f} | {statistics.median(w_over):.0f} | {ratio:.2f} |")
    print()
    print(f"Cache hit (200 requests, loopback, JSON form): p50 {statistics.median(hits):.2f} ms, "
          f"p99 {pct(hits, 99):.2f} ms, max {max(hits):.2f} ms.")
    print(f"Memory of waiting VMs: {count} QEMU processes, {rss / 1024:.0f} MiB RSS in all, "
          f"{rss / 1024 / max(count, 1):.0f} MiB each (1 GiB guests; pages are only touched as used).")
    print()

    # Throughput: a steady stream (more jobs than slots at all times), busybox `true`.
    print("| throughput, 16 busybox `true` jobs | slots | jobs/s | per-job guest time p50 ms | "
          "jobs/s / (slots / guest time) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for warm_spec in ["none", "busybox=2"]:
        for slots in [1, 2]:
            server = Server(warm_spec, slots=slots)
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
            label = "cold" if warm_spec == "none" else "warm"
            print(f"| {label} | {slots} | {rate:.2f} | {guest * 1000:.0f} | {rate / ideal:.2f} |")


if __name__ == "__main__":
    sys.exit(main())
