"""HDR latency histograms, shared by the Locust side, the run recorder and the reports.

Values are recorded in microseconds from 1 us to 1 hour with 3 significant digits; encoded
histograms (base64 text) merge exactly across consumer instances and Locust workers.
"""

from __future__ import annotations

from hdrh.histogram import HdrHistogram

PERCENTILES = (50.0, 90.0, 95.0, 99.0, 99.9, 100.0)
HIGHEST_US = 3_600_000_000


def new_histogram() -> HdrHistogram:
    return HdrHistogram(1, HIGHEST_US, 3)


def record_s(h: HdrHistogram, seconds: float) -> None:
    """Record a duration given in seconds (clamped to the trackable range)."""
    h.record_value(min(HIGHEST_US, max(1, int(seconds * 1e6))))


def encode(h: HdrHistogram) -> str:
    return h.encode().decode("ascii")


def decode(text: str) -> HdrHistogram:
    """An encoded histogram; ValueError (one line) for anything that is not one."""
    try:
        return HdrHistogram.decode(text.encode("ascii"))
    except Exception as exc:  # noqa: BLE001 - hdrhistogram raises binascii, zlib, struct, ...
        raise ValueError(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__) \
            from None


def merge(encoded: list[str]) -> HdrHistogram:
    total = new_histogram()
    for text in encoded:
        total.add(decode(text))
    return total


def summary_ms(h: HdrHistogram) -> dict[str, float]:
    """count, mean, p50 ... p99.9, max in milliseconds (stable field names for summary.json)."""
    out: dict[str, float] = {"count": h.get_total_count()}
    if not h.get_total_count():
        return out
    out["mean_ms"] = round(h.get_mean_value() / 1000, 3)
    for p in PERCENTILES:
        name = "max_ms" if p == 100.0 else f"p{p:g}_ms".replace(".", "_")
        value = h.get_max_value() if p == 100.0 else h.get_value_at_percentile(p)
        out[name] = round(value / 1000, 3)
    return out
