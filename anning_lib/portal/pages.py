"""The portal's pages: one registry of URL slug, the action a role needs (:data:`anning_lib.auth.access.ACTIONS`
``page.*``), the catalogue key of its title and what builds it: a Panel app (``dashboards/<slug>.py``) or, for
the pages many people open at once, a server-rendered handler (:mod:`anning_lib.portal.html_page`; decision 38)."""

from __future__ import annotations

from dataclasses import dataclass

from anning_lib.auth.access import Actor, allowed


@dataclass(frozen=True)
class Page:
    slug: str
    action: str
    title_key: str
    handlers: str | None = None
    """Server-rendered: the module of ``anning_lib.portal`` whose ``ROUTES`` serve it; None: ``dashboards/<slug>.py``."""


PAGES: dict[str, Page] = {p.slug: p for p in (
    Page("overview", "page.overview", "page_overview", handlers="overview_page"),
    Page("twin", "page.twin", "page_twin"),
    Page("scenarios", "page.scenarios", "page_scenarios"),
    Page("enterprise", "page.enterprise", "page_enterprise", handlers="enterprise_page"),
    Page("device", "page.device", "page_device"),
    Page("alarms", "page.alarms", "page_alarms"),
    Page("dispatch", "page.dispatch", "page_dispatch"),
    Page("carbon", "page.carbon", "page_carbon"),
    Page("reports", "page.reports", "page_reports"),
    Page("admin", "page.admin", "page_admin"),
    Page("account", "page.account", "page_account"),
)}


def pages_for(actor: Actor) -> list[Page]:
    """The pages ``actor`` may open, in menu order."""
    return [p for p in PAGES.values() if allowed(actor, p.action)]


def home_of(actor: Actor) -> str:
    """The first page after login: an enterprise user's own enterprise page, everybody else the overview."""
    return "enterprise" if actor.role == "enterprise" else "overview"


def page_of_path(path: str) -> Page | None:
    """The page a request path (``/overview``, ``/overview/ws``, ``/enterprise/autoload.js``) belongs to."""
    first = path.strip("/").split("/", 1)[0]
    return PAGES.get(first)
