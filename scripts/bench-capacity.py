#!/usr/bin/env python3
"""The measuring half of scripts/bench-capacity.sh (stdlib only).

    bench-capacity.py sample FILE    # one snapshot of the cluster's counters, as JSON
    bench-capacity.py settle         # waits (at most 90 s) until the database does only
                                     # appends and presence writes (sign-in work is over)
    bench-capacity.py costs DIR      # per-unit costs from DIR's windows -> costs.json, table
    bench-capacity.py compare DIR PREDICTION.json   # the simulation window against a prediction

A snapshot holds: CPU ticks of the cluster's own processes (scripts/cpu-by-role.py with
--only, so other people's servers are left out), Redis `INFO commandstats` of the
dedicated Redis, pg_stat_database / pg_stat_statements / pg_stat_wal of the dedicated
PostgreSQL, every gateway's, router's and the storage service's /metrics, and the RSS of
each gateway. A window is two snapshots, DIR/NAME.before.json and DIR/NAME.after.json.

Environment for `sample`: CAP_REDIS_PORT, CAP_PG_URL (the database), CAP_ONLY (words for
cpu-by-role's --only), CAP_GATEWAYS (metrics ports, comma-separated), CAP_ROUTERS,
CAP_STORAGE.
"""
import importlib.util
import json
import os
import pathlib
import subprocess
import sys
import time
import urllib.request

HERE = pathlib.Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("cpu_by_role", HERE / "cpu-by-role.py")
cpu_by_role = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cpu_by_role)

ROLES = {
    "switchboard gateway": "gateway",
    "switchboard router": "router",
    "switchboard storage": "storage",
    "postgresql": "postgresql",
    "redis": "redis",
}


# ---------------------------------------------------------------- sampling


def metrics(port):
    """A /metrics page as {series: value}, e.g. {'x_total{type="send"}': 12.0}."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        series, _, value = line.rpartition(" ")
        try:
            out[series] = float(value)
        except ValueError:
            pass
    return out


def redis_stats(port):
    text = subprocess.run(
        ["redis-cli", "-p", str(port), "INFO", "commandstats"],
        capture_output=True, text=True, check=True,
    ).stdout
    calls, usec = {}, {}
    for line in text.splitlines():
        if not line.startswith("cmdstat_"):
            continue
        name, _, fields = line[len("cmdstat_"):].partition(":")
        kv = dict(f.split("=", 1) for f in fields.split(","))
        calls[name] = int(kv["calls"])
        usec[name] = int(kv["usec"])
    return {"calls": calls, "usec": usec}


def pg_stats(url):
    db = url.rsplit("/", 1)[1]
    query = f"""
        SELECT xact_commit, xact_rollback, tup_inserted, tup_updated,
               (SELECT coalesce(sum(calls), 0) FROM pg_stat_statements s
                 JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = '{db}'),
               (SELECT wal_bytes FROM pg_stat_wal)
        FROM pg_stat_database WHERE datname = '{db}'"""
    row = subprocess.run(
        ["psql", url, "-Atc", query], capture_output=True, text=True, check=True
    ).stdout.strip().split("|")
    keys = ["commits", "rollbacks", "inserted", "updated", "statements", "wal_bytes"]
    return dict(zip(keys, (float(v) for v in row)))


def rss_kb(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def sample():
    only = tuple(w for w in os.environ["CAP_ONLY"].split(",") if w)
    cpu = cpu_by_role.snapshot(only)
    gateways = os.environ["CAP_GATEWAYS"].split(",")
    rss = {}
    for pid, (role, _) in cpu.items():
        if role == "switchboard gateway":
            rss[pid] = rss_kb(pid)
    return {
        "t": time.time(),
        "cpu": cpu,
        "rss_kb": rss,
        "redis": redis_stats(os.environ["CAP_REDIS_PORT"]),
        "pg": pg_stats(os.environ["CAP_PG_URL"]),
        "gateways": [metrics(p) for p in gateways],
        "routers": [metrics(p) for p in os.environ["CAP_ROUTERS"].split(",")],
        "storage": metrics(os.environ["CAP_STORAGE"]),
    }


def settle():
    """Returns once a second passes in which PostgreSQL ran (almost) nothing but the
    append batches and presence writes of the traffic: a session's start (its
    conversations, history, pending broadcasts) takes a dozen statements, and on a busy
    machine that work runs seconds past the sign-in. At most 90 s."""
    url = os.environ["CAP_PG_URL"]
    gateways = os.environ["CAP_GATEWAYS"].split(",")
    storage = os.environ["CAP_STORAGE"]

    def counts():
        batches = metrics(storage).get("switchboard_storage_append_batch_size_count", 0.0)
        presence = sum(metrics(p).get(
            'switchboard_gateway_frames_received_total{type="set_presence"}', 0.0)
            for p in gateways)
        return pg_stats(url)["statements"], batches, presence

    quiet = 0
    last = counts()
    for _ in range(90):
        time.sleep(1)
        now = counts()
        statements, batches, presence = (n - o for n, o in zip(now, last))
        extra = statements - batches - presence - 1
        quiet = quiet + 1 if extra <= max(10, 0.05 * statements) else 0
        if quiet >= 2:
            return
        last = now
    print("warning: the database did not settle within 90 s", file=sys.stderr)


# ---------------------------------------------------------------- windows


def load(d, name):
    return (
        json.loads((d / f"{name}.before.json").read_text()),
        json.loads((d / f"{name}.after.json").read_text()),
    )


def window(d, name):
    """What happened between NAME's two snapshots, as flat rates and counts."""
    b, a = load(d, name)
    dt = a["t"] - b["t"]
    cpu = {r: 0.0 for r in ROLES.values()}
    for pid, (role, ticks) in a["cpu"].items():
        r = ROLES.get(role)
        if r:
            cpu[r] += (ticks - b["cpu"].get(pid, [role, 0])[1]) / cpu_by_role.TICK

    def redis_total(s, what):
        return sum(v for k, v in s["redis"][what].items() if k not in ("info", "ping"))

    def gw(key, s):
        return sum(m.get(key, 0.0) for m in s["gateways"])

    def rt(key, s):
        return sum(m.get(key, 0.0) for m in s["routers"])

    def d_(f, key):
        return f(key, a) - f(key, b)

    frames_in = lambda t: d_(gw, f'switchboard_gateway_frames_received_total{{type="{t}"}}')
    frames_out = lambda t: d_(gw, f'switchboard_gateway_frames_sent_total{{type="{t}"}}')
    st = lambda k: a["storage"].get(k, 0.0) - b["storage"].get(k, 0.0)
    redis_by_cmd = {
        k: v - b["redis"]["calls"].get(k, 0)
        for k, v in a["redis"]["calls"].items()
        if k not in ("info", "ping") and v - b["redis"]["calls"].get(k, 0) > 0
    }
    return {
        "name": name,
        "seconds": dt,
        "cpu_s": cpu,
        "redis_ops": redis_total(a, "calls") - redis_total(b, "calls"),
        "redis_usec": redis_total(a, "usec") - redis_total(b, "usec"),
        "redis_by_command": redis_by_cmd,
        # The psql that reads the counters is one statement and one commit itself.
        "pg_commits": a["pg"]["commits"] - b["pg"]["commits"] - 1,
        "pg_statements": a["pg"]["statements"] - b["pg"]["statements"] - 1,
        "pg_wal_bytes": a["pg"]["wal_bytes"] - b["pg"]["wal_bytes"],
        "sessions": gw("switchboard_gateway_sessions", a),
        "gateway_rss_kb": sum(a["rss_kb"].values()),
        "sign_ins": d_(gw, "switchboard_gateway_connections_total"),
        "presence_changes": frames_in("set_presence"),
        "sends": frames_in("send"),
        "typing": frames_in("typing"),
        "deliveries": frames_out("message"),
        "presence_frames_out": frames_out("presence"),
        "broadcast_frames_out": frames_out("broadcast"),
        "messages": st("switchboard_storage_messages_appended_total"),
        "batches": st("switchboard_storage_append_batch_size_count"),
        "router_routes": d_(rt, "switchboard_router_routes_total"),
        "router_forwards": d_(rt, "switchboard_router_deliveries_forwarded_total"),
        "router_lookups": d_(rt, "switchboard_router_lookup_duration_seconds_count"),
    }


def solve(rows, ys):
    """Least squares x >= 0 for rows . x = ys (normal equations, Gauss-Jordan)."""
    n = len(rows[0])
    ata = [[sum(r[i] * r[j] for r in rows) for j in range(n)] for i in range(n)]
    aty = [sum(r[i] * y for r, y in zip(rows, ys)) for i in range(n)]
    m = [ata[i] + [aty[i]] for i in range(n)]
    for c in range(n):
        p = max(range(c, n), key=lambda r: abs(m[r][c]))
        m[c], m[p] = m[p], m[c]
        if abs(m[c][c]) < 1e-12:
            return [0.0] * n
        for r in range(n):
            if r != c:
                f = m[r][c] / m[c][c]
                m[r] = [x - f * y for x, y in zip(m[r], m[c])]
    x = [m[i][n] / m[i][i] for i in range(n)]
    if any(v < 0 for v in x) and n > 1:
        # A negative share is noise: drop that feature and fit the rest.
        k = min(range(n), key=lambda i: x[i])
        sub = solve([[v for i, v in enumerate(r) if i != k] for r in rows], ys)
        sub.insert(k, 0.0)
        return sub
    return x


# ---------------------------------------------------------------- per-unit costs


def costs(d):
    w = {n: window(d, n) for n in ("idle", "connected", "signin", "broadcast", "presence",
                                   "direct-low", "direct-high", "group")}
    base, conn = w["idle"], w["connected"]
    roles = list(ROLES.values())
    # Idle cluster (no clients): CPU per second per process, Redis ops per second.
    baseline = {
        "cpu_per_s": {r: base["cpu_s"][r] / base["seconds"] for r in roles},
        "redis_ops_per_s": base["redis_ops"] / base["seconds"],
        "pg_commits_per_s": max(0.0, base["pg_commits"]) / base["seconds"],
    }

    def above_idle(x, key, per_conn=True):
        """x's figure minus what the idle cluster and the held connections cost meanwhile."""
        held = x["sessions"] if per_conn else 0
        if key == "cpu":
            return {r: x["cpu_s"][r] - x["seconds"] * (baseline["cpu_per_s"][r]
                    + held * connection["cpu_per_s"][r]) for r in roles}
        return x[key] - x["seconds"] * (baseline[key + "_per_s"] + held * connection[key + "_per_s"])

    n = max(conn["sessions"], 1)
    connection = {
        "cpu_per_s": {r: max(0.0, (conn["cpu_s"][r] / conn["seconds"]
                                   - baseline["cpu_per_s"][r]) / n) for r in roles},
        "redis_ops_per_s": max(0.0, (conn["redis_ops"] / conn["seconds"]
                                     - baseline["redis_ops_per_s"]) / n),
        "pg_commits_per_s": 0.0,
        "gateway_kib": (conn["gateway_rss_kb"] - base["gateway_rss_kb"]) / n,
    }
    si = w["signin"]
    k = max(si["sign_ins"], 1)
    signin = {
        "cpu_s": {r: max(0.0, v) / k for r, v in above_idle(si, "cpu", False).items()},
        "redis_ops": max(0.0, above_idle(si, "redis_ops", False)) / k,
        "pg_commits": max(0.0, si["pg_commits"]) / k,
        "pg_statements": max(0.0, si["pg_statements"]) / k,
    }
    bc = w["broadcast"]
    recipients = max(bc["broadcast_frames_out"], 1)
    posts = max(round(bc["broadcast_frames_out"] / max(bc["sessions"], 1)), 1)
    broadcast = {
        "posts": posts,
        "cpu_s_per_recipient": {r: max(0.0, v) / recipients
                                for r, v in above_idle(bc, "cpu").items()},
        "pg_statements_per_recipient": max(0.0, bc["pg_statements"]) / recipients,
        "pg_commits_per_broadcast": max(0.0, bc["pg_commits"]) / posts,
        "router_forwards_per_broadcast": bc["router_forwards"] / posts,
    }
    pr = w["presence"]
    changes = max(pr["presence_changes"], 1)
    presence = {
        "cpu_s": {r: max(0.0, v) / changes for r, v in above_idle(pr, "cpu").items()},
        "redis_ops": max(0.0, above_idle(pr, "redis_ops")) / changes,
        "pg_commits": max(0.0, pr["pg_commits"]) / changes,
        "pg_statements": max(0.0, pr["pg_statements"]) / changes,
        "frames_out": pr["presence_frames_out"] / changes,
    }
    # Messages: three windows with different fan-out (1:1 vs groups of 20) and batch
    # sizes (200 vs 800 msg/s). Each process's CPU is fitted as
    #   a * messages + b * deliveries (+ c * batches for storage and PostgreSQL).
    msg_windows = [w["direct-low"], w["direct-high"], w["group"]]
    fit = {}
    for r in roles:
        batched = r in ("storage", "postgresql")
        rows = [[x["messages"], x["deliveries"]] + ([x["batches"]] if batched else [])
                for x in msg_windows]
        ys = [above_idle(x, "cpu")[r] for x in msg_windows]
        coef = solve(rows, ys)
        fit[r] = {"per_message": coef[0], "per_delivery": coef[1],
                  "per_batch": coef[2] if batched else 0.0}
    rows = [[x["messages"], x["deliveries"]] for x in msg_windows]
    redis_fit = solve(rows, [above_idle(x, "redis_ops") for x in msg_windows])
    lo, hi = w["direct-low"], w["direct-high"]
    rate_lo, rate_hi = lo["messages"] / lo["seconds"], hi["messages"] / hi["seconds"]
    size_lo, size_hi = (lo["messages"] / max(lo["batches"], 1),
                        hi["messages"] / max(hi["batches"], 1))
    message = {
        "cpu_s": fit,
        "redis_ops_per_message": redis_fit[0],
        "redis_ops_per_delivery": redis_fit[1],
        "pg_commits_per_batch": sum(max(0.0, x["pg_commits"]) for x in msg_windows)
        / max(sum(x["batches"] for x in msg_windows), 1),
        "pg_statements_per_batch": sum(max(0.0, x["pg_statements"]) for x in msg_windows)
        / max(sum(x["batches"] for x in msg_windows), 1),
        "pg_wal_bytes_per_message": sum(x["pg_wal_bytes"] for x in msg_windows)
        / max(sum(x["messages"] for x in msg_windows), 1),
        # Mean batch size against the rate one storage appender sees: b = max(1, r * w),
        # w from the low rate (at the high one an overloaded machine makes batches of a
        # backlog, not of the rate).
        "batch_window_s": size_lo / rate_lo if rate_lo else 0.0,
        "batch_sizes": {f"{rate_lo:.0f}": size_lo, f"{rate_hi:.0f}": size_hi},
        "deliveries_per_message": {x["name"]: x["deliveries"] / max(x["messages"], 1)
                                   for x in msg_windows},
        "router_routes_per_message": sum(x["router_routes"] for x in msg_windows)
        / max(sum(x["messages"] for x in msg_windows), 1),
        "router_forwards_per_message": {x["name"]: x["router_forwards"] / max(x["messages"], 1)
                                        for x in msg_windows},
    }
    return {
        "baseline": baseline,
        "connection": connection,
        "signin": signin,
        "presence": presence,
        "message": message,
        "broadcast": broadcast,
        "redis_usec_per_op": sum(x["redis_usec"] for x in w.values())
        / max(sum(x["redis_ops"] for x in w.values()), 1),
        "windows": w,
    }


def us(x):
    return f"{1e6 * x:8.1f}"


def table(c):
    roles = list(ROLES.values())
    lines = [f"{'per unit (CPU in us)':<34}" + "".join(f"{r:>11}" for r in roles)
             + f"{'redis ops':>10}"]

    def row(label, cpu, redis):
        lines.append(f"{label:<34}" + "".join(f"{us(cpu[r]):>11}" for r in roles)
                     + f"{redis:>10.2f}")

    row("sign-in", c["signin"]["cpu_s"], c["signin"]["redis_ops"])
    row("presence change", c["presence"]["cpu_s"], c["presence"]["redis_ops"])
    m = c["message"]["cpu_s"]
    row("message (fixed part)", {r: m[r]["per_message"] for r in roles},
        c["message"]["redis_ops_per_message"])
    row("message: per delivery", {r: m[r]["per_delivery"] for r in roles},
        c["message"]["redis_ops_per_delivery"])
    row("append batch (one commit)", {r: m[r]["per_batch"] for r in roles}, 0.0)
    row("org broadcast: per recipient", c["broadcast"]["cpu_s_per_recipient"], 0.0)
    row("held connection, per second", c["connection"]["cpu_per_s"],
        c["connection"]["redis_ops_per_s"])
    row("idle cluster, per second (all)", c["baseline"]["cpu_per_s"],
        c["baseline"]["redis_ops_per_s"])
    mm = c["message"]
    lines += [
        "",
        f"gateway memory per held connection: {c['connection']['gateway_kib']:.1f} KiB",
        f"Redis: {c['redis_usec_per_op']:.2f} us of command time per op (commandstats usec)",
        f"PostgreSQL: {mm['pg_commits_per_batch']:.2f} commits and "
        f"{mm['pg_statements_per_batch']:.2f} statements per append batch; "
        f"{mm['pg_wal_bytes_per_message']:.0f} WAL bytes per message; batch sizes "
        + ", ".join(f"{v:.1f} at {k} msg/s" for k, v in mm["batch_sizes"].items())
        + f" (window {1000 * mm['batch_window_s']:.2f} ms)",
        f"PostgreSQL per sign-in: {c['signin']['pg_commits']:.2f} commits, "
        f"{c['signin']['pg_statements']:.2f} statements",
        "router: " + f"{mm['router_routes_per_message']:.2f} routes per message; forwards per "
        "message " + ", ".join(f"{k} {v:.2f}" for k, v in mm["router_forwards_per_message"].items())
        ,
        "deliveries per message: " + ", ".join(
            f"{k} {v:.2f}" for k, v in mm["deliveries_per_message"].items()),
        f"presence: {c['presence']['frames_out']:.2f} presence frames pushed, "
        f"{c['presence']['pg_commits']:.2f} PostgreSQL commits per change",
        f"org broadcast ({c['broadcast']['posts']} posts): "
        f"{c['broadcast']['pg_statements_per_recipient'] * 1000:.2f} PostgreSQL statements "
        f"per 1,000 recipients, {c['broadcast']['router_forwards_per_broadcast']:.1f} "
        "router forwards per broadcast",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------- simulation vs model


def compare(d, prediction_path):
    x = window(d, "simulation")
    pred = json.loads(pathlib.Path(prediction_path).read_text())
    s = x["seconds"]
    measured = {
        **{f"cpu % {r}": 100 * x["cpu_s"][r] / s for r in ROLES.values()},
        "messages/s": x["messages"] / s,
        "deliveries/s": x["deliveries"] / s,
        "presence changes/s": x["presence_changes"] / s,
        "router forwards/s": x["router_forwards"] / s,
        "Redis ops/s": x["redis_ops"] / s,
        "PostgreSQL commits/s": x["pg_commits"] / s,
        "PostgreSQL statements/s": x["pg_statements"] / s,
        "connections": x["sessions"],
    }
    out = {"seconds": s, "rows": []}
    print(f"{'':<26}{'model':>10}{'measured':>10}{'gap':>8}")
    for k, v in measured.items():
        p = pred.get(k)
        gap = (v - p) / p * 100 if p else float("nan")
        out["rows"].append({"what": k, "model": p, "measured": v, "gap_percent": gap})
        ps = f"{p:10.1f}" if p is not None else f"{'-':>10}"
        print(f"{k:<26}{ps}{v:10.1f}{gap:7.0f}%")
    (d / "comparison.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    cmd = sys.argv[1:2]
    if cmd == ["sample"]:
        pathlib.Path(sys.argv[2]).write_text(json.dumps(sample()))
    elif cmd == ["settle"]:
        settle()
    elif cmd == ["costs"]:
        d = pathlib.Path(sys.argv[2])
        c = costs(d)
        (d / "costs.json").write_text(json.dumps(c, indent=1))
        print(table(c))
    elif cmd == ["compare"]:
        compare(pathlib.Path(sys.argv[2]), sys.argv[3])
    else:
        sys.exit(__doc__)
