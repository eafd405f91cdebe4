"""A client that writes without pause through a service port and says which writes were acknowledged.

Runs inside a testbed host (python3 and psycopg2 from Debian; no sty code), started by the fault scenarios:

    python3 fault_writer.py HOST PORT DBNAME USER PASSWORD RUN STOPFILE MAXSECONDS

Each write is one autocommit INSERT of (RUN, n) with n counting up; a write counts as acknowledged only when
COMMIT returned. Any error closes the connection and the next write opens a new one, so the longest gap
between two acknowledged writes is the outage a client saw. It stops when STOPFILE exists (or after
MAXSECONDS) and prints one JSON document: the acknowledged numbers, the error count and the outage.
"""

from __future__ import annotations

import json
import os
import sys
import time

import psycopg2


def main() -> int:
    host, port, dbname, user, password, run, stopfile, limit = sys.argv[1:9]
    deadline = time.monotonic() + float(limit)
    acked: list[int] = []
    errors, n, conn = 0, 0, None
    last_error = ""
    last_ok: float | None = None
    first_ok: float | None = None
    longest, longest_at = 0.0, None
    while time.monotonic() < deadline and not os.path.exists(stopfile):
        n += 1
        try:
            if conn is None:
                conn = psycopg2.connect(
                    host=host,
                    port=int(port),
                    dbname=dbname,
                    user=user,
                    password=password,
                    connect_timeout=2,
                    keepalives=1,
                    keepalives_idle=1,
                    keepalives_interval=1,
                    keepalives_count=2,
                    tcp_user_timeout=2000,
                    application_name="fault-writer",
                )
                conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("INSERT INTO faults (run, n) VALUES (%s, %s)", (run, n))
            now = time.monotonic()
            acked.append(n)
            if last_ok is not None and now - last_ok > longest:
                longest, longest_at = now - last_ok, last_ok - (first_ok or last_ok)
            first_ok = first_ok if first_ok is not None else now
            last_ok = now
            time.sleep(0.01)
        except psycopg2.Error as exc:
            errors += 1
            last_error = str(exc).strip()[:300]
            if conn is not None:
                try:
                    conn.close()
                except psycopg2.Error:
                    pass
            conn = None
            time.sleep(0.05)
    ran = (last_ok - first_ok) if first_ok is not None and last_ok is not None else 0.0
    print(
        json.dumps(
            {
                "acked": acked,
                "attempts": n,
                "errors": errors,
                "last_error": last_error,
                "outage_ms": round(longest * 1000),
                "outage_after_s": round(longest_at, 1) if longest_at is not None else None,
                "ran_s": round(ran, 1),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
