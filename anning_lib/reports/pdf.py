"""The park's letterhead page around a report body, notebook outputs as HTML, and HTML to PDF.

A report is one self-contained HTML page (styles inline, figures as ``data:`` URIs, no script) on the park's
letterhead (``reports/style/page.html.j2`` and ``report.css``); the same page is printed to PDF by WeasyPrint,
which lays Chinese text out with Debian's ``fonts-wqy-zenhei``. Nothing is fetched from the network: the park's
network is air-gapped, and a report must not depend on what a URL answers on the day it is printed.

References
----------
.. [1] WeasyPrint documentation, "API reference": ``HTML(string=..., url_fetcher=...).write_pdf()``.
.. [2] nbconvert documentation, "Configuration options": ``HTMLExporter.exclude_input``, template ``basic``.
"""

from __future__ import annotations

import hashlib
import html
from pathlib import Path

import jinja2

from anning_lib.config import get_settings
from anning_lib.errors import ReportError
from anning_lib.i18n import t

STYLE_DIR_NAME = "style"


def _style_dir() -> Path:
    return get_settings().reports_dir / STYLE_DIR_NAME


def page_html(body: str, title: str, *, lang: str = "zh_CN", colophon: str = "") -> str:
    """A whole HTML page: the park's letterhead, ``body`` (HTML, trusted: made by the report code) and a colophon.

    Parameters
    ----------
    body : str
        The report's content as HTML.
    title : str
        Page title (plain text; escaped).
    lang : {"zh_CN", "en"}
    colophon : str
        Plain text at the foot (who produced it, when, with which data); escaped.
    """
    style = _style_dir()
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(style), autoescape=False)  # noqa: S701 - escaped below
    from anning_lib import __version__

    return env.get_template("page.html.j2").render(
        lang_tag="zh-CN" if lang == "zh_CN" else "en", version=__version__, title=html.escape(title),
        css=(style / "report.css").read_text(encoding="utf-8"), org=html.escape(t("report_org", lang)),
        system=html.escape(t("report_system", lang)), body=body, colophon=html.escape(colophon))


def notebook_body(nb) -> str:
    """The outputs of an executed notebook as HTML, without code, prompts, page shell or scripts.

    nbconvert's ``basic`` template with ``exclude_input``: markdown cells and cell outputs (tables, figures as
    embedded PNG) only [2]_; text a cell wrote to standard error (warnings) is left out.
    """
    from nbconvert import HTMLExporter

    nb = nb.copy()
    for cell in nb.cells:             # warnings on stderr belong in the log, not in a statement
        if cell.get("outputs"):
            cell.outputs = [o for o in cell.outputs if not (o.get("output_type") == "stream" and o.get("name") == "stderr")]
    exporter = HTMLExporter(template_name="basic", exclude_input=True, exclude_input_prompt=True,
                            exclude_output_prompt=True)
    body, _resources = exporter.from_notebook_node(nb)
    return body


class _LocalOnly:
    """WeasyPrint URL fetcher: ``data:`` URIs and files of the reports' style folder only; anything else stops
    the rendering (a report must not depend on the network, which the park's servers do not have)."""

    def __new__(cls):
        from weasyprint.urls import URLFetcher

        class LocalOnly(URLFetcher):
            def fetch(self, url, headers=None):
                if not url.startswith("data:"):
                    path = Path(url[len("file://"):]).resolve() if url.startswith("file://") else None
                    if path is None or _style_dir().resolve() not in path.parents:
                        raise ReportError(f"url: a report may only use embedded resources, not {url[:120]!r}")
                return super().fetch(url, headers)

        return LocalOnly(allowed_protocols={"data", "file"}, fail_on_errors=True)


def write_pdf(page: str, path: Path | str) -> Path:
    """Print an HTML page (:func:`page_html`) to a PDF file with WeasyPrint [1]_; returns the path."""
    from weasyprint import HTML

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    HTML(string=page, base_url=str(_style_dir()) + "/", url_fetcher=_LocalOnly()).write_pdf(path)
    return path


def sha256_of(path: Path | str) -> str:
    """``sha256:<hex>`` of a file's bytes (the checksum recorded with a report run)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()
