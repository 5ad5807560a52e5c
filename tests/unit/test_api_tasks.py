"""The API's task status store, bounded by count and age (no broker)."""

from __future__ import annotations

from rabbitscale.harness.api import ApiState
from rabbitscale.topology.profile_file import get_profile

CONDUIT = get_profile("conduit")


def test_task_store_is_bounded_by_count_and_age(monkeypatch):
    """A long run must not grow the stack: finished or not, a task leaves the status store
    after retention_s, or when max_tasks newer ones came after it."""
    import rabbitscale.harness.api as api_mod

    clock = [1000.0]
    monkeypatch.setattr(api_mod.time, "time", lambda: clock[0])
    state = ApiState(None, None, None, max_tasks=3, retention_s=60.0)  # type: ignore[arg-type]
    for i in range(5):
        state.new_task(f"t{i}", "pending", "video")
    assert list(state.tasks) == ["t2", "t3", "t4"]  # count bound
    state.new_task("t2", "queued", "webhook")  # a reused id is the newest, not the oldest
    assert list(state.tasks) == ["t3", "t4", "t2"]
    clock[0] += 61.0
    state.new_task("t5", "pending", "image")
    assert list(state.tasks) == ["t5"]  # the age bound took every older one
