#!/usr/bin/env bash
# Make sure a RabbitMQ broker with the management API answers, and say what was done.
# 1. AMQP_URL (or 127.0.0.1:5672) answers -> use it.
# 2. else a local rabbitmq-server is installed -> start it (detached).
# 3. else a Docker engine is available -> `docker compose up -d rabbitmq`, with a password of
#    its own, and .rabbitscale-broker.env (AMQP_URL) for `make demo` and `make test`.
# 4. else print exactly what to run and fail.
# The management and prometheus plugins are enabled on a local node when they are not already
# (black-box runs and doctor read either).
set -u
url="${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/}"
hostport=$(python3 - "$url" <<'PY'
import sys
from urllib.parse import urlsplit
u = urlsplit(sys.argv[1])
print(f"{u.hostname or '127.0.0.1'} {u.port or 5672}")
PY
)
host=${hostport% *}; port=${hostport#* }
mgmt_port="${CONDUITLLM__RABBITMQ__MANAGEMENTPORT:-15672}"

answers() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }
wait_for() {  # host port seconds
  for _ in $(seq 1 "$3"); do answers "$1" "$2" && return 0; sleep 1; done; return 1
}

if answers "$host" "$port"; then
  echo "broker: using the RabbitMQ that answers on $host:$port"
elif command -v rabbitmq-server >/dev/null 2>&1; then
  echo "broker: nothing on $host:$port; starting the local rabbitmq-server (detached)"
  rabbitmq-server -detached >/dev/null 2>&1 || true
  wait_for "$host" "$port" 90 || { echo "broker: rabbitmq-server did not come up on $host:$port"; exit 1; }
elif docker info >/dev/null 2>&1; then
  echo "broker: nothing on $host:$port; starting the compose file's rabbitmq service"
  # compose refuses to start without both secrets (no defaults on purpose): give this local
  # broker its own, and tell the make targets how to reach it (user conduit, the compose file's)
  export RABBITMQ_PASSWORD="${RABBITMQ_PASSWORD:-$(python3 -c 'import secrets; print(secrets.token_hex(12))')}"
  export RABBITSCALE_API_SECRET="${RABBITSCALE_API_SECRET:-$(python3 -c 'import secrets; print(secrets.token_hex(12))')}"
  docker compose up -d rabbitmq || { echo "broker: docker compose up -d rabbitmq failed"; exit 1; }
  umask 077
  printf 'AMQP_URL=amqp://conduit:%s@127.0.0.1:5672/\n' "$RABBITMQ_PASSWORD" > .rabbitscale-broker.env
  echo "broker: AMQP_URL for it written to .rabbitscale-broker.env (mode 0600)"
  wait_s="${RABBITSCALE_BROKER_WAIT_S:-120}"
  wait_for "$host" "$port" "$wait_s" || { echo "broker: the rabbitmq container did not come up"; exit 1; }
  wait_for "$host" "$mgmt_port" "$wait_s" || { echo "broker: its management API did not come up"; exit 1; }
else
  echo "broker: nothing answers on $host:$port and neither rabbitmq-server nor Docker is here."
  echo "  run one of:  sudo apt-get install rabbitmq-server && sudo rabbitmq-server -detached"
  echo "               RABBITMQ_PASSWORD=... docker compose up -d rabbitmq  (then set AMQP_URL)"
  exit 1
fi

if ! answers "$host" "$mgmt_port"; then
  if command -v rabbitmq-plugins >/dev/null 2>&1 && [ "$host" = 127.0.0.1 -o "$host" = localhost ]; then
    echo "broker: enabling the management plugin"
    rabbitmq-plugins enable rabbitmq_management >/dev/null
    wait_for "$host" "$mgmt_port" 60 || { echo "broker: management API did not come up on $mgmt_port"; exit 1; }
  else
    echo "broker: the management API does not answer on $host:$mgmt_port; enable rabbitmq_management"
    exit 1
  fi
fi
echo "broker: management API on $host:$mgmt_port"

prom_port="${RABBITSCALE_PROMETHEUS_PORT:-15692}"
if ! answers "$host" "$prom_port"; then
  if command -v rabbitmq-plugins >/dev/null 2>&1 && [ "$host" = 127.0.0.1 -o "$host" = localhost ]; then
    echo "broker: enabling the rabbitmq_prometheus plugin"
    rabbitmq-plugins enable rabbitmq_prometheus >/dev/null
    wait_for "$host" "$prom_port" 60 || { echo "broker: rabbitmq_prometheus did not come up on $prom_port"; exit 1; }
  else
    echo "broker: rabbitmq_prometheus does not answer on $host:$prom_port (black-box runs with --prometheus need it)"
  fi
fi
echo "broker: rabbitmq_prometheus on $host:$prom_port"
