"""webhook_burst: webhooks at a baseline rate, then bursts at 50/s and 100/s (the guide's
50-100 webhooks/s), driven through POST /v1/webhook. The LoadTestShape sizes the user pool to
the peak rate; the arrival schedule itself is open-model (scenarios/schedule.py).

    locust -f scenarios/webhook_burst.py --config locust.conf --headless --run-time 60s
"""

import math

from locust import LoadTestShape, task

from rabbitscale.scenarios.common import HttpTaskUser, WebhookMixin, options, run_time_s


class WebhookBurstUser(WebhookMixin, HttpTaskUser):
    scenario = "webhook_burst"

    @task
    def send_webhooks(self) -> None:
        self.open_model_loop()


class BurstShape(LoadTestShape):
    """Enough users for the peak rate at ~0.25 s per request, held for the run time."""

    def tick(self):
        env = self.runner.environment
        if self.get_run_time() >= run_time_s(env):
            return None
        o = options(env)
        users = max(10, math.ceil(max((o.webhook_rate, *o.burst_rates)) * 0.25))
        return users, users
