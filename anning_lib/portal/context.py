"""What a dashboard session needs: the store, the park model, who is logged in and in which language.

The server calls :func:`configure` once per process; the dashboard scripts (``dashboards/*.py``) call
:func:`engine`, :func:`park`, :func:`actor` and :func:`lang`. The actor comes from the signed session cookie
(``pn.state.user``) and is re-read from ``app_user`` for every session, so role changes apply at once.
"""

from __future__ import annotations

from functools import lru_cache

from sqlalchemy.engine import Engine

from anning_lib.auth.access import Actor
from anning_lib.errors import AccessError

_URL: dict[str, str] = {}


def configure(database_url: str) -> Engine:
    """Set the store of this process's dashboards; returns its engine."""
    _URL["db"] = database_url
    engine.cache_clear()
    return engine()


@lru_cache(maxsize=1)
def engine() -> Engine:
    """The process's engine (connection pool shared by every session)."""
    from anning_lib.config import get_settings
    from anning_lib.store.engine import make_engine

    return make_engine(_URL.get("db") or get_settings().database_url)


@lru_cache(maxsize=1)
def park():
    """The park model (read once per process)."""
    from anning_lib.park import load_park

    return load_park()


def actor() -> Actor:
    """The logged-in user of this session, or :class:`AccessError` (no or inactive user)."""
    import panel as pn

    from anning_lib.auth.users import active_actor

    name = pn.state.user
    found = active_actor(engine(), name) if name else None
    if found is None:
        raise AccessError(f"user: no active user in this session ({name!r})")
    return found


def lang() -> str:
    """The session's language: ``?lang=`` argument, else the ``lang`` cookie, else zh_CN."""
    import panel as pn

    from anning_lib.i18n import lang_of

    arg = (pn.state.session_args or {}).get("lang")
    if arg:
        return lang_of(arg[0].decode() if isinstance(arg[0], bytes) else arg[0])
    return lang_of((pn.state.cookies or {}).get("lang"))
