"""The broker sampler, with a stand-in source: a black-box run samples every queue of the
system's vhost, including queues whose statistics appear only after the run started."""

from __future__ import annotations

from rabbitscale.broker.observe import NodeSample, QueueSample
from rabbitscale.engine.sampler import Sampler


class LateQueues:
    """A broker source whose second queue shows up in the statistics from the second read."""

    name = "stand-in"

    def __init__(self) -> None:
        self.reads = 0

    async def queues(self, vhost: str) -> dict[str, QueueSample]:
        self.reads += 1
        names = ["orders"] + (["payments"] if self.reads > 1 else [])
        return {n: QueueSample(n, messages=self.reads, ready=self.reads) for n in names}

    async def nodes(self) -> list[NodeSample]:
        return [NodeSample("rabbit@x", mem_used=1, mem_limit=10)]

    async def close(self) -> None:
        pass


async def test_a_followed_vhost_picks_up_queues_as_they_appear(tmp_path):
    sampler = Sampler(LateQueues(), "v", None, tmp_path)
    await sampler.sample()
    await sampler.sample()
    await sampler.stop()
    rows = (tmp_path / "broker_queues.csv").read_text().splitlines()[1:]
    assert [r.split(",")[1] for r in rows] == ["orders", "orders", "payments", "orders",
                                                "payments"]
    assert sampler.growth(lambda q: True) == 2 + 1  # orders 1 -> 3, payments 2 -> 3


async def test_a_fixed_list_samples_only_its_queues(tmp_path):
    sampler = Sampler(LateQueues(), "v", ["payments"], tmp_path)
    await sampler.sample()
    await sampler.stop()
    rows = (tmp_path / "broker_queues.csv").read_text().splitlines()[1:]
    assert [r.split(",")[1] for r in rows] == ["payments", "payments"]
