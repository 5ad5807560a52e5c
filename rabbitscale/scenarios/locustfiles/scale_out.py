"""scale_out: the guide's scaling-up procedure. Task load steps up (1x, 1.5x, 2x the task
rate, in thirds of the run) while `rabbitscale run scale_out` grows the consumer instances
from --instances to --scale-to (default 3 -> 5) at the midpoint.

    rabbitscale run scale_out --duration 2m --instances 3
"""

from locust import task

from rabbitscale.scenarios import registry
from rabbitscale.scenarios.locustfiles.common import TaskMixin, TaskUser


class ScaleOutUser(TaskMixin, TaskUser):
    scenario = registry.SCALE_OUT

    @task
    def send_tasks(self) -> None:
        self.open_model_loop()
