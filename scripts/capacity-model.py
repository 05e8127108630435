#!/usr/bin/env python3
"""Capacity model: how many gateways, routers, Redis shards, storage replicas and
database cores an organisation needs at its peak, from per-unit costs measured on the
local cluster (scripts/bench-capacity.sh writes them to costs.json). Stdlib only.

    scripts/capacity-model.py --costs target/bench-capacity/costs.json
    scripts/capacity-model.py --costs costs.json --people 250000 --profile my-org.json
    # what the local cluster (2 gateways, 2 routers, 1 storage) should see for a profile:
    scripts/capacity-model.py --costs costs.json --people 10000 --local --window 60 \\
        --broadcasts-in-window 1 --json prediction.json

The profile (default scripts/capacity-profile.json) gives the organisation's peak:
online share, messages per online person per minute, the 1:1 share and the group sizes
of the rest, presence changes and sign-ins per online person per hour, broadcasts to
everyone per hour, and the sizes of the machines (cores per gateway, router, storage
replica and database; memory per gateway; the connections one gateway may hold) and the
headroom (the share of each machine the peak may use, 0.5 = 50%). The counts are for the
peak alone: add one gateway (its clients reconnect to the others when it dies) and a
database standby for failures.

How the load is built (every figure per second at the peak):
- messages = online * messages_per_person_minute / 60; a message to a conversation of m
  members is delivered to the sender's own session and to each other member who is
  online (probability = online share): deliveries = 1 + (m - 1) * online_share.
- Gateways pay per message, per delivery, per sign-in, per presence change (each change
  reaches every gateway, so that part grows with the number of gateways), per held
  connection per second and per broadcast recipient; routers, Redis, storage and
  PostgreSQL pay per message and per member (a router looks every member up in Redis,
  storage reads the members in the append's commit). Storage and PostgreSQL also pay per
  append batch (one call and one commit of `append_batch`); a replica's batch holds
  max(1, rate * window) messages, window measured at two rates.
- Router forwards: a message's copies go to every other gateway holding one of its
  online recipients: (G - 1) * (1 - (1 - 1/G) ** (online recipients but the sender)).
- Every process also costs its idle CPU (measured with no clients).
A component's count is the largest of what its CPU, memory and connections need at the
headroom; the one that needs the most machines relative to the others is not the
"bottleneck": the bottleneck is what cannot be scaled by adding machines (one
PostgreSQL primary takes every write), so the model also says how far the load may grow
before the primary needs more than database_max_cores.
"""
import argparse
import json
import math
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent


def load_shape(profile):
    """Mean members and deliveries per message, and the message mix, of a profile."""
    share = profile["online_share"]
    direct = profile["direct_share"]
    total_weight = sum(w for _, w in profile["group_sizes"]) or 1
    mix = [(direct, 2)] + [((1 - direct) * w / total_weight, m) for m, w in
                           profile["group_sizes"]]
    members = sum(p * m for p, m in mix)
    deliveries = sum(p * (1 + (m - 1) * share) for p, m in mix)
    return mix, members, deliveries


def forwards_per_message(mix, share, gateways, alternate=False):
    """Copies a router sends per message: one per other gateway holding an online member.
    Members placed at random: (G - 1) * (1 - (1 - 1/G) ** ((m - 1) * share)). With
    `alternate` (the load tool's placement: user i on gateway i mod G, so a 1:1 partner
    and every other group member are on the other of 2 gateways): 1 - (1 - share) ** (m/2)."""
    if gateways <= 1:
        return 0.0
    g = gateways
    if alternate and g == 2:
        return sum(p * (1 - (1 - share) ** (m // 2)) for p, m in mix)
    return sum(p * (g - 1) * (1 - (1 - 1 / g) ** ((m - 1) * share)) for p, m in mix)


def load(costs, profile, people, gateways, replicas, window=None, broadcasts_in_window=0,
         signins=True, alternate=False):
    """CPU seconds per second per role and the other rates, for a cluster of `gateways`
    gateways and `replicas` storage replicas (routers are counted by the caller)."""
    share = profile["online_share"]
    online = people * share
    mix, members, deliveries = load_shape(profile)
    msgs = online * profile["messages_per_person_minute"] / 60
    changes = online * profile["presence_changes_per_person_hour"] / 3600
    sign_ins = online * profile["signins_per_person_hour"] / 3600 if signins else 0.0
    if window:
        broadcasts = broadcasts_in_window / window
    else:
        broadcasts = profile["broadcasts_per_hour"] / 3600
    recipients = broadcasts * online
    m = costs["message"]
    # Batches: each replica's appender gathers max(1, rate * window) messages per commit.
    per_replica = msgs / replicas
    batch = max(1.0, per_replica * m["batch_window_s"])
    batches = msgs / batch if msgs else 0.0
    cal_gateways = 2  # the calibration's presence cost was paid by 2 gateways
    cpu = {}
    for role in ("gateway", "router", "storage", "postgresql", "redis"):
        f = m["cpu_s"][role]
        fanout = deliveries if role == "gateway" else members
        c = msgs * (f["per_message"] + f["per_delivery"] * fanout) + batches * f["per_batch"]
        c += sign_ins * costs["signin"]["cpu_s"][role]
        presence = changes * costs["presence"]["cpu_s"][role]
        if role == "gateway":
            presence *= gateways / cal_gateways
        c += presence
        c += online * costs["connection"]["cpu_per_s"][role]
        c += recipients * costs["broadcast"]["cpu_s_per_recipient"][role]
        cpu[role] = c
    # Idle CPU per process: the calibration ran 2 gateways and 2 routers.
    base = costs["baseline"]["cpu_per_s"]
    cpu["gateway"] += base["gateway"] / 2 * gateways
    cpu["storage"] += base["storage"] * replicas
    for role in ("router", "postgresql", "redis"):
        cpu[role] += base[role]
    redis_ops = (msgs * (m["redis_ops_per_message"] + m["redis_ops_per_delivery"] * members)
                 + sign_ins * costs["signin"]["redis_ops"]
                 + changes * costs["presence"]["redis_ops"]
                 + online * costs["connection"]["redis_ops_per_s"]
                 + costs["baseline"]["redis_ops_per_s"] / 2 * gateways)
    # A presence change is stored too (users.status): one commit each.
    commits = (batches * m["pg_commits_per_batch"] + sign_ins * costs["signin"]["pg_commits"]
               + changes * costs["presence"]["pg_commits"]
               + broadcasts * costs["broadcast"]["pg_commits_per_broadcast"])
    statements = (batches * m["pg_statements_per_batch"]
                  + sign_ins * costs["signin"]["pg_statements"]
                  + changes * costs["presence"]["pg_statements"]
                  + recipients * costs["broadcast"]["pg_statements_per_recipient"])
    return {
        "online": online,
        "messages": msgs,
        "deliveries": msgs * deliveries,
        "members_per_message": members,
        "presence_changes": changes,
        "sign_ins": sign_ins,
        "broadcast_recipients": recipients,
        "forwards": msgs * forwards_per_message(mix, share, gateways, alternate),
        "batch_size": batch,
        "commits": commits,
        "statements": statements,
        "redis_ops": redis_ops,
        "wal_bytes": msgs * m["pg_wal_bytes_per_message"],
        "cpu": cpu,
    }


def size(costs, profile, people):
    """Machines per component (iterating: gateways change forwards and presence costs,
    replicas change batch sizes)."""
    h = profile["headroom"]
    online = people * profile["online_share"]
    gateways, replicas = 1, 1
    for _ in range(20):
        x = load(costs, profile, people, gateways, replicas)
        need = {
            "gateway CPU": x["cpu"]["gateway"] / (profile["gateway_cores"] * h),
            "gateway memory": online * costs["connection"]["gateway_kib"] / 2**20
            / (profile["gateway_memory_gib"] * h),
            "gateway connections": online / profile["max_connections_per_gateway"],
        }
        g = max(1, math.ceil(max(need.values())))
        r = max(1, math.ceil(x["cpu"]["storage"] / (profile["storage_cores"] * h)))
        if (g, r) == (gateways, replicas):
            break
        gateways, replicas = g, r
    routers = max(1, math.ceil(x["cpu"]["router"] / (profile["router_cores"] * h)))
    # Redis is single-threaded: one core per shard.
    shards = max(1, math.ceil(x["cpu"]["redis"] / h))
    db_cores = x["cpu"]["postgresql"] / h
    return {
        "people": people,
        "load": x,
        "gateways": gateways,
        "gateway_binding": max(need, key=need.get),
        "gateway_needs": need,
        "routers": routers,
        "redis_shards": shards,
        "storage_replicas": replicas,
        "database_cores": db_cores,
        # Writes go to one primary (history is not partitioned yet): the smallest usual
        # machine that holds them at the headroom, None when none does.
        "database_primary_cores": next((n for n in (2, 4, 8, 16, 32, 64, 128)
                                        if db_cores <= n <= profile["database_max_cores"]),
                                       None),
        # How far the peak may grow before one primary needs more than the largest node.
        "database_growth": profile["database_max_cores"] / db_cores if db_cores else math.inf,
    }


def report(s, profile):
    x = s["load"]
    c = x["cpu"]
    h = int(profile["headroom"] * 100)
    lines = [
        f"== {s['people']:,} people, {x['online']:,.0f} online: "
        f"{x['messages']:,.0f} msg/s, {x['deliveries']:,.0f} deliveries/s, "
        f"{x['presence_changes']:,.0f} presence changes/s, {x['sign_ins']:,.0f} sign-ins/s",
        f"   gateways          {s['gateways']:>4}  ({profile['gateway_cores']} cores, "
        f"{profile['gateway_memory_gib']} GiB; bound by {s['gateway_binding']}: "
        + ", ".join(f"{k} {v:.1f}" for k, v in s["gateway_needs"].items())
        + f"; CPU {c['gateway']:.1f} cores)",
        f"   routers           {s['routers']:>4}  ({profile['router_cores']} cores; CPU "
        f"{c['router']:.2f} cores; {x['forwards']:,.0f} forwards/s)",
        f"   Redis shards      {s['redis_shards']:>4}  (1 core each; CPU {c['redis']:.2f} "
        f"cores; {x['redis_ops']:,.0f} ops/s)",
        f"   storage replicas  {s['storage_replicas']:>4}  ({profile['storage_cores']} cores; "
        f"CPU {c['storage']:.2f} cores; batches of {x['batch_size']:.1f})",
        f"   database primary  {s['database_primary_cores'] or 'none':>4}  cores ("
        f"{s['database_cores']:.1f} needed at {h}%, "
        f"{c['postgresql']:.2f} cores busy; {x['commits']:,.0f} commits/s, "
        f"{x['statements']:,.0f} statements/s, WAL {x['wal_bytes'] / 2**20:.1f} MiB/s)",
        f"   the database primary can take {s['database_growth']:.1f}x this peak before it "
        f"needs more than {profile['database_max_cores']} cores",
    ]
    return "\n".join(lines)


def local(costs, profile, people, window, broadcasts_in_window):
    """What the local cluster (2 gateways, 2 routers, 1 storage) should see, in the units
    scripts/bench-capacity.py compare measures."""
    x = load(costs, profile, people, gateways=2, replicas=1, window=window,
             broadcasts_in_window=broadcasts_in_window, signins=False, alternate=True)
    out = {f"cpu % {r}": 100 * v for r, v in x["cpu"].items()}
    out.update({
        "messages/s": x["messages"],
        "deliveries/s": x["deliveries"],
        "presence changes/s": x["presence_changes"],
        "router forwards/s": x["forwards"],
        "Redis ops/s": x["redis_ops"],
        "PostgreSQL commits/s": x["commits"],
        "PostgreSQL statements/s": x["statements"],
        "connections": x["online"],
    })
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--costs", required=True, help="costs.json from scripts/bench-capacity.sh")
    ap.add_argument("--profile", default=str(HERE / "capacity-profile.json"))
    ap.add_argument("--people", type=int, action="append",
                    help="organisation size (repeatable; default 100,000 and 1,000,000)")
    ap.add_argument("--local", action="store_true",
                    help="predict the local cluster's load (2 gateways, 2 routers, 1 storage)")
    ap.add_argument("--window", type=float, help="--local: seconds of the measured window")
    ap.add_argument("--broadcasts-in-window", type=int, default=0)
    ap.add_argument("--json", help="write the result here too")
    a = ap.parse_args()
    costs = json.loads(pathlib.Path(a.costs).read_text())
    profile = json.loads(pathlib.Path(a.profile).read_text())
    if not 0 < profile["online_share"] <= 1 or not 0 < profile["headroom"] <= 1:
        sys.exit("error: online_share and headroom must be above 0 and at most 1")
    people = a.people or [100_000, 1_000_000]
    if any(p < 1 for p in people):
        sys.exit("error: --people must be at least 1")
    if a.local:
        if not a.window or a.window <= 0:
            sys.exit("error: --local needs --window SECONDS")
        result = local(costs, profile, people[0], a.window, a.broadcasts_in_window)
        for k, v in result.items():
            print(f"{k:<26}{v:12.1f}")
    else:
        result = [size(costs, profile, p) for p in people]
        print("\n".join(report(s, profile) for s in result))
    if a.json:
        pathlib.Path(a.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
