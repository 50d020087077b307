#!/usr/bin/env bash
# Least-privilege RabbitMQ users for TME.
#
#   tme-controller      declares the topology; publishes to tme.dispatch; consumes its own
#                       queues (tme.controller.*, dead letters); never reads a site's queue
#   tme-gateway-<site>  consumes only its site's queue (tme.site.<site>) and publishes only
#                       to the tme.events exchange, with its own site's routing keys
#
# RabbitMQ permissions are three regular expressions (configure, write, read) matched
# against exchange and queue names; binding a queue needs write on the queue and read on
# the exchange. Topic permissions narrow the routing keys on a topic exchange: publishing
# is checked against their write pattern, binding against their read pattern.
# Passwords come from the environment or a generated value printed once.
#
# Usage: scripts/rabbitmq-users.sh [--vhost /] controller SITE [SITE ...]
#        scripts/rabbitmq-users.sh [--vhost /] gateways SITE [SITE ...]   (no controller user)
#        TME_CONTROLLER_PASSWORD=... TME_GATEWAY_PASSWORD_<SITE>=... (optional)
# Runs rabbitmqctl (or $RABBITMQCTL) on the broker's host, as root or the rabbitmq user.
set -euo pipefail

VHOST="/"
if [[ "${1:-}" == "--vhost" ]]; then VHOST="$2"; shift 2; fi
if [[ $# -lt 1 || ( "$1" != "controller" && "$1" != "gateways" ) ]]; then
  sed -n '2,20p' "$0"; exit 2
fi
MODE="$1"
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

if [[ "$MODE" == "controller" ]]; then
  password="${TME_CONTROLLER_PASSWORD:-$(random_password)}"
  ensure_user tme-controller "$password"
  # configure: declare the exchanges and its own queues; write: publish to tme.dispatch and
  # bind its queues; read: consume tme.events queues and bind from the exchanges.
  "$CTL" set_permissions -p "$VHOST" tme-controller \
    '^tme\..*$' \
    '^(tme\.dispatch|tme\.dead|tme\.controller\..*|tme\.dead\..*|tme\.site\..*)$' \
    '^(tme\.events|tme\.dead|tme\.controller\..*|tme\.dead\..*)$' >/dev/null
  if [[ -z "${TME_CONTROLLER_PASSWORD:-}" ]]; then echo "tme-controller password: $password"; fi
fi

for site in "$@"; do
  var="TME_GATEWAY_PASSWORD_$(printf '%s' "$site" | tr 'a-z.-' 'A-Z__')"
  password="${!var:-$(random_password)}"
  user="tme-gateway-$site"
  site_re="$(escape "$site")"
  ensure_user "$user" "$password"
  # A gateway starts by (re)declaring, idempotently, the exchanges, the dead-letter queue,
  # its site's queue and the controller's events queue (so events have somewhere to go
  # before the controller first runs), with their bindings.
  # configure: exactly those; write: publish to tme.events, bind those queues (which does
  # not let it publish to them: publishing goes through an exchange); read: consume its
  # own site's queue only, and bind from the exchanges (which cannot be consumed).
  "$CTL" set_permissions -p "$VHOST" "$user" \
    "^(tme\.dispatch|tme\.events|tme\.dead|tme\.dead\.letters|tme\.controller\.events|tme\.site\.${site_re})$" \
    "^(tme\.events|tme\.dead\.letters|tme\.controller\.events|tme\.site\.${site_re})$" \
    "^(tme\.dispatch|tme\.events|tme\.dead|tme\.site\.${site_re})$" >/dev/null
  # Routing keys: from tme.dispatch it may bind only its site's key (so no other site's
  # commands reach its queue); on tme.events it publishes only <site>.<agent>.<kind>.
  "$CTL" set_topic_permissions -p "$VHOST" "$user" tme.dispatch '^$' "^site\.${site_re}$" >/dev/null
  "$CTL" set_topic_permissions -p "$VHOST" "$user" tme.events "^${site_re}\.[^.]+\.[^.]+$" '^#$' >/dev/null
  "$CTL" set_topic_permissions -p "$VHOST" "$user" tme.dead '^$' '^#$' >/dev/null
  if [[ -z "${!var:-}" ]]; then echo "$user password: $password"; fi
done
echo "done: vhost $VHOST; give each gateway its own user in broker.url"
