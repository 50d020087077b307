#!/usr/bin/env bash
# Start the servers the integration tests talk to, when they are not listening:
# RabbitMQ (5672), Mosquitto (1883) and PostgreSQL (5432). Uses the machine's own
# start commands; installs a package with apt only when its server is missing.
set -uo pipefail

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for() {  # port, name, seconds
  local i
  for ((i = 0; i < $3 * 10; i++)); do listening "$1" && { echo "$2 is listening on $1"; return 0; }; sleep 0.1; done
  echo "$2 did not come up on port $1" >&2
  return 1
}

ensure_pkg() {  # binary, package
  command -v "$1" >/dev/null 2>&1 && return 0
  echo "installing $2"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2"
}

status=0
if ! listening 5432; then
  ensure_pkg pg_ctlcluster postgresql
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
  wait_for 5432 PostgreSQL 30 || status=1
fi
if ! listening 5672; then
  ensure_pkg rabbitmq-server rabbitmq-server
  rabbitmq-server -detached || true
  wait_for 5672 RabbitMQ 90 || status=1
fi
if ! listening 1883; then
  ensure_pkg mosquitto mosquitto
  mosquitto -d -c /etc/mosquitto/mosquitto.conf || true
  wait_for 1883 Mosquitto 15 || status=1
fi
ensure_pkg chromium chromium && ensure_pkg chromedriver chromium-driver || status=1  # the dashboard's browser test
exit $status
