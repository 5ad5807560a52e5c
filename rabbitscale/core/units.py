"""Explicit unit parsing shared by the harness, scenarios and the capacity model.

Sizes follow SI/IEC strictly (10KB = 10,000 bytes, 10KiB = 10,240) because the guide's
"10KB" arithmetic and RabbitMQ's own config units both depend on that distinction.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from rabbitscale.core.errors import BadInput

_SIZE_UNITS = {
    "": 1, "b": 1,
    "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}
_DURATION_UNITS = {
    "us": 1e-6, "ms": 1e-3, "s": 1.0, "": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0,
}
_RATE_UNITS = {"s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}
_NUMBER = r"([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"


class UnitError(BadInput):
    """A value could not be read in the unit it claims; the message is one line."""


def _plain(text: str | int | float, what: str) -> float | None:
    """A number given as a number (no unit): itself, never negative; None for text."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        if text < 0:
            raise UnitError(f"{what} must not be negative, got {text}")
        return float(text)
    return None


def _scaled(text: str | int | float, units: Mapping[str, float], unit_chars: str, what: str,
            examples: str) -> float:
    """'<number><unit>' with the unit one of ``units`` (case-insensitive), scaled by it."""
    plain = _plain(text, what)
    if plain is not None:
        return plain
    m = re.fullmatch(_NUMBER + rf"\s*([{unit_chars}]*)", str(text).strip())
    if not m or m.group(2).lower() not in units:
        raise UnitError(f"not a {what}: {text!r} (use e.g. {examples})")
    return float(m.group(1)) * units[m.group(2).lower()]


def parse_size_bytes(text: str | int | float) -> int:
    """'10KB' -> 10000, '10KiB' -> 10240, '1.5MB' -> 1500000, 512 -> 512."""
    plain = _plain(text, "size")
    if plain is not None:
        return int(plain)
    return int(round(_scaled(text, _SIZE_UNITS, "a-zA-Z", "size", "10KB, 10KiB, 1MB, 512")))


def parse_duration_s(text: str | int | float) -> float:
    """'5m' -> 300.0, '60ms' -> 0.06, '2min' -> 120.0, '1h30m' -> 5400.0, 10 -> 10.0."""
    plain = _plain(text, "duration")
    if plain is not None:
        return plain
    s = str(text).strip().lower()
    parts = re.findall(_NUMBER + r"\s*(us|ms|min|s|m|h|)", s)
    if not s or not parts or "".join(a + b for a, b in parts) != s.replace(" ", ""):
        raise UnitError(f"not a duration: {text!r} (use e.g. 60s, 5m, 250ms, 1h)")
    return sum(float(n) * _DURATION_UNITS[u] for n, u in parts)


def parse_rate_per_s(text: str | int | float) -> float:
    """'1000/min' -> 16.67, '100/s' -> 100.0, '17' -> 17.0 (per second)."""
    plain = _plain(text, "rate")
    if plain is not None:
        return plain
    m = re.fullmatch(_NUMBER + r"\s*(?:/\s*([a-zA-Z]+))?", str(text).strip())
    if not m or (m.group(2) and m.group(2).lower() not in _RATE_UNITS):
        raise UnitError(f"not a rate: {text!r} (use e.g. 1000/min, 100/s)")
    per = _RATE_UNITS[m.group(2).lower()] if m.group(2) else 1.0
    return float(m.group(1)) / per


_BITRATE_UNITS = {"bps": 1, "kbps": 10**3, "mbps": 10**6, "gbps": 10**9,
                  "bit/s": 1, "kbit/s": 10**3, "mbit/s": 10**6, "gbit/s": 10**9}


def parse_bitrate_bps(text: str | int | float) -> float:
    """'100Mbps' -> 1e8, '1Gbit/s' -> 1e9, 5e7 -> 5e7 (bits per second, SI, as links are
    sold)."""
    return _scaled(text, _BITRATE_UNITS, "a-zA-Z/", "link speed", "100Mbps, 1Gbps, 10Gbit/s")


def format_bps(n: float) -> str:
    for unit, scale in (("Gbps", 1e9), ("Mbps", 1e6), ("kbps", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:.0f}bps"


def format_bytes(n: float) -> str:
    """Human-readable SI bytes, the way the guide writes them (1.25MB)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:.0f}B"
