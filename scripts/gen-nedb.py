#!/usr/bin/env python3
"""Write a happn 2.x database file (nedb JSON lines) of N records, for measuring
`happn-rs import` (docs/PERFORMANCE.md, "Import of 1,000,000 records").

Usage: scripts/gen-nedb.py N OUT   (e.g. scripts/gen-nedb.py 1000000 /tmp/happn-1m.nedb)

The lines are what happn 2.21's nedb provider writes: the path index line first, then one line
per document with `_id` = `path`, `{"$$date": ms}` timestamps, the `_ADMIN` group and user.
The documents are device readings of about 200 bytes under 1,000 devices. Every 50th path is
written twice (the later line wins on import) so the log replay is exercised, as in a real file.
"""
import sys

n, out = int(sys.argv[1]), sys.argv[2]
t0 = 1795687000000
with open(out, "w") as f:
    f.write('{"$$indexCreated":{"fieldName":"path","unique":true}}\n')
    f.write('{"_id":"/_SYSTEM/_SECURITY/_GROUP/_ADMIN","data":{"name":"_ADMIN","permissions":{"*":{"actions":["*"]}}},'
            '"path":"/_SYSTEM/_SECURITY/_GROUP/_ADMIN","created":{"$$date":%d},"modified":{"$$date":%d}}\n' % (t0, t0))
    records = 1
    i = 0
    while records < n:
        path = "/devices/%04d/readings/%07d" % (i % 1000, i)
        ts = t0 + i
        line = ('{"_id":"%s","data":{"temperature":%d.%d,"humidity":%d,"status":"%s","firmware":"v1.%d.%d",'
                '"location":{"site":"site-%d","rack":%d},"tags":["sensor","batch-%d"],"at":{"$$date":%d}},'
                '"path":"%s","created":{"$$date":%d},"modified":{"$$date":%d}}\n') % (
            path, 15 + i % 20, i % 10, 30 + i % 50, "ok" if i % 7 else "warn", i % 9, i % 13,
            i % 40, i % 12, i % 100, ts, path, ts, ts)
        f.write(line)
        if i % 50 == 0:
            f.write(line.replace('"status":"', '"status":"re-', 1))
        records += 1
        i += 1
