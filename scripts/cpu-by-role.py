#!/usr/bin/env python3
"""CPU seconds used per role (Switchboard storage/router/gateway, the load tool,
PostgreSQL, Redis, everything else) between two snapshots.

    scripts/cpu-by-role.py snapshot [--only WORD,WORD,...] > before.json
    ... run the load ...
    scripts/cpu-by-role.py snapshot [--only WORD,WORD,...] > after.json
    scripts/cpu-by-role.py diff before.json after.json [MESSAGES [LOAD_TOOL_SECONDS]]

--only counts just the processes whose command line contains one of the words (e.g. a
Redis prefix, a database name, a PostgreSQL cluster_name, a Redis port), so servers and
tests of other people on a shared machine stay out of the figures.

With MESSAGES (e.g. the run's delivered count) it also prints microseconds of CPU per
message. Exited processes' time is lost, so take both snapshots while the cluster runs;
the load tool, which exits before the second snapshot, can be given its CPU seconds
(user + system, e.g. from bash's `time`).
"""
import json, os, sys

TICK = os.sysconf("SC_CLK_TCK")


def role(pid, only=()):
    try:
        argv = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
    except OSError:
        return None
    words = [a.decode(errors="replace") for a in argv if a]
    if not words:
        return None
    if only and not any(w in " ".join(words) for w in only):
        return None
    exe = os.path.basename(words[0])
    if exe == "switchboard" and len(words) > 1:
        return "switchboard " + words[1]
    if exe.startswith("switchboard-loadtest"):
        return "load tool"
    if exe.startswith("postgres") or "postgres" in words[0]:
        return "postgresql"
    if exe.startswith("redis-server"):
        return "redis"
    return "other"


def snapshot(only=()):
    out = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            stat = open(f"/proc/{pid}/stat").read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        ticks = int(fields[11]) + int(fields[12])  # utime + stime
        r = role(pid, only)
        if r:
            out[pid] = [r, ticks]
    return out


def diff(before, after, messages, tool_seconds):
    used = {"load tool": tool_seconds} if tool_seconds else {}
    for pid, (r, ticks) in after.items():
        start = before.get(pid, [r, 0])[1]
        used[r] = used.get(r, 0) + (ticks - start) / TICK
    total = sum(used.values())
    print(f"{'role':<22} {'cpu s':>8} {'share':>6}" + (f" {'us/msg':>8}" if messages else ""))
    for r, s in sorted(used.items(), key=lambda kv: -kv[1]):
        line = f"{r:<22} {s:>8.2f} {100 * s / total if total else 0:>5.1f}%"
        if messages:
            line += f" {1e6 * s / messages:>8.1f}"
        print(line)
    line = f"{'total':<22} {total:>8.2f}"
    if messages:
        line += f" {'':>6} {1e6 * total / messages:>8.1f}"
    print(line)


if __name__ == "__main__":
    if sys.argv[1:2] == ["snapshot"]:
        only = ()
        if sys.argv[2:3] == ["--only"] and len(sys.argv) > 3:
            only = tuple(w for w in sys.argv[3].split(",") if w)
        json.dump(snapshot(only), sys.stdout)
    elif sys.argv[1:2] == ["diff"]:
        b = json.load(open(sys.argv[2]))
        a = json.load(open(sys.argv[3]))
        messages = int(sys.argv[4]) if len(sys.argv) > 4 else 0
        diff(b, a, messages, float(sys.argv[5]) if len(sys.argv) > 5 else 0.0)
    else:
        sys.exit(__doc__)
