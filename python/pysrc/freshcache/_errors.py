"""The freshcache exception tree.

Every error the package raises is a :class:`Error`. The kinds match the
CLI's exit codes (``exit_code`` on every instance)::

    Error
    ├── InvalidInput (also ValueError)        exit 2
    │   ├── InvalidKey
    │   ├── InvalidPattern
    │   ├── ConfigError  (alias: Config)
    │   ├── UnknownClass
    │   └── TooLarge
    ├── JsonError (also ValueError)           a stored value is not the JSON asked for
    ├── StaleSignals                          exit 3, .signals lists every refusal
    ├── Corrupt                               exit 4
    ├── Upstream                              exit 5
    │   ├── QuotaExceeded
    │   └── FeedError
    ├── Io (also OSError)                     storage failure: disk, index, root
    │   ├── Full
    │   └── InsecureRoot
    └── Internal                              a bug in freshcache (never a crash)

A miss is never an error (``get`` returns None), and a storage failure is
never reported as a miss.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, List, Optional

__all__ = [
    "Error",
    "InvalidInput",
    "InvalidKey",
    "InvalidPattern",
    "ConfigError",
    "Config",
    "UnknownClass",
    "TooLarge",
    "JsonError",
    "StaleSignals",
    "StaleSignal",
    "Corrupt",
    "Upstream",
    "QuotaExceeded",
    "FeedError",
    "Io",
    "Full",
    "InsecureRoot",
    "Internal",
]


class Error(Exception):
    """Base of every freshcache error. Extra fields are attributes."""

    exit_code: int = 1

    def __init__(self, message: str = "", **attrs: Any) -> None:
        super().__init__(message)
        self.message = message
        for k, v in attrs.items():
            setattr(self, k, v)

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> Any:
        # Picklable (multiprocessing sends exceptions between processes).
        return (self.__class__, (self.message,), dict(self.__dict__))


class InvalidInput(Error, ValueError):
    """Invalid input: key, pattern, config, class, size (CLI exit 2)."""

    exit_code = 2


class InvalidKey(InvalidInput):
    """A key broke a rule; ``.key`` and ``.reason`` say which."""


class InvalidPattern(InvalidInput):
    """A pattern could not be parsed; ``.pattern`` and ``.reason``."""


class ConfigError(InvalidInput):
    """A config file or ``FRESHCACHE_*`` override is wrong;
    ``.source_name``, ``.field`` and ``.reason`` name it."""


Config = ConfigError


class UnknownClass(InvalidInput):
    """A put named a class (``.cls``) the config does not define."""


class TooLarge(InvalidInput):
    """A value is larger than ``cache.max_value_size``."""


class JsonError(Error, ValueError):
    """A stored value is not valid JSON (``.key``)."""


@dataclass(frozen=True)
class StaleSignal:
    """One refused signal: why, how old, and the limit it broke."""

    requirement: str
    key: Optional[str]
    cls: str
    #: "missing", "expired", "too_old", "from_the_future" or "unconfirmed"
    reason: str
    age_ms: Optional[int]
    limit_ms: Optional[int]
    over_by_ms: Optional[int]

    @property
    def age(self) -> Optional[timedelta]:
        return None if self.age_ms is None else timedelta(milliseconds=self.age_ms)

    @property
    def limit(self) -> Optional[timedelta]:
        return None if self.limit_ms is None else timedelta(milliseconds=self.limit_ms)

    @property
    def over_by(self) -> Optional[timedelta]:
        return None if self.over_by_ms is None else timedelta(milliseconds=self.over_by_ms)


class StaleSignals(Error):
    """The staleness guard refused: ``.signals`` lists every stale or
    missing signal with its age and limit (CLI exit 3)."""

    exit_code = 3
    signals: List[StaleSignal]

    def __init__(self, message: str = "", signals: Any = (), **attrs: Any) -> None:
        super().__init__(message, **attrs)
        self.signals = [s if isinstance(s, StaleSignal) else StaleSignal(**s) for s in signals]


class Corrupt(Error):
    """A blob failed verification (it has been quarantined)."""

    exit_code = 4


class Upstream(Error):
    """An upstream request or loader failed and no usable copy exists."""

    exit_code = 5


class QuotaExceeded(Upstream):
    """The persisted request quota is used up for this period."""


class FeedError(Upstream):
    """A news feed could not be parsed."""


class Io(Error, OSError):
    """A local storage failure: disk full, I/O error, damaged index,
    unusable root. Never reported as a miss."""

    def __init__(self, message: str = "", **attrs: Any) -> None:
        Error.__init__(self, message, **attrs)

    def __str__(self) -> str:
        return self.message


class Full(Io):
    """Admission control refused a put (``cache.hard_limit``)."""


class InsecureRoot(Io):
    """The cache root is owned by another user or is not a directory."""


class Internal(Error):
    """An internal error in freshcache (a bug; please report it)."""
