"""cluster section (issue 15 item 9): the signalling load of the sig section sent through
Kamailio's dispatcher to one sipxferd node, then to two, on this 2-core machine.

  SIPp UAC -> Kamailio (dispatcher round-robin, Record-Route, tm) -> node 1 [, node 2] -> SIPp UAS

Every process of the path under test (Kamailio's and the nodes') is pinned to the SUT core, the
generators to the other, as in the sig section: a second node adds no core here, so what the two
runs compare is the whole path's CPU per call, split by component, and whether the dispatcher
spreads the calls evenly. The capacity model in docs/performance.md is computed from these
per-component figures (and the relay section's CPU per packet).
"""
import os
import subprocess
import time

import bench as B

# (SIP port, API port, media port range) of each node; Kamailio listens on B.KAM_PORT
NODES = [(25060, 28080, (30000, 44999)), (25062, 28082, (45000, 59999))]
REDIS_PORT = 26379


def start_redis(workdir):
    """redis-server for the directory run, on the SUT core (its CPU is the path's)."""
    p = B.spawn(["redis-server", "--port", str(REDIS_PORT), "--bind", B.HOST, "--save", "",
                 "--appendonly", "no", "--dir", workdir], B.SUT_CPU,
                os.path.join(workdir, "redis-cluster.log"))
    for _ in range(100):
        r = subprocess.run(["redis-cli", "-h", B.HOST, "-p", str(REDIS_PORT), "ping"],
                           capture_output=True, text=True)
        if r.stdout.strip() == "PONG":
            return p
        if p.poll() is not None:
            break
        time.sleep(0.05)
    raise RuntimeError(f"redis-server did not come up: see {workdir}/redis-cluster.log")


def start_dispatcher(workdir, n):
    """Kamailio with a dispatcher set of the first n nodes, started and listening."""
    lst = os.path.join(workdir, f"dispatcher-{n}.list")
    with open(lst, "w") as f:
        for sip_port, _, _ in NODES[:n]:
            f.write(f"1 sip:{B.HOST}:{sip_port}\n")
    cfg = os.path.join(workdir, f"kamailio-cluster-{n}.cfg")
    with open(os.path.join(B.BENCH, "kamailio-cluster.cfg.in")) as f:
        text = f.read().replace("@LISTEN@", f"{B.HOST}:{B.KAM_PORT}").replace("@LIST@", lst)
    with open(cfg, "w") as f:
        f.write(text)
    if not B.port_free(B.KAM_PORT):
        raise RuntimeError(f"UDP port {B.KAM_PORT} is busy: another kamailio left running?")
    p = B.spawn(["kamailio", "-f", cfg, "-DD", "-E", "-m", "2048", "-M", "64", "-x", "tlsf",
                 "-Y", workdir], B.SUT_CPU, os.path.join(workdir, f"kamailio-cluster-{n}.log"))
    for _ in range(100):
        if not B.port_free(B.KAM_PORT):
            return p
        if p.poll() is not None:
            break
        time.sleep(0.05)
    raise RuntimeError(f"kamailio did not come up: see {workdir}/kamailio-cluster-{n}.log")


def calls_of(node):
    try:
        return node.metrics().get("sipxfer_calls_total", 0.0)
    except OSError:
        return -1


def run_cluster(args, workdir, binary):
    secs = 2 if args.quick else 10
    rates = [250, 500, 1000] if args.quick else [250, 500, 750, 1000, 1250, 1500]
    if args.rates:
        rates = [int(x) for x in args.rates.split(",")]
    rows = []
    # the third run: two nodes with the Redis directory (cluster.redis), Redis on the SUT core
    for n, with_redis in ((1, False), (2, False), (2, True)):
        target = f"kamailio+{n}node" + ("+redis" if with_redis else "")
        uas = B.sipp_uas(workdir, tag=f"uas_cluster{n}{'r' if with_redis else ''}")
        nodes, kam, redis = [], None, None
        try:
            extra = ""
            if with_redis:
                redis = start_redis(workdir)
                extra = f'cluster = {{ redis = "{B.HOST}:{REDIS_PORT}"; lease = 15; }};'
            for i, (sip_port, api_port, (lo, hi)) in enumerate(NODES[:n]):
                nodes.append(B.Sipxferd(binary, workdir, f"cluster{n}-node{i + 1}", mode="relay",
                                        port_min=lo, port_max=hi, sip_port=sip_port,
                                        api_port=api_port, node=f"bench{i + 1}",
                                        extra=extra).start())
            kam = start_dispatcher(workdir, n)
            kam_pids = B.tree(kam.pid)
            node_pids = [x.pid for x in nodes] + ([redis.pid] if redis else [])
            for rate in rates:
                k0 = B.cpu_s(kam_pids)
                n0 = B.cpu_s(node_pids)
                per0 = [calls_of(x) for x in nodes]
                row = B.sig_step(workdir, target, B.KAM_PORT, rate, secs, kam_pids + node_pids, uas)
                ok = max(1, row["ok"])
                row["nodes"] = n
                row["redis"] = "yes" if with_redis else "no"
                row["kamailio_us_per_call"] = 1e6 * (B.cpu_s(kam_pids) - k0) / ok
                row["nodes_us_per_call"] = 1e6 * (B.cpu_s(node_pids) - n0) / ok
                row["path_us_per_call"] = row["kamailio_us_per_call"] + row["nodes_us_per_call"]
                row["calls_per_node"] = "/".join(
                    str(int(calls_of(x) - c)) for x, c in zip(nodes, per0))
                rows.append(row)
                B.log(f"  {target:16s} rate={rate:5d} ok={row['ok']} failed={row['failed']} "
                      f"path={B.fmt(row['path_us_per_call'])}us/call (kamailio "
                      f"{B.fmt(row['kamailio_us_per_call'])}, nodes {B.fmt(row['nodes_us_per_call'])}) "
                      f"split={row['calls_per_node']} p50/p99={B.fmt(row['setup_p50_ms'], 2)}/"
                      f"{B.fmt(row['setup_p99_ms'], 2)}ms clean={row['clean']}")
                if any(not x.alive() for x in nodes):
                    row["clean"] = "no (a node died)"
                    break
                if not all(x.wait_idle(40) for x in nodes):
                    row["clean"] = "no (calls stuck)"
                if not row["clean"].startswith("yes"):
                    break
                time.sleep(1.0)  # the UAS keeps timewait state; let it drain before the next step
        finally:
            for x in nodes:
                x.stop()
            B.stop(kam)
            B.stop(uas)
            if redis:
                B.stop(redis)
            time.sleep(0.5)
    cols = ["target", "redis", "rate", "achieved_cps", "ok", "failed", "clean", "path_us_per_call",
            "kamailio_us_per_call", "nodes_us_per_call", "calls_per_node", "setup_p50_ms",
            "setup_p99_ms", "cpu1_busy_pct", "other_procs_pct"]
    md = B.table("Through Kamailio's dispatcher (per step)", cols, rows)
    B.write_csv(os.path.join(args.results, f"cluster-{'quick' if args.quick else 'full'}.csv"),
                cols + ["retrans_pct", "uac_core_pct", "uas_core_pct", "calls"], rows)

    # capacity model from the one-node run's highest clean step (per-component CPU per call)
    model = {}
    clean1 = [r for r in rows if r["nodes"] == 1 and r["clean"] == "yes"]
    clean2 = [r for r in rows if r["nodes"] == 2 and r["redis"] == "no" and r["clean"] == "yes"]
    clean2r = [r for r in rows if r["redis"] == "yes" and r["clean"] == "yes"]
    if clean1:
        b = max(clean1, key=lambda r: r["rate"])
        k, nd = b["kamailio_us_per_call"], b["nodes_us_per_call"]
        model = {
            "at_rate": b["rate"],
            "kamailio_us_per_call": k, "node_us_per_call": nd,
            "node_calls_per_s_per_core": 1e6 / nd if nd else None,
            "kamailio_calls_per_s_per_core": 1e6 / k if k else None,
            "cores_for_10k_cps_signalling": 10000 * (k + nd) / 1e6,
            "max_clean_cps_1node": b["rate"],
            "max_clean_cps_2nodes": max((r["rate"] for r in clean2), default=0),
            "max_clean_cps_2nodes_redis": max((r["rate"] for r in clean2r), default=0),
        }
        # what the directory adds per call: the same rate with and without Redis
        same = [(a, b2) for a in clean2 for b2 in clean2r if a["rate"] == b2["rate"]]
        if same:
            a, b2 = max(same, key=lambda p: p[0]["rate"])
            model["redis_directory_us_per_call"] = b2["nodes_us_per_call"] - a["nodes_us_per_call"]
        md += "\n" + B.table("Capacity model inputs (signalling, one node)", list(model.keys()), [model])
    md += (f"\nSteps of {secs} s at {rates} calls/s (100 ms calls), clean as in the sig section. "
           f"All of Kamailio and every node share the SUT core (CPU {B.SUT_CPU}); generators on "
           f"CPU {B.GEN_CPU}. `calls_per_node` is each node's sipxfer_calls_total over the step "
           f"(round-robin should split evenly). In the `+redis` run the nodes keep the Redis directory "
           f"(cluster.redis) and `nodes_us_per_call` includes redis-server's CPU. "
           f"`cores_for_10k_cps_signalling` = 10,000 x (Kamailio + "
           f"node us per call) / 1e6, signalling only: media needs the relay section's CPU per packet "
           f"on top (docs/performance.md).\n")
    return md, {"rows": rows, "model": model}
