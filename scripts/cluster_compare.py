#!/usr/bin/env python3
# The comparisons of Tests/CLITests, for the cluster test scripts (scripts/netns_common.sh, scripts/test_slurm.sh):
#   cluster_compare.py plan A B            same kept units, scores within 1e-5 relative, same parameter count and calibration
#   cluster_compare.py adapter A B [exact] adapters within 1e-5 absolute (exactly equal with a 4th argument)
#   cluster_compare.py report REPORT prune|tune   one line of a run's report.json (--json output)
# Prints one line; status 1 when they differ.
import json, struct, sys

def plan(a, b):
    p, q = json.load(open(a)), json.load(open(b))
    assert len(p["layers"]) == len(q["layers"]), "layer counts differ"
    worst = 0.0
    for x, y in zip(p["layers"], q["layers"]):
        assert x["layer"] == y["layer"]
        for k in ("keptKVHeads", "keptQueryHeads", "keptMLPChannels"):
            assert x[k] == y[k], "layer %d: %s differs" % (x["layer"], k)
        for k in ("attentionScores", "mlpScores"):
            assert len(x[k]) == len(y[k])
            for u, v in zip(x[k], y[k]):
                worst = max(worst, abs(u - v) / max(abs(u), 1e-30))
    assert worst < 1e-5, "worst relative score difference %g" % worst
    assert p["parametersAfter"] == q["parametersAfter"], "parametersAfter differs"
    assert p["calibration"]["offsets"] == q["calibration"]["offsets"], "calibration differs"
    print("plan equal (%d layers, %d parameters after, worst relative score difference %.1e)"
          % (len(p["layers"]), p["parametersAfter"], worst))

def tensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        head = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, t in head.items():
        if name == "__metadata__":
            continue
        assert t["dtype"] == "F32", "%s: %s" % (name, t["dtype"])
        lo, hi = t["data_offsets"]
        out[name] = struct.unpack("<%df" % ((hi - lo) // 4), data[lo:hi])
    return out

def adapter(a, b, exact):
    x, y = tensors(a), tensors(b)
    assert sorted(x) == sorted(y) and x, "tensor names differ"
    worst = max(abs(u - v) for k in x for u, v in zip(x[k], y[k]))
    assert (worst == 0) if exact else (worst <= 1e-5), "max |difference| %g" % worst
    print("adapter equal (%d tensors, %d values, max |difference| %.1e)"
          % (len(x), sum(len(v) for v in x.values()), worst))

def report(path, kind):
    r = json.load(open(path))
    if kind == "prune":
        ph = r["phases"]
        print("report: MPI %d B, control %d B (%s); hosts %s" % (
            sum(p["mpiBytes"] for p in ph.values()), sum(p["controlBytes"] for p in ph.values()),
            ", ".join("%s %d/%d" % (k, ph[k]["mpiBytes"], ph[k]["controlBytes"]) for k in sorted(ph)),
            ",".join(p["host"] for p in r["perRank"])))
    else:
        print("report: allreduce %d B over %d ranks" % (r["allreduceBytes"], r["ranks"]))

try:
    if sys.argv[1] == "plan": plan(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "adapter": adapter(sys.argv[2], sys.argv[3], len(sys.argv) > 4)
    else: report(sys.argv[2], sys.argv[3])
except AssertionError as e:
    print("differs: %s" % e)
    sys.exit(1)
