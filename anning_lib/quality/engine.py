"""The alarm engine: detectors of every rule and target fed by the live stream, with on-delay, off-delay and flood
suppression, producing raise and clear transitions (pure: no I/O; :mod:`anning_lib.quality.alarms` stores them).

For each (rule, target) a detector (:mod:`anning_lib.quality.checks`) says whether the condition holds. An alarm is
*raised* when the condition has held for ``on_delay_s`` and *cleared* when it has been false for ``off_delay_s``
(the range detector adds a deadband on top), so a signal flapping around its limit raises one alarm, not dozens.
While a device has lost communication (a ``comm_loss`` alarm is active), the alarms of its points are suppressed:
one parent alarm stands for the whole device (flood suppression after ISA-18.2 / IEC 62682).

References
----------
ANSI/ISA-18.2-2016, *Management of Alarm Systems for the Process Industries* (alarm states, on/off delay,
deadband, shelving, suppression); IEC 62682:2022.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from anning_lib.park.schema import Park
from anning_lib.quality.checks import BalanceDetector, StaleDetector, make_detector
from anning_lib.quality.rules import AlarmRule, expand, fault_texts

DEVICE_LEVEL = ("balance", "comm_loss")


@dataclass
class Transition:
    """An alarm to raise or clear."""

    action: str                   # "raise" or "clear"
    rule: AlarmRule
    target: str                   # point tag or device id
    device_id: str
    enterprise_id: str | None
    t_s: float                    # when [s since the epoch, UTC]
    detail: dict = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str]:
        return self.rule.id, self.target


@dataclass
class _State:
    rule: AlarmRule
    target: str
    device_id: str
    enterprise_id: str | None
    detector: object
    true_since: float | None = None
    false_since: float | None = None
    active: bool = False


class AlarmEngine:
    """Evaluates every enabled rule on every target of the park.

    Parameters
    ----------
    park : Park
    rules : list of AlarmRule
    start_s : float, optional
        when evaluation starts [s since the epoch]: a point with no sample at all goes stale counted from then.
    fault_codes : dict, optional
        ``data/alarms/fault_codes.yaml`` as read by :func:`~anning_lib.quality.rules.load_fault_codes`: device type
        (or ``default``) -> {bit: text}, for decoding fault words.
    """

    def __init__(self, park: Park, rules: list[AlarmRule], fault_codes: dict | None = None,
                 start_s: float | None = None):
        self.fault_codes = fault_codes or {}
        self.start_s = start_s          # a point that never reports goes stale counted from here [s]
        self.by_tag: dict[str, list[_State]] = defaultdict(list)
        self.balance: list[_State] = []
        self.comm: dict[str, list[_State]] = defaultdict(list)      # device id -> comm_loss states
        self.timed: list[_State] = []                                # stale detectors: need ticks
        self._timed_ids: set[int] = set()
        self.suppressed = 0                                          # point alarms held back by a comm loss
        self._lost: set[str] = set()                                 # devices with an active comm_loss alarm
        self.problems: list[tuple[str, str, str]] = []                # (rule id, target, why) not evaluated
        owner = {d.id: e for e, d in park.iter_devices()}
        for rule in rules:
            if rule.enabled:
                for target in expand(rule, park):
                    try:
                        self._add(park, rule, target, owner)
                    except (ValueError, KeyError) as err:            # one bad target never stops the others
                        self.problems.append((rule.id, target, str(err)))

    def _add(self, park: Park, rule: AlarmRule, target: str, owner: dict) -> None:
        kind = rule.condition.kind
        device_id = target if kind in DEVICE_LEVEL else target.split(".", 1)[0]
        if kind == "comm_loss":
            st = _State(rule, target, device_id, owner[device_id], None)
            self.comm[device_id].append(st)
            return
        if kind == "balance":
            det = BalanceDetector.from_park(rule.condition, park, device_id)
            st = _State(rule, target, device_id, owner[device_id], det)
            self.balance.append(st)
            for tag in det.tags:
                self.by_tag[tag].append(st)
            return
        device = park.device(device_id)
        det = make_detector(rule.condition, point=device.point(target.split(".", 1)[1]),
                            fault_texts=fault_texts(self.fault_codes, device.type), since_s=self.start_s)
        st = _State(rule, target, device_id, owner[device_id], det)
        self.by_tag[target].append(st)
        if isinstance(st.detector, StaleDetector):
            self.timed.append(st)
            self._timed_ids.add(id(st))

    @property
    def n_targets(self) -> int:
        """How many (rule, target) pairs are evaluated."""
        states = {id(s) for v in self.by_tag.values() for s in v} | {id(s) for v in self.comm.values() for s in v}
        return len(states)

    # ------------------------------------------------------------------------------------------ inputs
    def on_samples(self, samples) -> list[Transition]:
        """Feed samples (objects with ``tag``, ``ts_ms``, ``value``, ``quality``); returns the transitions."""
        out: list[Transition] = []
        for s in samples:
            states = self.by_tag.get(s.tag)
            if not states:
                continue
            # the gateway's receive time, the clock of on_tick too: a device whose clock is off (or samples that
            # arrive out of order) cannot complete a delay early or clear before it raised
            t = getattr(s, "recv_s", None) or s.ts_ms / 1000.0
            for st in states:
                if st.rule.condition.kind == "balance":
                    cond = st.detector.update_tag(s.tag, t, s.value, s.quality)
                else:
                    cond = st.detector.update(t, s.value, s.quality)
                self._step(st, cond, t, out)
        return out

    def on_tick(self, now_s: float) -> list[Transition]:
        """Time passes: stale detectors, and delays that expire without a new sample."""
        out: list[Transition] = []
        for st in self.timed:
            self._step(st, st.detector.tick(now_s), now_s, out)
        pending = [st for states in self.by_tag.values() for st in states if id(st) not in self._timed_ids]
        pending += [st for states in self.comm.values() for st in states]
        for st in {id(st): st for st in pending}.values():
            if (st.true_since is not None) if not st.active else (st.false_since is not None):
                self._step(st, None, now_s, out)
        return out

    def resume(self, open_alarms: dict[tuple[str, str], str]) -> list[tuple[str, str]]:
        """Take the open alarms of the store (``(rule id, target) -> state``) after a restart: an active one is
        marked active, so that it clears when its condition is gone. Returns the keys no enabled rule covers."""
        states = {(st.rule.id, st.target): st for v in [*self.by_tag.values(), *self.comm.values()] for st in v}
        orphans = []
        for key, state in open_alarms.items():
            st = states.get(key)
            if st is None:
                orphans.append(key)
            elif state in ("active_unack", "active_ack"):
                st.active = True
                if st.rule.condition.kind == "comm_loss":
                    self._lost.add(st.device_id)
        return orphans

    def on_health(self, device_ids: list[str], connected: bool, now_s: float) -> list[Transition]:
        """A gateway connection serving ``device_ids`` went up or down."""
        out: list[Transition] = []
        for dev in device_ids:
            for st in self.comm.get(dev, []):
                self._step(st, not connected, now_s, out)
        return out

    # ------------------------------------------------------------------------------------------ delays
    def _step(self, st: _State, cond: bool | None, t: float, out: list[Transition]) -> None:
        if cond is True:
            st.false_since = None
            st.true_since = t if st.true_since is None else st.true_since
        elif cond is False:
            st.true_since = None
            st.false_since = t if st.false_since is None else st.false_since
        rule = st.rule
        if not st.active and st.true_since is not None and t - st.true_since >= rule.on_delay_s:
            if st.rule.condition.kind not in DEVICE_LEVEL and st.device_id in self._lost:
                self.suppressed += 1          # counted once per on-delay while the device is lost
                st.true_since = None          # re-armed: raised if it still holds after the device is back
                return
            st.active = True
            if rule.condition.kind == "comm_loss":
                self._lost.add(st.device_id)
            out.append(Transition("raise", rule, st.target, st.device_id, st.enterprise_id, t,
                                  dict(getattr(st.detector, "detail", {}) or {})))
        elif st.active and st.false_since is not None and t - st.false_since >= rule.off_delay_s:
            st.active = False
            if rule.condition.kind == "comm_loss":
                self._lost.discard(st.device_id)
            out.append(Transition("clear", rule, st.target, st.device_id, st.enterprise_id, t,
                                  dict(getattr(st.detector, "detail", {}) or {})))
