"""Fault injection for the sandbox tenant: latency, 5xx, 429, connection resets and slow bodies.

`FaultConfig` holds probabilities and delays; its own seeded RNG decides, request by request,
which fault (if any) hits, so a test with a fixed `seed` sees the same sequence every run.
Kinds are drawn in this order and the first hit wins: reset_before, error (500/502/503),
rate limit (429), reset_after. Latency and a slow body apply on top of any outcome.

This module decides; it must not perform I/O. The frontends (in-process transport, ASGI app,
loopback server) carry the decision out.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any

_RATES = ("error_rate", "rate_limit_rate", "reset_before_rate", "reset_after_rate")
_DELAYS = ("latency_s", "slow_body_s")


@dataclass(frozen=True, slots=True)
class FaultDecision:
    """What happens to one request."""

    latency_s: float = 0.0
    reset_before: bool = False
    error_status: int | None = None
    rate_limited: bool = False
    reset_after: bool = False
    slow_body_s: float = 0.0


NO_FAULT = FaultDecision()


@dataclass
class FaultConfig:
    """Which faults the tenant injects. Everything defaults to off; rates are probabilities in [0, 1].

    Fields may be changed in place or the whole config replaced (`tenant.faults = FaultConfig(...)`);
    setting `seed` restarts the decision sequence.
    """

    latency_s: float = 0.0
    error_rate: float = 0.0
    rate_limit_rate: float = 0.0
    retry_after_s: float | None = 1.0
    reset_before_rate: float = 0.0
    reset_after_rate: float = 0.0
    slow_body_s: float = 0.0
    only_methods: frozenset[str] | None = None
    seed: int = 0
    _rng: random.Random = field(init=False, repr=False, compare=False, default_factory=random.Random)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _RATES:
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")
            value = float(value)
        elif name in _DELAYS:
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or value < 0
                or math.isnan(value)
            ):
                raise ValueError(f"{name} must be a number of seconds >= 0, got {value!r}")
            value = float(value)
        elif name == "retry_after_s":
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int | float) or value < 0
            ):
                raise ValueError(f"retry_after_s must be None or a number >= 0, got {value!r}")
        elif name == "only_methods" and value is not None:
            value = frozenset(str(m).upper() for m in value)
        object.__setattr__(self, name, value)
        if name == "seed":
            object.__setattr__(self, "_rng", random.Random(value))

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    @property
    def active(self) -> bool:
        return any(getattr(self, name) > 0 for name in (*_RATES, *_DELAYS))

    def decide(self, method: str) -> FaultDecision:
        """Draw the fault for one request with this HTTP method."""
        if not self.active or (self.only_methods is not None and method.upper() not in self.only_methods):
            return NO_FAULT
        rng = self._rng
        reset_before = self.reset_before_rate > 0 and rng.random() < self.reset_before_rate
        error_status = None
        rate_limited = reset_after = False
        if not reset_before:
            if self.error_rate > 0 and rng.random() < self.error_rate:
                error_status = rng.choice((500, 502, 503))
            elif self.rate_limit_rate > 0 and rng.random() < self.rate_limit_rate:
                rate_limited = True
            elif self.reset_after_rate > 0 and rng.random() < self.reset_after_rate:
                reset_after = True
        return FaultDecision(
            latency_s=self.latency_s,
            reset_before=reset_before,
            error_status=error_status,
            rate_limited=rate_limited,
            reset_after=reset_after,
            slow_body_s=self.slow_body_s,
        )

    def retry_after_header(self) -> str | None:
        """`Retry-After` value: whole seconds as an integer, a fraction kept as a decimal (tolerant clients)."""
        if self.retry_after_s is None:
            return None
        seconds = float(self.retry_after_s)
        return str(int(seconds)) if seconds.is_integer() else f"{seconds:g}"
