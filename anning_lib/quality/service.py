"""Alarms in operation: the engine fed by the gateway, transitions stored, notifications sent, shelving expired.

:class:`AlarmService` listens to the gateway's accepted samples (``Intake.listeners``), evaluates them at once
(cheap, in the gateway's loop) and queues the transitions; its :meth:`run` loop, every ``tick_s``, advances time
(stale data, delays), turns each connection's health into communication-loss conditions, and stores and notifies
in a worker thread, so the database or a slow mail server never holds up ingestion.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import threading
import time
from collections.abc import Callable

from sqlalchemy.engine import Engine

from anning_lib.park.schema import Park
from anning_lib.quality.alarms import (
    apply,
    close_orphans,
    expire_shelving,
    get_alarm,
    open_keys,
)
from anning_lib.quality.engine import AlarmEngine, Transition

log = logging.getLogger(__name__)


class AlarmService:
    """The alarm engine wired to a gateway and the store.

    Parameters
    ----------
    engine : Engine
    park : Park
    rules : list of AlarmRule
    notify : callable, optional
        called in a worker thread with each newly raised alarm row (dict) that is not shelved, e.g.
        ``lambda row: deliver(engine, channels, render(row))``.
    """

    def __init__(self, engine: Engine, park: Park, rules, *, notify: Callable[[dict], None] | None = None,
                 fault_codes: dict | None = None, say: Callable[[str], None] = lambda _m: None):
        self.engine, self.park = engine, park
        self.alarms = AlarmEngine(park, rules, fault_codes, start_s=time.time())
        self.notify, self.say = notify, say
        self._queue: list[Transition] = []
        self._lock = threading.Lock()     # samples arrive on the event loop and on the MQTT client's thread
        self._connected: dict[str, bool] = {}
        self.n_raised = self.n_cleared = 0
        for rule_id, target, why in self.alarms.problems:
            say(f"alarms: rule {rule_id} not evaluated on {target}: {why}")

    def resume(self) -> list[int]:
        """After a restart: alarms open in the store become active in the engine (so they clear), and alarms of
        rules no longer in force are closed. Returns the ids closed."""
        orphans = self.alarms.resume(open_keys(self.engine))
        return close_orphans(self.engine, orphans, "rule no longer in force") if orphans else []

    def __call__(self, samples) -> None:
        """An ``Intake`` listener: evaluate accepted samples now, store later."""
        with self._lock:
            self._queue.extend(self.alarms.on_samples(samples))

    def step(self, now_s: float, sources=()) -> list[Transition]:
        """Advance time and connection health; returns the transitions to store (and clears the queue)."""
        with self._lock:
            out, self._queue = self._queue, []
            out += self.alarms.on_tick(now_s)
            for health, devices in sources:
                up = bool(health.connected)
                if self._connected.get(health.source) != up:
                    self._connected[health.source] = up
                    out += self.alarms.on_health(devices, up, now_s)
        return out

    def requeue(self, transitions: list[Transition]) -> None:
        """Transitions that could not be stored: tried again at the next tick."""
        with self._lock:
            self._queue = transitions + self._queue

    def store(self, transitions: list[Transition]) -> list[tuple[int, str]]:
        """Store transitions (blocking: run in a worker thread); returns what changed."""
        changed = apply(self.engine, transitions)
        self.n_raised += sum(action == "raise" for _aid, action in changed)
        self.n_cleared += sum(action == "clear" for _aid, action in changed)
        return changed

    def send(self, alarm_ids: list[int]) -> None:
        """Notify newly raised alarms that are not shelved (blocking; failures are logged, never raised)."""
        if self.notify is None:
            return
        for aid in alarm_ids:
            try:
                row = get_alarm(self.engine, aid)
                if row["shelved_until"] is None:
                    self.notify(row)
            except Exception:  # noqa: BLE001 - delivery problems are recorded by the channel, not fatal
                log.exception("notification of alarm %s failed", aid)

    async def run(self, stop: asyncio.Event, gateway=None, tick_s: float = 1.0) -> None:
        """Every ``tick_s`` until ``stop``: time, health, store; notifications in their own worker thread (a slow
        mail server delays no alarm); shelving expiry every minute."""
        from anning_lib.aio import wait_or_stop

        await asyncio.to_thread(self.resume)
        last_shelve, sending = 0.0, set()
        while not await wait_or_stop(stop, tick_s):
            now = time.time()
            transitions = self.step(now, gateway.sources() if gateway is not None else ())
            try:
                changed = await asyncio.to_thread(self.store, transitions) if transitions else []
            except Exception as err:  # noqa: BLE001 - the alarm loop must outlive a database hiccup
                self.requeue(transitions)                       # not stored: try again next tick
                self.say(f"alarms: {len(transitions)} transitions kept, store failed: {type(err).__name__}: {err}")
                continue
            for aid, action in changed:
                self.say(f"alarm {aid} {action}")
            raised = [aid for aid, action in changed if action == "raise"]
            if raised and self.notify is not None:
                task = asyncio.create_task(asyncio.to_thread(self.send, raised))
                sending.add(task)
                task.add_done_callback(sending.discard)
            if now - last_shelve > 60:
                last_shelve = now
                try:
                    await asyncio.to_thread(expire_shelving, self.engine, dt.datetime.now(dt.UTC))
                except Exception as err:  # noqa: BLE001
                    self.say(f"alarms: shelving expiry failed: {type(err).__name__}: {err}")
        if sending:
            await asyncio.wait(sending, timeout=30)


def rules_in_force(engine: Engine, park: Park, data_dir) -> tuple[list, list]:
    """The rules file (``data/alarms/rules.yaml``) overridden by the admins' rows of ``alarm_rule``; returns
    ``(rules, problems)``: a bad rule is reported and skipped, the others stay in force."""
    import sqlalchemy as sa

    from anning_lib.quality.rules import merge_rules, read_rules_file
    from anning_lib.store.schema import TABLES

    rules, problems = read_rules_file(data_dir / "alarms" / "rules.yaml", park)
    t = TABLES["alarm_rule"]
    with engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(sa.select(t.c.id, t.c.definition, t.c.enabled))]
    rules, more = merge_rules(rules, rows, park)
    return rules, problems + more


def put_rule(engine: Engine, actor, park: Park, definition: dict, enabled: bool = True) -> str:
    """An admin's rule: validated against the park, then stored in ``alarm_rule`` (it overrides the file's rule of
    the same id from the next start of the gateway). Returns the rule id.

    Raises
    ------
    AlarmRuleError
        naming every bad field; nothing is stored.
    QualityError
        when ``actor`` is not an admin.
    """
    import datetime as _dt

    from anning_lib.auth.access import require
    from anning_lib.auth.audit import audit
    from anning_lib.errors import AlarmRuleError
    from anning_lib.quality.rules import validate_rule
    from anning_lib.store.assets import upsert
    from anning_lib.store.schema import TABLES

    require(actor, "alarm.rule", None)
    rule, problems = validate_rule(definition, park, "rule")
    if problems or rule is None:
        raise AlarmRuleError(problems or [("rule", definition, "not a rule")])
    with engine.begin() as conn:
        upsert(conn, TABLES["alarm_rule"], [{"id": rule.id, "definition": definition, "enabled": enabled,
                                             "updated_at": _dt.datetime.now(_dt.UTC), "updated_by": actor.user_id}],
               ["id"])
    audit(engine, "alarm_rule_set", f"alarm_rule:{rule.id}", {"definition": definition, "enabled": enabled},
          actor.user_id)
    return rule.id


def alarm_service(engine: Engine, park: Park, settings, say: Callable[[str], None]) -> AlarmService:
    """The alarm service of ``anning demo`` / ``anning ingest run``: rules in force, fault codes, notification
    channels (``data/alarms/channels.yaml``); problems in the rule files are said, not fatal."""
    from anning_lib.errors import AnningError
    from anning_lib.quality.notify import deliver, load_channels, render
    from anning_lib.quality.rules import load_fault_codes

    rules, problems = rules_in_force(engine, park, settings.data_dir)
    for path, value, reason in problems:
        say(f"alarms: rule skipped: {path}: {reason} (got {value!r})")
    try:
        channels = [c for c in load_channels(settings.data_dir / "alarms" / "channels.yaml") if c.enabled]
    except AnningError as err:          # a bad channels file costs the notifications, not the alarms
        say(f"alarms: no notifications: {err}")
        channels = []
    try:
        codes = load_fault_codes(settings.data_dir / "alarms" / "fault_codes.yaml")
    except AnningError as err:
        say(f"alarms: fault words not decoded: {err}")
        codes = {}
    notify = (lambda row: deliver(engine, channels, render(row, settings.timezone))) if channels else None
    service = AlarmService(engine, park, rules, notify=notify, fault_codes=codes, say=say)
    say(f"alarms: {len(rules)} rules on {service.alarms.n_targets:,d} targets; "
        f"{len(channels)} notification channels")
    return service
