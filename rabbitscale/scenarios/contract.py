"""The contract between a run and its Locust processes, in one place: the Locust options a
run passes (on the command line, or through the environment for what must stay off it), and
the files the Locust master writes into the run directory.

Every rabbitscale setting is an ordinary Locust option, registered by the locustfiles
(scenarios/locustfiles/common.py), so it comes from locust.conf, the command line or its
environment variable, and a Locust master hands them to its workers with each spawn message:
a worker on another machine needs nothing but the master's address (the run's resolved
profile too travels as an option: it is the environment variable the stack's consumers read).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rabbitscale.harness.auth import SECRET_ENV
from rabbitscale.scenarios.drivers import DRIVERS, TRANSPORTS
from rabbitscale.topology.profile_file import PROFILE_ENV


@dataclass(frozen=True)
class Option:
    """One Locust option of ours. ``hidden`` ones are set by `rabbitscale run` and kept out of
    Locust's web UI; ``secret`` ones are masked in it and never put on a command line."""

    flag: str
    env: str
    default: Any
    help: str
    kind: type = str
    choices: tuple[str, ...] = ()
    hidden: bool = False
    secret: bool = False


# --- the load: what a user may set in locust.conf as well ----------------------------------
TASK_RATE = Option("--task-rate", "LOCUST_TASK_RATE", "1000/min",
                   "sustained async task arrival rate (all users and workers)")
WEBHOOK_RATE = Option("--webhook-rate", "LOCUST_WEBHOOK_RATE", "10/s",
                      "webhook baseline rate between bursts")
BURST_RATES = Option("--burst-rates", "LOCUST_BURST_RATES", "50/s,100/s",
                     "webhook burst rates, in order")
TASK_MIX = Option("--task-mix", "LOCUST_TASK_MIX", "",
                  "task kinds and their weights (default: the profile's mix)")
PAYLOAD_SIZE = Option("--payload-size", "LOCUST_PAYLOAD_SIZE", "10KB",
                      "mean message size (lognormal around it)")
VIRTUAL_KEYS = Option("--virtual-keys", "LOCUST_VIRTUAL_KEYS", 100,
                      "virtual keys (ordering keys) tasks are spread over", kind=int)
TRANSPORT = Option("--transport", "LOCUST_TRANSPORT", "http",
                   "how a task reaches the system: " + "; ".join(
                       f"{t.name}: {t.summary}" for t in DRIVERS.values()),
                   choices=TRANSPORTS)
ARRIVALS = Option("--arrivals", "LOCUST_ARRIVALS", "even",
                  "evenly spaced or Poisson arrivals", choices=("even", "poisson"))
SCHEDULE_TIME = Option("--schedule-time", "LOCUST_SCHEDULE_TIME", 0.0,
                       "seconds the arrival schedule spans (default: --run-time)", kind=float)
MAX_IN_FLIGHT = Option("--max-in-flight", "LOCUST_MAX_IN_FLIGHT", 1024,
                       "sends one Locust process keeps in flight at most: each slot's send "
                       "leaves on time while the system is slow, up to this bound (a slot "
                       "that finds it reached waits, and the run says so)", kind=int)

# --- set by `rabbitscale run` -----------------------------------------------------------------
START_AT = Option("--start-at", "RABBITSCALE_START_AT", 0.0,
                  "epoch seconds the schedule starts at (default: when users start)",
                  kind=float, hidden=True)
RUN_NAME = Option("--run-name", "RABBITSCALE_RUN", "", "the run's name", hidden=True)
API_SECRET = Option("--api-secret", SECRET_ENV, "",
                    "secret the reference stack's virtual keys derive from",
                    hidden=True, secret=True)
API_KEYS = Option("--api-keys", "RABBITSCALE_TARGET_API_KEYS", "",
                  "bearer keys of the system under test, comma-separated",
                  hidden=True, secret=True)
WEBHOOK_TARGET = Option("--webhook-target", "RABBITSCALE_WEBHOOK_URL", "",
                        "URL webhook tasks ask to be delivered to", hidden=True)
CALLBACK_URL = Option("--callback-url", "RABBITSCALE_CALLBACK_URL", "",
                      "base URL of rabbitscale's callback receiver, as the target reaches it: "
                      "each task carries a callback URL of its own under it", hidden=True)
CALLBACK_SECRET = Option("--callback-secret", "RABBITSCALE_CALLBACK_SECRET", "",
                         "key of the callback URLs' HMAC", hidden=True, secret=True)
POLL_INTERVAL = Option("--poll-interval", "RABBITSCALE_POLL", 0.0,
                       "> 0: follow tasks whose route can be polled with GET every N seconds "
                       "instead of a callback", kind=float, hidden=True)
PROFILE = Option("--profile-spec", PROFILE_ENV, "",
                 "the system's profile, resolved, as JSON (default: the default profile)",
                 hidden=True)

LOAD_OPTIONS = (TASK_RATE, WEBHOOK_RATE, BURST_RATES, TASK_MIX, PAYLOAD_SIZE, VIRTUAL_KEYS,
                TRANSPORT, ARRIVALS, SCHEDULE_TIME, MAX_IN_FLIGHT)
RUN_OPTIONS = (START_AT, RUN_NAME, API_SECRET, API_KEYS, WEBHOOK_TARGET, CALLBACK_URL,
               CALLBACK_SECRET, POLL_INTERVAL, PROFILE)

# --- the environment of the Locust processes, beside the options ------------------------------
ENV_API_URL = "RABBITSCALE_API_URL"  # the users' host
ENV_RUN_DIR = "RABBITSCALE_RUN_DIR"  # where the master writes the files below

# how long a master waits for its workers to join before the run gives up (0: forever)
WORKERS_MAX_WAIT_S = 120.0

# --- what the Locust master writes into the run directory ----------------------------------
WORKERS_FILE = "locust_workers.json"  # the master's view of its workers at the end
START_FILE = "locust_start.json"  # when the schedule starts, if the master chose it
HDR_SUMMARY = "summary.json"  # in rundir.LOCUST_HDR_DIR, beside the merged histograms
# per stream: the in-flight bound of all processes, the highest any reached, and the slots
# that found it reached and waited (k6's dropped iterations, which here are late, not dropped)
IN_FLIGHT_FILE = "locust_in_flight.json"
