#!/usr/bin/env python3
"""Cluster benchmark, on loopback, with the sandbox backend (no VM: what is measured is the
queue, not the VM):

1. The latency the queue hop adds: the same sequential runs (`echo`, cache bypassed) through a
   local `pe serve --backend sandbox` and through `pe serve --nats` + one `pe worker`; p50/p99
   of each and the difference.
2. Throughput: jobs/s with 1 and with 2 workers (one slot each), CONCURRENCY clients at once.

    bench/cluster.py [--runs 100] [--jobs 120] [--concurrency 8]

Needs root (the sandbox), scripts/setup.sh (nats-server, postgresql, the busybox image) and a
release build (target/release/pe, built if missing; PE_BIN=... to use another binary). Uses scripts/cluster for the cluster.
Prints a Markdown table for docs/PERFORMANCE.md.
"""

import argparse
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PE = os.environ.get("PE_BIN", os.path.join(ROOT, "target", "release", "pe"))
BASE = 38080  # scripts/cluster's port block for this bench
CLUSTER_DIR = "/tmp/pe-cluster-bench"


OVERHEAD = {}  # port -> [latency - (boot + run)], ms: everything but the job itself


def run(port, n):
    """One run (cache bypassed); returns the latency in ms, and records the overhead."""
    body = json.dumps(
        {"container": "busybox", "files": [{"path": "main.sh", "content": f"echo {n}"}]}
    )
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    t0 = time.perf_counter()
    conn.request("POST", "/api/v1/run?cache=bypass", body, {"content-type": "application/json"})
    resp = conn.getresponse()
    data = resp.read()
    ms = (time.perf_counter() - t0) * 1000
    conn.close()
    if resp.status != 200:
        raise RuntimeError(f"run {n}: HTTP {resp.status}: {data[:300]!r}")
    answer = json.loads(data)
    if answer["stdout"] != f"{n}\n":
        raise RuntimeError(f"run {n}: {answer}")
    t = answer["timings_ms"]
    OVERHEAD.setdefault(port, []).append(ms - t["boot"] - t["run"])
    return ms


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


def sequential(port, runs):
    run(port, -1)  # warm up
    OVERHEAD.pop(port, None)
    return [run(port, i) for i in range(runs)]


def throughput(port, jobs, concurrency):
    counter = iter(range(jobs))
    lock = threading.Lock()
    errors = []

    def client():
        while True:
            with lock:
                n = next(counter, None)
            if n is None:
                return
            try:
                run(port, 100000 + n)
            except Exception as e:  # noqa: BLE001
                errors.append(e)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    secs = time.perf_counter() - t0
    if errors:
        raise RuntimeError(f"{len(errors)} runs failed, first: {errors[0]}")
    return jobs / secs


def wait_ready(port):
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/readyz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"nothing ready on port {port}")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--jobs", type=int, default=120)
    ap.add_argument("--concurrency", type=int, default=8)
    args = ap.parse_args()
    if not os.path.exists(PE):
        subprocess.run(["cargo", "build", "--quiet", "--release", "-p", "server"], cwd=ROOT, check=True)

    # The local pool: pe serve --backend sandbox, one slot.
    data = tempfile.mkdtemp(prefix="pe-bench-local-")
    port = free_port()
    env = dict(os.environ, PE_RATE_PER_MINUTE="0", RUST_LOG="warn")
    local = subprocess.Popen(
        [PE, "--backend", "sandbox", "serve", "--listen", f"127.0.0.1:{port}",
         "--data-dir", data, "--slots", "1", "--warm", "none"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(port)
        local_ms = sequential(port, args.runs)
    finally:
        local.send_signal(signal.SIGTERM)
        local.wait()

    cluster_env = dict(os.environ, PE_BIN=PE, PE_BACKEND="sandbox", PE_CLUSTER_PORT=str(BASE),
                       PE_CLUSTER_DIR=CLUSTER_DIR, PE_RATE_PER_MINUTE="0")
    script = os.path.join(ROOT, "scripts", "cluster")
    subprocess.run([script, "down"], env=cluster_env, check=True, capture_output=True)
    subprocess.run([script, "up"], env=cluster_env, check=True, capture_output=True)
    try:
        run(BASE, -1)  # warm up
        two = throughput(BASE, args.jobs, args.concurrency)
        # Then one worker: the second stops (SIGTERM: it takes no more jobs and has none).
        with open(os.path.join(CLUSTER_DIR, "worker2.pid")) as f:
            os.kill(int(f.read()), signal.SIGTERM)
        time.sleep(3)  # its last pull request expires
        one = throughput(BASE, args.jobs, args.concurrency)
        remote_ms = sequential(BASE, args.runs)
    finally:
        subprocess.run([script, "down"], env=cluster_env, capture_output=True)

    local_over, remote_over = OVERHEAD[port], OVERHEAD[BASE][-args.runs:]
    lp50, lp99 = pct(local_ms, 50), pct(local_ms, 99)
    rp50, rp99 = pct(remote_ms, 50), pct(remote_ms, 99)
    print(f"| path ({args.runs} sequential `echo` runs, sandbox, cache bypassed) | p50 ms | p99 ms |")
    print("| --- | ---: | ---: |")
    print(f"| local pool (`pe serve --backend sandbox`) | {lp50:.1f} | {lp99:.1f} |")
    print(f"| queue hop (`pe serve --nats` -> JetStream -> `pe worker`) | {rp50:.1f} | {rp99:.1f} |")
    print(f"| difference | {rp50 - lp50:+.1f} | {rp99 - lp99:+.1f} |")
    print()
    print("| overhead: latency - (boot + run) of the same runs | p50 ms | p99 ms |")
    print("| --- | ---: | ---: |")
    print(f"| local pool | {pct(local_over, 50):.1f} | {pct(local_over, 99):.1f} |")
    print(f"| queue hop | {pct(remote_over, 50):.1f} | {pct(remote_over, 99):.1f} |")
    print(f"| added by the hop | {pct(remote_over, 50) - pct(local_over, 50):+.1f} | "
          f"{pct(remote_over, 99) - pct(local_over, 99):+.1f} |")
    print()
    print(f"| workers (1 slot each), {args.jobs} jobs, {args.concurrency} clients | jobs/s |")
    print("| --- | ---: |")
    print(f"| 1 | {one:.1f} |")
    print(f"| 2 | {two:.1f} |")
    print(f"\n(mean of local: {statistics.mean(local_ms):.1f} ms, cluster: {statistics.mean(remote_ms):.1f} ms)")


if __name__ == "__main__":
    sys.exit(main())
