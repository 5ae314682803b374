"""``anning serve``: the portal, a Panel (Bokeh/Tornado) server with the apps of ``dashboards/``.

- Log-in: :mod:`anning_lib.portal.web` (argon2 against ``app_user``, lock-out, audit), pages authorised by role.
- HTTPS when ``ANNING_PORTAL_CERTFILE``/``ANNING_PORTAL_KEYFILE`` are set; otherwise plain HTTP, which the
  server refuses on any address but loopback (a park network must not carry passwords in clear).
- Air-gapped: Bokeh and Panel serve their JavaScript and CSS from this server (``resources=server``); the
  log-in pages are self-contained; the 3-D twin's widget modules (``jupyter-threejs``, ``three``), which
  ``ipywidgets_bokeh`` would fetch from unpkg.com, come from :class:`WidgetAssetHandler`; nothing is fetched from a
  CDN (a browser test checks every request).
- Several processes (``--num-procs``, Tornado's fork) share the cookie secret read before the fork.
- Behind a reverse proxy on the same machine (``ANNING_PORTAL_BEHIND_PROXY=1``, ``deploy/nginx/anning.conf``): the
  client's scheme and address come from the proxy's ``X-Forwarded-Proto``/``X-Scheme`` and ``X-Real-IP``/
  ``X-Forwarded-For`` (Tornado's ``xheaders``), so HSTS, the ``Secure`` session cookie and the per-address log-in
  limit see the browser, not the proxy; then the portal must listen on loopback, where only this machine can
  reach it. The public host name(s) the browsers use go in ``ANNING_PORTAL_ORIGINS`` (web socket origins).
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from pathlib import Path

import tornado.web

from anning_lib.config import REPO_ROOT, get_settings
from anning_lib.errors import ConfigError
from anning_lib.portal.pages import PAGES

DASHBOARDS = REPO_ROOT / "dashboards"
WIDGET_ROUTE = r"/twin-widgets/([^/@]+)@([^/]+)/(.+)"
"""Route of :class:`WidgetAssetHandler` (the prefix is :data:`anning_lib.twin.scene.WIDGET_PREFIX`)."""


class WidgetAssetHandler(tornado.web.RequestHandler):
    """``GET <WIDGET_PREFIX>/<package>@<version>/<file>``: a widget module the twin's pane asks for, from the
    installed pythreejs (:func:`anning_lib.twin.scene.widget_asset`; the installed version answers whatever
    version is asked, as it is the one the Python widgets were made with); 404 for anything else."""

    def get(self, package: str, _version: str, file: str) -> None:
        from anning_lib.twin.scene import widget_asset

        path = widget_asset(package, file)
        if path is None or not path.is_file():
            raise tornado.web.HTTPError(404)
        kind = "application/json" if path.suffix == ".json" else "text/javascript"
        self.set_header("Content-Type", f"{kind}; charset=utf-8")
        self.set_header("Cache-Control", "public, max-age=86400")
        self.write(path.read_bytes())


def cookie_secret(var_dir: Path) -> str:
    """The secret that signs session cookies: ``ANNING_PORTAL_COOKIE_SECRET`` or ``var/portal-cookie-secret``
    (created once with 256 random bits, mode 0600; deleting it logs everybody out)."""
    env = os.environ.get("ANNING_PORTAL_COOKIE_SECRET")
    if env:
        return env
    path = Path(var_dir) / "portal-cookie-secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32))
    return path.read_text().strip()


PROXY_ENV = "ANNING_PORTAL_BEHIND_PROXY"
"""Environment variable: ``1`` when the portal runs behind a reverse proxy on the same machine."""
ORIGINS_ENV = "ANNING_PORTAL_ORIGINS"
"""Environment variable: public ``host[:port]`` names (comma-separated) the browsers' web sockets come from."""
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("", "0", "false", "no", "off")


def _is_loopback(address: str) -> bool:
    try:
        return address == "localhost" or ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def behind_proxy(address: str, flag: bool | None = None) -> bool:
    """Whether the portal trusts a reverse proxy's ``X-Forwarded-Proto``/``X-Real-IP`` headers (``xheaders``).

    Parameters
    ----------
    address : str
        the listen address; trusting the headers needs a loopback address (the proxy runs on this machine, and
        nobody else can connect to send forged headers).
    flag : bool, optional
        the answer; default ``ANNING_PORTAL_BEHIND_PROXY`` (``1``/``true``/``yes``/``on`` or
        ``0``/``false``/``no``/``off``/empty).

    Raises
    ------
    ConfigError
        for another value of the variable, or when the headers would be trusted on a non-loopback address.
    """
    if flag is None:
        raw = os.environ.get(PROXY_ENV, "").strip().lower()
        if raw not in _TRUE + _FALSE:
            raise ConfigError(f"{PROXY_ENV}: expected 1 or 0, got {raw!r}")
        flag = raw in _TRUE
    if flag and not _is_loopback(address):
        raise ConfigError(f"portal_address: {address!r} is not loopback; behind a proxy ({PROXY_ENV}=1) the portal "
                          "listens on loopback only, so that no one but the proxy can set X-Forwarded-* headers")
    return bool(flag)


def public_origins(origins: list[str] | None = None) -> list[str]:
    """The extra web socket origins: ``origins``, else ``ANNING_PORTAL_ORIGINS`` split at commas and blanks."""
    if origins is not None:
        return list(origins)
    return [o for o in os.environ.get(ORIGINS_ENV, "").replace(",", " ").split() if o]


def check_transport(address: str, certfile: Path | None, keyfile: Path | None) -> str:
    """``https`` or ``http``; plain HTTP only on a loopback address, and a certificate needs its key."""
    if bool(certfile) != bool(keyfile):
        raise ConfigError(f"portal_keyfile: HTTPS needs both a certificate and a key (certfile={certfile}, "
                          f"keyfile={keyfile})")
    if certfile:
        for name, p in (("portal_certfile", certfile), ("portal_keyfile", keyfile)):
            if not Path(p).is_file():
                raise ConfigError(f"{name}: no such file {str(p)!r}")
        return "https"
    if not _is_loopback(address):
        raise ConfigError(f"portal_address: {address!r} is not loopback; set ANNING_PORTAL_CERTFILE and "
                          "ANNING_PORTAL_KEYFILE to serve HTTPS on a network address")
    return "http"


def rendered_routes(engine) -> list[tuple]:
    """Tornado routes of the server-rendered pages: each page module's ``ROUTES`` (pattern, handler class)."""
    import importlib

    return [(pattern, handler, {"engine": engine}) for page in PAGES.values() if page.handlers
            for pattern, handler in importlib.import_module(f"anning_lib.portal.{page.handlers}").ROUTES]


def make_server(database_url: str, *, port: int, address: str = "127.0.0.1", certfile: Path | None = None,
                keyfile: Path | None = None, num_procs: int = 1, var_dir: Path | None = None,
                dashboards: Path = DASHBOARDS, origins: list[str] | None = None, proxy: bool | None = None):
    """A started-later Panel server of every page in :data:`~anning_lib.portal.pages.PAGES`.

    Parameters
    ----------
    database_url : str
        the store; every process opens its own engine.
    port : int
        TCP port (0: a free one; read ``server.port``).
    num_procs : int
        Tornado processes (forked; 0 = one per core).
    origins : list of str, optional
        extra ``host:port`` allowed to open the web socket (e.g. the server's DNS name behind a proxy); default
        ``ANNING_PORTAL_ORIGINS`` (:func:`public_origins`).
    proxy : bool, optional
        trust a local reverse proxy's ``X-Forwarded-*`` headers; default ``ANNING_PORTAL_BEHIND_PROXY``
        (:func:`behind_proxy`).
    """
    os.environ.setdefault("BOKEH_RESOURCES", "server")   # Bokeh's JS from this server, not cdn.bokeh.org
    import panel as pn

    from anning_lib.portal import context, ops_handlers, web
    from anning_lib.portal.html_page import ASSET_ROUTE, ASSETS
    from anning_lib.portal.security import harden

    settings = get_settings()
    var_dir = Path(var_dir or settings.var_dir)
    protocol = check_transport(address, certfile, keyfile)
    xheaders = behind_proxy(address, proxy)
    engine = context.configure(database_url)    # the dashboards' sessions use the same store
    pn.config.authorize_callback = web.authorize(engine)
    pn.config.oauth_expiry = web.SESSION_DAYS
    panel_pages = [slug for slug, page in PAGES.items() if page.handlers is None]
    missing = [slug for slug in panel_pages if not (dashboards / f"{slug}.py").is_file()]
    if missing:
        raise ConfigError(f"dashboards: no page file for {', '.join(missing)} in {dashboards}")
    apps = {slug: str(dashboards / f"{slug}.py") for slug in panel_pages}
    extra = [*rendered_routes(engine),
             (ASSET_ROUTE, tornado.web.StaticFileHandler, {"path": str(ASSETS)}),
             (r"/", web.HomeHandler, {"engine": engine}),
             (r"/lang/([A-Za-z_]+)", web.LangHandler, {"engine": engine}),
             (r"/statements/([0-9]+)", web.StatementHandler,
              {"engine": engine, "output_dir": var_dir / "reports"}),
             (r"/healthz", ops_handlers.HealthHandler, {"engine": engine, "var_dir": var_dir}),
             (r"/metrics", ops_handlers.MetricsHandler, {"engine": engine}),
             (WIDGET_ROUTE, WidgetAssetHandler)]
    ssl = {"ssl_certfile": str(certfile), "ssl_keyfile": str(keyfile)} if protocol == "https" else {}
    allow = [f"{h}:{port}" for h in ("localhost", "127.0.0.1", address)] + public_origins(origins)
    server = pn.serve(apps, port=port, address=address, show=False, start=False, title="Anning",
                      auth_provider=web.AuthProvider(engine), cookie_secret=cookie_secret(var_dir),
                      extra_patterns=extra, websocket_origin=allow if port else "*", num_procs=num_procs,
                      use_xheaders=xheaders, **ssl)
    harden(server)
    return server
