"""What the two black-box kinds share: the guards on what a run against a system it did not
start may do, the task mix (the profile's weights, as ``plan`` uses them), the kinds it sends,
and the thresholds it can judge."""

from __future__ import annotations

from rabbitscale.core.errors import BadInput
from rabbitscale.engine.base import LoadOptions, RunEngine
from rabbitscale.engine.stack import run_kinds
from rabbitscale.judge import slo
from rabbitscale.scenarios import registry
from rabbitscale.topology.profiles import Profile
from rabbitscale.topology.tasks import format_task_mix, parse_task_mix


class BlackBoxRun(RunEngine):
    """A run against a deployed system: nothing of it is started, declared or consumed."""

    #: what measures each latency metric in this kind (a threshold on any other is refused
    #: before the run, naming what would measure it)
    measures: dict[str, str] = {}

    def __init__(self, opts: LoadOptions, profile: Profile) -> None:
        super().__init__(opts, profile)
        self.scenario = registry.get(opts.scenario)
        if self.scenario.scales_out:
            raise BadInput(f"--target: {opts.scenario} starts consumer instances, which a "
                           f"black-box run cannot do; use {registry.SUSTAINED_TASKS.name} with "
                           f"stepped --task-rate")
        self.mix = parse_task_mix(opts.task_mix, profile) if opts.task_mix \
            else profile.default_mix
        if not self.mix and registry.TASKS in self.scenario.streams(opts.rates, 1.0):
            raise BadInput(f"--target: profile {profile.name!r} has no task kind to send")
        self.kinds = run_kinds(self.scenario, profile, self.mix)
        self.mix_text = format_task_mix(self.mix)

    def check_thresholds(self, thresholds: slo.Thresholds) -> None:
        """A latency threshold on a metric this kind cannot measure is bad input (exit 2),
        never a SKIP that leaves the verdict PASS."""
        for t in thresholds.latency:
            if t.metric not in self.measures:
                how = "; ".join(f"{m}: {why}" for m, why in self.measures.items()) or "none"
                raise BadInput(f"{t.source}: {t.text}: a {self.mode} run does not measure "
                               f"{t.metric} (what it measures: {how})")
