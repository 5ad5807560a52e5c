"""The hash MassTransit's partitioner uses, shared by the partitioner and the publisher's
per-key connection affinity."""

from __future__ import annotations

import mmh3


def murmur3_32(data: bytes | str, seed: int = 0) -> int:
    """MurmurHash3 x86 32-bit (unsigned), the hash family MassTransit's partitioner uses;
    the C implementation of ``mmh3`` (a pure-Python one cost ~18 us per publish)."""
    return mmh3.hash(data, seed, signed=False)
