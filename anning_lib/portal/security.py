"""HTTP hardening of the portal: security headers on every response, a CSRF token on the log-in form, and a limit
on log-in attempts per client address.

Headers (OWASP Secure Headers Project): ``Content-Security-Policy`` with ``default-src 'self'`` (scripts, styles,
fonts and web sockets from the portal only; Bokeh and Panel render their documents with inline scripts and
``eval``-like constructs, so ``'unsafe-inline'`` and ``'unsafe-eval'`` stay allowed for scripts: nothing from
another origin is), ``frame-ancestors 'self'`` and ``X-Frame-Options: SAMEORIGIN`` (no click-jacking frames),
``X-Content-Type-Options: nosniff``, ``Referrer-Policy: same-origin``, ``Permissions-Policy`` (no camera,
microphone, geolocation) and, under HTTPS, ``Strict-Transport-Security``. They are added by a Tornado output
transform, so Panel's and Bokeh's own handlers carry them too.

References
----------
.. [1] OWASP Secure Headers Project; MDN, "Content-Security-Policy".
.. [2] Tornado documentation, "RequestHandler.check_xsrf_cookie" (double-submit cookie), "OutputTransform".
"""

from __future__ import annotations

import threading
import time
from collections import deque

import tornado.web

CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline' 'unsafe-eval'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self' ws: wss:; object-src 'none'; "
       "base-uri 'self'; form-action 'self'; frame-ancestors 'self'")
HEADERS = {"Content-Security-Policy": CSP, "X-Frame-Options": "SAMEORIGIN", "X-Content-Type-Options": "nosniff",
           "Referrer-Policy": "same-origin", "Permissions-Policy": "camera=(), microphone=(), geolocation=()"}
HSTS = "max-age=31536000"


class SecurityHeaders(tornado.web.OutputTransform):
    """Adds :data:`HEADERS` (and HSTS under HTTPS) to every response of the application it is added to."""

    def __init__(self, request):
        super().__init__(request)
        self.https = request.protocol == "https"

    def transform_first_chunk(self, status_code, headers, chunk, finishing):
        for name, value in HEADERS.items():
            headers.setdefault(name, value)
        if self.https:
            headers.setdefault("Strict-Transport-Security", HSTS)
        return status_code, headers, chunk


def harden(server) -> None:
    """Add :class:`SecurityHeaders` to a started-later Bokeh/Panel server's Tornado application."""
    server._tornado.add_transform(SecurityHeaders)


class RateLimit:
    """At most ``limit`` events per ``window_s`` seconds per key (a sliding window, in this process).

    Parameters
    ----------
    limit : int
        Events allowed in the window [-].
    window_s : float
        Window length [s].
    """

    def __init__(self, limit: int = 10, window_s: float = 60.0):
        self.limit, self.window_s = limit, window_s
        self._events: dict[str, deque] = {}
        self._lock = threading.Lock()

    def allow(self, key: str, now: float | None = None) -> bool:
        """Record an event for ``key`` and say whether it is within the limit."""
        now = time.monotonic() if now is None else now
        with self._lock:
            q = self._events.setdefault(key, deque())
            while q and q[0] <= now - self.window_s:
                q.popleft()
            if len(q) >= self.limit:
                return False
            q.append(now)
            if len(self._events) > 10_000:              # forget idle clients
                for k in [k for k, v in self._events.items() if not v]:
                    del self._events[k]
            return True


_LOGIN_LIMIT: RateLimit | None = None


def login_limit() -> RateLimit:
    """Log-in attempts per client address and minute (``settings.login_rate_per_min``): the per-user lock-out
    protects accounts; this protects the server's CPU from argon2 floods and slows password spraying."""
    global _LOGIN_LIMIT
    if _LOGIN_LIMIT is None:
        from anning_lib.config import get_settings

        _LOGIN_LIMIT = RateLimit(limit=get_settings().login_rate_per_min, window_s=60.0)
    return _LOGIN_LIMIT
