#!/usr/bin/env python3
"""Overload test: an open-loop stream of runs at N times the pool's capacity for a while, against
`pe serve` with real microVMs. Every request must be answered (200, 429 or 503) within its
deadline; reports the p50/p99 latency of accepted runs and the server's peak memory.

    bench/load.py [--factor 10] [--seconds 60] [--slots 1] [--body-mib 0]

The pool's capacity is measured first (sequential warm runs). Only loopback traffic. With
`--body-mib N` every request also carries a file of about N MiB (over the 8 MiB input cap, a
request is read and refused with 413: what the server's memory holds under load is the point).
"""

import argparse
import http.client
import json
import os
import statistics
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from server import PE, Server, pct  # noqa: E402

DEADLINE = 120.0


PAD = ""


def one(port, i, results, lock):
    files = [{"path": "main.sh", "content": "cat"}]
    if PAD:
        files.append({"path": "pad", "content": PAD})
    body = json.dumps({"container": "busybox", "stdin": f"load {i}", "files": files})
    t0 = time.perf_counter()
    status, answered = None, False
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=DEADLINE)
        try:
            conn.request("POST", "/api/v1/run", body, {"Content-Type": "application/json"})
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused before the body was read: the answer is waiting on the socket
        r = conn.getresponse()
        data = r.read()
        status = r.status
        answered = True
        if status == 200 and json.loads(data)["stdout"] != f"load {i}":
            status = "wrong-answer"
        if status in (429, 503) and r.getheader("Retry-After") is None:
            status = f"{status}-without-retry-after"
    except Exception as e:  # noqa: BLE001 - any failure counts as unanswered
        status = f"error: {type(e).__name__}"
    took = time.perf_counter() - t0
    with lock:
        results.append((status, took, answered))


def rss_kib(pid):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--factor", type=float, default=10)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--slots", type=int, default=1)
    ap.add_argument("--body-mib", type=float, default=0)
    args = ap.parse_args()
    global PAD
    PAD = "x" * int(args.body_mib * 1024 * 1024 - 1024) if args.body_mib else ""
    os.environ["PE_RATE_PER_MINUTE"] = "0"
    server = Server(f"busybox={args.slots}", slots=args.slots, queue=8)
    try:
        # Capacity: sequential runs, each on a warm VM.
        times = []
        for i in range(5):
            server.wait_warm(args.slots)
            t0 = time.perf_counter()
            server.run({"container": "busybox", "stdin": f"cap {i}", "files": [{"path": "main.sh", "content": "cat"}]})
            times.append(time.perf_counter() - t0)
        capacity = args.slots / statistics.median(times)
        rate = capacity * args.factor
        print(f"capacity {capacity:.2f} jobs/s ({args.slots} slot(s)); sending {rate:.1f} requests/s "
              f"for {args.seconds:.0f} s", file=sys.stderr)
        results, lock, threads = [], threading.Lock(), []
        peak = rss_kib(server.proc.pid)
        start = time.perf_counter()
        i = 0
        while time.perf_counter() - start < args.seconds:
            due = start + i / rate
            now = time.perf_counter()
            if due > now:
                time.sleep(min(due - now, 0.05))
                peak = max(peak, rss_kib(server.proc.pid))
                continue
            t = threading.Thread(target=one, args=(server.port, i, results, lock), daemon=True)
            t.start()
            threads.append(t)
            i += 1
        for t in threads:
            t.join(DEADLINE + 5)
            peak = max(peak, rss_kib(server.proc.pid))
        elapsed = time.perf_counter() - start
    finally:
        server.stop()

    counts = {}
    for status, _, _ in results:
        counts[status] = counts.get(status, 0) + 1
    unanswered = sum(1 for _, _, answered in results if not answered) + (i - len(results))
    accepted = [took for status, took, _ in results if status == 200]
    latency = (f"accepted p50 {statistics.median(accepted):.2f} s, p99 {pct(accepted, 99):.2f} s"
               if accepted else "none accepted")
    print(f"| {args.seconds:.0f} s at {args.factor:.0f}x load ({rate:.1f}/s, {args.slots} slot, "
          f"bodies {args.body_mib:g} MiB) | {i} requests | {json.dumps(counts)} | "
          f"unanswered {unanswered} | {latency} | server peak RSS {peak / 1024:.0f} MiB | "
          f"{elapsed:.0f} s in all |")
    allowed = (200, 429, 503, 413) if args.body_mib else (200, 429, 503)
    bad = unanswered or any(s not in allowed for s in counts)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
