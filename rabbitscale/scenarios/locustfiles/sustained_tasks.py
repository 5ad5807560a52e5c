"""sustained_tasks: 1,000 async tasks/min (video, image, spend over many virtual keys,
~10 KB payloads), arriving on an open-model schedule.

    locust -f rabbitscale/scenarios/locustfiles/sustained_tasks.py --config locust.conf --headless
"""

from locust import task

from rabbitscale.scenarios.locustfiles.common import TaskMixin, TaskUser


class SustainedTasksUser(TaskMixin, TaskUser):
    @task
    def send_tasks(self) -> None:
        self.open_model_loop()
