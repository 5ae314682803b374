"""Run a report template: papermill executes the notebook with its parameters, nbconvert keeps its outputs as
HTML (no code), WeasyPrint prints the letterhead page to PDF; every run is a ``report_run`` row with status,
attempts, SHA-256 checksum and path.

A run that fails is tried again (``settings.report_attempts`` tries, ``settings.report_retry_s`` apart), then
recorded as ``failed`` with the error and an alarm (rule ``report.failed``, target ``<kind>:<enterprise>:<month>``)
is raised; a later successful run of the same report clears it. :func:`run_many` runs one report per enterprise
and goes on after a failure, so one enterprise's broken data never holds back the others' statements.

References
----------
.. [1] papermill documentation, "Executing a notebook": ``papermill.execute_notebook(input, output,
   parameters=...)``; a cell tagged ``parameters`` holds the defaults, papermill adds the given values after it.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from anning_lib.config import Settings, get_settings
from anning_lib.errors import AnningError, ReportError
from anning_lib.i18n import lang_of, t
from anning_lib.reports.pdf import notebook_body, page_html, sha256_of, write_pdf
from anning_lib.store.schema import TABLES

log = logging.getLogger(__name__)
ALARM_RULE = "report.failed"
"""``alarm.rule_id`` of a report run that failed after every try."""


@dataclass(frozen=True)
class ReportKind:
    """A report template: ``reports/<template>``; ``per_enterprise`` reports take an ``enterprise_id``."""

    name: str
    template: str
    per_enterprise: bool
    title_key: str


KINDS = {k.name: k for k in (
    ReportKind("monthly-statement", "monthly_statement.ipynb", True, "reports_kind_monthly-statement"),
    ReportKind("park-monthly", "park_monthly.ipynb", False, "reports_kind_park-monthly"),
    ReportKind("dispatch-settlement", "dispatch_settlement.ipynb", False, "reports_kind_dispatch-settlement"),
)}
"""The report kinds ``anning report run`` knows, by name."""


def check_request(engine: Engine, kind: str, month: str, enterprise_id: str | None,
                  tz: str = "Asia/Shanghai") -> tuple[ReportKind, dt.datetime, dt.datetime]:
    """The kind and the month's bounds (UTC) of a valid request; ReportError naming the bad field otherwise."""
    from anning_lib.carbon.records import month_bounds

    if kind not in KINDS:
        raise ReportError(f"kind: unknown report {kind!r} (one of {', '.join(KINDS)})")
    k = KINDS[kind]
    try:
        start, end = month_bounds(month, tz)
    except AnningError as err:
        raise ReportError(f"month: expected YYYY-MM, got {month!r} ({err})") from None
    if k.per_enterprise:
        ent = TABLES["enterprise"]
        with engine.connect() as conn:
            known = conn.execute(sa.select(ent.c.id).where(ent.c.id == (enterprise_id or ""))).first()
        if known is None:
            raise ReportError(f"enterprise: unknown enterprise {enterprise_id!r}")
    elif enterprise_id is not None:
        raise ReportError(f"enterprise: the {kind} report is park-level, got {enterprise_id!r}")
    return k, start.to_pydatetime(), end.to_pydatetime()


def _update(engine: Engine, run_id: int, **values) -> None:
    r = TABLES["report_run"]
    with engine.begin() as conn:
        conn.execute(sa.update(r).where(r.c.id == run_id).values(**values))


def output_paths(out_dir: Path, kind: str, month: str, enterprise_id: str | None) -> tuple[Path, Path]:
    """``<out>/<kind>/<month>/<enterprise or park>_<kind>_<month>.pdf`` and the ``.html`` beside it."""
    stem = f"{enterprise_id or 'park'}_{kind}_{month}"
    folder = Path(out_dir) / kind / month
    return folder / f"{stem}.pdf", folder / f"{stem}.html"


def produce(engine: Engine, k: ReportKind, month: str, enterprise_id: str | None, run_id: int, *, lang: str,
            settings: Settings, template_dir: Path | None = None) -> tuple[Path, Path]:
    """Execute the template and write its HTML and PDF (each written to a temporary name, then renamed, so a
    failed run leaves no half-written file under the final name). Raises whatever the template raised."""
    import papermill

    template = Path(template_dir or settings.reports_dir) / k.template
    pdf, page = output_paths(settings.report_out_dir, k.name, month, enterprise_id)
    work = settings.report_out_dir / ".work" / str(run_id)
    work.mkdir(parents=True, exist_ok=True)
    secret_url = engine.url.render_as_string(hide_password=False)
    params = {"db_url": secret_url, "month": month, "lang": lang}
    if k.per_enterprise:
        params["enterprise_id"] = enterprise_id
    try:
        nb = papermill.execute_notebook(str(template), str(work / k.template), parameters=params,
                                        kernel_name="python3", cwd=str(work), progress_bar=False, log_output=False)
    finally:     # the executed copy stays for a look after a failure, without the database password
        redact(work / k.template, secret_url, engine.url.render_as_string(hide_password=True))
    who = enterprise_id or t("reports_park_level", lang)
    at = dt.datetime.now(ZoneInfo(settings.timezone)).strftime("%Y-%m-%d %H:%M")
    colophon = t("report_colophon", lang, run=run_id, at=at)
    html_text = page_html(notebook_body(nb), f"{t(k.title_key, lang)} {who} {month}", lang=lang, colophon=colophon)
    pdf.parent.mkdir(parents=True, exist_ok=True)
    tmp_html, tmp_pdf = page.with_suffix(f".{run_id}.tmp.html"), pdf.with_suffix(f".{run_id}.tmp.pdf")
    tmp_html.write_text(html_text, encoding="utf-8")
    write_pdf(html_text, tmp_pdf)
    os.replace(tmp_html, page)
    os.replace(tmp_pdf, pdf)
    return pdf, page


def redact(path: Path, secret: str, shown: str) -> None:
    """Replace every occurrence of ``secret`` (the database URL with its password) in the file at ``path`` by
    ``shown`` (the URL with ``***``), as text and as JSON-escaped text; nothing to do when they are equal or the
    file does not exist."""
    if secret == shown or not path.is_file():
        return
    text = path.read_text(encoding="utf-8")
    for a, b in ((secret, shown), (json.dumps(secret)[1:-1], json.dumps(shown)[1:-1])):
        text = text.replace(a, b)
    path.write_text(text, encoding="utf-8")


def _error_text(err: BaseException) -> str:
    """The error's type and message and the last frames (papermill's error names the failing cell)."""
    tb = "".join(traceback.format_exception(type(err), err, err.__traceback__, limit=-3))
    return tb[-4000:]


def queue_run(engine: Engine, kind: str, month: str, enterprise_id: str | None = None, *, lang: str = "zh_CN",
              requested_by: int | None = None, status: str = "queued", tz: str = "Asia/Shanghai") -> int:
    """Check a request (:func:`check_request`) and record it as a ``report_run`` row; returns its id."""
    _k, start, end = check_request(engine, kind, month, enterprise_id, tz)
    r = TABLES["report_run"]
    with engine.begin() as conn:
        return conn.execute(sa.insert(r).values(
            kind=kind, enterprise_id=enterprise_id, period_start=start, period_end=end, status=status,
            params={"month": month, "lang": lang_of(lang)}, requested_by=requested_by, attempts=0,
            started_at=dt.datetime.now(dt.UTC)).returning(r.c.id)).scalar_one()


def run_report(engine: Engine, kind: str, month: str, enterprise_id: str | None = None, *, lang: str = "zh_CN",
               requested_by: int | None = None, settings: Settings | None = None,
               template_dir: Path | None = None, run_id: int | None = None) -> dict:
    """Produce one report and record it in ``report_run``; returns the row as a dict.

    Parameters
    ----------
    engine : sqlalchemy.engine.Engine
        The store (the template reads the same database).
    kind : str
        A key of :data:`KINDS`, e.g. ``monthly-statement``.
    month : str
        ``YYYY-MM`` (Asia/Shanghai).
    enterprise_id : str, optional
        Required for a per-enterprise kind, refused for a park-level one.
    lang : {"zh_CN", "en"}
    requested_by : int, optional
        ``app_user.id`` of who asked (None: the scheduler or the command line).
    settings : Settings, optional
        ``report_attempts``, ``report_retry_s``, ``reports_dir``, ``report_out_dir`` (default: the process's).
    template_dir : Path, optional
        Folder of the templates (default ``settings.reports_dir``; tests use a broken template).
    run_id : int, optional
        A ``queued`` row of :func:`queue_run` to run (the portal queues requests); None records a new row.

    Returns
    -------
    dict
        The ``report_run`` row: ``status`` ``done`` (``output_path`` the PDF, ``checksum`` ``sha256:...``) or
        ``failed`` (``error``); ``attempts`` tries made.

    Raises
    ------
    ReportError
        for a bad request (kind, month, enterprise), before anything is recorded. A failing template does not
        raise: it is recorded as failed and alarmed.
    """
    from anning_lib.quality.alarms import clear_event, raise_event

    settings = settings or get_settings()
    k = check_request(engine, kind, month, enterprise_id, settings.timezone)[0]
    lang = lang_of(lang)
    if run_id is None:
        run_id = queue_run(engine, kind, month, enterprise_id, lang=lang, requested_by=requested_by,
                           status="running", tz=settings.timezone)
    else:
        _update(engine, run_id, status="running", started_at=dt.datetime.now(dt.UTC))
    target = f"{kind}:{enterprise_id or 'park'}:{month}"
    error = ""
    for attempt in range(1, settings.report_attempts + 1):
        try:
            pdf, _page = produce(engine, k, month, enterprise_id, run_id, lang=lang, settings=settings,
                                 template_dir=template_dir)
        except Exception as err:  # noqa: BLE001 - any failure of a template is recorded, tried again, alarmed
            error = _error_text(err)
            log.warning("report %s try %d/%d failed: %s", target, attempt, settings.report_attempts,
                        str(err).strip().splitlines()[-1:] or err)
            _update(engine, run_id, attempts=attempt, error=error)
            if attempt < settings.report_attempts:
                time.sleep(settings.report_retry_s)
            continue
        _update(engine, run_id, status="done", attempts=attempt, output_path=str(pdf.resolve()),
                checksum=sha256_of(pdf), finished_at=dt.datetime.now(dt.UTC), error=None)
        clear_event(engine, ALARM_RULE, target, detail={"report_run": run_id})
        return load_run_row(engine, run_id)
    _update(engine, run_id, status="failed", finished_at=dt.datetime.now(dt.UTC))
    last = error.strip().splitlines()[-1] if error.strip() else "unknown error"
    raise_event(engine, ALARM_RULE, target, f"report {target} failed after {settings.report_attempts} tries: "
                f"{last[:300]}", severity="high", enterprise_id=enterprise_id, detail={"report_run": run_id})
    return load_run_row(engine, run_id)


def load_run_row(engine: Engine, run_id: int) -> dict:
    """One ``report_run`` row as a dict."""
    r = TABLES["report_run"]
    with engine.connect() as conn:
        return dict(conn.execute(sa.select(r).where(r.c.id == run_id)).one()._mapping)


def run_many(engine: Engine, kind: str, month: str, enterprise_ids: list[str] | None, *, jobs: int = 1,
             **kw) -> list[dict]:
    """:func:`run_report` for each enterprise (``None``: a park-level kind, one run); a failed one does not stop
    the others. ``jobs`` runs at a time (each run's kernel is its own process: on 2 cores, 2 jobs halve the wall
    time). Returns the rows in the order of ``enterprise_ids``."""
    if enterprise_ids is None:
        return [run_report(engine, kind, month, None, **kw)]
    if jobs <= 1 or len(enterprise_ids) <= 1:
        return [run_report(engine, kind, month, eid, **kw) for eid in enterprise_ids]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="report") as pool:
        return list(pool.map(lambda eid: run_report(engine, kind, month, eid, **kw), enterprise_ids))
