"""Notifications about alarms by e-mail (SMTP) and webhook, with retries, each delivery recorded.

Channels are data (``data/alarms/channels.yaml``, read by :func:`load_channels`): which severities and
enterprises a channel takes, where it sends. Secrets are never in the file: an SMTP password is read at send
time from the environment variable named by ``password_env``, webhook secret headers from the variables named
in ``headers_env``.

:func:`deliver` writes one ``notification`` row per matching channel and tries each channel up to ``attempts``
times; a failure ends in a ``failed`` row and a log line, never an exception, so that a broken mail server cannot
stop alarm handling. Sending blocks (``smtplib``, ``urllib``): call it from a thread in async code
(``await asyncio.to_thread(deliver, ...)``).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import smtplib
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from sqlalchemy.engine import Engine

from anning_lib.errors import AlarmRuleError, ConfigError
from anning_lib.park.loader import problems_from
from anning_lib.store.schema import TABLES

log = logging.getLogger(__name__)

SEVERITIES = ("low", "medium", "high", "critical")
"""Alarm severities, lowest first; a channel takes its ``min_severity`` and above."""
Severity = Literal["low", "medium", "high", "critical"]
_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
SUBJECT_MAX = 200
"""Length of ``notification.subject``; longer subjects are cut with an ellipsis."""


# ------------------------------------------------------------------------------------------------ channels
class _Channel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", max_length=32, description="stored in notification.channel")
    enabled: bool = True
    min_severity: Severity = "high"
    enterprises: list[str] | None = Field(None, description="only alarms of these enterprises; null: all alarms")

    def takes(self, message: Message) -> bool:
        """Whether this channel sends ``message`` (enabled, severity at least ``min_severity``, enterprise)."""
        if not self.enabled or severity_rank(message.severity) < severity_rank(self.min_severity):
            return False
        return self.enterprises is None or message.enterprise_id in self.enterprises


class SmtpChannel(_Channel):
    """E-mail through an SMTP server (STARTTLS and login when configured)."""

    kind: Literal["smtp"]
    host: str = Field(min_length=1)
    port: int = Field(25, ge=1, le=65535)
    starttls: bool = False
    username: str | None = None
    password_env: str | None = Field(None, pattern=_ENV_NAME, description="environment variable holding the password")
    sender: str = Field(pattern=r"^[^@\s]+@[^@\s]+$")
    recipients: list[Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+$")]] = Field(min_length=1)
    timeout_s: float = Field(10.0, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _no_password(cls, raw):
        if isinstance(raw, dict) and "password" in raw:
            raise ValueError("password: never put a password in the file; name an environment variable "
                             "holding it in password_env")
        return raw

    @model_validator(mode="after")
    def _login(self) -> SmtpChannel:
        if (self.username is None) != (self.password_env is None):
            raise ValueError("give both username and password_env, or neither")
        return self

    @property
    def recipient(self) -> str:
        return ", ".join(self.recipients)


class WebhookChannel(_Channel):
    """A JSON POST to a URL (chat bot, incident system)."""

    kind: Literal["webhook"]
    url: str
    timeout_s: float = Field(5.0, gt=0)
    headers: dict[str, str] = Field(default_factory=dict)
    headers_env: dict[str, Annotated[str, Field(pattern=_ENV_NAME)]] = Field(
        default_factory=dict, description="header name -> environment variable holding its (secret) value")

    @field_validator("url")
    @classmethod
    def _http(cls, v: str) -> str:
        u = urllib.parse.urlsplit(v)
        if u.scheme not in ("http", "https") or not u.netloc:
            raise ValueError(f"url must be http(s)://host/..., got {v!r}")
        return v

    @property
    def recipient(self) -> str:
        """The URL without query or credentials (tokens often ride in the query string)."""
        u = urllib.parse.urlsplit(self.url)
        return f"{u.scheme}://{u.hostname}{f':{u.port}' if u.port else ''}{u.path}"


Channel = Annotated[SmtpChannel | WebhookChannel, Field(discriminator="kind")]


class ChannelsFile(BaseModel):
    """The channels file: ``channels:`` and a list of channels."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    channels: list[Channel] = Field(default_factory=list)


def severity_rank(severity: str) -> int:
    """0 for low ... 3 for critical; an unknown severity ranks as critical (better one mail too many)."""
    return SEVERITIES.index(severity) if severity in SEVERITIES else len(SEVERITIES) - 1


def _tidy(problem: tuple[str, object, str]) -> tuple[str, object, str]:
    """Drop pydantic's union tag from a path (``channels[0].smtp.port`` -> ``channels[0].port``)."""
    path, value, reason = problem
    path = re.sub(r"^(channels\[\d+\])\.(smtp|webhook)\b", r"\1", path)
    if reason.startswith("Input tag") or "Unable to extract tag" in reason:
        path += ".kind"
    return path, value, reason


def parse_channels(raw: object, source: str | None = None) -> list[SmtpChannel | WebhookChannel]:
    """Check a channels document (``{channels: [...]}`` or a bare list) and return its channels.

    Raises
    ------
    AlarmRuleError
        naming the field path (``channels[0].port``) and the value of every problem.
    """
    if raw is None or isinstance(raw, list):
        raw = {"channels": raw or []}
    try:
        channels = ChannelsFile.model_validate(raw).channels
    except ValidationError as err:
        raise AlarmRuleError([_tidy(p) for p in problems_from(err)], source) from None
    seen: dict[str, int] = {}
    for i, ch in enumerate(channels):
        if ch.id in seen:
            raise AlarmRuleError([(f"channels[{i}].id", ch.id, f"duplicate channel id {ch.id!r} "
                                                               f"(also channels[{seen[ch.id]}])")], source)
        seen[ch.id] = i
    return channels


def load_channels(path: str | Path | None = None) -> list[SmtpChannel | WebhookChannel]:
    """Read ``path`` (default ``<data_dir>/alarms/channels.yaml``); a missing default file means no channels."""
    if path is None:
        from anning_lib.config import get_settings

        path = get_settings().data_dir / "alarms" / "channels.yaml"
        if not path.is_file():
            return []
    from anning_lib.quality.rules import read_yaml

    path = Path(path)
    raw, problems = read_yaml(path)
    if problems:
        raise AlarmRuleError(problems, str(path))
    return parse_channels(raw, str(path))


# ------------------------------------------------------------------------------------------------ messages
@dataclass(frozen=True)
class Message:
    """One notification's content, the same on every channel."""

    subject: str
    body: str
    severity: str
    enterprise_id: str | None = None
    alarm_id: int | None = None


def _num(v) -> str:
    return "-" if v is None else f"{v:g}" if isinstance(v, (int, float)) else str(v)


def _local(ts, tz: str) -> str:
    if not isinstance(ts, dt.datetime):
        return "-" if ts is None else str(ts)
    return ts.astimezone(ZoneInfo(tz)).strftime(f"%Y-%m-%d %H:%M:%S ({tz})")


def render(alarm_row: dict, tz: str = "Asia/Shanghai") -> Message:
    """The bilingual message of an alarm row (a mapping of ``alarm`` columns), e.g. subject
    ``[HIGH] 告警 E05-MM.p_kw range: 5210 kW > 5000 kW``; times in the body shown in ``tz``."""
    sev = str(alarm_row.get("severity") or "high")
    target = alarm_row.get("target") or alarm_row.get("device_id") or "park"
    kind = str(alarm_row.get("kind") or "alarm")
    text = str(alarm_row.get("message") or "").strip()
    if not text and alarm_row.get("value") is not None:
        text = f"{_num(alarm_row['value'])} (limit {_num(alarm_row.get('limit_value'))})"
    detail = text if text.startswith(kind) else f"{kind}: {text}" if text else kind
    subject = f"[{sev.upper()}] 告警 {target} {detail}"
    if len(subject) > SUBJECT_MAX:
        subject = subject[:SUBJECT_MAX - 1] + "…"
    lines = [
        ("告警 Alarm", f"#{alarm_row.get('id', '-')}"), ("级别 Severity", sev), ("对象 Target", target),
        ("企业 Enterprise", alarm_row.get("enterprise_id") or "园区 park"), ("类型 Kind", kind),
        ("内容 Message", text or "-"),
        ("数值 Value", f"{_num(alarm_row.get('value'))} (限值 limit {_num(alarm_row.get('limit_value'))})"),
        ("发生 Raised", _local(alarm_row.get("raised_at"), tz)), ("状态 State", alarm_row.get("state") or "-"),
    ]
    body = "\n".join(f"{k}: {v}" for k, v in lines) + "\n\n-- 安宁产业园区工作台 Anning industrial park workbench\n"
    return Message(subject, body, sev, alarm_row.get("enterprise_id"), alarm_row.get("id"))


# ------------------------------------------------------------------------------------------------ senders
def _env(name: str, field: str) -> str:
    value = os.environ.get(name)
    if value is None:
        raise ConfigError(f"{field}: environment variable {name} is not set")
    return value


def send_smtp(channel: SmtpChannel, message: Message) -> None:
    """Send ``message`` as one e-mail to every recipient of ``channel``; raises on any failure."""
    mail = EmailMessage()
    mail["Subject"] = message.subject
    mail["From"] = channel.sender
    mail["To"] = ", ".join(channel.recipients)
    mail.set_content(message.body)
    with smtplib.SMTP(channel.host, channel.port, timeout=channel.timeout_s) as smtp:
        if channel.starttls:
            smtp.starttls(context=ssl.create_default_context())
        if channel.username is not None:
            smtp.login(channel.username, _env(channel.password_env, f"channel {channel.id}.password_env"))
        refused = smtp.send_message(mail)
    if refused:
        raise smtplib.SMTPRecipientsRefused(refused)


def send_webhook(channel: WebhookChannel, message: Message) -> None:
    """POST ``message`` as JSON (``subject, body, severity, enterprise_id, alarm_id``); raises unless 2xx."""
    headers = {"Content-Type": "application/json; charset=utf-8", **channel.headers}
    headers |= {h: _env(v, f"channel {channel.id}.headers_env.{h}") for h, v in channel.headers_env.items()}
    data = json.dumps(asdict(message), ensure_ascii=False).encode("utf-8")
    req = urllib.request.Request(channel.url, data=data, headers=headers, method="POST")
    with urllib.request.urlopen(req, timeout=channel.timeout_s) as resp:  # noqa: S310 (http(s) checked)
        if not 200 <= resp.status < 300:
            raise urllib.error.HTTPError(channel.recipient, resp.status, resp.reason, resp.headers, None)


SENDERS: dict[str, Callable] = {"smtp": send_smtp, "webhook": send_webhook}


def _permanent(err: Exception) -> bool:
    """Errors a retry cannot cure: missing secret, refused login or recipients, HTTP 4xx (but 408, 429)."""
    if isinstance(err, (ConfigError, smtplib.SMTPAuthenticationError, smtplib.SMTPRecipientsRefused)):
        return True
    return isinstance(err, urllib.error.HTTPError) and 400 <= err.code < 500 and err.code not in (408, 429)


# ------------------------------------------------------------------------------------------------ delivery
def _attempt(channel, message: Message, attempts: int, backoff_s: Sequence[float], sleep) -> tuple[int, str | None]:
    """Try to send up to ``attempts`` times; ``(tries, None)`` when sent, ``(tries, error)`` when not."""
    error = None
    for i in range(attempts):
        try:
            SENDERS[channel.kind](channel, message)
            return i + 1, None
        except Exception as err:  # noqa: BLE001 (any failure of a channel is recorded, none propagates)
            error = f"{type(err).__name__}: {err}"
            log.warning("notification %s on channel %s, attempt %d/%d failed: %s",
                        message.alarm_id, channel.id, i + 1, attempts, error)
            if _permanent(err):
                return i + 1, error
            if i + 1 < attempts and backoff_s:
                sleep(backoff_s[min(i, len(backoff_s) - 1)])
    return attempts, error


def deliver(engine: Engine, channels: Sequence[SmtpChannel | WebhookChannel], message: Message, *, attempts: int = 3,
            backoff_s: Sequence[float] = (0.5, 2, 5), sleep: Callable[[float], None] = time.sleep) -> list[dict]:
    """Send ``message`` on every channel that takes it, recording each delivery in ``notification``.

    Per channel: a ``pending`` row is inserted, up to ``attempts`` tries are made with ``backoff_s[i]`` seconds
    between them (the last value repeats; errors a retry cannot cure stop early), and the row is updated with
    ``attempts``, ``status`` (``sent`` or ``failed``), ``last_error`` and ``sent_at``.

    Parameters
    ----------
    channels : sequence of SmtpChannel or WebhookChannel
        from :func:`load_channels`; disabled ones and those whose ``min_severity`` / ``enterprises`` do not
        match are skipped (no row).
    sleep : callable
        the pause between tries (tests pass ``lambda s: None``).

    Returns
    -------
    list of dict
        the ``notification`` rows written, one per channel tried. Delivery failures never raise (they are
        logged and recorded); database errors do.
    """
    if attempts < 1:
        raise ValueError(f"attempts: must be >= 1, got {attempts}")
    tbl = TABLES["notification"]
    out = []
    for ch in channels:
        if not ch.takes(message):
            continue
        row = {"alarm_id": message.alarm_id, "channel": ch.id, "recipient": ch.recipient[:200],
               "subject": message.subject[:SUBJECT_MAX], "status": "pending", "attempts": 0,
               "created_at": dt.datetime.now(dt.UTC)}
        with engine.begin() as conn:
            nid = conn.execute(sa.insert(tbl).values(**row).returning(tbl.c.id)).scalar_one()
        tries, error = _attempt(ch, message, attempts, backoff_s, sleep)
        done = {"attempts": tries, "status": "failed" if error else "sent", "last_error": error,
                "sent_at": None if error else dt.datetime.now(dt.UTC)}
        with engine.begin() as conn:
            conn.execute(sa.update(tbl).where(tbl.c.id == nid).values(**done))
        out.append({"id": nid, **row, **done})
    return out
