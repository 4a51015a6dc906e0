#!/bin/sh
# Run inside a fresh network namespace (unshare -n) by test_cluster.py:
# scripts/cluster.sh 2 as an operator would start it, a SIPp room on the
# shipped room-a address, one call per node through Kamailio; prints
# "health <node> <json>", "calls <node> <n>" and "exit <status>" lines.
set -u
ip link set lo up
cd "$(dirname "$0")/../.."
out="$1"
# one Kamailio worker: SIPp aborts on a 180 relayed after its 200
SIPXFER_CLUSTER_KAMAILIO_CHILDREN=1 ./scripts/cluster.sh 2 > "$out/cluster.out" 2>&1 &
cp=$!
up() { curl -s -m 1 "http://$1:8080/v1/health" 2>/dev/null | grep -q '"active"'; }
i=0
until up 127.0.0.2 && up 127.0.0.3; do
    i=$((i + 1))
    if [ "$i" -gt 300 ] || ! kill -0 "$cp" 2>/dev/null; then echo "cluster did not come up"; exit 1; fi
    sleep 0.1
done
sipp -sn uas -i 127.0.0.1 -p 5070 -m 2 -nostdin -timeout 30s -timeout_error \
    > "$out/room.out" 2>&1 &
rp=$!
# polled until the room has bound its port (ss reads the kernel's table)
until ss -Hlun | grep -q "127.0.0.1:5070 "; do
    kill -0 "$rp" 2>/dev/null || { echo "room did not start"; exit 1; }
    sleep 0.1
done
# tests/sipp/caller.xml follows the proxy's Record-Route ([routes])
sipp -sf tests/sipp/caller.xml -s +15550100 -m 2 -r 10 -d 200 -i 127.0.0.10 -p 7777 -nostdin \
    -timeout 30s -timeout_error 127.0.0.1:5060 > "$out/caller.out" 2>&1
echo "caller $?"
wait "$rp"
echo "room $?"
for a in 127.0.0.2 127.0.0.3; do
    echo "health $a $(curl -s -m 2 http://$a:8080/v1/health)"
    echo "calls $a $(curl -s -m 2 http://$a:8080/metrics | awk '$1 == "sipxfer_calls_total" {print $2}')"
done
kill -TERM "$cp"
wait "$cp"
echo "exit $?"
# this namespace is the cluster's alone: anything still bound is left over
echo "bound $(ss -Hlnut | wc -l)"
exit 0
