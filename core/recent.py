"""A bounded window of recently seen ids: duplicate detection whose memory does not grow with
the length of a run. Duplicates of a message (redeliveries after a lost ack) arrive seconds
apart, so a window of a few hundred thousand ids sees them."""

from __future__ import annotations

from collections import OrderedDict

RECENT_IDS = 200_000


class RecentIds:
    """The last ``capacity`` ids seen, oldest forgotten first: O(1), bounded."""

    def __init__(self, capacity: int = RECENT_IDS) -> None:
        self.capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()

    def seen(self, key: str) -> bool:
        """True if ``key`` was seen recently; otherwise remember it."""
        if key in self._ids:
            return True
        self._ids[key] = None
        if len(self._ids) > self.capacity:
            self._ids.popitem(last=False)
        return False

    def __len__(self) -> int:
        return len(self._ids)
