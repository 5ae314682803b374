"""Reports asked for on the portal's reports page: checked, recorded as ``queued`` runs, produced one after the
other in a background thread of the server process (a run takes seconds of papermill and WeasyPrint; the page's
callbacks must not wait for it: they run on the server's event loop, which serves every open page).

The page's list shows the queued rows at once and their status as they run (``queued`` -> ``running`` ->
``done``/``failed``); a failed run raises its alarm like a scheduled one (:mod:`anning_lib.reports.runner`).
"""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor

from sqlalchemy.engine import Engine

from anning_lib.auth.access import Actor, require_role
from anning_lib.auth.audit import audit
from anning_lib.park.schema import Park
from anning_lib.reports.runner import KINDS, check_request, queue_run, run_report

log = logging.getLogger(__name__)
_POOL = ThreadPoolExecutor(max_workers=1, thread_name_prefix="report-run")
"""One report at a time per server process: a statement keeps a core busy for seconds."""


def _run(engine: Engine, kind: str, month: str, enterprise_id: str | None, lang: str, run_id: int,
         user_id: int | None) -> dict:
    try:
        return run_report(engine, kind, month, enterprise_id, lang=lang, requested_by=user_id, run_id=run_id)
    except Exception:  # noqa: BLE001 - a thread's exception would vanish: log it
        log.exception("report run %s failed before it started", run_id)
        raise


def request_runs(engine: Engine, park: Park, actor: Actor, kind: str, month: str, enterprise: str | None, *,
                 lang: str = "zh_CN") -> tuple[list[int], list[Future]]:
    """Queue the report ``kind`` of ``month`` for ``enterprise`` (an id, ``"all"`` for every enterprise of the
    park, None for a park-level kind) on behalf of ``actor``.

    Every request is checked before anything is queued (all or none); one ``audit_log`` row names who asked.

    Returns
    -------
    (list of int, list of Future)
        The ``report_run`` ids, queued in order, and the futures of their runs (the page ignores them; tests
        wait on them).

    Raises
    ------
    AccessError
        when ``actor`` may not run reports (only operators and admins may).
    ReportError
        naming the bad field: unknown kind, malformed month, unknown enterprise.
    """
    require_role(actor, "report.run")
    per = kind in KINDS and KINDS[kind].per_enterprise
    ids = [e.id for e in park.enterprises] if per and enterprise == "all" else [enterprise]
    for eid in ids:                                      # all valid, or nothing is queued
        check_request(engine, kind, month, eid)
    run_ids = [queue_run(engine, kind, month, eid, lang=lang, requested_by=actor.user_id) for eid in ids]
    audit(engine, "report_requested", f"{kind}:{enterprise or 'park'}:{month}", {"report_runs": run_ids},
          actor.user_id)
    futures = [_POOL.submit(_run, engine, kind, month, eid, lang, rid, actor.user_id) for eid, rid in zip(ids, run_ids)]
    return run_ids, futures
