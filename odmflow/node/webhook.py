"""The webhook of a finished task: POSTed once, in the background, retried as NodeODM retries it.

Up to 6 attempts; the first retry is immediate, then the wait grows by 5 s each time; any reply but 200
counts as a failure. The body is the task's info plus `images` (images.json's contents, or []).
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import httpx

log = logging.getLogger("odmflow.node")
ATTEMPTS = 6
STEP_S = 5.0
TIMEOUT_S = 30.0


def payload(info: dict[str, Any], images_json: Path) -> dict[str, Any]:
    try:
        images = json.loads(images_json.read_text())
    except (OSError, ValueError):
        images = []
    return {**info, "images": images if isinstance(images, list) else []}


async def post_with_retries(url: str, body: dict[str, Any], step_s: float = STEP_S) -> bool:
    """POST body to url until it answers 200 (at most ATTEMPTS times); whether it did."""
    async with httpx.AsyncClient(timeout=TIMEOUT_S, trust_env=False) as client:
        for attempt in range(ATTEMPTS):
            if attempt > 1:
                await asyncio.sleep(step_s * (attempt - 1))
            try:
                reply = await client.post(url, json=body)
                if reply.status_code == 200:
                    return True
                why = f"HTTP {reply.status_code}"
            except httpx.HTTPError as err:
                why = f"{type(err).__name__}: {err}"
            log.warning("webhook %s, attempt %d of %d failed: %s", url, attempt + 1, ATTEMPTS, why)
    return False


class Webhooks:
    """Background webhook calls, kept referenced until they finish."""

    def __init__(self) -> None:
        self._pending: set[asyncio.Task[bool]] = set()

    def fire(self, urls: list[str], body: dict[str, Any]) -> None:
        for url in urls:
            task = asyncio.create_task(post_with_retries(url, body))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def drain(self, timeout_s: float = 5.0) -> None:
        """Give pending calls a moment at shutdown."""
        if self._pending:
            await asyncio.wait(list(self._pending), timeout=timeout_s)
