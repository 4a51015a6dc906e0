"""bench sections 2-4: concurrency/memory, RTP relay, transfer latency (driven by bench.py)."""
import os
import random
import resource
import re
import socket
import subprocess
import threading
import time

import bench as B
import sipua

# ---------------------------------------------------------------- 2. concurrency / memory


def proc_sample(pid):
    try:
        threads = len(os.listdir(f"/proc/{pid}/task"))
    except OSError:
        threads = 0
    return {"rss_kb": B.status_kb(pid, "VmRSS"), "pss_kb": B.pss_kb(pid), "fds": B.nfds(pid), "threads": threads}


def slope(points):
    """least-squares slope of (x, y) points"""
    if len(points) < 2:
        return float("nan")
    n = len(points)
    mx = sum(p[0] for p in points) / n
    my = sum(p[1] for p in points) / n
    sxx = sum((p[0] - mx) ** 2 for p in points)
    return sum((p[0] - mx) * (p[1] - my) for p in points) / sxx if sxx else float("nan")


def conc_run(args, workdir, binary, mode, steps, rate):
    name = f"conc-{mode}"
    if mode == "relay":
        sut = B.Sipxferd(binary, workdir, name, mode="relay", port_min=20000, port_max=65535)
    else:
        sut = B.Sipxferd(binary, workdir, name, mode="passthrough")
    uas = B.sipp_uas(workdir, tag=f"uas_{name}")
    uacs = []
    rows = []
    try:
        sut.start()
        time.sleep(1.0)
        idle = proc_sample(sut.pid)
        rows.append({"mode": mode, "calls_target": 0, "calls_active": 0, "when": "idle", **idle})
        # every call of every step ends at one deadline, so all are up while we sample
        settle = 0 if args.quick else 33   # full: also sample after sofia's completed transactions expire
        plan = sum((steps[i] - (steps[i - 1] if i else 0)) / rate + 5 + settle for i in range(len(steps)))
        deadline = time.time() + plan + (5 if args.quick else 15)
        prev = 0
        for k, n in enumerate(steps):
            inc = n - prev
            hold_ms = int((deadline - time.time()) * 1000)
            uac = B.sipp_uac(workdir, B.SIP_PORT, rate, inc, f"{name}_{n}", hold_ms=hold_ms, limit=inc + 10,
                             port=B.UAC_PORT + 100 + k, rtt=False, timeout_s=hold_ms / 1000 + 120)
            uacs.append(uac)
            t_end = time.time() + inc / rate * 2 + 20
            active = 0
            while time.time() < t_end:
                try:
                    active = sut.active()
                except OSError as e:
                    B.log(f"  !! API: {e!r}")
                    active = -1
                if active >= n or uac.poll() is not None:
                    break
                time.sleep(0.25)
            time.sleep(2.0)
            s = proc_sample(sut.pid)
            try:
                active = sut.active()
            except OSError as e:
                B.log(f"  !! API unresponsive: {e!r}")
                active = -1
            rows.append({"mode": mode, "calls_target": n, "calls_active": active, "when": "ramp+2s", **s})
            B.log(f"  {mode:11s} calls={active:6d}/{n} rss={s['rss_kb']} kB pss={s['pss_kb']} kB fds={s['fds']} "
                  f"threads={s['threads']}")
            if settle and active >= n * 0.99:
                time.sleep(settle)
                s2 = proc_sample(sut.pid)
                rows.append({"mode": mode, "calls_target": n, "calls_active": sut.active(), "when": f"ramp+{settle + 2}s",
                             **s2})
                B.log(f"  {mode:11s} +{settle}s: rss={s2['rss_kb']} kB pss={s2['pss_kb']} kB")
            prev = n
            if active < n * 0.99:
                B.log(f"  !! only {active} of {n} calls up; stopping the steps")
                break
        # let every call end (BYE from the UAC at the deadline), then sample again
        B.log(f"  waiting {max(0, deadline - time.time()):.0f} s for the calls' common end")
        failed = 0
        for u in uacs:
            rc, _ = B.wait_rusage(u)
            st = B.sipp_stat_last(u.statfile)
            failed += int(st.get("FailedCall(C)", 0) or 0)
        sut.wait_idle(60)
        time.sleep(3.0)
        after = proc_sample(sut.pid)
        rows.append({"mode": mode, "calls_target": "after-end", "calls_active": sut.active(), "when": "end+3s", **after})
        if not args.quick:
            time.sleep(32)   # completed sofia transactions linger ~32 s (timer K/J)
            after2 = proc_sample(sut.pid)
            rows.append({"mode": mode, "calls_target": "after-end", "calls_active": sut.active(), "when": "end+35s",
                         **after2})
            # sipxferd trims its heap every 10 s while idle, for 60 s after its last call
            time.sleep(30)
            after3 = proc_sample(sut.pid)
            rows.append({"mode": mode, "calls_target": "after-end", "calls_active": sut.active(), "when": "end+65s",
                         **after3})
        alive = sut.alive()
    finally:
        for u in uacs:
            B.stop(u)
        sut.stop()
        B.stop(uas)
    def pts(key, when):
        return [(r["calls_active"], r[key]) for r in rows if r["when"] in ("idle", when)]
    last = f"ramp+{settle + 2}s"
    summary = {"mode": mode, "max_calls_held": max(p[0] for p in pts("rss_kb", "ramp+2s")), "failed_calls": failed,
               "rss_slope_kib_per_call": slope(pts("rss_kb", "ramp+2s")),
               "pss_slope_kib_per_call": slope(pts("pss_kb", "ramp+2s")),
               "steady_rss_slope_kib_per_call": slope(pts("rss_kb", last)) if settle else None,
               "fds_per_call": slope(pts("fds", "ramp+2s")), "idle_rss_kb": idle["rss_kb"],
               "after_end_rss_kb": rows[-1]["rss_kb"], "after_end_minus_idle_kb": rows[-1]["rss_kb"] - idle["rss_kb"],
               "idle_fds": idle["fds"], "after_end_fds": rows[-1]["fds"], "sipxferd_alive": "yes" if alive else "NO"}
    return rows, summary


def run_conc(args, workdir, binary):
    import resource
    rate = 500
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    # relay mode: 4 sockets per call; stay clear of the fd limit sipxferd inherits from us
    max_relay = (nofile - 200) // 4
    relay_steps = [x for x in ([1000] if args.quick else [1000, 2500, 5000, 10000]) if x <= max_relay]
    if not args.quick and (not relay_steps or relay_steps[-1] < max_relay - 200):
        relay_steps.append(max_relay - 100)
    plans = [("passthrough", [1000] if args.quick else [1000, 5000, 10000, 20000]),
             ("relay", relay_steps)]
    rows, sums = [], []
    for mode, steps in plans:
        r, s = conc_run(args, workdir, binary, mode, steps, rate)
        rows += r
        sums.append(s)
    cols = ["mode", "calls_target", "when", "calls_active", "rss_kb", "pss_kb", "fds", "threads"]
    md = B.table("Concurrent calls held (signalling only, no RTP)", cols, rows)
    B.write_csv(os.path.join(args.results, f"concurrency-{'quick' if args.quick else 'full'}.csv"), cols, rows)
    scols = list(sums[0].keys())
    md += "\n" + B.table("Memory per call", scols, sums)
    md += (f"\nCalls set up at {rate} cps by SIPp (uac.xml, -t u1) against a SIPp UAS; each call holds until "
           "one common deadline, then the UAC sends BYE. Samples 2 s after each step is reached; "
           "slopes are least-squares fits over (calls, kB) including the idle point. At ramp+2s the INVITE "
           "transactions of the last ~32 s (sofia keeps completed ones that long) are still in memory, so "
           "the full run also samples at ramp+35s (steady_rss_slope) and 35 s and 65 s after the calls end "
           "(sipxferd returns free heap to the system every 10 s while it has no call, for 60 s after the "
           "last one). `passthrough` leaves the "
           "SDP alone (no relay ports), `relay` binds 4 UDP ports per call (port range 20000-65535 = "
           f"11,384 calls at most, so 20k relayed calls cannot fit one IP's port space). RLIMIT_NOFILE here "
           f"is {nofile} (the container refuses a higher hard limit), so relay steps stop at {max_relay} calls.\n")
    return md, {"rows": rows, "summary": sums}


# ---------------------------------------------------------------- 3. RTP relay


def benc(x):
    if isinstance(x, dict):
        return b"d" + b"".join(benc(k) + benc(x[k]) for k in sorted(x)) + b"e"
    if isinstance(x, list):
        return b"l" + b"".join(benc(v) for v in x) + b"e"
    if isinstance(x, int):
        return b"i%de" % x
    if isinstance(x, str):
        x = x.encode()
    return str(len(x)).encode() + b":" + x


class Ng:
    """rtpengine ng control (bencode over UDP); only what offer/answer need."""

    def __init__(self, port):
        self.addr = ("127.0.0.1", port)
        self.s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.s.settimeout(3)

    def cmd(self, d):
        cookie = f"{random.getrandbits(40):x}".encode()
        self.s.sendto(cookie + b" " + benc(d), self.addr)
        while True:
            data = self.s.recv(65535)
            if data.startswith(cookie + b" "):
                return data.decode("latin-1")

    def port_of(self, reply):
        m = re.search(r"m=audio (\d+)", reply)
        if not m:
            raise RuntimeError(f"rtpengine: no SDP in reply: {reply[:200]}")
        return int(m.group(1))


def start_rtpengine(workdir):
    p = B.spawn(["rtpengine", "--table=-1", "--interface=127.0.0.1", "--listen-ng=127.0.0.1:22222",
                 "--foreground", "--log-stderr", "--log-level=3", "--port-min=40000", "--port-max=49999",
                 "--num-threads=1", "--no-redis-required"], B.SUT_CPU, os.path.join(workdir, "rtpengine.log"))
    time.sleep(1.0)
    if p.poll() is not None:
        # older/newer builds may lack --no-redis-required
        p = B.spawn(["rtpengine", "--table=-1", "--interface=127.0.0.1", "--listen-ng=127.0.0.1:22222",
                     "--foreground", "--log-stderr", "--log-level=3", "--port-min=40000", "--port-max=49999",
                     "--num-threads=1"], B.SUT_CPU, os.path.join(workdir, "rtpengine.log"))
        time.sleep(1.0)
    if p.poll() is not None:
        raise RuntimeError(f"rtpengine exited: {workdir}/rtpengine.log")
    return p


def _pct_of(hist, n, q):
    """percentile q of a merged {us: count} histogram of n samples, as rtpgen computes its own"""
    want, acc = int(q * n), 0
    for us in sorted(hist):
        acc += hist[us]
        if acc > want:
            return float(us)
    return float(max(hist)) if hist else 0.0


def run_rtpgen(args, calls_file, secs, warm, sut_pids, first_seq=0, cpus=None):
    """One rtpgen on GEN_CPU, or (cpus, a list) one per CPU with the calls dealt out between them:
    their counts are added and their latency histograms merged (rtpgen's RTPGEN_HIST)."""
    cpus = cpus or [B.GEN_CPU]
    c0 = B.cpu_s(sut_pids)
    b0 = B.core_busy_s()
    mb0 = B.machine_busy_s()
    fr = B.Foreign()
    t0 = time.time()
    with open(calls_file) as f:
        lines = f.readlines()
    procs = []
    for i, cpu in enumerate(cpus):
        part = calls_file if len(cpus) == 1 else f"{calls_file}.gen{i}"
        if len(cpus) > 1:
            with open(part, "w") as f:
                f.writelines(lines[i::len(cpus)])
        env = dict(os.environ, RTPGEN_HIST=f"{part}.hist")
        with open(part) as f:
            p = subprocess.Popen(["taskset", "-c", str(cpu), args.rtpgen, str(secs), str(warm)] +
                                 ([str(first_seq)] if first_seq else []), stdin=f, env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        p.part = part
        p.sched = None   # /proc/PID/schedstat: ns on the CPU, ns runnable but waiting for it
        procs.append(p)
    while any(p.poll() is None for p in procs):   # (one short line of output each: pipes cannot fill)
        time.sleep(0.2)
        for p in procs:
            if p.poll() is None:
                try:
                    with open(f"/proc/{p.pid}/schedstat") as st:
                        p.sched = [int(x) for x in st.read().split()[:2]]
                except (OSError, ValueError):
                    pass
                if time.time() - t0 > secs + 60:
                    p.kill()
    outs = []
    for p in procs:
        out, err = p.communicate()
        with open(calls_file + ".rtpgen.out", "a") as f:
            f.write(f"# rtpgen {secs} {warm} {first_seq} cpu {p.args[2]} rc={p.returncode}\n{out}{err}")
        if p.returncode != 0:
            raise RuntimeError(f"rtpgen failed: {err.strip()}")
        outs.append({k: float(v) for k, v in re.findall(r"(\w+)=(-?[\d.]+)", out)})
    wall = time.time() - t0
    c1 = B.cpu_s(sut_pids)
    r_busy = B.core_busy_s() - b0
    machine = B.machine_busy_s() - mb0
    if len(outs) == 1:
        r = outs[0]
    else:
        r = {k: sum(o.get(k, 0) for o in outs) for k in ("streams", "sent", "received", "pps_offered",
                                                          "late_streams")}
        r["loss_pct"] = 100.0 * (r["sent"] - r["received"]) / r["sent"] if r["sent"] else 0.0
        hist = {}
        for p in procs:
            with open(p.part + ".hist") as f:
                for line in f:
                    us, c = line.split()
                    hist[int(us)] = hist.get(int(us), 0) + int(c)
        n = sum(hist.values())
        for q, k in ((0.50, "lat_p50_us"), (0.90, "lat_p90_us"), (0.99, "lat_p99_us"),
                     (0.999, "lat_p999_us")):
            r[k] = _pct_of(hist, n, q)
        r["lat_max_us"] = float(max(hist)) if hist else 0.0
    scheds = [p.sched for p in procs if p.sched]
    if scheds:
        # the generator's own health: CPU it used, and time it was runnable but not running
        # (its core busy with other work: then latency and loss are the generator's); with
        # several generators, in % of one core, added up
        r["gen_cpu_pct"] = 100.0 * sum(x[0] for x in scheds) / 1e9 / wall
        r["gen_wait_pct"] = 100.0 * sum(x[1] for x in scheds) / 1e9 / wall
        r["gen_cpu_s"] = sum(x[0] for x in scheds) / 1e9
    r["gen_cpus"] = len(cpus)
    r["sut_cpu_s"] = c1 - c0
    r["machine_cpu_s"] = machine
    r["cpu1_busy_pct"] = 100.0 * r_busy / wall
    r["other_procs_pct"] = fr.pct()
    r["wall"] = wall
    r["secs"] = secs
    return r


def relay_row(target, n, r, sut_pids, extra=None):
    recv = r["received"]
    row = {"target": target, "calls": n, "pps_offered": r["pps_offered"], "fwd_pps": recv / r["secs"],
           "loss_pct": r["loss_pct"], "lat_p50_us": r["lat_p50_us"], "lat_p99_us": r["lat_p99_us"],
           "lat_p999_us": r["lat_p999_us"], "silent_streams": int(r["late_streams"]),
           "cpu1_busy_pct": r["cpu1_busy_pct"], "other_procs_pct": r["other_procs_pct"],
           "gen_cpu_pct": r.get("gen_cpu_pct"), "gen_wait_pct": r.get("gen_wait_pct"),
           "gen_cpus": r.get("gen_cpus", 1)}
    if sut_pids:
        row["sut_core_pct"] = 100.0 * r["sut_cpu_s"] / r["wall"]
        row["us_cpu_per_pkt"] = 1e6 * r["sut_cpu_s"] / max(1, recv)
    # the whole machine (all cores, softirq included) and the generator's own part of it
    row["machine_us_per_pkt"] = 1e6 * r["machine_cpu_s"] / max(1, recv)
    if r.get("gen_cpu_s") is not None:
        row["gen_us_per_pkt"] = 1e6 * r["gen_cpu_s"] / max(1, recv)
    if extra:
        row.update(extra)
    return row


def make_certs(workdir):
    """a CA and a certificate for 127.0.0.1 signed by it (openssl): (agent.pem = key + cert, ca.pem)"""
    d = os.path.join(workdir, "tls")
    os.makedirs(d, exist_ok=True)
    agent, ca = os.path.join(d, "agent.pem"), os.path.join(d, "ca.pem")
    if os.path.exists(agent):
        return agent, ca

    def ossl(*a):
        subprocess.run(["openssl", *a], cwd=d, check=True, capture_output=True, timeout=60)
    ossl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
         "-subj", "/CN=sipxfer bench CA")
    ossl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "srv.key", "-out", "srv.csr", "-subj", "/CN=127.0.0.1")
    ossl("x509", "-req", "-in", "srv.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out",
         "srv.pem", "-days", "2")
    with open(agent, "w") as f:
        f.write(open(os.path.join(d, "srv.key")).read() + open(os.path.join(d, "srv.pem")).read())
    return agent, ca


def kernel_path_built(binary, workdir):
    """Whether this sipxferd knows media.kernel (the eBPF fast path, SPEC 14): its --check-config
    takes a config that names it."""
    try:
        B.Sipxferd(binary, workdir, "kernel-probe", mode="relay", kernel="off")
        return True
    except RuntimeError:
        return False


def relay_sipxferd(args, workdir, binary, n, secs, warm, srtp=False, kernel=None, cpus=None):
    """n calls through a fresh sipxferd (relay mode): plain RTP both sides, or (srtp) callers over
    SIP/TLS offering SDES-SRTP, which the relay terminates (the room side stays plain RTP/AVP).
    kernel: media.kernel ("off": sipxferd-user, "auto": sipxferd-kernel; None: not set)."""
    target = ("sipxferd-srtp" if srtp else
              {"off": "sipxferd-user", "auto": "sipxferd-kernel"}.get(kernel, "sipxferd"))
    name = f"relay-{'srtp-' if srtp else ''}{kernel + '-' if kernel else ''}{n}"
    tls = None
    if srtp:
        agent, ca = make_certs(workdir)
        tls = (agent, ca, B.TLS_PORT)
    # 4 relay ports per call: 30000-39999 holds 2,500 calls, the wider range the 5,000-call step
    hi = 39999 if n <= 2400 else 59999
    sut = B.Sipxferd(binary, workdir, name, mode="relay", port_min=30000, port_max=hi,
                     rooms={"room-a": 25190}, tls=tls, srtp="allow" if srtp else "off", kernel=kernel)
    sut.start()
    agents = None
    rows = []
    try:
        agents = sipua.Agents((B.HOST, B.SIP_PORT), 25170, {"room-a": 25190}, media_base=50000,
                              tls=((B.HOST, B.TLS_PORT), tls[1]) if srtp else None)
        calls = sipua.setup_calls(agents, n, srtp=srtp)
        if len(calls) < n:
            B.log(f"  !! only {len(calls)} of {n} calls set up through sipxferd{' (SRTP)' if srtp else ''}")
        if not calls:
            raise RuntimeError(f"{target}: no call set up (see {workdir}/{name}.log)")
        fn = os.path.join(workdir, f"calls-{target}-{n}.txt")
        with open(fn, "w") as f:
            for c in calls:
                keys = f" {c.suite[-2:]} {c.tx_key.hex()} {c.rx_key.hex()}" if srtp else ""
                f.write(f"{c.pa} {c.ra} {c.pb} {c.rb}{keys}\n")
        for attempt in (1, 2):
            if attempt > 1:
                time.sleep(1.0)   # a relay left behind by other load drains the last run's packets first
            m0 = sut.metrics()
            # a repeat on the same SRTP calls continues the sequence numbers (replay protection)
            r = run_rtpgen(args, fn, secs, warm, [sut.pid], first_seq=10000 * (attempt - 1) if srtp else 0,
                           cpus=cpus)
            m1 = sut.metrics()
            d = lambda k: m1.get(k, 0) - m0.get(k, 0)  # noqa: E731
            # by path: the relay thread's and the kernel program's own counter
            fwd = d("sipxfer_relay_packets_forwarded_total")
            kern = d('sipxfer_relay_packets_total{path="kernel"}')
            user = d('sipxfer_relay_packets_total{path="user"}')
            extra = {"step": n, "relay_fwd": fwd or kern + user, "relay_fwd_kernel": kern,
                     "kernel_streams": m1.get("sipxfer_relay_kernel_streams"),
                     "relay_drop": d("sipxfer_relay_packets_dropped_total"), "attempt": attempt}
            if srtp:
                extra.update({"srtp_decrypted": d("sipxfer_srtp_decrypted_total"),
                              "srtp_auth_fail": d("sipxfer_srtp_auth_failures_total"),
                              "gen_srtp_fail": int(r.get("srtp_fail", 0)),
                              "srtp_rx_p50_us": r.get("srtp_rx_p50_us"), "srtp_rx_p99_us": r.get("srtp_rx_p99_us"),
                              "plain_rx_p50_us": r.get("plain_rx_p50_us"), "plain_rx_p99_us": r.get("plain_rx_p99_us")})
            rows.append(relay_row(target, len(calls), r, [sut.pid], extra))
            B.log(f"  {target:9s} calls={n} {rows[-1]}")
            if r["other_procs_pct"] < 20:
                break
    finally:
        if agents:
            agents.close()
        sut.stop()
    return rows


# Debian's libsrtp2 does its crypto through NSS, whose cost per packet grows with the number of
# live SRTP sessions (bench/srtpcost.c: ~2.4 us with 1, ~5.7 with 250 pairs, ~12.5 with 500,
# ~25 with 1000, on this machine). rtpgen holds as many sessions as the relay does, so above
# 250 SRTP calls the generator, not the relay, would be the limit of the sipxferd-srtp row.
SRTP_MAX_CALLS = 250


def run_relay(args, workdir, binary):
    steps = [250] if args.quick else [100, 250, 500, 1000, 5000]
    secs, warm = (8, 1) if args.quick else (15, 2)
    notes = []
    # 5,000 calls hold 20,000 relay sockets in sipxferd (4 per call) besides rtpgen's 10,000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for n in [x for x in steps if x > 1000]:
        why = []
        if hard < 4 * n + 1024:
            why.append(f"it needs {4 * n + 1024} descriptors in sipxferd and the container caps "
                       f"RLIMIT_NOFILE at {hard}")
        if 50000 + 4 * n > 65536:
            why.append(f"rtpgen's ports (50000 + 4 per call) hold {(65536 - 50000) // 4} calls")
        if why:
            steps.remove(n)
            notes.append(f"the {n}-call step was skipped: " + "; ".join(why))
    kernel = kernel_path_built(binary, workdir)
    if not kernel:
        notes.append("this build has no media.kernel: the relay rows are the userspace relay only")
    rows = []
    for n in steps:
        # direct: the two sides send to each other, no relay (generator + loopback baseline)
        fn = os.path.join(workdir, f"calls-direct-{n}.txt")
        with open(fn, "w") as f:
            for i in range(n):
                pa = 50000 + 4 * i
                f.write(f"{pa} {pa + 2} {pa + 2} {pa}\n")
        r = run_rtpgen(args, fn, secs, warm, [])
        rows.append(relay_row("direct", n, r, []))
        B.log(f"  direct    calls={n} {rows[-1]}")

        # sipxferd: calls set up over SIP by sipua (caller + room), relay ports from the SDP;
        # then, right after, a daemon of the same build whose callers are SIP/TLS + SDES-SRTP
        if kernel:
            rows += relay_sipxferd(args, workdir, binary, n, secs, warm, kernel="off")
            rows += relay_sipxferd(args, workdir, binary, n, secs, warm, kernel="auto")
        else:
            rows += relay_sipxferd(args, workdir, binary, n, secs, warm)
        if n <= SRTP_MAX_CALLS:
            rows += relay_sipxferd(args, workdir, binary, n, secs, warm, srtp=True)

        # rtpengine userspace (one worker thread, like sipxferd's one relay worker), ng offer/answer
        rtpe = start_rtpengine(workdir)
        try:
            ng = Ng(22222)
            fn = os.path.join(workdir, f"calls-rtpengine-{n}.txt")
            with open(fn, "w") as f:
                for i in range(n):
                    pa, pb = 50000 + 4 * i, 50000 + 4 * i + 2
                    cid = f"bench-{n}-{i}"
                    rb = ng.port_of(ng.cmd({"command": "offer", "call-id": cid, "from-tag": "fa",
                                            "sdp": sipua.sdp(pa), "replace": ["origin", "session-connection"]}))
                    ra = ng.port_of(ng.cmd({"command": "answer", "call-id": cid, "from-tag": "fa",
                                            "to-tag": "tb", "sdp": sipua.sdp(pb),
                                            "replace": ["origin", "session-connection"]}))
                    f.write(f"{pa} {ra} {pb} {rb}\n")
            pids = B.tree(rtpe.pid)
            for attempt in (1, 2):
                r = run_rtpgen(args, fn, secs, warm, pids)
                rows.append(relay_row("rtpengine", n, r, pids, {"attempt": attempt}))
                B.log(f"  rtpengine calls={n} {rows[-1]}")
                if r["other_procs_pct"] < 20:
                    break
        finally:
            B.stop(rtpe)
        time.sleep(0.5)

    # The kernel path has no relay process to keep a core for, so past the point where one
    # generator on CPU 0 is the limit (~1000 calls: it is then ~85 % busy and its queueing makes
    # the tail) direct and sipxferd-kernel are run again with one generator per CPU.
    wide = []
    if kernel:
        for n in ([500] if args.quick else [1000, 2000]):
            fn = os.path.join(workdir, f"calls-direct-{n}.txt")
            with open(fn, "w") as f:
                for i in range(n):
                    pa = 50000 + 4 * i
                    f.write(f"{pa} {pa + 2} {pa + 2} {pa}\n")
            r = run_rtpgen(args, fn, secs, warm, [], cpus=["0", "1"])
            wide.append(relay_row("direct", n, r, []))
            B.log(f"  direct    calls={n} (2 generators) {wide[-1]}")
            wide += relay_sipxferd(args, workdir, binary, n, secs, warm, kernel="auto", cpus=["0", "1"])
    if not args.quick and 5000 not in steps:
        d1000 = [r for r in rows if r["target"] == "direct" and r["calls"] == 1000]
        if d1000 and d1000[-1].get("gen_us_per_pkt"):
            need = d1000[-1]["gen_us_per_pkt"] * 500000 / 1e6
            notes.append(f"at 5000 calls (500,000 packets/s) the generator alone would need {need:.1f} of this "
                         f"machine's {os.cpu_count()} cores (its {d1000[-1]['gen_us_per_pkt']:.2f} us per packet "
                         "at 1000 calls, the direct run)")

    cols = ["target", "calls", "pps_offered", "fwd_pps", "loss_pct", "lat_p50_us", "lat_p99_us", "lat_p999_us",
            "sut_core_pct", "cpu1_busy_pct", "us_cpu_per_pkt", "silent_streams", "relay_fwd", "relay_drop",
            "srtp_decrypted", "srtp_auth_fail", "gen_srtp_fail", "srtp_rx_p50_us", "srtp_rx_p99_us",
            "plain_rx_p50_us", "plain_rx_p99_us", "gen_cpu_pct", "gen_wait_pct", "other_procs_pct",
            "machine_us_per_pkt", "gen_us_per_pkt", "relay_fwd_kernel", "kernel_streams", "attempt"]
    md = B.table("RTP relay (G.711, 20 ms, both directions)", cols, rows)
    B.write_csv(os.path.join(args.results, f"relay-{'quick' if args.quick else 'full'}.csv"), cols, rows)
    ratios, machine_rows, path_rows = [], [], []
    for n in steps:
        g = {}
        for r in rows:   # last attempt wins
            if r.get("step", r["calls"]) == n:   # sipxferd rows: the step, even if fewer calls came up
                g[r["target"]] = r
        s, e, dr, ss = (g.get("sipxferd-user") or g.get("sipxferd")), g.get("rtpengine"), g.get("direct"), \
            g.get("sipxferd-srtp")
        k = g.get("sipxferd-kernel")
        if dr:
            # The whole machine's CPU per forwarded packet (all cores, softirq included). On
            # loopback the kernel delivers a datagram in the sender's context, so the direct run's
            # figure is the generator's own share (its sends, receives and timing): the floor.
            # <x>_added_us is what forwarding adds to it; <x>_vs_direct the whole figure over it.
            floor = dr["machine_us_per_pkt"]
            m = {"calls": n, "direct_floor_us": floor}
            for name, row in (("user", s), ("kernel", k), ("rtpengine", e)):
                if row:
                    m[f"{name}_us"] = row["machine_us_per_pkt"]
                    m[f"{name}_added_us"] = row["machine_us_per_pkt"] - floor
                    if floor > 0:
                        m[f"{name}_vs_direct"] = row["machine_us_per_pkt"] / floor
            if k and e and m["rtpengine_added_us"] > 0:
                m["kernel_added_vs_rtpengine_added"] = m["kernel_added_us"] / m["rtpengine_added_us"]
            if k:
                m["kernel_added_p99_us"] = k["lat_p99_us"] - dr["lat_p99_us"]
                m["kernel_loss_pct"] = k["loss_pct"]
            machine_rows.append(m)
        if dr and dr.get("gen_us_per_pkt") is not None:
            # The same from process accounting (exact, where /proc/stat samples ticks): on
            # loopback the receive softirq mostly runs in the sending process (local_bh_enable
            # after the send), so rtpgen's CPU carries the kernel's delivery and, for the kernel
            # path, the tc program; the relay process adds its own. direct = rtpgen alone.
            pfloor = dr["gen_us_per_pkt"]
            pm = {"calls": n, "direct_us": pfloor}
            for name, row in (("user", s), ("kernel", k), ("rtpengine", e)):
                if row and row.get("gen_us_per_pkt") is not None:
                    v = row["gen_us_per_pkt"] + (row.get("us_cpu_per_pkt") or 0)
                    pm[f"{name}_us"] = v
                    pm[f"{name}_added_us"] = v - pfloor
                    pm[f"{name}_vs_direct"] = v / pfloor if pfloor > 0 else None
            if k and e and pm.get("rtpengine_added_us", 0) > 0:
                pm["kernel_added_vs_rtpengine_added"] = pm["kernel_added_us"] / pm["rtpengine_added_us"]
            if k and e and pm.get("rtpengine_us", 0) > 0:
                pm["kernel_vs_rtpengine"] = pm["kernel_us"] / pm["rtpengine_us"]
            path_rows.append(pm)
        if s and e and dr:
            ratio = {"calls": n, "cpu_per_pkt_ratio_vs_rtpengine": s["us_cpu_per_pkt"] / e["us_cpu_per_pkt"],
                     "sipxferd_added_p50_us": s["lat_p50_us"] - dr["lat_p50_us"],
                     "sipxferd_added_p99_us": s["lat_p99_us"] - dr["lat_p99_us"],
                     "rtpengine_added_p50_us": e["lat_p50_us"] - dr["lat_p50_us"],
                     "rtpengine_added_p99_us": e["lat_p99_us"] - dr["lat_p99_us"]}
            if ss:
                ratio.update({"srtp_cpu_per_pkt_ratio_vs_plain": ss["us_cpu_per_pkt"] / s["us_cpu_per_pkt"],
                              "srtp_extra_us_per_pkt": ss["us_cpu_per_pkt"] - s["us_cpu_per_pkt"],
                              "srtp_added_p50_us": ss["lat_p50_us"] - dr["lat_p50_us"],
                              "srtp_added_p99_us": ss["lat_p99_us"] - dr["lat_p99_us"]})
            ratios.append(ratio)
    if ratios:
        md += "\n" + B.table("Relay ratios", list(ratios[0].keys()), ratios)
    if path_rows:
        cols_p = list(dict.fromkeys(k_ for r in path_rows for k_ in r))
        md += "\n" + B.table("Forwarding path per packet (us, rtpgen + relay process CPU; direct = rtpgen alone)",
                              cols_p, path_rows)
    if machine_rows:
        cols_m = list(dict.fromkeys(k_ for r in machine_rows for k_ in r))
        md += "\n" + B.table("Whole machine per forwarded packet (us, all cores; direct = the floor)",
                              cols_m, machine_rows)
    if wide:
        wcols = ["target", "calls", "gen_cpus", "pps_offered", "fwd_pps", "loss_pct", "lat_p50_us", "lat_p99_us",
                 "lat_p999_us", "gen_cpu_pct", "gen_wait_pct", "machine_us_per_pkt", "gen_us_per_pkt",
                 "us_cpu_per_pkt", "relay_fwd", "relay_fwd_kernel", "kernel_streams", "other_procs_pct"]
        md += "\n" + B.table("Kernel path with one generator per CPU (direct and sipxferd-kernel)", wcols, wide)
        wr = []
        for n in sorted({r["calls"] for r in wide if r["target"] == "direct"}):
            dr = [r for r in wide if r["target"] == "direct" and r["calls"] == n]
            k = [r for r in wide if r["target"] == "sipxferd-kernel" and r.get("step", r["calls"]) == n]
            if dr and k:
                dr, k = dr[-1], k[-1]
                kc = k["gen_us_per_pkt"] + (k.get("us_cpu_per_pkt") or 0)
                wr.append({"calls": n, "direct_us": dr["gen_us_per_pkt"], "kernel_us": kc,
                           "kernel_added_us": kc - dr["gen_us_per_pkt"],
                           "kernel_vs_direct": kc / dr["gen_us_per_pkt"],
                           "machine_direct_us": dr["machine_us_per_pkt"], "machine_kernel_us": k["machine_us_per_pkt"],
                           "machine_kernel_vs_direct": k["machine_us_per_pkt"] / dr["machine_us_per_pkt"],
                           "kernel_added_p50_us": k["lat_p50_us"] - dr["lat_p50_us"],
                           "kernel_added_p99_us": k["lat_p99_us"] - dr["lat_p99_us"],
                           "kernel_loss_pct": k["loss_pct"]})
        if wr:
            md += "\n" + B.table("Kernel path with one generator per CPU: against direct", list(wr[0].keys()), wr)
        B.write_csv(os.path.join(args.results, f"relay-wide-{'quick' if args.quick else 'full'}.csv"), wcols, wide)
    for note in notes:
        md += f"\n- {note}\n"
    md += (f"\n{secs} s per run ({warm} s warm-up outside the latency histogram); rtpgen (bench/rtpgen.c) sends "
           "172-byte RTP every 20 ms per stream, streams spread evenly over the 20 ms, send time in the payload; "
           "latency is one-way generator->relay->generator. `direct` = no relay (the two sides send to each "
           "other). CPU per packet = SUT utime+stime over the run / packets received by the generator. "
           "sipxferd: calls set up over SIP by bench/sipua.py, one relay worker thread (its default). "
           "`sipxferd-srtp`: right after `sipxferd`, a fresh daemon of the same build "
           "with media.srtp = \"allow\" and a sips: listen; each caller sends its INVITE over one SIP/TLS "
           "connection with RTP/SAVP and an AES_CM_128_HMAC_SHA1_80 key, the relay terminates SRTP (the room "
           "side is plain RTP/AVP): rtpgen encrypts what the caller side sends and decrypts/authenticates what "
           "it receives (latency of that side taken after decryption), so half of the forwarded packets are "
           "decrypted and half encrypted by the relay; srtp_decrypted/srtp_auth_fail are the daemon's counters, "
           "gen_srtp_fail packets rtpgen could not unprotect; srtp_rx_* = latency of what the caller (SRTP) side "
           "received, encrypted by the relay; plain_rx_* = what the room side received, decrypted by the relay. gen_cpu_pct / gen_wait_pct: rtpgen's time on CPU 0 "
           "and its time runnable but waiting for CPU 0 (/proc/PID/schedstat), in % of the run: a high "
           "gen_wait_pct means the generator, not the relay, made the latency. "
           "rtpengine: userspace (--table=-1), --num-threads=1, offer/answer over ng. A run during which other "
           "users' processes took >= 20 % of a core (other_procs_pct) is repeated once on the same calls; "
           "both are listed and the ratios use the last. machine_us_per_pkt = busy time of all CPUs "
           "(elapsed time on every CPU less /proc/stat's idle, iowait and steal, which NO_HZ keeps exactly; "
           "softirq included) over the run / packets received: kernel forwarding runs in "
           "softirq and sender context, which no process's CPU time shows; gen_us_per_pkt = rtpgen's own "
           "CPU. sipxferd-user / sipxferd-kernel: media.kernel = \"off\" / \"auto\" (builds that have it). "
           "One generator per CPU (gen_cpus 2): the calls dealt out between two rtpgen processes pinned to "
           "CPU 0 and CPU 1, counts added, latency histograms merged; gen_cpu_pct then in % of one core, "
           "added up.\n")
    return md, {"rows": rows, "ratios": ratios, "machine": machine_rows, "path": path_rows, "wide": wide}


# ---------------------------------------------------------------- 4. transfer latency


def run_xfer(args, workdir, binary):
    bg_calls = 200 if args.quick else 1000
    n = 100 if args.quick else 400
    xrate = 20 if args.quick else 50
    sut = B.Sipxferd(binary, workdir, "xfer", mode="relay", port_min=20000, port_max=39999,
                     rooms={"room-a": 25190, "room-b": 25192, "room-bg": B.UAS_PORT})
    uas = B.sipp_uas(workdir, tag="uas_xfer")
    agents = uac = None
    try:
        sut.start()
        agents = sipua.Agents((B.HOST, B.SIP_PORT), 25170, {"room-a": 25190, "room-b": 25192}, media_base=50000)
        hold = int((bg_calls / 200 + n / 50 + n / xrate + 30) * 1000)
        uac = B.sipp_uac(workdir, B.SIP_PORT, 200, bg_calls, "xfer_bg", service="room-bg", hold_ms=hold,
                         limit=bg_calls + 10, port=B.UAC_PORT + 50, rtt=False, timeout_s=hold / 1000 + 60)
        t_end = time.time() + bg_calls / 200 * 2 + 15
        while time.time() < t_end and sut.active() < bg_calls:
            time.sleep(0.2)
        bg_up = sut.active()
        calls = sipua.setup_calls(agents, n, room="room-a")
        B.log(f"  background calls up: {bg_up}; calls to transfer: {len(calls)}")
        results = {}
        # media probes: each caller starts sending RTP just before its POST; the
        # time its first packet reaches room-b's media port after room-b's 200
        for c in calls:
            agents.media_sock(c.pa)
            agents.media_sock(agents.media_port_in(c, "room-b"))

        def poster():
            gap = 1.0 / xrate
            t_next = time.perf_counter()
            for c in calls:
                now = time.perf_counter()
                if now < t_next:
                    time.sleep(t_next - now)
                t_next += gap
                agents.probe(c, agents.media_port_in(c, "room-b"))
                t0 = time.perf_counter()
                try:
                    resp = sut.api("POST", "/v1/rooms/room-a/sipCallTransfer",
                                   {"sessionId": c.sid, "toEndPoint": "sip:room-b@rooms.sipxfer.test"})
                    code = 200
                except Exception as e:  # HTTPError carries the status and the error body
                    code = getattr(e, "code", 0)
                    try:
                        resp = e.read().decode(errors="replace") if code else str(e)
                    except Exception:
                        resp = str(e)
                results[c.sid] = (t0, time.perf_counter(), code, resp)

        th = threading.Thread(target=poster, daemon=True)
        th.start()

        def done():
            if th.is_alive():
                return False
            for c in calls:
                a = agents.room_calls_by_sid(c.sid)
                if results.get(c.sid, (0, 0, 0))[2] == 200 and not (a.get("room-a") and a["room-a"].t_bye):
                    return False
            return not agents.probes
        agents.room_calls_by_sid = lambda sid: {room: rc for (room, _), rc in agents.room_calls.items()
                                                if rc.sid == sid}
        agents.run_until(done, n / xrate + 30)
        agents.run_until(lambda: False, 1.0)
        lat, api_to_bye, api_ms, fails, media = [], [], [], [], []
        for c in calls:
            t0, t1, code, resp = results.get(c.sid, (0, 0, 0, "not posted"))
            rcs = agents.room_calls_by_sid(c.sid)
            a, b = rcs.get("room-a"), rcs.get("room-b")
            if code != 200:
                fails.append(f"POST {code}: {str(resp)[:120]}")
                continue
            api_ms.append(1000 * (t1 - t0))
            if not (b and b.t_200):
                fails.append("room-b never got the INVITE")
                continue
            if not (a and a.t_bye):
                fails.append("old room never got BYE")
                continue
            lat.append(1000 * (a.t_bye - b.t_200))
            api_to_bye.append(1000 * (a.t_bye - t0))
            t_media = agents.media_rx.get(agents.media_port_in(c, "room-b"))
            if t_media is None:
                fails.append("no media reached room-b")
            else:
                media.append(1000 * (t_media - b.t_200))
        alive = sut.alive()
        bg_after = sut.active()
    finally:
        if agents:
            agents.close()
        B.stop(uac)
        sut.stop()
        B.stop(uas)
    row = {"background_calls": bg_up, "transfers": len(calls), "rate_per_s": xrate, "completed": len(lat),
           "failed": len(fails), "rebridge_p50_ms": B.pct(lat, 50), "rebridge_p99_ms": B.pct(lat, 99),
           "rebridge_max_ms": max(lat) if lat else None,
           "media_p50_ms": B.pct(media, 50), "media_p99_ms": B.pct(media, 99),
           "media_max_ms": max(media) if media else None, "api_p50_ms": B.pct(api_ms, 50),
           "api_p99_ms": B.pct(api_ms, 99), "post_to_old_bye_p50_ms": B.pct(api_to_bye, 50),
           "post_to_old_bye_p99_ms": B.pct(api_to_bye, 99), "sipxferd_alive": "yes" if alive else "NO"}
    cols = list(row.keys())
    md = B.table("sipCallTransfer latency", cols, [row])
    B.write_csv(os.path.join(args.results, f"transfer-{'quick' if args.quick else 'full'}.csv"), cols, [row])
    with open(os.path.join(workdir, "xfer-latencies-ms.txt"), "w") as f:
        f.write("\n".join(f"{x:.3f}" for x in lat) + "\n")
    if fails:
        md += "\nFailures (first 5): " + "; ".join(fails[:5]) + "\n"
    md += (f"\n`media` = room-b's 200 OK sent -> the first RTP packet from the caller reaching room-b's media "
           f"port: each caller sends a 172-byte RTP packet every {sipua.Agents.PROBE_GAP * 1000:.0f} ms toward "
           f"its relay port from just before its POST until room-b hears one (so the figure includes up to "
           f"one probe interval plus the agent's loop); before the transfer these go to room-a. "
           f"`rebridge` = room-b's 200 OK sent -> BYE received by the old room (room-a), both rooms being "
           f"bench/sipua.py agents in one process (same clock). {len(calls)} calls in room-a, each moved "
           f"to room-b by POST /v1/rooms/room-a/sipCallTransfer at {xrate}/s, while {bg_up} SIPp calls are held "
           f"in room-bg (relay mode). api = POST round trip. sipxferd calls still up at the end: {bg_after}.\n")
    return md, {"row": row, "fails": fails[:20]}
