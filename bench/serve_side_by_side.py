#!/usr/bin/env python3
"""Two running `pgtrail serve` processes (two builds over the same trail)
measured side by side: concurrent clients each request every page of every
server once a round, in an order rotated by client and round, each over a
new HTTP connection; reported per server and page: median, p95, p99 and
max latency as the client saw it. See bench/SERVE.md.

    bench/serve_side_by_side.py --token TOKEN --server before=127.0.0.1:18423 \
        --server after=127.0.0.1:18424 --page / --page /api/v1/changes --clients 8 --rounds 5
"""

import argparse
import http.client
import math
import threading
import time


def percentile(values, p):
    """Nearest rank (the median of an even count: the two middle values' mean)."""
    values = sorted(values)
    n = len(values)
    if p == 0.5 and n % 2 == 0:
        return (values[n // 2 - 1] + values[n // 2]) / 2
    return values[min(max(math.ceil(p * n), 1), n) - 1]


def get(addr, path, token):
    host, port = addr.rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=120)
    start = time.perf_counter()
    connection.request("GET", path, headers={"Authorization": f"Bearer {token}", "Connection": "close"})
    answer = connection.getresponse()
    answer.read()
    elapsed = (time.perf_counter() - start) * 1000
    connection.close()
    if answer.status != 200:
        raise SystemExit(f"{addr}{path}: HTTP {answer.status}")
    return elapsed


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--token", required=True)
    parser.add_argument("--server", action="append", required=True, help="NAME=HOST:PORT")
    parser.add_argument("--page", action="append", required=True, help="a path, e.g. /?actor=x")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    servers = [s.split("=", 1) for s in args.server]
    requests = [(name, addr, page) for name, addr in servers for page in args.page]
    for name, addr, page in requests:
        for _ in range(args.warmup):
            get(addr, page, args.token)
    times = {(name, page): [] for name, _, page in requests}
    lock = threading.Lock()

    def client(c):
        for r in range(args.rounds):
            for i in range(len(requests)):
                name, addr, page = requests[(i + c + r) % len(requests)]
                ms = get(addr, page, args.token)
                with lock:
                    times[(name, page)].append(ms)

    load_before = open("/proc/loadavg").read().split()[:3]
    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(c,)) for c in range(args.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    load_after = open("/proc/loadavg").read().split()[:3]
    print(
        f"{args.clients} clients x {args.rounds} rounds, {sum(map(len, times.values()))} requests in "
        f"{elapsed:.1f} s; load average {' '.join(load_before)} before, {' '.join(load_after)} after"
    )
    print(f"{'server':<8} {'page':<40} {'median ms':>10} {'p95 ms':>10} {'p99 ms':>10} {'max ms':>10}")
    for page in args.page:
        for name, _ in servers:
            t = times[(name, page)]
            print(
                f"{name:<8} {page:<40} {percentile(t, 0.5):>10.2f} {percentile(t, 0.95):>10.2f} "
                f"{percentile(t, 0.99):>10.2f} {max(t):>10.2f}"
            )


if __name__ == "__main__":
    main()
