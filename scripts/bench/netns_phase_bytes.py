#!/usr/bin/env python3
"""Wire bytes per phase for scripts/bench/netns_bytes.sh.

  netns_phase_bytes.py sample OUT INTERVAL VETH...   samples every host-side veth's counters until SIGTERM
  netns_phase_bytes.py attribute SAMPLES JOBDIR KIND   one JSON object: the run's phases and wire bytes per node

Sampling: each line of OUT is "T rx1 tx1 rx2 tx2 ...", T = time.time() (CLOCK_REALTIME) read just before the
counters, rx/tx as the node sees them (its eth0 received = the host-side veth sent). The namespaces share this
kernel's CLOCK_REALTIME (network and UTS namespaces do not virtualise clocks), so the ranks' Date() and T are one
clock.

Phases come from the job directory: trace.json holds microseconds since the job's origin (rank 0's
Date().timeIntervalSince1970 when its session starts, broadcast to every rank), and writes that origin as
`otherData.origin`: then the placement is exact (the bracket below is still computed, and the written origin must
lie inside it). Older job directories did not write it. For them: every rank records `started` in attempt-E/rank-R.json (registerRank, in Session.init) before its first
trace span, and `attempt-E/rank-R.exit` after its last; rank 0 records state.json's attempt `started` after taking
the origin (Sources/Cluster/Session.swift). So, over all ranks R,
    max_R (rank-R started - ts(R's first span))  <=  origin  <=  min(attempt started, min_R (exit_R - end(R's last span))).
Without the written origin, phases whose traffic lasts a few milliseconds cannot be placed better than that
bracket (2-24 ms here), so every phase is attributed twice, with the origin at each bound: `nodes`/`uncertain` at the lower bound, `total_hi` at
the upper; `origin_bracket` is the width.
Counters are interpolated linearly between the two samples around a boundary;
`uncertain` is what the sample intervals holding a phase's two boundaries carried (all nodes, rx+tx): the
most that interpolation can have put in the wrong phase.
"""
import json
import signal
import sys
import time


def sample(out, interval, vethes):
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    files = []
    for v in vethes:
        files.append((open(f"/sys/class/net/{v}/statistics/tx_bytes"), open(f"/sys/class/net/{v}/statistics/rx_bytes")))
    with open(out, "w") as f:
        while not stop:
            t = time.time()
            vals = []
            for rx, tx in files:   # node rx = veth tx
                rx.seek(0); tx.seek(0)
                vals += [rx.read().strip(), tx.read().strip()]
            f.write("%.6f %s\n" % (t, " ".join(vals)))
            f.flush()
            time.sleep(interval)


def load_samples(path):
    rows = []
    for line in open(path):
        p = line.split()
        rows.append((float(p[0]), [int(x) for x in p[1:]]))
    return rows


def at(rows, t):
    """Counters at time t, linearly interpolated (clamped to the first/last sample)."""
    if t <= rows[0][0]:
        return rows[0][1]
    if t >= rows[-1][0]:
        return rows[-1][1]
    lo, hi = 0, len(rows) - 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if rows[mid][0] <= t:
            lo = mid
        else:
            hi = mid
    (t0, a), (t1, b) = rows[lo], rows[hi]
    w = (t - t0) / (t1 - t0) if t1 > t0 else 0
    return [x + (y - x) * w for x, y in zip(a, b)]


def straddle(rows, t):
    """Bytes (all nodes, rx+tx) in the sample interval that contains t: what interpolation may misplace."""
    for (t0, a), (t1, b) in zip(rows, rows[1:]):
        if t0 <= t < t1:
            return sum(b) - sum(a)
    return 0


def attribute(samples, jobdir, kind):
    lo = phases_at(samples, jobdir, kind, "lo")
    hi = phases_at(samples, jobdir, kind, "hi")
    for a, b in zip(lo["phases"], hi["phases"]):
        a["total_hi"] = sum(x + y for x, y in b["nodes"])
    print(json.dumps(lo))


def phases_at(samples, jobdir, kind, bound):
    rows = load_samples(samples)
    state = json.load(open(f"{jobdir}/state.json"))
    att = state["attempts"][-1]
    trace = json.load(open(f"{jobdir}/trace.json"))
    allev = [e for e in trace["traceEvents"] if e["ph"] == "X"]
    lows, highs = [], [att["started"]]
    for r in sorted({e["pid"] for e in allev}):
        mine = [e for e in allev if e["pid"] == r]
        a = f"{jobdir}/attempt-{att['epoch']}/rank-{r}"
        lows.append(json.load(open(a + ".json"))["started"] - min(e["ts"] for e in mine) / 1e6)
        highs.append(float(open(a + ".exit").read().split()[0]) - max(e["ts"] + e["dur"] for e in mine) / 1e6)
    lo, hi = max(lows), min(highs)
    assert hi - lo >= 0, "the origin's bounds cross"
    if "origin" in trace.get("otherData", {}):
        # Written by the job itself (llmprune since trace.json carries otherData.origin): exact, and it must lie
        # within the bounds above.
        exact = trace["otherData"]["origin"]
        assert lo - 1e-3 <= exact <= hi + 1e-3, f"the written origin {exact} lies outside [{lo}, {hi}]"
        lo = hi = exact
    bracket = hi - lo
    origin = lo if bound == "lo" else hi
    ev = [e for e in allev if e["pid"] == 0]
    span = lambda pred: (min(origin + e["ts"] / 1e6 for e in ev if pred(e)),
                         max(origin + (e["ts"] + e["dur"]) / 1e6 for e in ev if pred(e)))
    first = min(origin + e["ts"] / 1e6 for e in ev)
    report = json.load(open(f"{jobdir}/report.json"))
    if kind == "prune":
        # rank 0's trace: start/load; importance (+ importance.reduce); then plan (scoring done → the plan made,
        # the write rendezvous and the plan broadcast) until rank 0's own `write` span; write (that span); finish
        # (the span's end → the attempt's end in state.json: the final rendezvous, the report).
        imp = span(lambda e: e["cat"].startswith("importance"))
        wr = span(lambda e: e["cat"] == "write" and e["name"] == "write")
        cuts = [("launch", rows[0][0]), ("load", first), ("importance", imp[0]), ("plan", imp[1]),
                ("write", wr[0]), ("finish", wr[1]), ("teardown", att["ended"]), ("", rows[-1][0])]
        rep = {p: (v["mpiBytes"], v["controlBytes"]) for p, v in report["phases"].items()}
    else:
        tr = span(lambda e: e["cat"] == "train")
        ld = span(lambda e: e["cat"] == "load")
        cuts = [("launch", rows[0][0]), ("load", first), ("eval before", ld[1]), ("train", tr[0]),
                ("eval after, export", tr[1]), ("teardown", att["ended"]), ("", rows[-1][0])]
        rep = {"train": (report["allreduceBytes"], None)}
    n = len(rows[0][1]) // 2
    phases = []
    for (name, t0), (_, t1) in zip(cuts, cuts[1:]):
        a, b = at(rows, t0), at(rows, t1)
        per = [(round(b[2 * i] - a[2 * i]), round(b[2 * i + 1] - a[2 * i + 1])) for i in range(n)]
        mpi, ctl = rep.get(name, (None, None))
        phases.append({"phase": name, "seconds": t1 - t0, "nodes": per, "mpi": mpi, "control": ctl,
                       "uncertain": straddle(rows, t0) + straddle(rows, t1)})
    gaps = [b[0] - a[0] for a, b in zip(rows, rows[1:])]
    return ({"phases": phases, "samples": len(rows), "median_interval": sorted(gaps)[len(gaps) // 2],
                      "max_interval": max(gaps), "origin_bracket": bracket})


if __name__ == "__main__":
    if sys.argv[1] == "sample":
        sample(sys.argv[2], float(sys.argv[3]), sys.argv[4:])
    else:
        attribute(sys.argv[2], sys.argv[3], sys.argv[4])
