"""A bounded window of recently seen ids: duplicate detection whose memory does not grow with
the length of a run. Duplicates of a message (redeliveries after a lost ack, a publish retried
after a lost confirm) arrive within a backlog's length of the first copy, so a window of a few
hundred thousand ids sees them."""

from __future__ import annotations

from collections import deque

import mmh3

RECENT_IDS = 200_000


class RecentIds:
    """The last ``capacity`` ids seen, oldest forgotten first: O(1), bounded. Each id is kept
    as its 64-bit Murmur3 hash (~86 B an id against ~176 B for the string in an OrderedDict:
    the window fills for hours at the guide's rate, bench/soak.py); two ids collide with a
    probability of about capacity^2 / 2^65, 1e-9 for the default."""

    def __init__(self, capacity: int = RECENT_IDS) -> None:
        self.capacity = capacity
        self._order: deque[int] = deque()
        self._ids: set[int] = set()

    def seen(self, key: str) -> bool:
        """True if ``key`` was seen recently; otherwise remember it."""
        h = mmh3.hash64(key, signed=False)[0]
        if h in self._ids:
            return True
        self._ids.add(h)
        self._order.append(h)
        if len(self._order) > self.capacity:
            self._ids.discard(self._order.popleft())
        return False

    def __len__(self) -> int:
        return len(self._order)
