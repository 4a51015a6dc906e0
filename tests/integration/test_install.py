"""meson install: binary, default config and systemd unit land in the usual
places, the installed config is valid, and the unit passes
`systemd-analyze verify` (issue 13 item 6)."""
import json
import os
import re
import shlex
import shutil
import subprocess

from harness import ROOT, SIPXFERD, Skip, case, check

SHIPPED_CONF = os.path.join(ROOT, "config", "sipxferd.conf")


def _meson():
    m = shutil.which("meson")
    if not m:
        raise Skip("meson not installed")
    return m


def _run(args, timeout=60, **kw):
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, **kw)


def _installed(builddir):
    """{basename: installed path} for what `meson install` would install."""
    r = _run([_meson(), "introspect", "--installed", builddir])
    check(r.returncode == 0, "meson introspect failed: %s" % r.stderr)
    return {os.path.basename(dst): dst for dst in json.loads(r.stdout).values()}


def _unit_keys(text):
    """[(key, value)] of the unit's assignments, in order (keys may repeat)."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and line[0] not in "#;[" and "=" in line:
            k, v = line.split("=", 1)
            out.append((k.strip(), v.strip()))
    return out


def _one(keys, name):
    vals = [v for k, v in keys if k == name]
    check(len(vals) == 1, "unit has %d %s= lines, want 1: %r" % (len(vals), name, vals))
    return vals[0]


def _shipped_int(name):
    with open(SHIPPED_CONF) as f:
        m = re.search(r"^\s*%s\s*=\s*(\d+)\s*;" % re.escape(name), f.read(), re.M)
    check(m, "%s not found in %s" % (name, SHIPPED_CONF))
    return int(m.group(1))


def _check_unit(text, sbin, conf):
    keys = _unit_keys(text)
    run = "%s -c %s" % (sbin, conf)
    check(_one(keys, "ExecStart") == run, "ExecStart=%r, want %r" % (_one(keys, "ExecStart"), run))
    check(_one(keys, "ExecStartPre") == run + " --check-config", "ExecStartPre does not "
          "check the installed config: %r" % _one(keys, "ExecStartPre"))
    reload = [v for k, v in keys if k == "ExecReload"]
    check(reload == [run + " --check-config", "/bin/kill -HUP $MAINPID"],
          "ExecReload should check the config, then SIGHUP: %r" % reload)
    check(_one(keys, "Type") == "simple", "Type is not simple")
    check(_one(keys, "Restart") == "on-failure", "Restart is not on-failure")
    check(_one(keys, "KillSignal") == "SIGTERM", "KillSignal is not SIGTERM")
    # drain_timeout, then up to 5 s for BYEs and 5 s for queued webhooks
    stop = int(_one(keys, "TimeoutStopSec"))
    drain = _shipped_int("drain_timeout")
    check(stop > drain + 10, "TimeoutStopSec=%d does not cover drain_timeout=%d + 10 s"
          % (stop, drain))
    # 4 fds per relayed call, 6 while a transfer target rings, + 1024 other
    nofile = int(_one(keys, "LimitNOFILE"))
    calls = _shipped_int("max_calls")
    check(nofile >= 6 * calls + 1024, "LimitNOFILE=%d is below 6 x max_calls(%d) + 1024"
          % (nofile, calls))
    check(_one(keys, "NoNewPrivileges") == "yes", "NoNewPrivileges missing")
    check(_one(keys, "ProtectSystem") == "strict", "ProtectSystem is not strict")
    check(_one(keys, "CapabilityBoundingSet") == "", "capabilities not dropped")


@case
def test_install_prefix_usr_paths(t):
    """prefix /usr: /usr/sbin, /etc/sipxferd and systemd's unit dir; the
    generated unit runs exactly those paths. Configure only, no compile."""
    b = t.path("b-usr")
    r = _run([_meson(), "setup", b, ROOT, "--prefix=/usr"])
    check(r.returncode == 0, "meson setup --prefix=/usr failed:\n%s%s" % (r.stdout[-2000:],
                                                                          r.stderr))
    inst = _installed(b)
    check(inst.get("sipxferd") == "/usr/sbin/sipxferd", "binary goes to %r" % inst.get("sipxferd"))
    check(inst.get("sipxferd.conf") == "/etc/sipxferd/sipxferd.conf",
          "config goes to %r" % inst.get("sipxferd.conf"))
    check(inst.get("sipxferd.service") in ("/usr/lib/systemd/system/sipxferd.service",
                                           "/lib/systemd/system/sipxferd.service"),
          "unit goes to %r" % inst.get("sipxferd.service"))
    with open(os.path.join(b, "sipxferd.service")) as f:
        _check_unit(f.read(), "/usr/sbin/sipxferd", "/etc/sipxferd/sipxferd.conf")

    r = _run([_meson(), "setup", t.path("b-nounit"), ROOT, "--prefix=/opt/sipxfer",
              "-Dsystemdsystemunitdir=no"])
    check(r.returncode == 0, "meson setup -Dsystemdsystemunitdir=no failed: %s" % r.stderr)
    inst = _installed(t.path("b-nounit"))
    check("sipxferd.service" not in inst and
          inst.get("sipxferd") == "/opt/sipxfer/sbin/sipxferd",
          "systemdsystemunitdir=no still installs a unit, or the prefix is ignored: %r" % inst)


@case
def test_install_destdir_verify(t):
    """`meson install --destdir` of the tested build: the three files are
    there, the installed binary accepts the installed config, and the unit
    passes systemd-analyze verify (without warnings)."""
    build = os.path.dirname(SIPXFERD)
    if not os.path.isdir(os.path.join(build, "meson-private")):
        raise Skip("%s is not a meson build directory" % build)
    dest = t.path("destdir")
    # --no-rebuild: install what the other tests run, never rebuild under them
    r = _run([_meson(), "install", "-C", build, "--destdir", dest, "--no-rebuild", "--quiet"])
    check(r.returncode == 0, "meson install failed:\n%s%s" % (r.stdout[-2000:], r.stderr))
    inst = _installed(build)
    for name in ("sipxferd", "sipxferd.conf", "sipxferd.service"):
        check(name in inst, "%s is not installed (build configured before the install rules? "
              "re-run ninja -C %s): %r" % (name, build, inst))
        check(os.path.isfile(dest + inst[name]), "%s missing in DESTDIR" % inst[name])
    sbin, conf, unit = dest + inst["sipxferd"], dest + inst["sipxferd.conf"], \
        dest + inst["sipxferd.service"]
    check(os.access(sbin, os.X_OK), "installed binary is not executable")
    check(inst["sipxferd.conf"].endswith("/sipxferd/sipxferd.conf"), "config not in "
          "sysconfdir/sipxferd/: %s" % inst["sipxferd.conf"])
    check(re.search(r"/systemd/system/sipxferd\.service$", inst["sipxferd.service"]),
          "unit not in a systemd system unit dir: %s" % inst["sipxferd.service"])
    with open(conf) as a, open(SHIPPED_CONF) as b:
        check(a.read() == b.read(), "installed config differs from config/sipxferd.conf")

    with open(unit) as f:
        text = f.read()
    _check_unit(text, inst["sipxferd"], inst["sipxferd.conf"])
    # The unit names the final paths; rebased into DESTDIR, its own
    # ExecStartPre line runs the installed binary on the installed config.
    rebased = text.replace(inst["sipxferd"], sbin).replace(inst["sipxferd.conf"], conf)
    pre = shlex.split(_one(_unit_keys(rebased), "ExecStartPre"))
    r = _run(pre, timeout=20)
    check(r.returncode == 0 and "OK" in r.stdout, "installed config fails --check-config: "
          "%s%s" % (r.stdout, r.stderr))

    analyze = shutil.which("systemd-analyze")
    if not analyze:
        t.note("systemd-analyze not installed: unit syntax not verified")
        return
    vdir = t.path("verify")
    os.mkdir(vdir)
    vunit = os.path.join(vdir, "sipxferd.service")
    with open(vunit, "w") as f:
        f.write(rebased)
    # verify exits 0 on unknown keys and unparsable values, only warning:
    # any output is a failure.
    r = _run([analyze, "verify", "--man=no", vunit], timeout=30)
    out = (r.stdout + r.stderr).strip()
    check(r.returncode == 0 and not out, "systemd-analyze verify: rc %d\n%s" % (r.returncode, out))
    # hardening regressions: systemd rates exposure 0-10 (the unit: ~1.6)
    r = _run([analyze, "security", "--offline=yes", "--threshold=25", "--no-pager", vunit],
             timeout=30)
    m = re.search(r"Overall exposure level for \S+: ([\d.]+)", r.stdout + r.stderr)
    check(r.returncode == 0 and m, "systemd-analyze security: exposure above 2.5 or no "
          "score (rc %d):\n%s" % (r.returncode, (r.stdout + r.stderr)[-3000:]))
    t.note("unit verified; systemd exposure level %s" % m.group(1))
