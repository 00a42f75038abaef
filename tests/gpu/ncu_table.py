#!/usr/bin/env python3
"""ncu_table.py: the profile phase's tables (tests/gpu/run.sh), from one Nsight Compute CSV
(`ncu --csv --section SpeedOfLight --metrics ...`, details page: one row per kernel launch and
metric).

Prints, per kernel name (launches summed): calls, total and mean time, share of the profiled
time, compute (SM) and memory throughput as % of the device's; then, for the kernels that take
the most time, why their warps wait: issue slots used, tensor and shared-memory pipes busy,
achieved occupancy, and the largest stall reasons (warps stalled per issued instruction, from
smsp__average_warps_issue_stalled_<reason>_per_issue_active.ratio). A kernel at a few % of its
tensor pipe with `long_scoreboard` on top waits for memory; with `barrier`, for its block;
`short_scoreboard` / `mio_throttle`, for shared memory; `math_pipe_throttle`, on the pipe itself.

Usage: ncu_table.py NCU_CSV [--why N]   (exit 1 when the file has no ncu rows)
"""
import csv
import re
import sys

SCALE_US = {"nsecond": 1e-3, "ns": 1e-3, "usecond": 1.0, "us": 1.0, "msecond": 1e3, "ms": 1e3, "second": 1e6, "s": 1e6}
STALL = re.compile(r"^smsp__average_warps_issue_stalled_(\w+?)_per_issue_active\.ratio$")
# what the second table shows besides the stalls: metric -> column
WHY = {
    "smsp__issue_active.avg.pct_of_peak_sustained_active": "issue %",
    "sm__pipe_tensor_cycles_active.avg.pct_of_peak_sustained_active": "tensor %",
    "sm__pipe_shared_cycles_active.avg.pct_of_peak_sustained_active": "shared %",
    "sm__warps_active.avg.pct_of_peak_sustained_active": "occup %",
}


def num(s):
    try:
        return float(s.replace(",", ""))
    except ValueError:
        return None


def load(path):
    rows = [r for r in csv.reader(open(path, errors="replace")) if len(r) > 10]
    if not rows or "Kernel Name" not in rows[0]:
        return None
    h = rows[0]
    ki, ii, mi, ui, vi = (h.index(x) for x in ("Kernel Name", "ID", "Metric Name", "Metric Unit", "Metric Value"))
    k = {}
    for r in rows[1:]:
        name = re.sub(r"\(.*", "", r[ki]).strip()
        d = k.setdefault(name, {"ids": set(), "us": 0.0, "m": {}})
        d["ids"].add(r[ii])
        m, v = r[mi], num(r[vi])
        if v is None:
            continue
        if m == "Duration":
            d["us"] += v * SCALE_US.get(r[ui], 1.0)
        else:
            d["m"].setdefault(m, []).append(v)
    return k


def avg(a):
    return sum(a) / len(a) if a else float("nan")


def main(argv):
    if len(argv) < 2:
        print(__doc__.strip().splitlines()[-1])
        return 2
    nwhy = int(argv[argv.index("--why") + 1]) if "--why" in argv else 6
    k = load(argv[1])
    if not k:
        print("no ncu rows")
        return 1
    tot = sum(d["us"] for d in k.values()) or 1.0
    order = sorted(k.items(), key=lambda x: -x[1]["us"])
    print("%-44s %6s %10s %9s %6s %6s %6s" % ("kernel (ours; cuBLASLt not profiled)", "calls", "total ms", "mean us",
                                               "share", "SM %", "mem %"))
    for name, d in order:
        n = len(d["ids"])
        print("%-44s %6d %10.3f %9.1f %5.1f%% %6.1f %6.1f" % (
            name[:44], n, d["us"] / 1e3, d["us"] / max(n, 1), 100 * d["us"] / tot,
            avg(d["m"].get("Compute (SM) Throughput", [])), avg(d["m"].get("Memory Throughput", []))))
    why = [(n, d) for n, d in order if any(STALL.match(m) for m in d["m"])][:nwhy]
    if not why:
        return 0
    print()
    print("%-36s %7s %8s %8s %7s  %s" % ("why (the longest kernels)", "issue %", "tensor %", "shared %", "occup %",
                                          "stalls, warps per issued instruction (largest first)"))
    for name, d in why:
        st = sorted(((STALL.match(m).group(1), avg(v)) for m, v in d["m"].items() if STALL.match(m)),
                    key=lambda x: -x[1])
        cols = [avg(d["m"].get(m, [])) for m in WHY]
        print("%-36s %7.1f %8.1f %8.1f %7.1f  %s" % (name[:36], *cols,
                                                     " ".join("%s %.2f" % s for s in st[:4] if s[1] >= 0.05)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
