"""系统管理 / Administration (admins only): users and roles, points, tariffs, dispatch strategies (each storage's
control mode and SOC window), alarm rules, emission factors, the audit log (filter, export CSV).

Every form calls a library function that checks the admin's right, validates the input (the message names the
field and value) and writes with an audit row; a refused input changes nothing.
"""

import hashlib

import pandas as pd
import panel as pn
import yaml

from anning_lib.auth import audit, users
from anning_lib.auth.access import require_role
from anning_lib.config import get_settings
from anning_lib.errors import AnningError, ProblemsError
from anning_lib.i18n import t
from anning_lib.park.catalogue import load_catalogue
from anning_lib.portal import admin, context, strategy_edit, tariff_edit
from anning_lib.portal.filesave import sha256_of
from anning_lib.portal.layout import shell
from anning_lib.store.assets import ROLES

actor, lang = context.actor(), context.lang()
require_role(actor, "page.admin")
park, engine, settings = context.park(), context.engine(), get_settings()
catalogue = load_catalogue(settings.data_dir)


def say(alert: pn.pane.Alert, err: Exception | None = None, ok: str = "") -> None:
    """Show a library error (every problem of a file, one per line) or a success."""
    if err is None:
        alert.param.update(object=ok or t("adm_done", lang), alert_type="success", visible=True)
        return
    text = err.report() if isinstance(err, ProblemsError) else str(err)
    alert.param.update(object=text.replace("\n", "  \n"), alert_type="danger", visible=True)


def alert() -> pn.pane.Alert:
    return pn.pane.Alert(visible=False, sizing_mode="stretch_width")


# ------------------------------------------------------------------------------------------------ users
user_table = pn.widgets.Tabulator(pd.DataFrame(), show_index=False, disabled=True, sizing_mode="stretch_width",
                                  pagination="local", page_size=20)
u_name = pn.widgets.TextInput(name=t("adm_username", lang), width=200)
u_role = pn.widgets.Select(name=t("adm_role", lang), options=list(ROLES), width=140)
u_ent = pn.widgets.Select(name=t("adm_enterprise", lang), options=[""] + [e.id for e in park.enterprises], width=120)
u_pw = pn.widgets.PasswordInput(name=t("adm_password", lang), width=220)
u_msg = alert()


def load_users():
    rows = pd.DataFrame(users.list_users(engine, actor)).drop(columns=["id"], errors="ignore")
    for col in ("locked_until", "last_login_at"):   # shown in the park's time zone
        rows[col] = pd.to_datetime(rows[col], utc=True).dt.tz_convert(settings.timezone).dt.strftime("%Y-%m-%d %H:%M")
    user_table.value = rows


def user_action(kind: str):
    def run(_event):
        name, ent = u_name.value.strip(), u_ent.value or None
        try:
            if kind == "add":
                users.add_user(engine, actor, name, u_pw.value, u_role.value, enterprise_id=ent)
            elif kind == "role":
                users.set_role(engine, actor, name, u_role.value, ent)
            elif kind == "reset":
                users.set_password(engine, actor, name, u_pw.value)
            else:
                users.set_active(engine, actor, name, kind == "activate")
        except AnningError as err:
            say(u_msg, err)
            return
        u_pw.value = ""
        say(u_msg)
        load_users()
    return run


user_buttons = []
for kind, key in (("add", "adm_add_user"), ("role", "adm_set_role"), ("reset", "adm_reset"),
                  ("deactivate", "adm_deactivate"), ("activate", "adm_activate")):
    b = pn.widgets.Button(name=t(key, lang), button_type="primary" if kind == "add" else "default", width=140)
    b.on_click(user_action(kind))
    user_buttons.append(b)
load_users()
users_tab = pn.Column(pn.FlexBox(u_name, u_role, u_ent, u_pw, flex_wrap="wrap"), pn.FlexBox(*user_buttons),
                      u_msg, user_table, sizing_mode="stretch_width")

# ------------------------------------------------------------------------------------------------ points
devices = [d.id for _e, d in park.iter_devices()]
p_dev = pn.widgets.Select(name=t("adm_device", lang), options=devices, width=180)
p_id = pn.widgets.TextInput(name=t("adm_point_id", lang), width=160)
p_qty = pn.widgets.Select(name=t("adm_quantity", lang), options=sorted(catalogue.quantities), width=180)
p_unit = pn.widgets.TextInput(name=t("adm_unit", lang), width=100)
p_min = pn.widgets.FloatInput(name=t("adm_min", lang), value=None, width=110)
p_max = pn.widgets.FloatInput(name=t("adm_max", lang), value=None, width=110)
p_btn = pn.widgets.Button(name=t("adm_add_point", lang), button_type="primary", width=140)
p_msg = alert()


def add_point(_event):
    try:
        pid = admin.add_point(engine, park, actor, p_dev.value, p_id.value.strip(), p_qty.value,
                              p_unit.value.strip(), p_min.value, p_max.value)
    except AnningError as err:
        say(p_msg, err)
        return
    say(p_msg, ok=f"{p_dev.value}.{p_id.value} (point id {pid})")


p_btn.on_click(add_point)
points_tab = pn.Column(pn.FlexBox(p_dev, p_id, p_qty, p_unit, p_min, p_max, flex_wrap="wrap"), p_btn, p_msg,
                       pn.pane.Markdown(t("adm_points_note", lang), styles={"font-size": "12px"}),
                       sizing_mode="stretch_width")

# ------------------------------------------------------------------------------------------------ tariffs
tariff_dir = settings.data_dir / "tariffs"
files = sorted(p.name for p in tariff_dir.glob("*.yaml"))
tf_pick = pn.widgets.Select(name=t("adm_tariff_file", lang), options=files, width=320)
tf_text = pn.widgets.TextAreaInput(height=360, sizing_mode="stretch_width")
tf_check = pn.widgets.Button(name=t("adm_check", lang), width=140)
tf_save = pn.widgets.Button(name=t("adm_save", lang), button_type="primary", width=140)
tf_msg = alert()
loaded_sha: dict[str, str] = {}


def load_tariff(*_):
    data = (tariff_dir / tf_pick.value).read_bytes()
    loaded_sha["sha"] = hashlib.sha256(data).hexdigest()
    tf_text.value = data.decode("utf-8")
    tf_msg.visible = False


def check_tariff(_event):
    try:
        tariff_edit.validate_tou_text(tf_text.value, tf_pick.value, tariff_dir=tariff_dir)
    except AnningError as err:
        say(tf_msg, err)
        return
    say(tf_msg, ok=t("adm_checked", lang))


def save_tariff(_event):
    try:
        path = tariff_edit.save_tou_file(actor, tf_text.value, tariff_dir / tf_pick.value, engine=engine,
                                   expected_sha256=loaded_sha.get("sha"))
    except AnningError as err:
        say(tf_msg, err)
        return
    load_tariff()
    say(tf_msg, ok=t("adm_saved", lang, path=path.name))


tf_pick.param.watch(load_tariff, "value")
tf_check.on_click(check_tariff)
tf_save.on_click(save_tariff)
if files:
    load_tariff()
tariffs_tab = pn.Column(tf_pick, tf_text, pn.Row(tf_check, tf_save), tf_msg, sizing_mode="stretch_width")

# ------------------------------------------------------------------------------------------------ dispatch strategies
st_table = pn.widgets.Tabulator(pd.DataFrame(columns=strategy_edit.STRATEGY_COLUMNS), show_index=False,
                                disabled=True, sizing_mode="stretch_width")
st_dev = pn.widgets.Select(name=t("adm_device", lang), options=[], width=160)
st_control = pn.widgets.Select(name=t("adm_st_control", lang), width=220,
                               options={t(f"adm_st_{c}", lang): c for c in strategy_edit.CONTROLS})
st_min = pn.widgets.FloatInput(name=t("adm_st_soc_min", lang), step=0.05, width=150)
st_max = pn.widgets.FloatInput(name=t("adm_st_soc_max", lang), step=0.05, width=150)
st_save = pn.widgets.Button(name=t("adm_save", lang), button_type="primary", width=140, align="end")
st_msg = alert()
st_loaded: dict = {}


def fill_strategy(*_):
    row = st_loaded["frame"].set_index("device_id").loc[st_dev.value]
    st_control.value, st_min.value, st_max.value = row["control"], row["soc_min_frac"], row["soc_max_frac"]


def load_strategies():
    data = settings.park_path.read_bytes()
    frame = strategy_edit.storage_strategies(context.park())
    st_loaded.update(sha=sha256_of(data), frame=frame)
    st_table.value = frame
    st_dev.options = list(frame["device_id"])
    if st_dev.value not in st_dev.options:
        st_dev.value = st_dev.options[0] if st_dev.options else None
    if st_dev.value is not None:
        fill_strategy()


def save_strategy(_event):
    try:
        strategy_edit.save_strategy(actor, st_dev.value, control=st_control.value, soc_min_frac=st_min.value,
                                    soc_max_frac=st_max.value, engine=engine, expected_sha256=st_loaded.get("sha"))
    except AnningError as err:
        say(st_msg, err)
        return
    context.park.cache_clear()                       # this process's pages read the new model from now on
    load_strategies()
    say(st_msg, ok=t("adm_st_saved", lang, device=st_dev.value))


st_dev.param.watch(fill_strategy, "value")
st_save.on_click(save_strategy)
load_strategies()
strategies_tab = pn.Column(st_table, pn.FlexBox(st_dev, st_control, st_min, st_max, st_save, flex_wrap="wrap",
                                                align_items="flex-end", sizing_mode="stretch_width"),
                           st_msg, pn.pane.Markdown(t("adm_st_note", lang), styles={"font-size": "12px"}),
                           sizing_mode="stretch_width")

# ------------------------------------------------------------------------------------------------ alarm rules
rule_text = pn.widgets.TextAreaInput(name=t("adm_rule_json", lang), height=220, sizing_mode="stretch_width")
rule_btn = pn.widgets.Button(name=t("adm_put_rule", lang), button_type="primary", width=140)
rule_msg = alert()


def rules_frame() -> pd.DataFrame:
    from anning_lib.quality.service import rules_in_force

    rules, _problems = rules_in_force(engine, park, settings.data_dir)
    return pd.DataFrame([{"id": r.id, "name": r.name, "condition": r.condition.kind if hasattr(r.condition, "kind")
                          else type(r.condition).__name__, "severity": r.severity, "enabled": r.enabled}
                         for r in rules])


rules_table = pn.widgets.Tabulator(rules_frame(), show_index=False, disabled=True, pagination="local",
                                   page_size=15, sizing_mode="stretch_width")


def put_rule(_event):
    from anning_lib.quality.service import put_rule as store_rule

    try:
        definition = yaml.safe_load(rule_text.value or "")
        if not isinstance(definition, dict):
            raise AnningError(f"rule: expected a mapping, got {type(definition).__name__}")
        rid = store_rule(engine, actor, park, definition)
    except (AnningError, yaml.YAMLError) as err:
        say(rule_msg, err)
        return
    say(rule_msg, ok=t("adm_rule_saved", lang, id=rid))
    rules_table.value = rules_frame()


rule_btn.on_click(put_rule)
rules_tab = pn.Column(rules_table, rule_text, rule_btn, rule_msg, sizing_mode="stretch_width")

# ------------------------------------------------------------------------------------------------ factors
factors_tab = pn.Column(sizing_mode="stretch_width")


def load_factors():
    import sqlalchemy as sa

    from anning_lib.store.schema import TABLES

    ef = TABLES["emission_factor"]
    with engine.connect() as conn:
        rows = pd.DataFrame(conn.execute(sa.select(ef.c.key, ef.c.region, ef.c.value, ef.c.unit, ef.c.version,
                                                   ef.c.source)).mappings().all())
    factors_tab.objects = [pn.widgets.Tabulator(rows, show_index=False, disabled=True, pagination="local",
                                                page_size=20, sizing_mode="stretch_width")]


load_factors()

# ------------------------------------------------------------------------------------------------ audit log
a_action = pn.widgets.TextInput(name=t("adm_audit_action", lang), placeholder="login, setpoint, user...", width=180)
a_user = pn.widgets.TextInput(name=t("adm_username", lang), width=160)
a_days = pn.widgets.IntInput(name=t("adm_audit_days", lang), value=7, start=1, end=3650, width=120)
a_table = pn.widgets.Tabulator(pd.DataFrame(), show_index=False, disabled=True, sizing_mode="stretch_width",
                               pagination="local", page_size=25, layout="fit_data_stretch",
                               titles={c: t(f"adm_audit_col_{c}", lang) for c in audit.AUDIT_COLUMNS})
a_msg = alert()


def load_audit(_event=None):
    try:
        start = pd.Timestamp.now(tz="UTC") - pd.Timedelta(days=int(a_days.value or 7))
        df = audit.query_audit(engine, actor, action_prefix=a_action.value.strip() or None,
                               username=a_user.value.strip() or None, start=start.to_pydatetime(),
                               tz=settings.timezone)
    except AnningError as err:
        say(a_msg, err)
        return None
    a_msg.visible = False
    shown = df.assign(ts=df["ts"].dt.strftime("%Y-%m-%d %H:%M:%S"))
    a_table.value = shown
    return df


def audit_file():
    import io

    df = load_audit()
    return io.BytesIO(b"" if df is None else audit.audit_csv(df))


a_button = pn.widgets.Button(name=t("adm_audit_show", lang), button_type="primary", width=100, align="end")
a_button.on_click(load_audit)
a_export = pn.widgets.FileDownload(callback=audit_file, filename="audit-log.csv", label=t("adm_audit_export", lang),
                                   embed=False, width=140, align="end")
audit_tab = pn.Column(pn.FlexBox(a_action, a_user, a_days, a_button, a_export, flex_wrap="wrap",
                                 align_items="flex-end", sizing_mode="stretch_width"),
                      a_msg, a_table, sizing_mode="stretch_width")
load_audit()
shell("admin", actor, lang, pn.Tabs((t("adm_users", lang), users_tab), (t("adm_points", lang), points_tab),
                                    (t("adm_tariffs", lang), tariffs_tab),
                                    (t("adm_strategies", lang), strategies_tab), (t("adm_rules", lang), rules_tab),
                                    (t("adm_factors", lang), factors_tab), (t("adm_audit", lang), audit_tab),
                                    dynamic=True, margin=(6, 14),
                                    sizing_mode="stretch_width")).servable(title=t("page_admin", lang))
