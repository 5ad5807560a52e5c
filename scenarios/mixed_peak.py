"""mixed_peak: sustained tasks (1,000/min) and webhook bursts (50/s, 100/s) at the same time.

    locust -f scenarios/mixed_peak.py --config locust.conf --headless --users 40 --run-time 60s
"""

from locust import task

from rabbitscale.scenarios.common import HttpTaskUser, TaskMixin, WebhookMixin


class MixedTasksUser(TaskMixin, HttpTaskUser):
    scenario = "mixed_peak"
    weight = 1

    @task
    def send_tasks(self) -> None:
        self.open_model_loop()


class MixedWebhookUser(WebhookMixin, HttpTaskUser):
    scenario = "mixed_peak"
    weight = 2

    @task
    def send_webhooks(self) -> None:
        self.open_model_loop()
