"""The module map of docs/architecture.md holds in the built objects: no
module calls another that calls it back (directly or round a longer
circle), and the leg layer calls nothing above it (issue 11)."""
import os
import subprocess
import sys

from harness import ROOT, SIPXFERD, case, check

TOOL = os.path.join(ROOT, "tools", "module_graph.py")
sys.path.insert(0, os.path.dirname(TOOL))
import module_graph  # noqa: E402


@case
def test_no_module_circles(t):
    builddir = os.path.dirname(SIPXFERD)
    edges = module_graph.graph(builddir)
    check(len(edges) > 15 and "bridge" in edges and "leg" in edges,
          "module graph not read from %s: %s" % (builddir, sorted(edges)))
    cyc = module_graph.cycles(edges)
    check(not cyc, "modules calling each other: %s" % cyc)
    r = subprocess.run([sys.executable, TOOL, builddir], capture_output=True, text=True,
                       timeout=60)
    check(r.returncode == 0 and "0 cycles" in r.stdout, "module_graph.py: %s" % r.stdout[-500:])


@case
def test_leg_layer_calls_nothing_above_it(t):
    edges = module_graph.graph(os.path.dirname(SIPXFERD))
    above = {"bridge", "transfer", "b2bua", "call", "api", "resolver", "refer", "main", "events"}
    bad = sorted(set(edges.get("leg", {})) & above)
    check(not bad, "the leg layer calls %s" % bad)
    # the dispatcher reaches calls only through the layer, the bridge and
    # the transfer
    check("bridge" in edges.get("b2bua", {}) and "leg" in edges.get("b2bua", {}),
          "b2bua edges: %s" % sorted(edges.get("b2bua", {})))
    check("transfer" not in edges.get("refer", {}), "refer.c calls the transfer")
    check("bridge" not in edges.get("resolver", {}) and "b2bua" not in edges.get("resolver", {}),
          "the resolver calls back into the bridge")
