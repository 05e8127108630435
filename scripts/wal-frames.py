#!/usr/bin/env python3
"""Which tables and indexes the pages in SQLite's log (WAL) belong to: what the embedded
server's commits write (docs/benchmarks.md, "What a message writes").

    scripts/wal-frames.py DATA_DIR

Run it while the server is under load: it reads `switchboard.db-wal` once (the frames
of the log's current cycle, since its last restart; older frames left further on are
counted apart as "stale") and maps each frame's page to its owner with SQLite's `dbstat`
table. A page written by several commits of the cycle counts once per commit, as the
disk sees it. Reads only; the server need not stop.
"""
import collections
import sqlite3
import struct
import sys

if len(sys.argv) != 2:
    sys.exit(__doc__)
data_dir = sys.argv[1]
wal = open(f"{data_dir}/switchboard.db-wal", "rb").read()
if len(wal) < 32:
    sys.exit("the log is empty: nothing written since the last checkpoint restarted it")
page_size = struct.unpack(">I", wal[8:12])[0]
salt = wal[16:24]  # frames of the current cycle carry the header's salt
current, stale = collections.Counter(), collections.Counter()
frame = 24 + page_size
for at in range(32, len(wal) - frame + 1, frame):
    page = struct.unpack(">I", wal[at:at + 4])[0]
    if page == 0:
        break
    (current if wal[at + 8:at + 16] == salt else stale)[page] += 1

db = sqlite3.connect(f"file:{data_dir}/switchboard.db?mode=ro", uri=True)
owner = dict(db.execute("SELECT pageno, name FROM dbstat"))
for label, frames in (("current", current), ("stale", stale)):
    total = sum(frames.values())
    if not total:
        continue
    by = collections.Counter()
    for page, n in frames.items():
        by[owner.get(page, "(free or new)")] += n
    print(f"{label}: {total} frames of {page_size} bytes, {len(frames)} distinct pages")
    for name, n in by.most_common(12):
        print(f"  {n:7d}  {100 * n / total:5.1f}%  {name}")
