"""Pages the server renders as plain HTML (no Bokeh session): the frame they share and their request handler.

The two pages many people open at once, the big screen (``/overview``) and the enterprise page (``/enterprise``),
are rendered here as one HTML document with inline SVG charts (:mod:`anning_lib.portal.svg`): the browser has
no BokehJS or Panel to start (about 1.5 CPU seconds per page on this machine) and the server no document to build
and send over a web socket (decision 38 in ``docs/decisions.md``). They keep the Panel pages' header, roles,
audit and language: :class:`PageHandler` reads the same signed session cookie, re-reads the user from the
database at every request, asks :func:`anning_lib.portal.web.page_allowed` (the Panel pages' check) and audits a
refusal the same way. A page that refreshes names a JSON URL in ``data-live-url``; ``assets/portal.js`` fetches it
every 5 s and puts each part into the element of that id.
"""

from __future__ import annotations

import hashlib
import html
import json
from functools import lru_cache
from pathlib import Path

import tornado.escape
import tornado.web

from anning_lib.auth.access import Actor
from anning_lib.i18n import lang_of, t
from anning_lib.portal.layout import CSS, header_html
from anning_lib.portal.pages import PAGES
from anning_lib.portal.web import _Base, page_allowed

ASSETS = Path(__file__).parent / "assets"
ASSET_ROUTE = r"/assets/(.*)"
"""The portal's own script (and any later asset) from :data:`ASSETS` (Tornado's ``StaticFileHandler``)."""
LIVE_PERIOD_MS = 5000
"""How often a live page fetches its parts [ms] (the big screen's ≤ 5 s)."""

PAGE_CSS = CSS.replace(":host{", "body{") + """
body{margin:0;background:#f3f6f8;color:#1b2733;font-family:"WenQuanYi Zen Hei","Noto Sans CJK SC",sans-serif}
svg.chart{max-height:70vh}
main{padding:6px 14px 20px}.row{display:flex;flex-wrap:wrap;gap:12px}.row>section{flex:1 1 420px;min-width:300px}
section.card{background:#fff;border:1px solid #d5e1e8;border-radius:6px;padding:8px;overflow-x:auto}
.note{font-size:12px;color:#4a6272}.as-of{font-size:15px;margin:8px 2px}
.alert{border-radius:6px;padding:10px 14px;margin:10px 0}.alert.info{background:#e7f3f8;border:1px solid #9fc3d3}
.alert.danger{background:#fdecea;border:1px solid #e6a39c;color:#7a1a12}
form.pick{display:flex;flex-wrap:wrap;gap:8px 14px;align-items:end;margin:8px 0}
form.pick label{display:flex;flex-direction:column;font-size:13px;color:#4a6272}
form.pick select,form.pick button{font-size:15px;padding:5px 8px;border:1px solid #9ab;border-radius:4px}
form.pick button{background:#11698e;color:#fff;border:0}
table.data{border-collapse:collapse;width:100%;font-size:14px;background:#fff}
table.data th,table.data td{padding:5px 8px;border-bottom:1px solid #e3eaef;text-align:left}
table.data td.n{text-align:right;font-variant-numeric:tabular-nums}
@media (max-width:480px){.tile{min-width:140px}.tile .v{font-size:22px}main{padding:4px 6px 16px}}
"""


@lru_cache(maxsize=None)
def asset_url(name: str) -> str:
    """``/assets/<name>?v=<hash of its content>``: cached by browsers for a year, new URL when the file changes."""
    digest = hashlib.sha256((ASSETS / name).read_bytes()).hexdigest()[:12]
    return f"/assets/{name}?v={digest}"


def document(title: str, lang: str, header: str, body: str, *, live_url: str | None = None) -> str:
    """The whole HTML page: head (styles inline, the portal's one script), the header bar and ``body``.

    ``live_url``: the JSON the page refreshes its parts from every :data:`LIVE_PERIOD_MS`."""
    live = (f' data-live-url="{html.escape(live_url)}" data-live-period-ms="{LIVE_PERIOD_MS}"' if live_url else "")
    return (f'<!DOCTYPE html><html lang="{"en" if lang == "en" else "zh-CN"}"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width,initial-scale=1"><title>{html.escape(title)}</title>'
            f'<style>{PAGE_CSS}</style><script src="{asset_url("portal.js")}" defer></script></head>'
            f'<body data-rendered="server"{live}>{header}<main>{body}</main></body></html>')


def alert(text: str, kind: str = "info") -> str:
    """A message box (``info`` or ``danger``) with ``text`` escaped."""
    role = ' role="alert"' if kind == "danger" else ""
    return f'<div class="alert {kind}"{role}>{html.escape(text)}</div>'


class PageHandler(_Base):
    """A server-rendered page: log-in required, role checked per request (:func:`page_allowed`, audited),
    ``self.actor`` and ``self.lang`` set for :meth:`get`. Subclasses set :attr:`slug`."""

    slug: str = ""
    json_errors = False
    """Answer 401/403 as JSON instead of a redirect or an HTML page (for the parts a live page fetches)."""
    actor: Actor
    lang: str

    def prepare(self) -> None:
        actor = self.current_actor()
        if actor is None:
            if self.json_errors:
                self._refuse(401, "not logged in")
            else:
                self.redirect("/login?next=" + tornado.escape.url_escape(self.request.uri or "/", plus=False))
            return
        self.actor = actor
        arg = self.get_argument("lang", None)
        self.lang = lang_of(arg if arg else self.get_cookie("lang"))   # as the Panel pages: ?lang=, cookie, zh_CN
        if not page_allowed(self.engine, actor, self.request.path):
            if self.json_errors:
                self._refuse(403, "not allowed")
            else:                                   # the header still offers the pages the user may open
                self.page(alert(t("forbidden", self.lang), "danger"), status=403)

    def _refuse(self, status: int, why: str) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"error": why}))

    def header(self) -> str:
        return header_html(self.actor, self.lang, self.slug)

    def page(self, body: str, *, live_url: str | None = None, status: int = 200) -> None:
        """Send the page with the portal's header around ``body``."""
        self.set_status(status)
        self.set_header("Cache-Control", "no-store")           # the page holds the user's data
        title = t(PAGES[self.slug].title_key, self.lang)
        self.finish(document(title, self.lang, self.header(), body, live_url=live_url))
