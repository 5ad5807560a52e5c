"""sustained_tasks: 1,000 async tasks/min (video, image, spend over many virtual keys,
~10 KB payloads), arriving on an open-model schedule.

    locust -f scenarios/sustained_tasks.py --config locust.conf --headless
"""

from locust import task

from rabbitscale.scenarios.common import HttpTaskUser, TaskMixin


class SustainedTasksUser(TaskMixin, HttpTaskUser):
    @task
    def send_tasks(self) -> None:
        self.open_model_loop()
