"""Retry and retention policies: one type for the engine, a service and a handler.

The defaults are restate-server 1.7's ``default-retry-policy`` (initial 500 ms, factor 2,
at most 1 minute between attempts, 70 attempts, then pause) and its one-day retention of
completed invocations, so a handler behaves the same on the embedded engine and on a
Restate cluster.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

__all__ = ["DEFAULT_RETENTION", "RetryPolicy"]

DEFAULT_RETENTION = timedelta(days=1)
"""How long a completed invocation keeps its journal and idempotency key by default."""


def _ms(d: timedelta) -> int:
    return int(d / timedelta(milliseconds=1))


def _duration(name: str, value: Any) -> timedelta:
    if not isinstance(value, timedelta):
        raise TypeError(f"{name} must be a datetime.timedelta, not {type(value).__name__}")
    if value <= timedelta(0):
        raise ValueError(f"{name} must be positive, not {value}")
    return value


@dataclass(frozen=True)
class RetryPolicy:
    """How failed attempts of an invocation are retried.

    The delay before attempt ``n + 1`` is ``initial_interval * factor ** (n - 1)``, capped at
    ``max_interval``. After ``max_attempts`` attempts (``None``: no limit) the invocation is
    paused (``on_max_attempts="pause"``: it waits for ``resume``, ``cancel`` or ``kill``) or
    killed (``"kill"``: it ends with the last failure and its callers get it).
    """

    initial_interval: timedelta = timedelta(milliseconds=500)
    max_interval: timedelta = timedelta(minutes=1)
    factor: float = 2.0
    max_attempts: int | None = 70
    on_max_attempts: Literal["pause", "kill"] = "pause"

    def __post_init__(self) -> None:
        _duration("initial_interval", self.initial_interval)
        _duration("max_interval", self.max_interval)
        if self.max_interval < self.initial_interval:
            raise ValueError("max_interval must not be smaller than initial_interval")
        if isinstance(self.factor, bool) or not isinstance(self.factor, (int, float)):
            raise TypeError(f"factor must be a number, not {type(self.factor).__name__}")
        if not math.isfinite(self.factor) or self.factor < 1.0:
            raise ValueError(f"factor must be a finite number >= 1, not {self.factor}")
        if self.max_attempts is not None:
            if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int):
                raise TypeError("max_attempts must be an int or None")
            if self.max_attempts < 1:
                raise ValueError(f"max_attempts must be at least 1, not {self.max_attempts}")
        if self.on_max_attempts not in ("pause", "kill"):
            raise ValueError(
                f"on_max_attempts must be 'pause' or 'kill', not {self.on_max_attempts!r}"
            )

    @property
    def initial_interval_ms(self) -> int:
        return _ms(self.initial_interval)

    @property
    def max_interval_ms(self) -> int:
        return _ms(self.max_interval)

    def manifest(self) -> dict[str, Any]:
        """The fields of the discovery manifest (v4, service and handler level alike) that
        carry this policy, as restate's ``endpoint_manifest_schema.json`` names them:
        intervals in milliseconds, ``retryPolicyOnMaxAttempts`` ``"PAUSE"`` or ``"KILL"``.

        The manifest has no way to say "no limit": with ``max_attempts=None`` the field is
        left out, and restate-server takes the service's value for a handler, else its own
        default (70 attempts, capped by its ``max-retry-policy-max-attempts``); the embedded
        engine retries without limit.
        """
        out: dict[str, Any] = {
            "retryPolicyInitialInterval": self.initial_interval_ms,
            "retryPolicyMaxInterval": self.max_interval_ms,
            "retryPolicyExponentiationFactor": float(self.factor),
            "retryPolicyOnMaxAttempts": self.on_max_attempts.upper(),
        }
        if self.max_attempts is not None:
            out["retryPolicyMaxAttempts"] = self.max_attempts
        return out


def retention_ms(name: str, value: timedelta | None) -> int | None:
    """A retention as milliseconds (``None`` stays ``None``: the engine's default applies)."""
    if value is None:
        return None
    if not isinstance(value, timedelta):
        raise TypeError(f"{name} must be a datetime.timedelta, not {type(value).__name__}")
    if value < timedelta(0):
        raise ValueError(f"{name} must not be negative, not {value}")
    return _ms(value)


def timeout_ms(name: str, value: timedelta | None) -> int | None:
    """A timeout as milliseconds, at least one (``None`` stays ``None``: the default applies).

    Zero is refused rather than passed on: the manifest carries whole milliseconds, and an
    inactivity timeout of 0 ms would ask every attempt to suspend at once."""
    if value is None:
        return None
    if not isinstance(value, timedelta):
        raise TypeError(f"{name} must be a datetime.timedelta, not {type(value).__name__}")
    if value < timedelta(milliseconds=1):
        raise ValueError(f"{name} must be at least 1 millisecond, not {value}")
    return _ms(value)
