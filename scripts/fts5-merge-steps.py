#!/usr/bin/env python3
"""Times the SQLite search index's merge steps the way the embedded server takes them
(docs/benchmarks.md, "Statistics gathered too early").

On a COPY of a Switchboard SQLite database (it writes to it): each round indexes
--per-round messages in one transaction (bodies drawn from the database's own messages,
new rowids in its conversations), then runs FTS5 'merge' steps of --pages pages, each its
own transaction, until one does nothing (at most 4 a round), as the store's indexer and
merger do. Prints every step over 20 ms with the index's structure (segments per level,
pages each), then the steps' median and maximum wall and CPU time, and how SQLite plans
the range delete a merge step runs.

Needs a SQLite with FTS5's contentless_delete (3.43 or later; the system's may be older):
    python3 -m venv /tmp/apsw && /tmp/apsw/bin/pip install apsw==3.46.0.1
    /tmp/apsw/bin/python scripts/fts5-merge-steps.py /tmp/copy.db --rounds 120
"""
import argparse
import random
import statistics
import sys
import time

import apsw


def varint(b, i):
    """SQLite's varint at b[i]: (value, next offset)."""
    v = 0
    for k in range(8):
        c = b[i + k]
        v = (v << 7) | (c & 0x7F)
        if not c & 0x80:
            return v, i + k + 1
    return (v << 8) | b[i + 8], i + 9


def structure(db):
    """The index's levels from its structure record (row 10 of the pages table): for
    each level, (segments being merged, [(segment id, pages)])."""
    b = db.execute("SELECT block FROM message_search_data WHERE id = 10").fetchone()[0]
    i = 4  # the cookie
    v2 = b[4:8] == b"\xff\x00\x00\x01"  # segments carry origins and tombstones
    if v2:
        i = 8
    levels, i = varint(b, i)
    _segments, i = varint(b, i)
    _writes, i = varint(b, i)
    out = []
    for _ in range(levels):
        merging, i = varint(b, i)
        count, i = varint(b, i)
        segments = []
        for _ in range(count):
            segid, i = varint(b, i)
            first, i = varint(b, i)
            last, i = varint(b, i)
            if v2:
                for _ in range(5):  # origin1, origin2, tombstone pages/entries, entries
                    _, i = varint(b, i)
            segments.append((segid, last - first + 1))
        out.append((merging, segments))
    return out


def show(db):
    for level, (merging, segments) in enumerate(structure(db)):
        if segments:
            print(f"    level {level}: merging {merging}, segments (id, pages) {segments}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("database", help="a copy of switchboard.db (it is written to)")
    p.add_argument("--rounds", type=int, default=120)
    p.add_argument("--per-round", type=int, default=125, help="messages indexed a round")
    p.add_argument("--pages", type=int, default=8, help="pages a merge step writes")
    a = p.parse_args()
    db = apsw.Connection(a.database)
    db.execute("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL")
    plan = db.execute(
        "EXPLAIN QUERY PLAN DELETE FROM message_search_data WHERE id >= ? AND id <= ?", (1, 2)
    ).fetchall()
    print("a merge step's range delete:", plan[0][3])
    print("index before:")
    show(db)
    bodies = [r[0] for r in db.execute("SELECT body FROM messages ORDER BY random() LIMIT 20000")]
    conversations = [r[0] for r in db.execute("SELECT id FROM conversations")]
    if not bodies:
        sys.exit("no messages to draw bodies from")
    seq = 1 << 31  # above any seeded seq
    walls, cpus = [], []
    for r in range(a.rounds):
        with db:
            for _ in range(a.per_round):
                seq += 1
                c = random.choice(conversations)
                db.execute(
                    "INSERT INTO message_search (rowid, body, conv) VALUES (?, ?, ?)",
                    ((c << 32) + seq, random.choice(bodies), f"c{c}"),
                )
        for step in range(4):
            before = db.totalchanges()
            wall, cpu = time.perf_counter(), time.process_time()
            db.execute(
                "INSERT INTO message_search (message_search, rank) VALUES ('merge', ?)",
                (a.pages,),
            )
            wall, cpu = (time.perf_counter() - wall) * 1e3, (time.process_time() - cpu) * 1e3
            if db.totalchanges() - before < 2:  # FTS5 merged nothing
                break
            walls.append(wall)
            cpus.append(cpu)
            if wall > 20:
                print(f"round {r} step {step}: {wall:.1f} ms ({cpu:.1f} ms CPU)")
                show(db)
    if walls:
        print(
            f"{len(walls)} steps: median {statistics.median(walls):.2f} ms "
            f"({statistics.median(cpus):.2f} ms CPU), at most {max(walls):.1f} ms"
        )
    print("index after:")
    show(db)


if __name__ == "__main__":
    main()
