#!/usr/bin/env python3
"""Print pg_prodguard alerts as they are raised: LISTEN prodguard_alert, one line each.

    pip install "psycopg[binary]"
    python3 listen_alerts.py "host=db.internal dbname=app user=monitor"

Each alert arrives once its row is committed to prodguard.alerts. Any role may NOTIFY on
the channel, so each payload is checked against that row (the role needs SELECT on
prodguard.alerts: pg_monitor, prodguard_auditor or prodguard_operator).
"""
import json
import sys

import psycopg

dsn = sys.argv[1] if len(sys.argv) > 1 else ""
# (a second connection for the lookups: the first is busy delivering notifications)
with psycopg.connect(dsn, autocommit=True) as conn, psycopg.connect(dsn, autocommit=True) as db:
    conn.execute("LISTEN prodguard_alert")
    print("listening for prodguard_alert", flush=True)
    for note in conn.notifies():
        a = json.loads(note.payload) if note.payload.startswith("{") else {}
        stored = db.execute("SELECT kind FROM prodguard.alerts WHERE id = %s AND kind = %s",
                              (a.get("id") if isinstance(a.get("id"), int) else None,
                               a.get("kind"))).fetchone()
        if stored is None:
            print(f"ignored a notification not in prodguard.alerts (pid {note.pid})", flush=True)
            continue
        print(f"{a['at']} [{a['kind']}] {a['database']}: {a['object']}: {a['detail']}"
              f" (user {a['user']}, application {a['application'] or '-'},"
              f" client {a['client_addr'] or 'local'})", flush=True)
