"""webhook_burst: webhooks at a baseline rate, then bursts at 50/s and 100/s (the guide's
50-100 webhooks/s), sent as the profile's webhook kind. The LoadTestShape sizes the user pool to
the peak rate; the arrival schedule itself is open-model (scenarios/schedule.py).

    locust -f rabbitscale/scenarios/locustfiles/webhook_burst.py --config locust.conf \
        --headless --run-time 60s
"""

import time

from locust import LoadTestShape, task

from rabbitscale.scenarios import registry
from rabbitscale.scenarios.locustfiles.common import (
    TaskUser,
    WebhookMixin,
    rates,
    schedule_end,
)


class WebhookBurstUser(WebhookMixin, TaskUser):
    scenario = registry.WEBHOOK_BURST

    @task
    def send_webhooks(self) -> None:
        self.open_model_loop()


class BurstShape(LoadTestShape):
    """The stream's dispatching users, held until the schedule ends (which may start after the
    test does: workers receive the start with their spawn)."""

    def tick(self):
        env = self.runner.environment
        if time.time() >= schedule_end(env) + 3:  # + time for the last replies
            return None
        users = registry.WEBHOOK_BURST.users(rates(env))
        return users, users
