"""Slow pure work (a scrypt comparison) off the event loop: keys, audio and the watchdog go on.

The caller has done everything stateful first on the loop (the try is counted on
disk); the worker only computes, and the verdict comes back to the loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

LOGGER = logging.getLogger(__name__)


async def compare_off_loop(compare: Callable[[], bool]) -> bool | None:
    """Run ``compare`` in the loop's default executor; its verdict, or None if it raised."""
    try:
        return await asyncio.get_running_loop().run_in_executor(None, compare)
    except Exception:
        LOGGER.exception("the code comparison failed; the try stays counted")
        return None
