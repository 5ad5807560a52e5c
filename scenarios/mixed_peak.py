"""mixed_peak: sustained tasks (1,000/min) and webhook bursts (50/s, 100/s) at the same time.

    locust -f scenarios/mixed_peak.py --config locust.conf --headless --users 40 --run-time 60s
"""

from locust import task

from scenarios.common import HttpTaskUser, TaskMixin, WebhookMixin, rates, run_time_s
from scenarios.schedule import streams


class MixedTasksUser(TaskMixin, HttpTaskUser):
    weight = 1

    def rate(self):
        return streams("mixed_peak", rates(self.environment),
                       run_time_s(self.environment))["tasks"]

    @task
    def send_tasks(self) -> None:
        self.open_model_loop()


class MixedWebhookUser(WebhookMixin, HttpTaskUser):
    weight = 2

    def rate(self):
        return streams("mixed_peak", rates(self.environment),
                       run_time_s(self.environment))["webhooks"]

    @task
    def send_webhooks(self) -> None:
        self.open_model_loop()
