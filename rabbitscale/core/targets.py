"""The scaling guide's targets and alert thresholds, each defined once.

Runs judge against them (judge/slo.py), the plan and doctor hold figures to them, the
stack's health check and the reports draw them. A run's thresholds file overrides them per run.
"""

from __future__ import annotations

TASKS_PER_MIN = 1000.0  # "1,000 tasks/minute sustained"
WEBHOOK_BASELINE_PER_S = 10.0  # between bursts (the guide gives none; a stated assumption)
WEBHOOK_BURSTS_PER_S = (50.0, 100.0)  # "50-100 webhooks/second"
INSTANCES = (3, 5)  # "3-5 Core API instances"
QUEUED_MESSAGES = 100_000  # "100,000 total queued messages"

DEPTH_WARNING = 1000  # queue depth: warning above
DEPTH_CRITICAL = 5000  # queue depth: critical above
MESSAGE_AGE_MAX_S = 300.0  # "alert if messages older than 5 minutes"
MEMORY_WARNING_FRACTION = 0.75  # of the high watermark
MEMORY_HEADROOM = 0.4  # "leave 40% headroom for RabbitMQ operations"
WATERMARK_RELATIVE = 0.6  # vm_memory_high_watermark.relative in the guide's rabbitmq.conf
CONTAINER_MEMORY_BYTES = 4 * 2**30  # the guide's compose memory limit (4G)
DISK_FREE_LIMIT_RELATIVE = 2.0  # disk_free_limit.relative in the guide's rabbitmq.conf
LINK_BPS = 100e6  # "Network: 100+ Mbps for high throughput"
LINK_WARNING_FRACTION = 0.7  # of the link: a burst needs room above the sustained load
LINK_FAIL_FRACTION = 0.9  # of the link: TCP on a link this full queues and drops, latency grows
BURST_MAX_LAG_S = 5.0  # a burst webhook counts as absorbed if delivered this soon (ours)

# rabbitscale's own claim for its capacity model (experiments/validation.py holds it to them)
MODEL_TOLERANCE = 0.15  # |predicted - measured| / measured maximum rate
BURST_BACKLOG_TOLERANCE = 0.20  # |predicted - measured| / measured peak backlog of a burst

# rabbitscale's own claim for a run's measurement (judge/validity.py): beyond these the load
# generator did not hold the open-model schedule, so the run is INVALID, not a FAIL of the system
GENERATOR_LATE_S = 0.010  # a send this much after its slot is late
GENERATOR_LATE_SHARE_MAX = 0.05  # of all sends
GENERATOR_SEND_DELAY_P99_MAX_S = 0.100
GENERATOR_CPU_MAX = 0.90  # of one core per Locust process (Locust itself warns at 90%)
CLOCK_OFFSET_MAX_S = 0.050  # a remote worker's clock against the master's
