"""The worst paths of a routed nextpnr design, from the SDF nextpnr writes.

nextpnr's log names only the single worst path of a clock; this lists the worst
register inputs, one per group of like-named source/sink registers (a 32-bit register's
bits are one group), each with its path, and a histogram of their arrival times, from
the delays nextpnr back-annotates (the maximum of rise and fall). It ignores clock skew,
as nextpnr's ECP5 report does, and agrees with that report's worst path. To get the SDF
from a `bench/fpga.py` build:

    AMARANTH_nextpnr_opts="--timing-allow-fail --sdf top.sdf" \
        .venv/bin/python bench/fpga.py --target ulx3s-85f:8x8@70 --out /tmp/b
    .venv/bin/python bench/timing_paths.py /tmp/b/ulx3s-85f-8x8/build/top.sdf [--paths 20]

`--over NS` counts the endpoints whose arrival (with setup) is over NS ns by the pair of
registers (bits and copies folded: `acc.values[3]` and `acc.values[5]` are one) a path
starts and ends at, the most first: the wide causes (a reset's fan-out, one select
reaching hundreds of bits) stand out where the worst-path list shows one path each.
"""
import argparse
import re
import sys
from collections import defaultdict

DELAY = re.compile(r"\(([-\d.]*):([-\d.]*):([-\d.]*)\)")


def unescape(name):
    """An SDF name without its backslash escapes."""
    return re.sub(r"\\(.)", r"\1", name)


def split_pin(text):
    """`cell/port` as (cell, port)."""
    name = unescape(text)
    cell, _, port = name.rpartition("/")
    return cell, port


def dmax(text):
    """The largest max-corner delay in `(min:typ:max)` triples, in ps."""
    vals = [float(m.group(3)) for m in DELAY.finditer(text) if m.group(3)]
    return max(vals) if vals else 0.0


def parse(path):
    """Net arcs, cell arcs, clock-to-output delays, setup times and cell types."""
    inter = []                # (from_pin, to_pin, ps)
    comb = []                 # (cell, from_port, to_port, ps)
    clk2q = {}                # (cell, port) -> ps
    setup = {}                # (cell, port) -> ps
    ctype = {}
    cell = None
    clockports = defaultdict(set)
    pending_iopath = []
    with open(path) as f:
        for line in f:
            s = line.strip()
            if s.startswith("(INTERCONNECT "):
                parts = s[len("(INTERCONNECT "):].split(" ", 2)
                inter.append((split_pin(parts[0]), split_pin(parts[1]), dmax(parts[2])))
            elif s.startswith("(CELLTYPE "):
                typ = s[len("(CELLTYPE "):-1].strip('"')
            elif s.startswith("(INSTANCE "):
                cell = unescape(s[len("(INSTANCE "):-1])
                ctype[cell] = typ
            elif s.startswith("(IOPATH "):
                parts = s[len("(IOPATH "):].split(" ", 2)
                pending_iopath.append((cell, unescape(parts[0]), unescape(parts[1]),
                                       dmax(parts[2])))
            elif s.startswith("(SETUPHOLD "):
                m = re.match(r"\(SETUPHOLD \((?:posedge|negedge) (\S+)\) \((?:posedge|negedge) (\S+)\) (.*)", s)
                port, clk = unescape(m.group(1)), unescape(m.group(2))
                clockports[cell].add(clk)
                vals = [float(x.group(3)) for x in DELAY.finditer(m.group(3))]
                setup[(cell, port)] = vals[0] if vals else 0.0
    for c, a, b, d in pending_iopath:
        if a in clockports[c] or a.startswith("CLK") or a in ("CLK", "CLKA", "CLKB", "WCK"):
            clk2q[(c, b)] = max(clk2q.get((c, b), 0.0), d)
        else:
            comb.append((c, a, b, d))
    return inter, comb, clk2q, setup, ctype


def signal(cell):
    """The register signal a mapped cell stands for: no bit index, copy number or
    mapping suffix."""
    name = cell.split("_TRELLIS")[0].split("$")[0].split("/")[0]
    return re.sub(r"_\d+$", "", re.sub(r"\[\d+\]", "", name))


def analyse(path, n, over=None, most=40):
    """Print the histogram and the `n` worst path groups of the SDF at `path`; with
    `over` (ns), the counts of endpoints over it by source and sink register."""
    inter, comb, clk2q, setup, ctype = parse(path)
    succ = defaultdict(list)
    indeg = defaultdict(int)
    nodes = set()
    for a, b, d in inter:
        succ[a].append((b, d, "net"))
    for c, a, b, d in comb:
        succ[(c, a)].append(((c, b), d, "cell"))
    for u, lst in succ.items():
        nodes.add(u)
        for v, _, _ in lst:
            nodes.add(v)
            indeg[v] += 1
    arr = {}
    prev = {}
    for pin, d in clk2q.items():
        arr[pin] = d
    # longest arrival in topological order; only register outputs start a path
    order = [u for u in nodes if indeg[u] == 0]
    i = 0
    while i < len(order):
        u = order[i]
        i += 1
        for v, d, kind in succ[u]:
            if v in clk2q:          # a register output's arrival is its clock-to-output
                pass
            elif u in arr and arr[u] + d > arr.get(v, -1e18):
                arr[v] = arr[u] + d
                prev[v] = (u, d, kind)
            indeg[v] -= 1
            if indeg[v] == 0:
                order.append(v)
    if len(order) < len(nodes):
        print(f"warning: {len(nodes) - len(order)} pins on loops not analysed", file=sys.stderr)
    ends = []
    for pin, su in setup.items():
        if pin in arr:
            ends.append((arr[pin] + su, pin))
    ends.sort(reverse=True)
    print(f"{len(ends)} endpoints; worst {ends[0][0] / 1000:.2f} ns "
          f"({1e6 / ends[0][0]:.2f} MHz)")
    hist = defaultdict(int)
    for t, _ in ends:
        hist[int(t // 500)] += 1
    for k in sorted(hist, reverse=True)[:12]:
        print(f"  {k * 0.5:5.1f}-{k * 0.5 + 0.5:4.1f} ns: {hist[k]}")
    for limit in (10, 9, 8):
        count = sum(1 for t, _ in ends if t > limit * 1000)
        print(f"  over {limit} ns: {count}")
    if over is not None:
        pairs = defaultdict(int)
        for t, pin in ends:
            if t <= over * 1000:
                break
            src = pin
            while src in prev:
                src = prev[src][0]
            pairs[(signal(src[0]), signal(pin[0]))] += 1
        print(f"\nendpoints over {over:g} ns by source -> sink register "
              f"({sum(pairs.values())} in all):")
        for (a, b), count in sorted(pairs.items(), key=lambda kv: -kv[1])[:most]:
            print(f"  {count:6d}  {a} -> {b}")
    seen_groups = set()
    shown = 0
    for t, pin in ends:
        # one path per group of like-named registers: not 32 copies of one bus
        path = [pin]
        while path[-1] in prev:
            path.append(prev[path[-1]][0])
        src = path[-1]
        key = (re.sub(r"[\d_]+", "#", src[0])[:60], re.sub(r"[\d_]+", "#", pin[0])[:60])
        if key in seen_groups:
            continue
        seen_groups.add(key)
        shown += 1
        print(f"\n{t / 1000:.2f} ns  {src[0]}/{src[1]} ({ctype.get(src[0])}) -> "
              f"{pin[0]}/{pin[1]} ({ctype.get(pin[0])})")
        for p in reversed(path):
            if p in prev:
                u, d, kind = prev[p]
                print(f"    {kind:4} {d / 1000:5.2f} {arr[p] / 1000:6.2f} {p[0]}/{p[1]}")
            else:
                print(f"    src  {arr[p] / 1000:5.2f} {arr[p] / 1000:6.2f} {p[0]}/{p[1]}")
        if shown >= n:
            break


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sdf", help="SDF file written by nextpnr --sdf")
    parser.add_argument("--paths", type=int, default=20, help="groups to show (default 20)")
    parser.add_argument("--over", type=float, metavar="NS",
                        help="count the endpoints over NS ns by source and sink register")
    args = parser.parse_args()
    analyse(args.sdf, args.paths, args.over)
    return 0


if __name__ == "__main__":
    sys.exit(main())
