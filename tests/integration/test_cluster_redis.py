"""SPEC 13: Redis as the cluster's directory and node registry (cluster.c).

Each case runs its own redis-server on a free loopback port (no
persistence) and its own nodes; every wait is on a condition (a key, a
metric, a log line, a webhook), never a fixed sleep."""
import signal
import subprocess

from harness import (HOST, RawCall, Webhooks, case, check, free_port, wait_for)

LEASE = 3


class Redis:
    """redis-server as a process of the test, and redis-cli to read it."""

    def __init__(self, t, port=None):
        self.t = t
        self.port = port or free_port(udp=False)
        self.proc = None
        self.starts = 0

    def start(self):
        self.starts += 1
        self.proc = self.t.popen(
            ["redis-server", "--port", str(self.port), "--bind", HOST, "--save", "",
             "--appendonly", "no", "--dir", self.t.dir],
            "redis-%d-%d" % (self.port, self.starts))
        wait_for(lambda: self.proc.poll() is not None or self.ping(), 10,
                 "redis-server on port %d answering PING" % self.port)
        check(self.proc.poll() is None, "redis-server exited: %s" % open(
            self.proc.out_path).read()[-2000:])
        return self

    def kill(self):
        self.proc.kill()
        self.proc.wait(10)

    def signal(self, sig):
        self.proc.send_signal(sig)

    def cli(self, *args):
        r = subprocess.run(["redis-cli", "-h", HOST, "-p", str(self.port)] + list(args),
                           capture_output=True, text=True, timeout=5)
        return r.stdout

    def ping(self):
        try:
            return self.cli("ping").strip() == "PONG"
        except subprocess.TimeoutExpired:
            return False

    def hgetall(self, key):
        lines = self.cli("HGETALL", key).splitlines()
        return dict(zip(lines[0::2], lines[1::2]))

    def smembers(self, key):
        return set(l for l in self.cli("SMEMBERS", key).splitlines() if l)

    def exists(self, key):
        return self.cli("EXISTS", key).strip() == "1"

    def ttl(self, key):
        return int(self.cli("TTL", key).strip() or "-2")


def node(t, redis, name, room_calls=0, webhooks=None, **kw):
    """A node of the cluster (with a SIPp room taking room_calls calls)."""
    rooms = {}
    room = None
    if room_calls:
        room = t.sipp("room.xml", calls=room_calls)
        rooms = {"room-a": "sip:room-a@%s:%d" % (HOST, room.port)}
    settings = {"node": name, "cluster.redis": "%s:%d" % (HOST, redis.port),
                "cluster.lease": LEASE, "media.timeout": 0}
    if webhooks:
        settings.update({"webhooks.url": webhooks.url, "webhooks.secret": webhooks.secret})
    settings.update(kw)
    d = t.daemon(rooms=rooms or {"room-a": "sip:room-a@%s:9" % HOST}, name="node-" + name,
                 **settings)
    if room:
        room.start()
    d.start()
    d.wait_log(r"redis at [^ ]+: up", timeout=10)
    return d


def connect(d, redis, count):
    """count calls into room-a on d, each answered; their (RawCall, id)."""
    calls = []
    have = set()
    for _ in range(count):
        c = RawCall(d, rtp=False)
        st = c.invite()
        check(st == 200, "call not answered: %s" % st)
        ids = set(d.wait_session(count=len(have) + 1))
        new = ids - have
        check(len(new) == 1, "one new session expected: %s" % new)
        sid = new.pop()
        have.add(sid)
        calls.append((c, sid))
    return calls


def listed(redis, node_name, sid):
    h = redis.hgetall("sess:" + sid)
    return (h.get("node") == node_name and h.get("state") == "connected"
            and sid in redis.smembers("nodesess:" + node_name)
            and sid in redis.smembers("room:" + h.get("room", "")))


def gone(redis, node_name, sid):
    return (not redis.exists("sess:" + sid)
            and sid not in redis.smembers("nodesess:" + node_name)
            and sid not in redis.smembers("room:room-a"))


@case
def test_cluster_redis_session_listed_and_removed(t):
    redis = Redis(t).start()
    a = node(t, redis, "A", room_calls=1)
    wait_for(lambda: "A" in redis.smembers("nodes") and redis.exists("node:A"), 5,
             "node A registered")
    n = redis.hgetall("node:A")
    check(n.get("state") == "active" and n.get("api") == "%s:%d" % (HOST, a.api_port)
          and n.get("sip") == "sip:%s:%d" % (HOST, a.sip_port), "node:A = %s" % n)
    ttl = redis.ttl("node:A")
    check(0 < ttl <= LEASE, "node:A's TTL is %s, not within the lease (%d s)" % (ttl, LEASE))
    check(a.metric("sipxfer_cluster_redis_up") == 1, "redis_up metric not 1")

    [(c, sid)] = connect(a, redis, 1)
    wait_for(lambda: listed(redis, "A", sid), 5, "sess:%s in the directory" % sid)
    h = redis.hgetall("sess:" + sid)
    check(h.get("room") == "room-a" and h.get("type") == "dialin" and "+15551230000" in
          h.get("from", "") and int(h.get("started", "0")) > 0, "sess:%s = %s" % (sid, h))
    # the lease is refreshed (with the call counted) past its first TTL
    wait_for(lambda: redis.hgetall("node:A").get("calls") == "1", 5, "node:A calls = 1")

    check(c.bye() == 200, "BYE not answered 200")
    wait_for(lambda: gone(redis, "A", sid), 5, "sess:%s removed" % sid)
    a.wait_idle()
    a.check_clean_exit()
    # a clean stop takes the node out at once
    wait_for(lambda: not redis.exists("node:A") and "A" not in redis.smembers("nodes"), 5,
             "node A unregistered at its stop")


def node_lost(t, survivors):
    redis = Redis(t).start()
    hooks = [Webhooks(t, name="webhooks-" + n) for n in survivors]
    others = [node(t, redis, n, webhooks=w) for n, w in zip(survivors, hooks)]
    a = node(t, redis, "A", room_calls=2)
    calls = connect(a, redis, 2)
    sids = {sid for _, sid in calls}
    for sid in sids:
        wait_for(lambda: listed(redis, "A", sid), 5, "sess:%s listed" % sid)
    a.proc.kill()  # kill -9: no clean stop, its lease must run out
    a.proc.wait(10)
    a.proc = None  # reaped: its death is the point, not a failure

    def stopped():
        return [e for w in hooks for e in w.events() if e.get("type") == "dialin.stopped"]
    wait_for(lambda: len(stopped()) >= 2, LEASE + 6, "2 dialin.stopped (node-lost)")
    wait_for(lambda: not redis.exists("nodesess:A") and "A" not in redis.smembers("nodes")
             and all(not redis.exists("sess:" + s) for s in sids)
             and not redis.smembers("room:room-a"), 5, "node A's keys cleared")
    # every event out (nothing queued, nothing in flight) before counting
    for d in others:
        wait_for(lambda: d.metric("sipxfer_webhook_queued") == 0, 10, "webhooks delivered")
    evs = stopped()
    check(len(evs) == 2, "%d dialin.stopped events, not 2: %s" % (len(evs), evs))
    got = {e["payload"].get("session_id") for e in evs}
    check(got == sids, "events for %s, sessions were %s" % (got, sids))
    for e in evs:
        p = e["payload"]
        check(p.get("reason") == "node-lost" and p.get("node") == "A"
              and p.get("sessionId") == p.get("session_id") and p.get("room") == "room-a"
              and "+15551230000" in p.get("from", "") and p.get("duration", -1) >= 0,
              "payload %s" % p)
    reaped = [d.metric("sipxfer_cluster_sessions_reaped_total") for d in others]
    check(sum(reaped) == 2 and max(reaped) == 2, "reaped per node: %s" % reaped)
    lines = [d for d in others if "node A lost: 2 session(s) ended (node-lost)" in d.log_text()]
    check(len(lines) == 1, "%d nodes logged the reap of A" % len(lines))
    for d in others:
        d.check_clean_exit()


@case
def test_cluster_redis_node_lost_reaped(t):
    node_lost(t, ["B"])


@case
def test_cluster_redis_node_lost_reaped_once_of_three(t):
    node_lost(t, ["B", "C"])


@case
def test_cluster_redis_down_calls_go_on_and_catch_up(t):
    redis = Redis(t).start()
    a = node(t, redis, "A", room_calls=3)
    calls = connect(a, redis, 3)
    for _, sid in calls:
        wait_for(lambda: listed(redis, "A", sid), 5, "sess:%s listed" % sid)
    (c1, s1), (c2, s2), (c3, s3) = calls

    # hung: connected, never answering; the 1 s bound on every command
    # takes it for down
    redis.signal(signal.SIGSTOP)
    try:
        a.wait_metric("sipxfer_cluster_redis_up", 0, timeout=5)
        a.wait_log(r"redis at [^ ]+: down \(no reply in 1000 ms\)", timeout=2)
        check(c1.bye() == 200, "BYE while Redis hangs not answered 200")
    finally:
        redis.signal(signal.SIGCONT)
    a.wait_metric("sipxfer_cluster_redis_up", 1, timeout=10)
    # the directory catches up: the call that ended meanwhile is taken out
    wait_for(lambda: gone(redis, "A", s1), 5, "sess:%s (ended while down) removed" % s1)
    check(listed(redis, "A", s2) and listed(redis, "A", s3), "live calls lost from the directory")

    # gone: the connection closes; a fresh (empty) Redis on the same port
    redis.kill()
    a.wait_metric("sipxfer_cluster_redis_up", 0, timeout=5)
    check(c2.bye() == 200, "BYE while Redis is gone not answered 200")
    check(a.alive(), "sipxferd died with Redis gone")
    redis.start()
    a.wait_metric("sipxfer_cluster_redis_up", 1, timeout=10)
    wait_for(lambda: listed(redis, "A", s3), 5, "live call %s listed again" % s3)
    check(not redis.exists("sess:" + s2), "a call ended while Redis was gone listed again")
    check(redis.smembers("nodesess:A") == {s3}, "nodesess:A = %s" % redis.smembers("nodesess:A"))
    check(redis.exists("node:A") and "A" in redis.smembers("nodes"), "node A not registered again")
    check(c3.bye() == 200, "BYE not answered 200")
    wait_for(lambda: gone(redis, "A", s3), 5, "sess:%s removed" % s3)
    a.wait_idle()
    a.check_clean_exit()


@case
def test_cluster_redis_name_refused_single_node_without_metric(t):
    # a name would need DNS on the control thread: refused, the node runs
    # without the directory; a single node has no cluster metrics at all
    a = t.daemon(name="node-named", **{"node": "N", "cluster.redis": "localhost:6379",
                                       "cluster.lease": LEASE})
    a.start()
    a.wait_log(r"ERROR.*redis at localhost:6379: cluster.redis must name a numeric IP")
    m = a.metrics()
    check(m.get("sipxfer_cluster_redis_up") == 0, "redis_up for a refused address: %s"
          % m.get("sipxfer_cluster_redis_up"))
    check(a.metric("sipxfer_dns_blocked_total") == 0, "a name lookup was tried")
    single = t.daemon(name="node-single")
    single.start()
    check("sipxfer_cluster_redis_up" not in single.metrics(), "cluster metric on a single node")
    a.check_clean_exit()
    single.check_clean_exit()


@case
def test_cluster_redis_api_any_node(t):
    """With Redis and no cluster.peers: node B lists A's session with its
    own (?node=local: B's only), reads and transfers A's session through
    the directory's address for A; the transfer moves the session between
    the room sets; a drain shows as A's state; once A is killed and its
    lease gone, B answers 404 naming A."""
    from test_transfer import session, transfer, wait_transfer_done
    redis = Redis(t).start()
    room_a, room_b = t.sipp("room.xml"), t.sipp("room.xml")
    rooms = {"room-a": "sip:room-a@%s:%d" % (HOST, room_a.port),
             "room-b": "sip:room-b@%s:%d" % (HOST, room_b.port)}
    room_a.start()
    room_b.start()
    settings = {"cluster.redis": "%s:%d" % (HOST, redis.port), "cluster.lease": LEASE,
                "media.timeout": 0, "drain_timeout": 60}
    a = t.daemon(rooms=rooms, node="A", name="node-A", **settings)
    b = t.daemon(rooms=rooms, node="B", name="node-B", **settings)
    for d in (a, b):
        d.start()
        d.wait_log(r"redis at [^ ]+: up", timeout=10)
    [(c, sid)] = connect(a, redis, 1)
    wait_for(lambda: listed(redis, "A", sid), 5, "sess:%s in the directory" % sid)

    st, obj = b.api("GET", "/v1/sessions")
    ids = {s["sessionId"]: s for s in obj.get("sessions", [])}
    check(st == 200 and sid in ids and ids[sid].get("node") == "A" and obj.get("total") == 1,
          "cluster listing on B: %s %s" % (st, obj))
    st, obj = b.api("GET", "/v1/sessions?node=local")
    check(st == 200 and obj.get("sessions") == [], "B's own listing: %s %s" % (st, obj))
    st, obj = b.api("GET", "/v1/sessions?node=x")
    check(st == 400, "a bad node filter: %s %s" % (st, obj))
    s = session(b, sid)
    check(s and s.get("state") == "connected", "A's session read through B: %s" % s)

    st, obj = transfer(b, "room-a", sid, "sip:room-b@rooms.sipxfer.test")
    check(st == 200, "transfer through B: %s %s" % (st, obj))
    wait_transfer_done(a, sid, "completed")
    wait_for(lambda: sid in redis.smembers("room:room-b")
             and sid not in redis.smembers("room:room-a")
             and redis.hgetall("sess:" + sid).get("room") == "room-b", 5,
             "the directory follows the transfer to room-b")

    a.signal(signal.SIGUSR1)
    wait_for(lambda: redis.hgetall("node:A").get("state") == "draining", 5,
             "node:A state draining")
    a.proc.send_signal(signal.SIGKILL)
    a.proc.wait(10)
    a.proc = None  # its death is the point
    # A's lease runs out, B reaps the session, and B then says A is gone
    wait_for(lambda: not redis.exists("node:A") and not redis.exists("sess:" + sid),
             LEASE * 3 + 5, "A's lease gone and its session reaped")
    st, obj = b.api("GET", "/v1/sessions/%s" % sid)
    check(st == 404 and "A" in obj.get("info", "") and "gone" in obj.get("info", ""),
          "a session of a lost node: %s %s" % (st, obj))
    t.note("lost owner: %s" % obj.get("info"))
    c.close()
    b.check_clean_exit()


@case
def test_cluster_redis_down_forwarding_uses_peers(t):
    """Redis gone: B still forwards a request for A's session, to the
    address cluster.peers gives for the node the id names, and the listing
    says it is partial."""
    from test_transfer import session
    redis = Redis(t).start()
    room = t.sipp("room.xml")
    room.start()
    rooms = {"room-a": "sip:room-a@%s:%d" % (HOST, room.port)}
    settings = {"cluster.redis": "%s:%d" % (HOST, redis.port), "cluster.lease": LEASE,
                "media.timeout": 0}
    a = t.daemon(rooms=rooms, node="A", name="node-A", **settings)
    b = t.daemon(rooms=rooms, node="B", name="node-B", **settings)
    b.settings["cluster.peers"] = [{"node": "A", "api": "%s:%d" % (HOST, a.api_port)}]
    b.write_config()
    for d in (a, b):
        d.start()
        d.wait_log(r"redis at [^ ]+: up", timeout=10)
    [(c, sid)] = connect(a, redis, 1)
    redis.kill()
    wait_for(lambda: b.metric("sipxfer_cluster_redis_up") == 0, 10, "B sees Redis down")
    s = session(b, sid)
    check(s and s.get("sessionId") == sid, "A's session through B with Redis down: %s" % s)
    st, obj = b.api("GET", "/v1/sessions")
    check(st == 200 and obj.get("partial") is True and obj.get("sessions") == [],
          "listing with Redis down: %s %s" % (st, obj))
    st, obj = b.api("DELETE", "/v1/sessions/%s" % sid)
    check(st == 200, "DELETE through B with Redis down: %s %s" % (st, obj))
    check(c.serve_until("BYE", 10), "the caller got no BYE")
    a.wait_idle()
    c.close()
    a.check_clean_exit()
    b.check_clean_exit()
