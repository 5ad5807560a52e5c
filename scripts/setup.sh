#!/usr/bin/env bash
# What the tests and the demo need on this machine, in one place (`make setup`, `.ci/run`):
#   1. the tools some tests use: chromium (a report rendered headless), prometheus (the
#      dashboard's queries on a real Prometheus), wrk (bench/api_ingest.py), nginx (the
#      HTTP target bench/generator.py loads), iptables (network partitions); installed from Debian's packages when missing and this user may
#      (root with apt-get). Where one cannot be installed, the tests that need it are skipped
#      with one line naming the command that installs it; nothing here fails for them.
#   2. a broker with its management and prometheus plugins: scripts/ensure_broker.sh.
set -u
cd "$(dirname "$0")/.."

missing=""
command -v rabbitmq-server >/dev/null 2>&1 || missing="$missing rabbitmq-server"
command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
command -v prometheus >/dev/null 2>&1 || missing="$missing prometheus"
command -v wrk >/dev/null 2>&1 || missing="$missing wrk"
command -v iptables >/dev/null 2>&1 || missing="$missing iptables"
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing="$missing nginx"

if [ -n "$missing" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing$missing from Debian's packages"
    export DEBIAN_FRONTEND=noninteractive
    if apt-get update -qq >/dev/null 2>&1; then
      for pkg in $missing; do  # one by one: a package this mirror lacks does not stop the rest
        apt-get install -y -qq --no-install-recommends "$pkg" >/dev/null 2>&1 \
          || echo "setup: could not install $pkg; the tests that need it will be skipped"
      done
    else
      echo "setup: apt-get update failed; tests needing$missing will be skipped"
    fi
  else
    echo "setup: missing$missing; as root: apt-get install$missing (tests that need them are skipped)"
  fi
fi

exec scripts/ensure_broker.sh
