"""账户 / Account: who I am, change my password."""

import panel as pn

from anning_lib.auth.users import change_password
from anning_lib.errors import AccessError
from anning_lib.i18n import t
from anning_lib.portal import context
from anning_lib.portal.layout import shell

actor, lang = context.actor(), context.lang()
old = pn.widgets.PasswordInput(name=t("password_current", lang), width=300)
new = pn.widgets.PasswordInput(name=t("password_new", lang), width=300)
again = pn.widgets.PasswordInput(name=t("password_repeat", lang), width=300)
button = pn.widgets.Button(name=t("password_change", lang), button_type="primary", width=300)
result = pn.pane.Alert(visible=False, width=300)


def _change(_event):
    if new.value != again.value:
        result.param.update(object=t("password_mismatch", lang), alert_type="danger", visible=True)
        return
    try:
        change_password(context.engine(), actor.username, old.value, new.value)
    except AccessError as err:
        result.param.update(object=str(err), alert_type="danger", visible=True)
        return
    old.value = new.value = again.value = ""
    result.param.update(object=t("password_changed", lang), alert_type="success", visible=True)


button.on_click(_change)
shell("account", actor, lang,
      pn.Column(pn.pane.Markdown(f"### {t('page_account', lang)}: {actor.username}"), old, new, again, button,
                result, margin=(10, 16))).servable(title=t("page_account", lang))
