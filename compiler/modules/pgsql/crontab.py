"""The database superuser's crontab (`pg_crontab`, when not empty), written to cron's spool for the platform.

Each entry becomes one line of a file cron reads as that user, so an entry must be exactly one schedule and a
command: anything else would be dropped by cron (a bad line) or run as something else (an extra line).
"""

from __future__ import annotations

import re

from ...bundle import FileSpec, HostBundle
from ...errors import Report, join_path
from ...model import Host
from ...render import RenderError, render
from .model import MODULE, PgInstance
from .provision_check import USER_NAME

CRON_LINE = re.compile(r"^(@(reboot|yearly|annually|monthly|weekly|daily|midnight|hourly)|(\S+\s+){4}\S+)\s+\S")
# the database superuser's crontab, by platform family (cron's spool; Debian's needs group crontab)
CRONTAB = {"deb": ("/var/spool/cron/crontabs/{user}", "crontab"), "rpm": ("/var/spool/cron/{user}", None)}


def check_crontab(p, report: Report) -> None:
    for i, line in enumerate(p.get("pg_crontab") or []):
        path = join_path(p.source("pg_crontab"), i)
        if any(c in str(line) for c in "\n\r\x00"):
            report.error(path, "a crontab entry must be one line")
        elif not CRON_LINE.match(str(line).strip()):
            report.error(path, "a crontab entry is five time fields (or @daily ...) followed by a command")


def render_crontab(host: Host, inst: PgInstance, b: HostBundle) -> None:
    p = host.params
    dbsu = p["pg_dbsu"]
    if not USER_NAME.match(str(dbsu)):
        raise RenderError(f"pg_dbsu {dbsu!r} cannot name a crontab")
    template, group = CRONTAB[host.platform.family]
    entries = [str(x).strip() for x in p["pg_crontab"]]
    text = render("pgsql/crontab.j2", dbsu=dbsu, inst_name=inst.name, entries=entries)
    path = template.format(user=dbsu)
    b.add(FileSpec(path, MODULE, text, "crontab", owner=dbsu, group=group or dbsu, mode="0600"))
    b.packages.add("cron" if host.platform.family == "deb" else "cronie")
