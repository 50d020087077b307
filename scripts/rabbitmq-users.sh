#!/usr/bin/env bash
# Least-privilege RabbitMQ users for TME.
#
#   tme-controller      declares the topology, every site's queue included; publishes to
#                       tme.dispatch; consumes its own queues (tme.controller.*, dead
#                       letters); may read the site queues (RabbitMQ requires it to declare
#                       them) but never consumes them
#   tme-gateway-<site>  configures nothing (it can declare, bind or delete no exchange or
#                       queue, its own included), consumes only its site's queue
#                       (tme.site.<site>) and publishes only to the tme.events exchange,
#                       with its own site's routing keys. Run its gateway with
#                       gateway.declare_topology: false (TME_GATEWAY__DECLARE_TOPOLOGY=false):
#                       it waits for the controller to declare its site's queue.
#
# RabbitMQ permissions are three regular expressions (configure, write, read) matched
# against exchange and queue names: configure covers declare and delete, write covers
# publishing to an exchange and binding a queue, read covers consuming (and purging) a
# queue and binding from an exchange. A passive declare, which only asks whether a queue
# exists (and how many messages it holds), needs none. Topic permissions narrow the
# routing keys on a topic exchange: publishing is checked against their write pattern,
# binding against their read pattern.
# Passwords come from the environment or a generated value printed once.
#
# Usage: scripts/rabbitmq-users.sh [--vhost /] controller SITE [SITE ...]
#        scripts/rabbitmq-users.sh [--vhost /] gateways SITE [SITE ...]   (no controller user)
#        TME_CONTROLLER_PASSWORD=... TME_GATEWAY_PASSWORD_<SITE>=... (optional)
#        TME_CONTROLLER_USER=... (optional; default tme-controller: users are per broker,
#        so a second vhost's controller needs another name)
# Runs rabbitmqctl (or $RABBITMQCTL) on the broker's host, as root or the rabbitmq user.
set -euo pipefail

VHOST="/"
if [[ "${1:-}" == "--vhost" ]]; then VHOST="$2"; shift 2; fi
if [[ $# -lt 1 || ( "$1" != "controller" && "$1" != "gateways" ) ]]; then
  sed -n '2,29p' "$0"; exit 2
fi
MODE="$1"
shift

CTL="${RABBITMQCTL:-rabbitmqctl}"
CONTROLLER_USER="${TME_CONTROLLER_USER:-tme-controller}"

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
  ensure_user "$CONTROLLER_USER" "$password"
  # configure: declare the exchanges and the queues, every site's queue included (the
  # gateways declare nothing); write: publish to tme.dispatch, bind the queues, and
  # dead-letter to tme.dead; read: consume tme.events queues, bind from the exchanges, and
  # the site queues, because RabbitMQ lets only a user that may read a queue declare it with
  # a dead-letter exchange (dead-lettering moves its messages). It never consumes them.
  "$CTL" set_permissions -p "$VHOST" "$CONTROLLER_USER" \
    '^tme\..*$' \
    '^(tme\.dispatch|tme\.dead|tme\.controller\..*|tme\.dead\..*|tme\.site\..*)$' \
    '^(tme\.dispatch|tme\.events|tme\.dead|tme\.controller\..*|tme\.dead\..*|tme\.site\..*)$' >/dev/null
  if [[ -z "${TME_CONTROLLER_PASSWORD:-}" ]]; then echo "$CONTROLLER_USER password: $password"; fi
fi

for site in "$@"; do
  var="TME_GATEWAY_PASSWORD_$(printf '%s' "$site" | tr 'a-z.-' 'A-Z__')"
  password="${!var:-$(random_password)}"
  user="tme-gateway-$site"
  site_re="$(escape "$site")"
  ensure_user "$user" "$password"
  # configure: nothing; write: the tme.events exchange only; read: its site's queue only.
  # Publishing to tme.dispatch or tme.dead, reading another queue, and declaring or deleting
  # anything (tme.dispatch, tme.events, tme.controller.events included) are refused.
  "$CTL" set_permissions -p "$VHOST" "$user" \
    '^$' \
    '^tme\.events$' \
    "^tme\.site\.${site_re}$" >/dev/null
  # Routing keys: on tme.events it publishes only <site>.<agent>.<kind> and binds nothing;
  # on tme.dispatch and tme.dead nothing at all (this also replaces the wider topic
  # permissions that older versions of this script gave a gateway that declared its queues).
  "$CTL" set_topic_permissions -p "$VHOST" "$user" tme.events "^${site_re}\.[^.]+\.[^.]+$" '^$' >/dev/null
  "$CTL" set_topic_permissions -p "$VHOST" "$user" tme.dispatch '^$' '^$' >/dev/null
  "$CTL" set_topic_permissions -p "$VHOST" "$user" tme.dead '^$' '^$' >/dev/null
  if [[ -z "${!var:-}" ]]; then echo "$user password: $password"; fi
done
echo "done: vhost $VHOST; give each gateway its own user in broker.url and run it with gateway.declare_topology: false"
