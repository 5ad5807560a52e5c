"""Black-box runs: a deployed system rabbitscale did not start, loaded over HTTP (its API,
callbacks back to a receiver of ours) or AMQP (its exchanges), observed read-only through the
broker's counters and MassTransit's own meters."""
