"""The frame every portal page shares: header with the pages the user may open, the user, the language switch
and log-out; figure tiles that wrap on a phone (390 px wide) and spread on the big screen.

Only Panel's own widgets and inline CSS: no template that pulls fonts or scripts from a CDN.
"""

from __future__ import annotations

import html

import panel as pn

from anning_lib.auth.access import Actor
from anning_lib.i18n import t
from anning_lib.portal.pages import PAGES, pages_for

CSS = """
:host{--anning-blue:#11698e}
.anning-header{display:flex;flex-wrap:wrap;align-items:center;gap:6px 14px;background:#0f2a3d;color:#fff;
 padding:8px 14px;font-family:"WenQuanYi Zen Hei","Noto Sans CJK SC",sans-serif}
.anning-header a{color:#cfe8f3;text-decoration:none;font-size:14px;white-space:nowrap}
.anning-header a.on{color:#fff;font-weight:bold;border-bottom:2px solid #5bc0de}
.anning-header .title{font-size:17px;font-weight:bold;margin-right:10px}
.anning-header .me{margin-left:auto;font-size:13px;color:#9fc3d3}
.tile{background:#fff;border:1px solid #d5e1e8;border-radius:6px;padding:8px 12px;min-width:150px}
.tile .k{font-size:13px;color:#4a6272}.tile .v{font-size:26px;font-weight:bold;color:#0f2a3d}
.tile .u{font-size:13px;color:#4a6272;margin-left:4px}
"""


def header_html(actor: Actor, lang: str, current: str) -> str:
    """The header bar's HTML (links only to pages the user may open)."""
    links = "".join(f'<a class="{"on" if p.slug == current else ""}" href="/{p.slug}">{t(p.title_key, lang)}</a>'
                    for p in pages_for(actor))
    other = "en" if lang != "en" else "zh_CN"
    switch = f'<a href="/lang/{other}?next=/{current}">{"English" if other == "en" else "中文"}</a>'
    who = html.escape(actor.username) + " · " + t(f"role_{actor.role}", lang)
    if actor.enterprise_id:
        who += f" · {html.escape(actor.enterprise_id)}"
    return (f'<nav class="anning-header"><span class="title">{t("app_title", lang)}</span>{links}'
            f'<span class="me">{who}</span>{switch}<a href="/logout">{t("logout", lang)}</a></nav>')


def shell(current: str, actor: Actor, lang: str, *body, refresh_s: float | None = None) -> pn.Column:
    """The page: header, then ``body`` stretched to the window width."""
    if current not in PAGES:
        raise KeyError(current)
    head = pn.pane.HTML(header_html(actor, lang, current), sizing_mode="stretch_width", margin=0,
                        stylesheets=[CSS])
    return pn.Column(head, *body, sizing_mode="stretch_width", margin=0, stylesheets=[CSS])


def tile(label: str, value: str, unit: str = "") -> pn.pane.HTML:
    """One figure: label, big value, unit."""
    return pn.pane.HTML(f'<div class="tile"><div class="k">{html.escape(label)}</div><span class="v">'
                        f'{html.escape(value)}</span><span class="u">{html.escape(unit)}</span></div>',
                        stylesheets=[CSS], margin=4)


def tiles_html(items: list[tuple[str, str, str]]) -> str:
    """Figure tiles ``(label, value, unit)`` as one HTML block that wraps: a page that refreshes its figures
    changes one string instead of rebuilding a widget per figure."""
    cells = "".join(f'<div class="tile"><div class="k">{html.escape(k)}</div><span class="v">{html.escape(v)}</span>'
                    f'<span class="u">{html.escape(u)}</span></div>' for k, v, u in items)
    return f'<div style="display:flex;flex-wrap:wrap;gap:8px">{cells}</div>'


def tiles(*items: pn.viewable.Viewable) -> pn.FlexBox:
    """Figure tiles in rows that wrap (one or two per row on a phone)."""
    return pn.FlexBox(*items, flex_wrap="wrap", sizing_mode="stretch_width")


def fmt(value: float | None, digits: int = 0) -> str:
    """``12,345`` or ``–`` for a missing value."""
    if value is None or value != value:
        return "–"
    return f"{value:,.{digits}f}"


def enterprise_label(park, enterprise_id: str, lang: str) -> str:
    """``E01 · 安宁示范电炉钢厂`` (English name under ``en`` where the park model has one); an unknown id as is."""
    try:
        e = park.enterprise(enterprise_id)
    except Exception:          # noqa: BLE001 - an id the park model does not know is shown as it is
        return enterprise_id
    return f"{enterprise_id} · {e.name_en if lang == 'en' and e.name_en else e.name}"
