"""The admins' audit-log viewer: filters, scope, export."""

from __future__ import annotations

import datetime as dt
import io

import pandas as pd
import pytest

from anning_lib.auth.access import SYSTEM
from anning_lib.auth.audit import audit, audit_csv, query_audit
from anning_lib.auth.users import active_actor, add_user
from anning_lib.errors import AccessError
from anning_lib.store import init_db

T = dt.datetime(2026, 11, 30, 16, 0, tzinfo=dt.UTC)                # 1 December 00:00 in Kunming


def test_admin_filters_and_exports_the_trail(engine, tiny_park):
    init_db(engine, tiny_park)
    add_user(engine, SYSTEM, "root.admin", "root-admin-pass-1", "admin")
    add_user(engine, SYSTEM, "op.wang", "op-wang-pass-01", "operator")
    admin, op = active_actor(engine, "root.admin"), active_actor(engine, "op.wang")
    audit(engine, "login", "user:op.wang", {"source": "10.0.0.8"}, op.user_id, now=T)
    audit(engine, "setpoint_written", "SES.p_set_kw", {"value_kw": -8000, "note": "谷段充电"}, op.user_id,
          now=T + dt.timedelta(hours=2))
    audit(engine, "login", "user:root.admin", None, admin.user_id, now=T + dt.timedelta(days=1))

    everything = query_audit(engine, admin)
    assert len(everything) >= 3 and everything["id"].is_monotonic_decreasing            # newest first
    mine = query_audit(engine, admin, username="op.wang", start=T, end=T + dt.timedelta(days=1))
    assert mine["action"].tolist() == ["setpoint_written", "login"]
    assert mine["ts"].iloc[0].strftime("%Y-%m-%d %H:%M %z") == "2026-12-01 02:00 +0800"   # shown in park time
    logins = query_audit(engine, admin, action_prefix="login", start=T)
    assert set(logins["username"]) == {"op.wang", "root.admin"}

    back = pd.read_csv(io.BytesIO(audit_csv(mine)), encoding="utf-8-sig")
    assert back["target"].tolist() == ["SES.p_set_kw", "user:op.wang"]
    assert "谷段充电" in back["detail"].iloc[0] and back["ts"].iloc[0] == "2026-12-01T02:00:00+08:00"

    with pytest.raises(AccessError):
        query_audit(engine, op)                                     # operators do not read the trail
