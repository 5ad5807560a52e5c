"""mixed_peak: sustained tasks (1,000/min) and webhook bursts (50/s, 100/s) at the same time.

    locust -f rabbitscale/scenarios/locustfiles/mixed_peak.py --config locust.conf \
        --headless --users 40 --run-time 60s
"""

from locust import task

from rabbitscale.scenarios import registry
from rabbitscale.scenarios.locustfiles.common import TaskMixin, TaskUser, WebhookMixin


class MixedTasksUser(TaskMixin, TaskUser):
    scenario = registry.MIXED_PEAK
    weight = 1

    @task
    def send_tasks(self) -> None:
        self.open_model_loop()


class MixedWebhookUser(WebhookMixin, TaskUser):
    scenario = registry.MIXED_PEAK
    weight = 2

    @task
    def send_webhooks(self) -> None:
        self.open_model_loop()
