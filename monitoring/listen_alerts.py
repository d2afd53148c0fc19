#!/usr/bin/env python3
"""Print pg_prodguard alerts as they are raised: LISTEN prodguard_alert, one line each.

    pip install "psycopg[binary]"
    python3 listen_alerts.py "host=db.internal dbname=app user=monitor"

Each alert arrives once its row is committed to prodguard.alerts. Forward the lines to a
chat channel or a pager instead of printing them.
"""
import json
import sys

import psycopg

with psycopg.connect(sys.argv[1] if len(sys.argv) > 1 else "", autocommit=True) as conn:
    conn.execute("LISTEN prodguard_alert")
    print("listening for prodguard_alert", flush=True)
    for note in conn.notifies():
        a = json.loads(note.payload)
        print(f"{a['at']} [{a['kind']}] {a['database']}: {a['object']}: {a['detail']}"
              f" (user {a['user']}, application {a['application'] or '-'},"
              f" client {a['client_addr'] or 'local'})", flush=True)
