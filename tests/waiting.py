"""Waiting in a test for something to have happened, instead of sleeping for a guessed time: poll
the condition until it holds, and fail, saying what was awaited, only after a deadline generous
enough for a busy CI host (a bound against hanging, never a measured time)."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")
DEADLINE = 60.0  # seconds: far beyond any stall of a loaded 2-core host, short of pytest's timeout


def eventually(condition: Callable[[], T], what: str, timeout: float = DEADLINE, every: float = 0.05) -> T:
    """``condition()``'s first true value, asked every ``every`` seconds; AssertionError naming
    ``what`` once ``timeout`` seconds have passed (it is asked once more after the deadline, so a
    host that stalled through the whole wait does not fail a condition that holds)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"not within {timeout:g} s: {what}")
        time.sleep(every)


async def eventually_async(
    condition: Callable[[], T | Awaitable[T]], what: str, timeout: float = DEADLINE, every: float = 0.02
) -> T:
    """:func:`eventually` on an event loop: ``condition`` may be a function or a coroutine function,
    and the loop runs (the awaited work goes on) between the checks."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value  # type: ignore[return-value]
        if time.monotonic() >= deadline:
            raise AssertionError(f"not within {timeout:g} s: {what}")
        await asyncio.sleep(every)
