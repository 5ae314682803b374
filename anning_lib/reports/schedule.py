"""The monthly report schedule: on the 1st of each month at 02:00 Asia/Shanghai the previous month's statements
of every enterprise (and the park-level reports) are produced; a run missed while the server was down is caught
up when it starts again.

Runs inside ``anning serve`` (APScheduler's background scheduler, one thread) or on its own
(``anning report scheduler``). Only the reports of a month not yet produced (no ``done`` run of that kind,
enterprise and month) are run, so the catch-up after a restart and the monthly job never produce one twice.
A month the store does not cover yet (no complete month of measurements) is skipped with a log line.

References
----------
.. [1] APScheduler 3.x documentation, "cron trigger" (``CronTrigger(day=1, hour=2, timezone=...)``) and
   "Missed job executions and coalescing" (``misfire_grace_time``, ``coalesce``).
"""

from __future__ import annotations

import datetime as dt
import logging
from zoneinfo import ZoneInfo

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from anning_lib.config import Settings, get_settings
from anning_lib.errors import AnningError
from anning_lib.reports.runner import KINDS, run_report
from anning_lib.store.schema import TABLES

log = logging.getLogger(__name__)
CRON = {"day": 1, "hour": 2, "minute": 0}
"""When the monthly job runs (local time of ``settings.timezone``)."""
CATCH_UP_DELAY_S = 60.0
"""The catch-up runs this long after the scheduler starts (the server is up and serving first) [s]."""


def previous_month(now: dt.datetime, tz: str) -> str:
    """``YYYY-MM`` of the local month before ``now`` (pure)."""
    local = pd.Timestamp(now).tz_convert(tz)
    return str(local.tz_localize(None).to_period("M") - 1)


def missing_runs(engine: Engine, park, month: str) -> list[tuple[str, str | None]]:
    """``(kind, enterprise_id or None)`` of the month's reports with no ``done`` run yet, in kind order."""
    from anning_lib.carbon.records import month_bounds

    start, _end = month_bounds(month, get_settings().timezone)
    r = TABLES["report_run"]
    with engine.connect() as conn:
        done = {(k, e) for k, e in conn.execute(sa.select(r.c.kind, r.c.enterprise_id).where(
            r.c.status == "done", r.c.period_start == start.to_pydatetime()))}
    todo = []
    for k in KINDS.values():
        for eid in ([e.id for e in park.enterprises] if k.per_enterprise else [None]):
            if (k.name, eid) not in done:
                todo.append((k.name, eid))
    return todo


def run_due(engine: Engine, park, now: dt.datetime | None = None, settings: Settings | None = None) -> list[dict]:
    """Produce the previous month's reports not produced yet; returns their ``report_run`` rows.

    Skipped (empty list, a log line) when the store does not hold the whole previous month yet.
    """
    from anning_lib.carbon.records import last_complete_month

    settings = settings or get_settings()
    month = previous_month(now or dt.datetime.now(dt.UTC), settings.timezone)
    try:
        covered = last_complete_month(engine, settings.timezone)
    except AnningError as err:
        log.warning("monthly reports of %s skipped: %s", month, err)
        return []
    if covered < month:
        log.warning("monthly reports of %s skipped: the store covers whole months up to %s only", month, covered)
        return []
    rows = []
    for kind, eid in missing_runs(engine, park, month):
        rows.append(run_report(engine, kind, month, eid, settings=settings))
        log.info("report %s %s %s: %s", kind, eid or "park", month, rows[-1]["status"])
    return rows


def start_scheduler(engine: Engine, park, settings: Settings | None = None, *, blocking: bool = False):
    """An APScheduler scheduler with the monthly job (``CRON``, local time) and a catch-up run
    :data:`CATCH_UP_DELAY_S` after start; started and returned (``blocking``: runs until interrupted)."""
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.schedulers.blocking import BlockingScheduler
    from apscheduler.triggers.cron import CronTrigger

    settings = settings or get_settings()
    tz = ZoneInfo(settings.timezone)
    sched = (BlockingScheduler if blocking else BackgroundScheduler)(timezone=tz)
    sched.add_job(run_due, CronTrigger(**CRON, timezone=tz), args=[engine, park], kwargs={"settings": settings},
                  id="monthly-reports", coalesce=True, max_instances=1, misfire_grace_time=6 * 3600)
    sched.add_job(run_due, "date", run_date=dt.datetime.now(tz) + dt.timedelta(seconds=CATCH_UP_DELAY_S),
                  args=[engine, park], kwargs={"settings": settings}, id="catch-up", max_instances=1)
    log.info("report schedule: monthly at %02d:%02d on day %d (%s); catch-up in %.0f s", CRON["hour"],
             CRON["minute"], CRON["day"], settings.timezone, CATCH_UP_DELAY_S)
    sched.start()
    return sched
