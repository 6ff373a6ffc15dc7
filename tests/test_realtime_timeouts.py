"""The realtime session's two clocks (gateway/realtime/__init__.py:serve_session): a busy client is
closed at the session's maximum length with `session_expired`, a quiet one after the idle timeout
with `idle_timeout`. Run on uvloop, Serve's event loop, whose timers fire up to 1 ms early: the
session's end must not then pass for idleness. No Ray, no models: the session is a stand-in that
answers every client event at once."""

from __future__ import annotations

import asyncio
import json

import pytest

from gateway.realtime import serve_session
from mmserve.config.gateway import RealtimeArgs

uvloop = pytest.importorskip("uvloop")


class Client:
    """The socket side: a client event every `every_s` (None: a quiet client), and how it was closed."""

    def __init__(self, every_s: float | None):
        self.every_s, self.closed = every_s, None

    async def receive(self) -> dict:
        if self.every_s is None:
            await asyncio.Event().wait()  # never a word
        await asyncio.sleep(self.every_s)  # the client's own pace, not a synchronisation
        return {"type": "websocket.receive", "text": json.dumps({"type": "input_audio_buffer.clear"})}

    async def close(self, code: int, reason: str) -> None:
        self.closed = reason


class Session:
    busy = False

    def __init__(self):
        self.errors: list[str] = []

    async def send(self, event: dict) -> None:
        if event["type"] == "error":
            self.errors.append(event["error"]["code"])

    async def handle(self, event) -> None:
        pass


async def one_session(every_s: float | None, args: RealtimeArgs) -> tuple[str | None, list[str]]:
    client, session = Client(every_s), Session()
    await serve_session(client, session, args)
    return client.closed, session.errors


def test_a_busy_client_is_closed_at_the_session_length_every_time():
    """100 short sessions of a client that talks every 2 ms: each ends `session_expired`. When the end
    was judged by the clock, some ended `idle_timeout` (uvloop woke the loop just before the end):
    in CI, `test_live_voice.py::test_realtime_limits_and_api_keys` failed that way now and then."""
    args = RealtimeArgs(max_session_s=0.02, idle_timeout_s=1)

    async def run() -> list:
        return [await one_session(0.002, args) for _ in range(100)]

    ends = uvloop.run(run())
    assert all(end == ("session_expired", ["session_expired"]) for end in ends), \
        sorted({str(end) for end in ends})


def test_a_quiet_client_is_closed_after_the_idle_timeout():
    ends = uvloop.run(one_session(None, RealtimeArgs(max_session_s=10, idle_timeout_s=0.05)))
    assert ends == ("idle_timeout", ["idle_timeout"])
