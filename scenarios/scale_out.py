"""scale_out: the guide's scaling-up procedure. Task load steps up (1x, 1.5x, 2x the task
rate, in thirds of the run) while `rabbitscale run scale_out` grows the consumer instances
from --instances to --scale-to (default 3 -> 5) at the midpoint.

    rabbitscale run scale_out --duration 2m --instances 3
"""

from locust import task

from scenarios.common import HttpTaskUser, TaskMixin, rates, run_time_s
from scenarios.schedule import streams


class ScaleOutUser(TaskMixin, HttpTaskUser):
    def rate(self):
        return streams("scale_out", rates(self.environment),
                       run_time_s(self.environment))["tasks"]

    @task
    def send_tasks(self) -> None:
        self.open_model_loop()
