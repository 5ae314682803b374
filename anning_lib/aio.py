"""Small asyncio helpers shared by the gateway, the simulator's servers and the CLI."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable

log = logging.getLogger("anning")


async def wait_or_stop(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep ``seconds`` [s] unless ``stop`` is set first; True when stopped."""
    try:
        await asyncio.wait_for(stop.wait(), max(0.0, seconds))
    except TimeoutError:
        return False
    return True


async def every(seconds: float, stop: asyncio.Event, fn: Callable[[], object], first_after_s: float | None = None
                ) -> None:
    """Run the blocking ``fn`` in a worker thread every ``seconds`` [s] (the first time after ``first_after_s``,
    default ``seconds``) until ``stop`` is set.

    An exception in ``fn`` is logged and the next call still happens: a periodic job never ends the loop.
    """
    wait = seconds if first_after_s is None else first_after_s
    while not await wait_or_stop(stop, wait):
        wait = seconds
        try:
            await asyncio.to_thread(fn)
        except Exception:  # noqa: BLE001
            log.exception("periodic job %s failed", getattr(fn, "__name__", fn))


def stop_on_signal(stop: asyncio.Event, duration_s: float | None = None) -> None:
    """Set ``stop`` on Ctrl-C / SIGTERM, or after ``duration_s`` [s] when given (call inside the running loop)."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if duration_s is not None:
        loop.call_later(duration_s, stop.set)
