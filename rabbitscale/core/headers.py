"""Header names rabbitscale puts on the wire, defined once.

``RS-*`` ride in a MassTransit envelope's JSON headers (what the load generator measured);
``X-RS-*`` are HTTP headers: the load generator's intended send time on API requests, and on
the webhook POSTs the reference stack makes. A system that is not ours sends none of them,
and nothing may depend on them to work (black-box runs correlate callbacks by their URL).
"""

from __future__ import annotations

# in the envelope's JSON headers
RS_INTENDED = "RS-Intended-Time"  # epoch seconds the load generator meant to send at
RS_SENT = "RS-Sent-Time"  # epoch seconds the publisher actually sent at
RS_KEY = "RS-Key"  # ordering key
RS_SEQ = "RS-Seq"  # per-key sequence number
RS_RUN = "RS-Run"  # run name, so a recorder ignores other runs' records
RS_FAIL = "RS-Fail"  # AMQP header, test hook: "always" or N = fail the first N attempts

# on HTTP
X_INTENDED = "X-RS-Intended-Time"
X_MESSAGE_ID = "X-RS-Message-Id"
X_RUN = "X-RS-Run"
X_ORIGINAL_URL = "X-RS-Original-Url"  # a webhook redirected to the local sink
# ConduitLLM's own webhook headers
WEBHOOK_TYPE = "X-Webhook-Type"  # "completion" | "progress"
WEBHOOK_TIMESTAMP = "X-Webhook-Timestamp"  # unix seconds
