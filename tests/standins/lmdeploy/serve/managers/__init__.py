"""``lmdeploy/serve/managers/session_manager.py`` of 0.18.0: ``Session`` and its manager.

Kept to the real control flow because mmserve's cancellation depends on it:

* ``Session.abort()`` runs ``async_abort()`` on the pipeline's event-loop thread and blocks on
  ``run_coroutine_threadsafe(...).result()``;
* ``async_abort()`` cancels only while the session holds an engine handle (``_handle``), i.e. after
  ``preprocess`` finished and the request entered the engine and before it ended: an abort that
  comes earlier (still preprocessing, or waiting for a free handle) is a silent no-op, and the
  request then runs to completion;
* what "cancel" waits for depends on the engine (see ``_engine.StandinHandle.async_cancel``).
"""

from __future__ import annotations

import asyncio
import itertools
import weakref
from contextlib import asynccontextmanager
from typing import Any

from ..._standin import recorded
from ..core.exceptions import ErrorCode, RequestError, SafeRunException


class Session:
    """Session for the engine."""

    def __init__(self, session_id: int, session_mgr: SessionManager, **kwargs):
        self.session_id = session_id
        self.prompt: Any = None
        self.response = None
        self.history: list[tuple[Any, str]] = []
        self.gen_config = None
        self.epoch: int | None = None
        self._active: asyncio.Event | None = None
        self._handle = None  # inference instance, held while the request is in the engine
        self._session_mgr = weakref.ref(session_mgr)
        self._remove_on_request_exit = False
        self.update(**kwargs)

    def update(self, **kwargs):
        self.prompt = kwargs.get('prompt', self.prompt)
        self.response = kwargs.get('response', self.response)
        self.gen_config = kwargs.get('gen_config', self.gen_config)

    def __repr__(self) -> str:
        return (f'Session(session_id={self.session_id}, history_len={len(self.history)}, '
                f'has_response={self.response is not None}, has_gen_config={self.gen_config is not None})')

    def reset(self):
        self.prompt = None
        self.response = None
        self.history = []
        self.gen_config = None
        self.epoch = None
        self._active = None
        self._handle = None
        self._session_mgr = None
        self._remove_on_request_exit = False

    @asynccontextmanager
    async def request_handle(self):
        if self._handle is not None:
            raise RequestError(ErrorCode.REQUEST_CONFLICT, f'Session {self.session_id} already has an active request.')
        hnd_pool = self._session_mgr().request_handle_pool
        self._handle = await hnd_pool.get()
        self._active = asyncio.Event()
        try:
            yield self._handle
        except SafeRunException:
            pass
        except (asyncio.CancelledError, GeneratorExit):
            await self._handle.async_cancel(self.session_id)
        finally:
            if self._handle is not None:
                hnd_pool.put(self._handle)
                self._handle = None
            self._active.set()
            if self._remove_on_request_exit and self._session_mgr is not None:
                self._remove_on_request_exit = False
                session_mgr = self._session_mgr()
                if session_mgr is not None:
                    session_mgr.remove(self)

    async def async_abort(self):
        """Abort the session: only if its request currently holds an engine handle."""
        if self._handle is not None:
            await self._handle.async_cancel(self.session_id)

    async def async_close(self):
        if self._handle is not None:
            await self.async_abort()
            await self._active.wait()
        session_mgr_ref = self._session_mgr
        session_mgr = session_mgr_ref() if session_mgr_ref is not None else None
        if session_mgr is not None:
            session_mgr.remove(self)
        self.reset()

    @recorded('Session.abort')
    def abort(self):
        """Abort the session in sync mode (blocks until ``async_abort`` ran on the loop thread)."""
        if self._session_mgr is not None:
            self._run(self.async_abort()).result()

    @recorded('Session.close')
    def close(self):
        """End the session in sync mode."""
        if self._session_mgr is not None:
            self._run(self.async_close()).result()

    def _run(self, coro):
        assert self._session_mgr is not None, 'Session manager is not initialized'
        return asyncio.run_coroutine_threadsafe(coro, self._session_mgr().loop)


class RequestHandlePool:
    """A fixed pool of engine handles (``max_batch_size`` of them); a request waits for a free one."""

    def __init__(self, engine, size: int):
        self.size = size
        self.handles = [engine.create_instance() for _ in range(size)]
        self.pool: asyncio.Queue | None = None

    async def get(self):
        if self.pool is None:
            self.pool = asyncio.Queue()
            for inst in self.handles:
                self.pool.put_nowait(inst)
        return await self.pool.get()

    def put(self, handle):
        if handle is not None and self.pool is not None:
            self.pool.put_nowait(handle)

    @property
    def num_dispatched(self) -> int:
        return 0 if self.pool is None else self.size - self.pool.qsize()

    def clear(self):
        self.handles = []
        self.pool = None


class SessionManager:
    """Session manager: ids count up from 0 per pipeline."""

    def __init__(self):
        self.sessions: dict[int, Session] = {}
        self.session_id_generator = itertools.count(0)
        self.request_handle_pool: RequestHandlePool | None = None
        self.loop = None

    def get(self, session_id: int | None = None, create_if_not_exists: bool = True, **kwargs) -> Session | None:
        if not create_if_not_exists:
            return self.sessions.get(session_id, None)
        if session_id is None:
            session_id = next(self.session_id_generator)
        if session_id in self.sessions:
            session = self.sessions[session_id]
            session.update(**kwargs)
            return session
        session = Session(session_id, self, **kwargs)
        self.sessions[session_id] = session
        return session

    def has(self, session_id):
        return session_id in self.sessions

    def remove(self, session: Session | int | None):
        if session is None:
            return
        if isinstance(session, int):
            self.sessions.pop(session, None)
            return
        current = self.sessions.get(session.session_id, None)
        if current is not None and current is not session:
            return
        self.sessions.pop(session.session_id, None)

    def clear(self):
        self.sessions.clear()
        self.session_id_generator = itertools.count(0)

    def attach_event_loop(self, loop):
        self.loop = loop

    def build_request_handle_pool(self, engine, size):
        self.request_handle_pool = RequestHandlePool(engine, size)
