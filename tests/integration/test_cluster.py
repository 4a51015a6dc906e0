"""Issue 15: several sipxferd nodes behind the shipped Kamailio config
(config/kamailio/kamailio.cfg, dispatcher in front, SPEC section 13): calls
spread over the nodes, a stopped node is passed over, a draining node
(SIGUSR1) answers OPTIONS and new INVITEs 503 + Retry-After while its calls
go on through Record-Route, and with every node refusing the caller sees
503 with Retry-After, not Kamailio's 500."""
import os
import shutil
import signal
import time

from harness import (HOST, ROOT, Skip, build_request, case, check, free_port, sip_exchange,
                     wait_bound, wait_for)
from test_core import caller
from test_loop import kamailio_modules, stop_group

KAMAILIO_CFG = os.path.join(ROOT, "config", "kamailio", "kamailio.cfg")


class Kamailio:
    """The shipped Kamailio config in front of `nodes` (Daemons), on a free
    port of HOST, probing every `ping` seconds."""

    def __init__(self, t, nodes, ping=1):
        binary = shutil.which("kamailio") or "/usr/sbin/kamailio"
        mpath = kamailio_modules()
        if not os.path.exists(binary) or not mpath:
            raise Skip("kamailio (with dispatcher.so) is not installed: run scripts/setup.sh")
        self.port = free_port()
        lst = t.path("sipxfer-nodes.list")
        with open(lst, "w") as f:
            for d in nodes:
                f.write("1 sip:%s:%d 0 0\n" % (HOST, d.sip_port))
        rundir = t.path("kamailio-run")
        os.makedirs(rundir, exist_ok=True)
        args = [binary, "-f", KAMAILIO_CFG, "-DD", "-E", "-m", "32", "-M", "8", "-Y", rundir,
                "-P", os.path.join(rundir, "kamailio.pid"),
                "-A", "SIPXFER_LISTEN=udp:%s:%d" % (HOST, self.port),
                "-A", 'SIPXFER_NODES="%s"' % lst, "-A", 'SIPXFER_MPATH="%s/"' % mpath,
                "-A", "SIPXFER_PING_INTERVAL=%d" % ping,
                # one worker: responses relayed in the order they came (SIPp
                # aborts on a 180 after its 200, which workers can reorder)
                "-A", "SIPXFER_CHILDREN=1"]
        # its own process group: Kamailio forks, and all of it goes at the end
        self.proc = t.popen(args, "kamailio", start_new_session=True)
        t.at_end(lambda: stop_group(self.proc))
        wait_bound(self.port, proc=self.proc, what="kamailio")

    @property
    def uri_host(self):
        return "%s:%d" % (HOST, self.port)


def nodes(t, n, room_calls, room_b=None, **kw):
    """n nodes (node names n1..) sharing one SIPp room (and room_b, a second
    SIPp room, when given), taking carrier calls from behind the proxy on
    HOST."""
    room = t.sipp("room.xml", calls=room_calls)
    rooms = {"room-a": "sip:room-a@%s:%d" % (HOST, room.port)}
    if room_b:
        rooms["room-b"] = "sip:room-b@%s:%d" % (HOST, room_b.port)
    ds = []
    for i in range(n):
        settings = {"node": "n%d" % (i + 1), "sip.trusted_proxies": [HOST]}
        settings.update(kw)
        ds.append(t.daemon(rooms=rooms, **settings))
    room.start()
    if room_b:
        room_b.start()
    for d in ds:
        d.start()
    return ds, room


def via_proxy(t, k, scenario="caller.xml", **kw):
    return t.sipp(scenario, remote=k.uri_host, service="room-a", **kw)


def calls_of(d):
    return d.metric("sipxfer_calls_total") or 0


def final_response(remote, method="INVITE", ruri_user="room-a", timeout=10, source=HOST):
    """A raw request to remote from an address of source; the final response
    parsed, or None."""
    host = "%s:%d" % remote
    sdp = (b"v=0\r\no=raw 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
           b"m=audio 9 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")
    invite = method == "INVITE"
    return sip_exchange(lambda local, tp: build_request(
        method, "sip:%s@%s" % (ruri_user, host) if ruri_user else "sip:%s" % host, host,
        local=local, to_user=ruri_user, body=sdp if invite else b"",
        ctype="application/sdp" if invite else None), remote, "udp", timeout, full=True,
        host=source)


@case
def test_calls_spread_over_nodes_through_kamailio(t):
    """Calls through the dispatcher land on every node; their ACKs and BYEs
    follow Record-Route to the node that took them; each node sees the
    carrier's own address, not the proxy's (sip.trusted_proxies)."""
    n = 8
    ds, room = nodes(t, 2, room_calls=n)
    k = Kamailio(t, ds)
    c = via_proxy(t, k, calls=n, rate=20, limit=4, duration=200).start()
    c.check_ok(60)
    room.check_ok(30)
    for d in ds:
        d.wait_idle(15)
    got = [calls_of(d) for d in ds]
    check(sum(got) == n and min(got) >= n // 4, "calls per node: %s" % got)
    # the INVITE's log line names the carrier (the SIPp caller's port), then the proxy
    check(ds[0].wait_log(r"INVITE from 127\.0\.0\.1:%d via 127\.0\.0\.1:%d" % (c.port, k.port)),
          "node log does not name the carrier behind the proxy")
    t.note("%d calls through Kamailio: %s per node" % (n, got))
    for d in ds:
        d.check_clean_exit()


@case
def test_trunk_sources_apply_to_the_carrier_behind_the_proxy(t):
    """A trunk's sources name the carrier: behind a trusted proxy its INVITEs
    are admitted by the carrier's address; a proxy that is not trusted is
    the source itself and is refused 403."""
    room = t.sipp("room.xml", calls=1)
    rooms = {"room-a": "sip:room-a@%s:%d" % (HOST, room.port)}
    # the carrier on 127.0.0.10; the proxy on HOST
    trusted = t.daemon(rooms=rooms, trunk_sources=["127.0.0.10"], node="n1",
                       **{"sip.trusted_proxies": [HOST]})
    untrusted = t.daemon(rooms=rooms, trunk_sources=["127.0.0.10"], node="n2")
    room.start()
    trusted.start()
    untrusted.start()
    for d, want in ((trusted, 200), (untrusted, 403)):
        k = Kamailio(t, [d])
        c = via_proxy(t, k, "caller.xml" if want == 200 else "caller_reject.xml",
                      duration=100)
        c._arg("-i", "127.0.0.10")
        c.start()
        c.check_ok(30, "carrier behind %s proxy" % ("a trusted" if want == 200 else "an untrusted"))
        stop_group(k.proc)
    room.check_ok(30)
    check(calls_of(trusted) == 1, "trusted proxy: %s calls" % calls_of(trusted))
    check(untrusted.metric('sipxfer_calls_rejected_total{reason="forbidden"}') == 1,
          "untrusted proxy not refused by source")
    trusted.check_clean_exit()
    untrusted.check_clean_exit()


@case
def test_rate_limit_per_carrier_behind_the_proxy(t):
    """sip.rate_limit behind a trusted proxy counts each carrier apart: one
    carrier over its rate is refused while another, through the same proxy
    at the same moment, is not."""
    ds, room = nodes(t, 1, room_calls=1, **{"sip.rate_limit": 1})
    d = ds[0]
    k = Kamailio(t, ds)
    # burst 2 (twice the rate): of 6 offerless-to-nowhere INVITEs from one
    # carrier at once, at most 3 pass the limit (one token refills per s)
    got = [final_response((HOST, k.port), ruri_user="nobody", source="127.0.0.10")
           for _ in range(6)]
    limited = d.metric('sipxfer_calls_rejected_total{reason="rate_limit"}') or 0
    check(limited >= 3, "carrier .10: %s rate-limited (answers %s)"
          % (limited, [r and r[0] for r in got]))
    # the other carrier's first INVITE is judged on its own bucket
    r = final_response((HOST, k.port), ruri_user="nobody", source="127.0.0.11")
    check(r and r[0] == 404, "carrier .11 behind the same proxy: %s" % (r and r[:2],))
    check((d.metric('sipxfer_calls_rejected_total{reason="rate_limit"}') or 0) == limited,
          "carrier .11 was rate-limited with .10")
    t.note("rate_limit 1/s: %d of 6 from one carrier refused, the other carrier's passed"
           % limited)
    d.check_clean_exit()


@case
def test_stopped_node_is_passed_over(t):
    """kill -STOP of one node: the next INVITE sent there times out at the
    proxy (tm fr_timer, 2 s) and goes to the other node; the calls after it
    go straight to the other node. New calls are served within 3 s."""
    ds, room = nodes(t, 2, room_calls=6)
    k = Kamailio(t, ds)
    c = via_proxy(t, k, calls=2, rate=10, duration=100).start()
    c.check_ok(30)
    check(min(calls_of(d) for d in ds) == 1, "first calls not spread")
    ds[0].proc.send_signal(signal.SIGSTOP)
    try:
        t0 = time.time()
        c = via_proxy(t, k, calls=4, rate=10, limit=1, duration=100).start()
        c.check_ok(40, "calls with one node stopped")
        took = time.time() - t0
        check(calls_of(ds[1]) == 5, "the running node took %s calls, not 5" % calls_of(ds[1]))
        check(took < 12, "4 calls with a stopped node took %.1fs" % took)
        t.note("4 calls with one node stopped: %.1fs (the first waits out fr_timer, 2 s)" % took)
    finally:
        ds[0].proc.send_signal(signal.SIGCONT)
    room.check_ok(30)
    for d in ds:
        d.check_clean_exit()


@case
def test_drain_sends_new_calls_elsewhere_and_keeps_live_ones(t):
    """SIGUSR1: /v1/health 503 {"state": "draining"}, OPTIONS and a new
    INVITE straight to the node 503 + Retry-After; new calls through the
    proxy land on the other node; the draining node still transfers its
    own call; the live call's BYE still reaches the draining node through
    Record-Route; then the node exits 0."""
    room_b = t.sipp("room.xml")
    ds, room = nodes(t, 2, room_calls=4, room_b=room_b, drain_timeout=60)
    a, b = ds
    k = Kamailio(t, ds)
    # one call on each node, held up until the caller hangs up
    live = via_proxy(t, k, calls=2, rate=10, duration=4000).start()
    wait_for(lambda: calls_of(a) == 1 and calls_of(b) == 1, 15, "a call on each node")
    a.signal(signal.SIGUSR1)
    a.wait_metric("sipxfer_draining", 1)
    st, body = a.api("GET", "/v1/health")
    check(st == 503 and body.get("state") == "draining", "health while draining: %s %s"
          % (st, body))
    r = final_response((HOST, a.sip_port), "OPTIONS", ruri_user=None)
    check(r and r[0] == 503 and r[2].get("retry-after"), "OPTIONS while draining: %s"
          % (r and r[:3],))
    r = final_response((HOST, a.sip_port))
    check(r and r[0] == 503 and r[2].get("retry-after"), "INVITE while draining: %s"
          % (r and r[:3],))
    st, _ = b.api("GET", "/v1/health")
    check(st == 200, "the other node's health: %s" % st)
    # new calls through the proxy all go to b
    more = via_proxy(t, k, calls=2, rate=10, duration=100).start()
    more.check_ok(30)
    check(calls_of(b) == 3 and calls_of(a) == 1, "calls after the drain: a %s, b %s"
          % (calls_of(a), calls_of(b)))
    # the draining node still moves its own call (a new outgoing leg)
    from test_transfer import transfer, wait_transfer_done
    sid = a.wait_session()[0]
    st, obj = transfer(a, "room-a", sid, "sip:room-b@rooms.sipxfer.test")
    check(st == 200, "transfer on the draining node: %s %s" % (st, obj))
    wait_transfer_done(a, sid, "completed")
    # the live calls end with the caller's BYE, a's through Record-Route
    live.check_ok(30)
    room.check_ok(30)
    room_b.check_ok(30)
    rc = a.proc.wait(20)
    check(rc == 0, "drained node exit status %s" % rc)
    check(a.wait_log(r"BYE from the caller leg"), "the draining node got no BYE")
    b.check_clean_exit()


@case
def test_every_node_refusing_gives_503_with_retry_after(t):
    """With every node draining, the proxy answers the caller 503 with
    Retry-After (the shipped failure_route), not Kamailio's 500."""
    ds, room = nodes(t, 2, room_calls=2, drain_timeout=60)
    # a probe interval far longer than the test, so the proxy still sends
    # the INVITE to both nodes and takes their 503s
    k = Kamailio(t, ds, ping=60)
    # a live call on each node keeps it up while it drains
    live = via_proxy(t, k, calls=2, rate=10, duration=3000).start()
    wait_for(lambda: all(calls_of(d) == 1 for d in ds), 15, "a call on each node")
    for d in ds:
        d.signal(signal.SIGUSR1)
        d.wait_metric("sipxfer_draining", 1)
    r = final_response((HOST, k.port))
    check(r is not None, "no final response through the proxy")
    check(r[0] == 503 and r[2].get("retry-after"), "through the proxy: %s %s %s"
          % (r[0], r[1], r[2].get("retry-after")))
    for d in ds:
        check(d.metric('sipxfer_calls_rejected_total{reason="draining"}') == 1,
              "node %s was not tried" % d.settings["node"])
    live.check_ok(30)
    room.check_ok(30)
    for d in ds:
        check(d.proc.wait(20) == 0, "drained node exit")


@case
def test_cluster_script_as_shipped(t):
    """scripts/cluster.sh 2, as the README starts it, in a network namespace
    of its own (it takes the fixed loopback addresses and ports it
    documents): both nodes come up, one call through Kamailio lands on
    each, SIGTERM stops everything with status 0 and nothing left bound."""
    if not shutil.which("unshare") or os.geteuid() != 0:
        raise Skip("needs root and unshare(1) for a network namespace")
    import subprocess
    r = subprocess.run(["unshare", "-n", "sh", os.path.join(ROOT, "tests", "tools",
                                                            "cluster_smoke.sh"), t.dir],
                       capture_output=True, text=True, timeout=120)
    out = r.stdout
    lines = dict(ln.split(" ", 1) for ln in out.splitlines() if " " in ln)
    check(r.returncode == 0 and "cluster did not come up" not in out,
          "cluster.sh: %s %s" % (out, r.stderr[-2000:]))
    check(lines.get("caller") == "0" and lines.get("room") == "0",
          "calls through the script's cluster failed:\n%s" % out)
    per_node = [ln.split()[2] for ln in out.splitlines() if ln.startswith("calls ")]
    check(per_node == ["1", "1"], "calls per node: %s" % per_node)
    check(lines.get("exit") == "0", "cluster.sh exit after SIGTERM: %s" % lines.get("exit"))
    check(lines.get("bound") == "0", "sockets left bound after cluster.sh stopped: %s"
          % lines.get("bound"))


# ---- any node's API serves any session (SPEC 13) ---------------------------

def peer_pair(t, rooms, a_kw=None, b_kw=None, **kw):
    """Nodes na and nb, each naming the other in cluster.peers (no Redis:
    forwarding by the session id's node), with the same rooms; a_kw/b_kw:
    settings of one of them."""
    a = t.daemon(rooms=rooms, node="na", **dict(kw, **(a_kw or {})))
    b = t.daemon(rooms=rooms, node="nb", **dict(kw, **(b_kw or {})))
    a.settings["cluster.peers"] = [{"node": "nb", "api": "%s:%d" % (HOST, b.api_port)}]
    b.settings["cluster.peers"] = [{"node": "na", "api": "%s:%d" % (HOST, a.api_port)}]
    a.write_config()
    b.write_config()
    a.start()
    b.start()
    return a, b


@case
def test_api_requests_forwarded_to_the_owner(t):
    """GET, sipCallTransfer and DELETE of a session sent to the node that
    does not own it are forwarded to the owner and answered with its answer;
    a forwarded request is never forwarded again; a session id naming a
    node outside the cluster is 404 naming that node."""
    from test_transfer import session, transfer, wait_transfer_done
    room_a = t.sipp("room.xml")
    room_b = t.sipp("room.xml")
    rooms = {"room-a": "sip:room-a@%s:%d" % (HOST, room_a.port),
             "room-b": "sip:room-b@%s:%d" % (HOST, room_b.port)}
    room_a.start()
    room_b.start()
    a, b = peer_pair(t, rooms)
    c = caller(t, a, "caller_wait_bye.xml").start()
    sid = a.wait_session()[0]
    check(sid.startswith("na-"), "session id %s does not name its node" % sid)
    wait_for(lambda: (session(b, sid) or {}).get("state") == "connected", 10,
             "the session, read through node nb")
    check(b.sessions() == [], "nb lists na's session as its own")
    st, obj = transfer(b, "room-a", sid, "sip:room-b@rooms.sipxfer.test")
    check(st == 200 and obj.get("sessionId") == sid, "transfer through nb: %s %s" % (st, obj))
    wait_transfer_done(b, sid, "completed")
    room_a.check_ok(20, "the old room gets its BYE")
    # the hop header: nb does not forward what another node forwarded
    st, obj = b.api("GET", "/v1/sessions/%s" % sid, headers={"X-Sipxfer-Forwarded-By": "na"})
    check(st == 404 and "na" in obj.get("info", ""), "forwarded twice: %s %s" % (st, obj))
    # an id of a node nobody knows
    st, obj = b.api("GET", "/v1/sessions/nz-%s" % sid[3:])
    check(st == 404 and "nz" in obj.get("info", ""), "unknown node: %s %s" % (st, obj))
    # a refused request comes back as the owner refused it: the session
    # is in room-b now
    st, obj = transfer(b, "room-a", sid, "sip:room-a@rooms.sipxfer.test")
    check(st == 404 and obj.get("info") == "session is not in this room",
          "owner's refusal: %s %s" % (st, obj))
    st, obj = b.api("DELETE", "/v1/sessions/%s" % sid)
    check(st == 200, "DELETE through nb: %s %s" % (st, obj))
    c.check_ok(20, "the caller gets its BYE")
    room_b.check_ok(20)
    a.wait_idle()
    check(b.metric("sipxfer_calls_total") == 0, "nb took a call")
    a.check_clean_exit()
    b.check_clean_exit()


@case
def test_api_for_a_dead_owner_is_404_naming_it(t):
    """The owner is gone (kill -9): a request for its session through the
    other node is 404 not-found naming the node, within the forward's
    bound, and the node that answered is unharmed."""
    room = t.sipp("room.xml")
    room.start()
    a, b = peer_pair(t, {"room-a": "sip:room-a@%s:%d" % (HOST, room.port)})
    c = caller(t, a, "caller_wait_bye.xml").start()
    sid = a.wait_session()[0]
    a.proc.send_signal(signal.SIGKILL)
    a.proc.wait(10)
    a.proc = None  # reaped: its death is the point, not a failure
    t0 = time.time()
    st, obj = b.api("GET", "/v1/sessions/%s" % sid)
    took = time.time() - t0
    check(st == 404 and obj.get("error") == "not-found" and "na" in obj.get("info", ""),
          "dead owner: %s %s" % (st, obj))
    check(took < 7, "the answer took %.1fs" % took)
    t.note("dead owner: 404 in %.2fs: %s" % (took, obj.get("info")))
    check(b.options() == 200, "nb after the failed forward")
    c.proc.kill()
    b.check_clean_exit()


@case
def test_sip_refer_through_another_node(t):
    """sipRefer sent to the node that does not own the call: the owner sends
    the REFER, the caller's NOTIFY 200 takes it out of the path, and the
    owner, not the node that was asked, sends the webhooks."""
    from harness import Webhooks
    from test_transfer import session, transfer, xfer_types
    room = t.sipp("room.xml")
    room.start()
    wa, wb = Webhooks(t), Webhooks(t)
    rooms = {"room-a": "sip:room-a@%s:%d" % (HOST, room.port)}
    a, b = peer_pair(t, rooms, a_kw={"webhooks.url": wa.url, "webhooks.secret": wa.secret},
                     b_kw={"webhooks.url": wb.url, "webhooks.secret": wb.secret})
    c = caller(t, a, "refer_transferee.xml",
               keys={"notify1": "100 Trying", "notify2": "200 OK"}).start()
    sid = a.wait_session()[0]
    wait_for(lambda: (session(a, sid) or {}).get("state") == "connected", 10, "connected")
    st, obj = transfer(b, "room-a", sid, "sip:bob@%s:9" % HOST, mode="sipRefer")
    check(st == 200 and obj.get("transferId"), "sipRefer through nb: %s %s" % (st, obj))
    c.check_ok(20, "the caller gets the REFER, then BYE")
    room.check_ok(20, "the room gets BYE")
    wa.wait_type("calltransfer.completed", 20)
    check(xfer_types(wa, sid)[-1] == "calltransfer.completed", "owner's events: %s"
          % xfer_types(wa, sid))
    check(wb.types() == [], "the node that was asked sent webhooks: %s" % wb.types())
    a.wait_idle()
    a.check_clean_exit()
    b.check_clean_exit()
