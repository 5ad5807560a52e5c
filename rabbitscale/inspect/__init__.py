"""Live inspection, read-only: doctor (a broker against the plan), discover (a system's
profile from its vhost) and audit (a rabbitmq.conf before it is deployed)."""
