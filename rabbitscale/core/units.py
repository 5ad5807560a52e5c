"""Explicit unit parsing shared by the harness, scenarios and the capacity model.

Sizes follow SI/IEC strictly (10KB = 10,000 bytes, 10KiB = 10,240) because the guide's
"10KB" arithmetic and RabbitMQ's own config units both depend on that distinction.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

from rabbitscale.core.errors import BadInput

_SIZE_UNITS = {
    "": 1, "b": 1,
    "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12, "pb": 10**15,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40, "pib": 2**50,
}
_DURATION_UNITS = {
    "us": 1e-6, "ms": 1e-3, "s": 1.0, "": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0,
}
_RATE_UNITS = {"s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}
_NUMBER = r"([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"


class UnitError(BadInput):
    """A value could not be read in the unit it claims; the message is one line."""


def _finite(value: float, what: str, text: object) -> float:
    """Every value read is a number: 1e999 (infinity) and NaN are refused, whatever the unit."""
    if not math.isfinite(value):
        raise UnitError(f"{what} must be a finite number, got {text!r}")
    return value


def _plain(text: str | int | float, what: str) -> float | None:
    """A number given as a number (no unit): itself, never negative; None for text."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        _finite(float(text), what, text)
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
    return _finite(float(m.group(1)) * units[m.group(2).lower()], f"a {what}", text)


def parse_size_bytes(text: str | int | float) -> int:
    """'10KB' -> 10000, '10KiB' -> 10240, '1.5MB' -> 1500000, 512 -> 512. B is a byte; a
    lowercase b after a prefix is a bit, which no size here is counted in: refused."""
    plain = _plain(text, "size")
    if plain is not None:
        return int(plain)
    m = re.fullmatch(_NUMBER + r"\s*([kKmMgGtTpP]i?)b", str(text).strip())
    if m:
        raise UnitError(f"not a size: {text!r} is in bits (b); sizes are in bytes (B), e.g. "
                        f"{m.group(1)}{m.group(2).upper().replace('I', 'i')}B")
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
    return _finite(sum(float(n) * _DURATION_UNITS[u] for n, u in parts), "a duration", text)


def parse_rate_per_s(text: str | int | float) -> float:
    """'1000/min' -> 16.67, '100/s' -> 100.0. Text needs its unit: '1000' could be per second
    or per minute (the guide counts tasks per minute, webhooks per second), so it is refused
    with both readings; a number given as a number is per second."""
    plain = _plain(text, "rate")
    if plain is not None:
        return plain
    raw = str(text).strip()
    if raw.startswith("-"):
        raise UnitError(f"a rate must not be negative, got {text!r}")
    m = re.fullmatch(_NUMBER + r"\s*(?:/\s*([a-zA-Z]+))?", raw)
    if m and not m.group(2):
        raise UnitError(f"a rate needs its unit: {text!r} is {raw}/min or {raw}/s?")
    if not m or m.group(2).lower() not in _RATE_UNITS:
        raise UnitError(f"not a rate: {text!r} (use e.g. 1000/min, 100/s)")
    return _finite(float(m.group(1)) / _RATE_UNITS[m.group(2).lower()], "a rate", text)


_PREFIX = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12,
           "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40}


def parse_bitrate_bps(text: str | int | float) -> float:
    """Bits per second. b is a bit and B a byte (x 8), as links and NICs write them:
    '100Mbps' and '100Mbit/s' -> 1e8, '100MBps' and '100MB/s' -> 8e8, '1GiB/s' -> 8 x 2^30;
    a number is bits per second."""
    plain = _plain(text, "link speed")
    if plain is not None:
        return plain
    raw = str(text).strip()
    if raw.startswith("-"):
        raise UnitError(f"a link speed must not be negative, got {text!r}")
    m = re.fullmatch(_NUMBER + r"\s*([kKmMgGtT]i?)?(bit|byte|b|B)(ps|/s)", raw)
    if not m:
        raise UnitError(f"not a link speed: {text!r} (use e.g. 100Mbps, 1Gbit/s, 100MBps for "
                        f"bytes, 1GiB/s)")
    prefix = (m.group(2) or "").lower()
    per_unit = 8 if m.group(3) in ("B", "byte") else 1
    return _finite(float(m.group(1)) * _PREFIX[prefix] * per_unit, "a link speed", text)


def format_bps(n: float) -> str:
    for unit, scale in (("Gbps", 1e9), ("Mbps", 1e6), ("kbps", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:.0f}bps"


def format_bytes(n: float) -> str:
    """Human-readable SI bytes, the way the guide writes them (1.25MB)."""
    for unit, scale in (("PB", 1e15), ("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:.0f}B"


def format_iec(n: float) -> str:
    """Human-readable IEC bytes, the way RabbitMQ and the kernel count memory (1.16MiB)."""
    for unit, scale in (("PiB", 2**50), ("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20),
                        ("KiB", 2**10)):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:.0f}B"
