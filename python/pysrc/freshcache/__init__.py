"""freshcache: a disk-backed, content-addressed cache for time-sensitive
signals (LLM features, news, sports odds), shared with the ``freshcache``
CLI and daemon on one cache root.

>>> import freshcache
>>> cache = freshcache.Cache("data/cache")            # doctest: +SKIP
>>> cache.put_json("odds:g123:1700000000", {"home": -110})   # class odds: 60 s
>>> cache.get_json("odds:g123:1700000000")
{'home': -110}

The Rust core does the work (``freshcache._native``); this module adds the
JSON helpers, the staleness guard's result type, the ``cached`` decorator
and the asyncio forms. Every call that touches the disk or the network
releases the GIL. A ``Cache`` is safe to share between threads, and a
``Cache`` used in a child after ``os.fork()`` reopens the root there (it
never uses the parent's SQLite handles).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import inspect
import json
import os
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import (
    Any,
    Awaitable,
    Callable,
    Dict,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    TypeVar,
    Union,
)

from . import _native
from . import _errors
from ._errors import (
    Config,
    ConfigError,
    Corrupt,
    Error,
    FeedError,
    Full,
    InsecureRoot,
    Internal,
    InvalidInput,
    InvalidKey,
    InvalidPattern,
    Io,
    JsonError,
    QuotaExceeded,
    StaleSignal,
    StaleSignals,
    TooLarge,
    UnknownClass,
    Upstream,
)
from ._native import Entry, FetchResult, ManualClock

__version__: str = _native.__version__

__all__ = [
    "Cache",
    "Entry",
    "FetchResult",
    "FreshSet",
    "ManualClock",
    *_errors.__all__,
]

T = TypeVar("T")
Seconds = Union[int, float, timedelta]

# Compact JSON, UTF-8 as is (the bytes serde_json writes for put_json in
# Rust, so values are interchangeable with the CLI and Rust callers):
# encoded in the extension, the standard library for what it leaves out.
_dumps = _native.dumps


def _loads(key: str, raw: bytes) -> Any:
    try:
        return _native.loads(raw)  # json.loads' results; the stdlib for the rest
    except ValueError as e:
        raise JsonError(
            f"value of `{key}` is not valid JSON: {e}", key=key, exit_code=1
        ) from e


# Threads that wait on the Rust single-flight for asyncio callers. Its own
# pool (not the loop's default executor), recreated in a forked child.
_executor_lock = threading.Lock()
_executor: Optional[concurrent.futures.ThreadPoolExecutor] = None


def _pool() -> concurrent.futures.ThreadPoolExecutor:
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=64, thread_name_prefix="freshcache-async"
            )
        return _executor


def _after_fork() -> None:
    global _executor, _executor_lock
    _executor = None
    _executor_lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork)


@dataclass(frozen=True)
class FreshSet:
    """What the guard hands an inference run: every requested signal,
    fresh as of ``at``. ``fs[requirement]`` is the value (bytes),
    ``fs.json(requirement)`` the parsed JSON, ``fs.entry(requirement)`` the
    entry with its metadata."""

    at: datetime
    signals: List[Entry]
    #: Keys accepted although not yet confirmed against the shared
    #: invalidation log (Redis configured, ``consistency: available``, the
    #: instance not caught up); empty otherwise.
    unconfirmed: List[str] = field(default_factory=list)

    def entry(self, requirement: str) -> Entry:
        for s in self.signals:
            if s.requirement == requirement:
                return s
        raise KeyError(requirement)

    def __getitem__(self, requirement: str) -> bytes:
        v = self.entry(requirement).value
        assert v is not None
        return v

    def json(self, requirement: str) -> Any:
        return self.entry(requirement).json()

    def __iter__(self) -> Iterator[Entry]:
        return iter(self.signals)

    def __len__(self) -> int:
        return len(self.signals)


class Cache(_native.Cache):
    """A cache root, shared with the CLI, the daemon and other processes.

    ``Cache(root=None, config=None, *, clock=None)`` resolves like the CLI:
    ``root`` (or ``FRESHCACHE_ROOT``) over ``cache.root`` of ``config`` (a
    runtime.yml path, a mapping in its shape, or ``FRESHCACHE_CONFIG``),
    over the embedded default (root ``data/cache``), with ``FRESHCACHE_*``
    environment overrides. ``clock`` injects a :class:`ManualClock` (tests).

    Values are bytes or str (``put``/``get``) or JSON (``put_json``/
    ``get_json``). ``ttl`` arguments take seconds or a ``timedelta``.
    """

    # -- JSON ------------------------------------------------------------
    def put_json(
        self,
        key: str,
        value: Any,
        *,
        cls: Optional[str] = None,
        ttl: Optional[Seconds] = None,
        etag: Optional[str] = None,
        last_modified: Optional[str] = None,
    ) -> None:
        """Stores ``value`` as compact JSON under ``key``."""
        self.put(key, _dumps(value), cls=cls, ttl=ttl, etag=etag, last_modified=last_modified)

    def get_json(self, key: str, default: Any = None) -> Any:
        """The fresh JSON value of ``key``, or ``default`` on a miss."""
        raw = self.get(key)
        if raw is None:
            return default
        return _loads(key, raw)

    def get_many_json(self, keys: Sequence[str]) -> List[Any]:
        """Fresh JSON values of several keys (None for each miss)."""
        return [None if r is None else _loads(k, r) for k, r in zip(keys, self.get_many(list(keys)))]

    # -- guard -----------------------------------------------------------
    def guard(
        self,
        requirements: Union[str, Sequence[str]],
        *,
        max_age: Optional[Seconds] = None,
        class_max_age: Optional[Mapping[str, Seconds]] = None,
        at: Union[None, float, datetime] = None,
    ) -> FreshSet:
        """The staleness guard: every requirement (a key, or a pattern whose
        newest match counts) fresh and younger than ``max_age``, read as of
        one instant — or :class:`StaleSignals` listing every stale or
        missing signal with its age and limit."""
        if isinstance(requirements, str):
            requirements = [requirements]
        at_ms, entries, unconfirmed = self._guard(
            list(requirements),
            max_age=max_age,
            class_max_age=dict(class_max_age) if class_max_age else None,
            at=at,
        )
        return FreshSet(
            at=datetime.fromtimestamp(at_ms / 1000, tz=timezone.utc),
            signals=entries,
            unconfirmed=unconfirmed,
        )

    # -- upstream calls --------------------------------------------------
    def get_or_fetch_json(
        self,
        key: str,
        fn: Callable[[], Any],
        *,
        cls: Optional[str] = None,
        ttl: Optional[Seconds] = None,
    ) -> Any:
        """:meth:`get_or_fetch` for JSON values: ``fn()`` returns any
        JSON-serialisable object; every caller gets the parsed JSON."""
        raw = self.get_or_fetch(key, lambda: _dumps(fn()), cls=cls, ttl=ttl)
        return _loads(key, raw)

    def _aflights(self) -> Dict[Tuple[Any, ...], "asyncio.Future[bytes]"]:
        d = self.__dict__.get("_flights")
        if d is None or d[0] != os.getpid():
            d = (os.getpid(), {})
            self.__dict__["_flights"] = d
        return d[1]

    async def aget_or_fetch(
        self,
        key: str,
        coro_fn: Callable[[], Awaitable[Union[bytes, str]]],
        *,
        cls: Optional[str] = None,
        ttl: Optional[Seconds] = None,
    ) -> bytes:
        """``await cache.aget_or_fetch(key, coro_fn)``: the fresh value of
        ``key``, or what ``await coro_fn()`` returns, stored. Concurrent
        tasks of one event loop share one flight, which joins the
        thread-level single-flight of :meth:`get_or_fetch`: however many
        tasks and threads ask at once, the upstream is called once."""
        hit = self.get(key)
        if hit is not None:
            return hit
        loop = asyncio.get_running_loop()
        flights = self._aflights()
        fid = (id(loop), key, cls, ttl)
        task = flights.get(fid)
        if task is None:
            task = loop.create_task(self._alead(loop, key, coro_fn, cls, ttl))
            flights[fid] = task

            def done(t: "asyncio.Future[bytes]", fid: Tuple[Any, ...] = fid) -> None:
                if flights.get(fid) is t:
                    del flights[fid]

            task.add_done_callback(done)
        # A cancelled caller does not cancel the flight the others wait on.
        return await asyncio.shield(task)

    async def _alead(
        self,
        loop: asyncio.AbstractEventLoop,
        key: str,
        coro_fn: Callable[[], Awaitable[Union[bytes, str]]],
        cls: Optional[str],
        ttl: Optional[Seconds],
    ) -> bytes:
        def upstream() -> Union[bytes, str]:
            # Runs in a pool thread only if this process's flight is ours:
            # the coroutine itself runs on the caller's loop.
            return asyncio.run_coroutine_threadsafe(_as_coro(coro_fn), loop).result()

        return await loop.run_in_executor(
            _pool(), functools.partial(self.get_or_fetch, key, upstream, cls=cls, ttl=ttl)
        )

    async def aget_or_fetch_json(
        self,
        key: str,
        coro_fn: Callable[[], Awaitable[Any]],
        *,
        cls: Optional[str] = None,
        ttl: Optional[Seconds] = None,
    ) -> Any:
        """:meth:`aget_or_fetch` for JSON values."""

        async def produce() -> bytes:
            return _dumps(await coro_fn())

        raw = await self.aget_or_fetch(key, produce, cls=cls, ttl=ttl)
        return _loads(key, raw)

    async def afetch(
        self,
        url: str,
        key: str,
        *,
        cls: Optional[str] = None,
        ttl: Optional[Seconds] = None,
        stale_if_error: bool = False,
        revalidate: bool = False,
    ) -> FetchResult:
        """``await``-able :meth:`fetch` (the request runs on the extension's
        runtime; the event loop keeps serving)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            _pool(),
            functools.partial(
                self.fetch,
                url,
                key,
                cls=cls,
                ttl=ttl,
                stale_if_error=stale_if_error,
                revalidate=revalidate,
            ),
        )

    async def arefresh_feeds(self) -> List[Dict[str, Any]]:
        """``await``-able :meth:`refresh_feeds`."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(_pool(), self.refresh_feeds)

    # -- decorator -------------------------------------------------------
    def cached(
        self,
        key: str,
        *,
        cls: Optional[str] = None,
        ttl: Optional[Seconds] = None,
    ) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Caches a function's JSON result under a key built from its
        arguments, for sync and async functions::

            @cache.cached("player_props:{season}:{week}", cls="player_props")
            async def player_props(season: int, week: int) -> list: ...

        The key template is ``str.format``-ed with the bound arguments
        (defaults applied). Concurrent calls with the same key make one
        upstream call. The wrapper has ``.key(*args, **kw)`` and
        ``.invalidate(*args, **kw)``.
        """
        template = key

        def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
            sig = inspect.signature(fn)

            def key_of(*args: Any, **kwargs: Any) -> str:
                bound = sig.bind(*args, **kwargs)
                bound.apply_defaults()
                return template.format(**bound.arguments)

            wrapper: Any
            if inspect.iscoroutinefunction(fn):

                @functools.wraps(fn)
                async def awrapper(*args: Any, **kwargs: Any) -> Any:
                    return await self.aget_or_fetch_json(
                        key_of(*args, **kwargs), lambda: fn(*args, **kwargs), cls=cls, ttl=ttl
                    )

                wrapper = awrapper
            else:

                @functools.wraps(fn)
                def swrapper(*args: Any, **kwargs: Any) -> Any:
                    return self.get_or_fetch_json(
                        key_of(*args, **kwargs), lambda: fn(*args, **kwargs), cls=cls, ttl=ttl
                    )

                wrapper = swrapper
            wrapper.key = key_of
            wrapper.invalidate = lambda *a, **kw: self.delete(key_of(*a, **kw))
            out: Callable[..., Any] = wrapper
            return out

        return decorate

    # -- lifecycle -------------------------------------------------------
    def close(self) -> None:
        """Writes batched access records now (the cache stays usable)."""
        self.flush()

    def __enter__(self) -> "Cache":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.flush()

    def __reduce__(self) -> Any:
        # A pickled Cache (multiprocessing "spawn") reopens the same root
        # and config — the file, or the mapping it was given — in the other
        # process (an injected clock is not carried).
        text = self._config_text
        config: Any = json.loads(text) if text is not None else self.config_path
        return (Cache, (self.root, config))


async def _as_coro(coro_fn: Callable[[], Awaitable[T]]) -> T:
    return await coro_fn()
