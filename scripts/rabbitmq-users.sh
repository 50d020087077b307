#!/usr/bin/env bash
# Least-privilege RabbitMQ users for TME.
#
#   tme-controller      declares the topology; publishes to tme.dispatch; consumes its own
#                       queues (tme.controller.*, dead letters); never reads a site's queue
#   tme-gateway-<site>  reads only its site's queue (tme.site.<site>) and publishes only to
#                       the tme.events exchange
#
# RabbitMQ permissions are three regular expressions (configure, write, read) matched
# against exchange and queue names; binding a queue needs write on the queue and read on
# the exchange. Passwords come from the environment or a generated value printed once.
#
# Usage: scripts/rabbitmq-users.sh [--vhost /] controller SITE [SITE ...]
#        TME_CONTROLLER_PASSWORD=... TME_GATEWAY_PASSWORD_<SITE>=... (optional)
set -euo pipefail

VHOST="/"
if [[ "${1:-}" == "--vhost" ]]; then VHOST="$2"; shift 2; fi
if [[ $# -lt 1 || "$1" != "controller" ]]; then
  sed -n '2,15p' "$0"; exit 2
fi
shift

CTL="${RABBITMQCTL:-rabbitmqctl}"

random_password() { head -c 24 /dev/urandom | base64 | tr -d '/+=' ; }

ensure_user() {  # name password
  if "$CTL" list_users --silent | cut -f1 | grep -qx "$1"; then
    "$CTL" change_password "$1" "$2" >/dev/null
  else
    "$CTL" add_user "$1" "$2" >/dev/null
  fi
  "$CTL" set_user_tags "$1" >/dev/null  # no management or admin tags
}

escape() { printf '%s' "$1" | sed 's/[.[\*^$()+?{}|]/\\&/g'; }

password="${TME_CONTROLLER_PASSWORD:-$(random_password)}"
ensure_user tme-controller "$password"
# configure: declare the exchanges and its own queues; write: publish to tme.dispatch and
# bind its queues; read: consume tme.events queues and bind from the exchanges.
"$CTL" set_permissions -p "$VHOST" tme-controller \
  '^tme\..*$' \
  '^(tme\.dispatch|tme\.dead|tme\.controller\..*|tme\.dead\..*|tme\.site\..*)$' \
  '^(tme\.events|tme\.dead|tme\.controller\..*|tme\.dead\..*)$' >/dev/null
[[ -z "${TME_CONTROLLER_PASSWORD:-}" ]] && echo "tme-controller password: $password"

for site in "$@"; do
  var="TME_GATEWAY_PASSWORD_$(printf '%s' "$site" | tr 'a-z.-' 'A-Z__')"
  password="${!var:-$(random_password)}"
  user="tme-gateway-$site"
  site_re="$(escape "$site")"
  ensure_user "$user" "$password"
  # configure: (re)declare only the exchanges and its own queue, idempotently;
  # write: publish to tme.events, bind its own queue; read: consume its own queue and
  # bind it from tme.dispatch (an exchange cannot be consumed, so that reads nothing else).
  "$CTL" set_permissions -p "$VHOST" "$user" \
    "^(tme\.dispatch|tme\.events|tme\.dead|tme\.site\.${site_re})$" \
    "^(tme\.events|tme\.site\.${site_re})$" \
    "^(tme\.dispatch|tme\.site\.${site_re})$" >/dev/null
  [[ -z "${!var:-}" ]] && echo "$user password: $password"
done
echo "done: vhost $VHOST; give each gateway its own user in broker.url"
