"""The portal's HTTP side around Panel: log-in against ``app_user`` (argon2), log-out, the home redirect, the
language switch and statement downloads.

Panel's own basic-auth compares plain-text passwords and its log-in page loads CSS from a CDN, so the portal
brings its own :class:`AuthProvider` (a Panel ``BasicAuthProvider`` subclass, as Panel documents for custom
logins): the session cookie ``user`` is a Tornado *signed* cookie (HMAC with the server's cookie secret,
``HttpOnly``, ``SameSite=Lax``, ``Secure`` under HTTPS), and every request re-reads the user from the database,
so a deactivated user's open sessions end at their next request. Pages are authorised by role in
:func:`authorize` (Panel's ``authorize_callback``); what a page shows is scoped again by the library.
"""

from __future__ import annotations

import html
import logging
import mimetypes
from pathlib import Path

import sqlalchemy as sa
import tornado.web
from panel.auth import BasicAuthProvider
from sqlalchemy.engine import Engine

from anning_lib.auth.access import Actor, require
from anning_lib.auth.audit import audit
from anning_lib.auth.users import active_actor, authenticate
from anning_lib.errors import AccessError
from anning_lib.i18n import lang_of, t
from anning_lib.portal.pages import home_of, page_of_path
from anning_lib.portal.security import login_limit
from anning_lib.store.schema import TABLES

log = logging.getLogger(__name__)

SESSION_DAYS = 0.5
"""How long a login lasts [days] (12 h: one shift)."""

_STYLE = """
body{font-family:"WenQuanYi Zen Hei","Noto Sans CJK SC",sans-serif;background:#0f2a3d;color:#1b2733;margin:0}
.box{max-width:360px;margin:12vh auto;background:#fff;border-radius:8px;padding:28px;box-shadow:0 4px 24px #0006}
h1{font-size:20px;margin:0 0 18px}label{display:block;font-size:14px;margin:12px 0 4px}
input{width:100%;box-sizing:border-box;padding:10px;font-size:16px;border:1px solid #9ab;border-radius:4px}
button{margin-top:20px;width:100%;padding:11px;font-size:16px;background:#11698e;color:#fff;border:0;
border-radius:4px}.err{color:#b00020;font-size:14px;margin-top:12px}.lang{float:right;font-size:13px}
"""


def _page(title: str, body: str, lang: str) -> str:
    """A self-contained HTML page (inline CSS: nothing from outside the portal)."""
    return (f'<!DOCTYPE html><html lang="{"en" if lang == "en" else "zh-CN"}"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width,initial-scale=1"><title>{html.escape(title)}</title>'
            f"<style>{_STYLE}</style></head><body><div class=box>{body}</div></body></html>")


def _lang(handler: tornado.web.RequestHandler) -> str:
    return lang_of(handler.get_argument("lang", None) or handler.get_cookie("lang")
                   or handler.request.headers.get("Accept-Language", "zh_CN"))


def login_page(lang: str, error: str = "", next_url: str = "/", xsrf_html: str = "") -> str:
    """The log-in form (``POST /login``); ``xsrf_html`` the hidden CSRF field (Tornado's ``xsrf_form_html``)."""
    other = "en" if lang != "en" else "zh_CN"
    err = f'<div class=err role=alert>{html.escape(error)}</div>' if error else ""
    body = (f'<a class=lang href="/login?lang={other}">{"English" if other == "en" else "中文"}</a>'
            f"<h1>{t('app_title', lang)}</h1><form method=post action=/login>{xsrf_html}"
            f'<input type=hidden name=next value="{html.escape(next_url)}">'
            f"<label for=username>{t('login_user', lang)}</label>"
            f'<input id=username name=username autocomplete=username required autofocus>'
            f"<label for=password>{t('login_password', lang)}</label>"
            f'<input id=password name=password type=password autocomplete=current-password required>'
            f"<button type=submit>{t('login_submit', lang)}</button>{err}</form>")
    return _page(t("login_title", lang), body, lang)


def _safe_next(url: str | None) -> str:
    """Only a local path (no scheme, no host, no ``//``) may be a redirect target after log-in."""
    if not url or not url.startswith("/") or url.startswith("//") or "\\" in url:
        return "/"
    return url


class _Base(tornado.web.RequestHandler):
    engine: Engine

    def initialize(self, engine: Engine):
        self.engine = engine

    def current_actor(self) -> Actor | None:
        name = self.get_signed_cookie("user", max_age_days=SESSION_DAYS)
        return active_actor(self.engine, name.decode()) if name else None



class LoginHandler(_Base):
    """``GET /login`` shows the form; ``POST /login`` checks the password (argon2, lock-out, audit)."""

    def get(self):
        lang = _lang(self)
        if self.get_argument("lang", None):
            self.set_cookie("lang", lang, expires_days=365, samesite="Lax")
        self.write(login_page(lang, next_url=_safe_next(self.get_argument("next", "/")), xsrf_html=self.xsrf_form_html()))

    def post(self):
        lang = _lang(self)
        self.check_xsrf_cookie()              # 403 without the form's token (a cross-site log-in)
        if not login_limit().allow(self.request.remote_ip or ""):
            audit(self.engine, "login_rate_limited", f"ip:{self.request.remote_ip}", None, None)
            raise tornado.web.HTTPError(429)
        try:
            actor = authenticate(self.engine, self.get_argument("username", ""), self.get_argument("password", ""),
                                 source=self.request.remote_ip or "")
        except AccessError:
            self.set_status(401)
            self.write(login_page(lang, t("login_error", lang), _safe_next(self.get_argument("next", "/")),
                                  self.xsrf_form_html()))
            return
        secure = self.request.protocol == "https"
        self.clear_cookie("is_guest")
        self.set_signed_cookie("user", actor.username, expires_days=SESSION_DAYS, httponly=True, secure=secure,
                               samesite="Lax")
        nxt = _safe_next(self.get_argument("next", "/"))
        self.redirect(nxt if nxt != "/" else f"/{home_of(actor)}")


class LogoutHandler(_Base):
    """``GET /logout``: ends the session (clears the cookie) and says so."""

    def get(self):
        actor = self.current_actor()
        if actor is not None:
            audit(self.engine, "logout", f"user:{actor.username}", {"source": self.request.remote_ip or ""},
                  actor.user_id)
        for name in ("user", "id_token", "is_guest"):
            self.clear_cookie(name)
        lang = _lang(self)
        self.write(_page(t("logout", lang), f"<h1>{t('logged_out', lang)}</h1>"
                         f"<p><a href=/login>{t('login_again', lang)}</a></p>", lang))


class HomeHandler(_Base):
    """``GET /``: the user's home page, or the log-in form."""

    def get(self):
        actor = self.current_actor()
        self.redirect(f"/{home_of(actor)}" if actor else "/login")


class LangHandler(_Base):
    """``GET /lang/<zh_CN|en>?next=/page``: remember the language in a cookie and go back."""

    def get(self, lang: str):
        self.set_cookie("lang", lang_of(lang), expires_days=365, samesite="Lax")
        self.redirect(_safe_next(self.get_argument("next", "/")))


class StatementHandler(_Base):
    """``GET /statements/<report_run id>``: the statement file, only for a user who may see its enterprise.

    A refused download answers 403 whatever the id (no hint whether it exists for someone else) and leaves an
    ``audit_log`` row; files are only served from the reports output folder.
    """

    def initialize(self, engine: Engine, output_dir: Path):
        super().initialize(engine)
        self.output_dir = Path(output_dir).resolve()

    def get(self, run_id: str):
        actor = self.current_actor()
        if actor is None:
            self.redirect(f"/login?next=/statements/{run_id}")
            return
        runs = TABLES["report_run"]
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(runs).where(runs.c.id == int(run_id))).first()
        try:
            if row is None:
                raise AccessError(f"statement {run_id}: no such statement")
            require(actor, "statement.download", row.enterprise_id)
        except AccessError as err:
            audit(self.engine, "statement_refused", f"report_run:{run_id}", {"reason": str(err)}, actor.user_id)
            raise tornado.web.HTTPError(403) from None
        path = Path(row.output_path or "").resolve()
        if row.status != "done" or not path.is_file() or self.output_dir not in path.parents:
            raise tornado.web.HTTPError(404)
        audit(self.engine, "statement_downloaded", f"report_run:{run_id}", {"file": path.name}, actor.user_id)
        self.set_header("Content-Type", mimetypes.guess_type(path.name)[0] or "application/octet-stream")
        self.set_header("Content-Disposition", f'attachment; filename="{path.name}"')
        self.write(path.read_bytes())


class AuthProvider(BasicAuthProvider):
    """Panel auth provider: our log-in/log-out handlers and a user re-checked in the database per request."""

    def __init__(self, engine: Engine):
        self.engine = engine
        super().__init__(login_endpoint="/login", logout_endpoint="/logout")

    @property
    def get_user(self):
        def get_user(handler):
            name = handler.get_signed_cookie("user", max_age_days=SESSION_DAYS)
            if not name:
                return None
            actor = active_actor(self.engine, name.decode())
            return actor.username if actor else None
        return get_user

    @property
    def login_handler(self):
        return _Bound.make(LoginHandler, self.engine)

    @property
    def logout_handler(self):
        return _Bound.make(LogoutHandler, self.engine)


class _Bound:
    """Bokeh registers the login/logout handler classes without arguments: bind the engine in a subclass."""

    @staticmethod
    def make(cls, engine: Engine):
        return type(cls.__name__, (cls,), {"initialize": lambda self: cls.initialize(self, engine)})


def authorize(engine: Engine):
    """Panel ``authorize_callback``: may the logged-in user open the page of this path? (role check only; the
    data on the page is scoped again by the library)."""
    import panel as pn

    def callback(user_info: dict | None, path: str) -> bool:
        name = pn.state.user     # from the signed ``user`` cookie of this request
        return page_allowed(engine, active_actor(engine, name) if name else None, path)
    return callback


def page_allowed(engine: Engine, actor: Actor | None, path: str) -> bool:
    """May ``actor`` open the page of ``path``? A refusal of a logged-in user lands in ``audit_log``. Used by the
    Panel pages (:func:`authorize`) and the server-rendered ones (:class:`anning_lib.portal.html_page.PageHandler`)."""
    from anning_lib.auth.access import allowed

    page = page_of_path(path)
    ok = actor is not None and page is not None and allowed(actor, page.action)
    if not ok and actor is not None:
        audit(engine, "page_refused", path[:200], {"role": actor.role}, actor.user_id)
    return ok
