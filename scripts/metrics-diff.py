#!/usr/bin/env python3
"""What Switchboard's processes measured between two reads of their /metrics.

    scripts/metrics-diff.py snapshot PORT [PORT ...] > before.txt
    ... run the load ...
    scripts/metrics-diff.py snapshot PORT [PORT ...] > after.txt
    scripts/metrics-diff.py diff before.txt after.txt

`snapshot` reads http://127.0.0.1:PORT/metrics of each port (every role serves it on the
port it listens on). `diff` prints, per port, each histogram that observed something in
between (count, mean, and the bucket bounds its median and 99th percentile fall under;
seconds shown as milliseconds) and each counter that grew.
"""
import re
import sys
import urllib.request
from collections import defaultdict

SAMPLE = re.compile(r'^(\w+)(\{[^}]*\})? (\S+)$')


def snapshot(ports):
    for port in ports:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                text = r.read().decode()
        except OSError as e:
            print(f"# {port} unreachable: {e}", file=sys.stderr)
            continue
        for line in text.splitlines():
            if line and not line.startswith("#"):
                print(port, line)


def load(path):
    """(port, name, labels) -> value, for every sample of a snapshot."""
    values = {}
    for line in open(path):
        port, _, sample = line.rstrip("\n").partition(" ")
        m = SAMPLE.match(sample)
        if m:
            values[(port, m.group(1), m.group(2) or "")] = float(m.group(3))
    return values


def diff(before_path, after_path):
    before, after = load(before_path), load(after_path)
    grew = {k: v - before.get(k, 0.0) for k, v in after.items()}
    histograms = defaultdict(list)  # (port, name) -> [(le, count)]
    for (port, name, labels), n in grew.items():
        if name.endswith("_bucket"):
            le = re.search(r'le="([^"]+)"', labels).group(1)
            histograms[(port, name[: -len("_bucket")])].append((float(le), n))
    for port, name in sorted(histograms):
        count = grew.get((port, name + "_count", ""), 0.0)
        if count <= 0:
            continue
        total = grew.get((port, name + "_sum", ""), 0.0)
        buckets = sorted(histograms[(port, name)])
        scale, unit = (1000.0, " ms") if name.endswith("_seconds") else (1.0, "")

        def under(q):
            le = next((le for le, n in buckets if n >= q * count), float("inf"))
            return f"{le * scale:g}{unit}"

        print(f"{port} {name}: {count:.0f} observed, mean {total / count * scale:.3f}{unit}, "
              f"p50 <= {under(0.5)}, p99 <= {under(0.99)}")
    for (port, name, labels), n in sorted(grew.items()):
        if name.endswith("_total") and n > 0:
            print(f"{port} {name}{labels}: +{n:g}")


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "snapshot":
        snapshot(sys.argv[2:])
    elif len(sys.argv) == 4 and sys.argv[1] == "diff":
        diff(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
