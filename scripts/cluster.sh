#!/bin/sh
# A cluster on loopback addresses, in the foreground (SPEC section 13):
# Redis, Kamailio (config/kamailio/kamailio.cfg) on 127.0.0.1:5060 and N
# sipxferd nodes (default 2) on 127.0.0.2, 127.0.0.3, ... each with SIP on
# :5060, its API on :8080 and its own relay ports. Ctrl-C stops them all.
#
#   scripts/cluster.sh [N]
#
# Carriers send to 127.0.0.1:5060; the rooms are those of the shipped
# config (room-a on 127.0.0.1:5070, room-b on 127.0.0.1:5072); any node's
# API (token "change-me") serves any session. Configs and logs go to a
# fresh directory under ${TMPDIR:-/tmp}, printed at start.
# SIPXFER_CLUSTER_REDIS_PORT (default 6380, apart from a system Redis on
# 6379), SIPXFER_CLUSTER_LEASE (default 15) and SIPXFER_CLUSTER_KAMAILIO_CHILDREN
# (Kamailio's UDP workers, default 4) change the obvious.
set -eu
cd "$(dirname "$0")/.."

n="${1:-2}"
case "$n" in
    ''|*[!0-9]*) echo "usage: scripts/cluster.sh [N]  (N nodes, 1-50)" >&2; exit 2 ;;
esac
if [ "$n" -lt 1 ] || [ "$n" -gt 50 ]; then
    echo "usage: scripts/cluster.sh [N]  (N nodes, 1-50)" >&2
    exit 2
fi
rport="${SIPXFER_CLUSTER_REDIS_PORT:-6380}"
lease="${SIPXFER_CLUSTER_LEASE:-15}"
children="${SIPXFER_CLUSTER_KAMAILIO_CHILDREN:-4}"

./scripts/setup.sh
dir="$(mktemp -d "${TMPDIR:-/tmp}/sipxfer-cluster.XXXXXX")"
pids=""
stop() {
    rc=$?
    trap - INT TERM EXIT
    echo "cluster: stopping" >&2
    # nodes first (they drain), then the proxy and the directory
    for p in $pids; do kill -TERM "$p" 2>/dev/null || true; done
    for p in $pids; do wait "$p" 2>/dev/null || true; done
    echo "cluster: stopped; configs and logs in $dir" >&2
    exit "$rc"
}
trap stop EXIT
trap 'exit 0' INT TERM

redis-server --bind 127.0.0.1 --port "$rport" --save '' --appendonly no \
    --logfile "$dir/redis.log" --daemonize no &
redis_pid=$!

: > "$dir/sipxfer-nodes.list"
peers=""
i=1
while [ "$i" -le "$n" ]; do
    addr="127.0.0.$((i + 1))"
    echo "1 sip:$addr:5060 0 0" >> "$dir/sipxfer-nodes.list"
    peers="$peers${peers:+, }{ node = \"edge-$i\"; api = \"$addr:8080\"; }"
    i=$((i + 1))
done

node_pids=""
i=1
while [ "$i" -le "$n" ]; do
    addr="127.0.0.$((i + 1))"
    lo=$((20000 + (i - 1) * 1000))
    cat > "$dir/edge-$i.conf" <<EOF
node = "edge-$i";
drain_timeout = 30;
sip = {
  listen = "sip:$addr:5060";
  max_calls = 200;
  trusted_proxies = [ "127.0.0.1" ];   # Kamailio: carriers are named by its Via
};
api = { listen = "$addr:8080"; tokens = [ "change-me" ]; };
media = { mode = "relay"; address = "$addr"; port_min = $lo; port_max = $((lo + 999)); warm_pairs = 16; };
trunks = ( { name = "carrier"; sources = [ "127.0.0.0/8" ]; gateway = "sip:127.0.0.1:5090"; } );
rooms = {
  domain = "rooms.sipxfer.test";
  list = (
    { name = "room-a"; uri = "sip:room-a@127.0.0.1:5070"; },
    { name = "room-b"; uri = "sip:room-b@127.0.0.1:5072"; }
  );
};
routes = ( { user = "+15550100"; room = "room-a"; } );
transfer = { allow = [ "sip:*", "+*" ]; };
cluster = {
  redis = "127.0.0.1:$rport";
  lease = $lease;
  peers = ( $peers );
};
EOF
    ./build/sipxferd -c "$dir/edge-$i.conf" > "$dir/edge-$i.log" 2>&1 &
    node_pids="$node_pids $!"
    i=$((i + 1))
done

kamailio -f config/kamailio/kamailio.cfg -DD -E -m 64 -M 8 -Y "$dir" -P "$dir/kamailio.pid" \
    -A SIPXFER_LISTEN=udp:127.0.0.1:5060 -A "SIPXFER_NODES=\"$dir/sipxfer-nodes.list\"" \
    -A "SIPXFER_CHILDREN=$children" \
    > "$dir/kamailio.log" 2>&1 &
kam_pid=$!
pids="$node_pids $kam_pid $redis_pid"

echo "cluster: Redis 127.0.0.1:$rport, Kamailio udp:127.0.0.1:5060, $n node(s):" >&2
i=1
while [ "$i" -le "$n" ]; do
    echo "  edge-$i: SIP sip:127.0.0.$((i + 1)):5060, API http://127.0.0.$((i + 1)):8080" >&2
    i=$((i + 1))
done
echo "cluster: logs in $dir (following them; Ctrl-C stops everything)" >&2
# in the foreground until Ctrl-C, or until any one of them exits
tail -q -n +1 -F "$dir"/edge-*.log "$dir/kamailio.log" 2>/dev/null &
tail_pid=$!
pids="$pids $tail_pid"
while :; do
    for p in $node_pids $kam_pid $redis_pid; do
        if ! kill -0 "$p" 2>/dev/null; then
            echo "cluster: process $p exited; stopping the rest" >&2
            exit 1
        fi
    done
    sleep 1
done
