#!/usr/bin/env python3
"""kernel_times.py - the device time of each kernel in an ncu CSV (ncu --csv --metrics
gpu__time_duration.sum), summed by kernel name: name, launches, total ms, mean us, share,
largest first, as CSV on stdout. Kernels matching SKIP are left out; with PASS, only the
PASS-th forward pass (1: the first) counts, passes starting at each token embedding
(rows_kernel). Used by scripts/device_cuda.sh's "kernels" part.
    usage: kernel_times.py NCU.csv [SKIP [PASS]]"""
import csv
import re
import sys


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    skip = re.compile(sys.argv[2]) if len(sys.argv) > 2 and sys.argv[2] else None
    want = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    with open(sys.argv[1], newline="") as f:
        lines = [l for l in f if l.startswith('"')]  # ncu's own messages are not quoted
    totals = {}
    passes = 0
    for row in csv.DictReader(lines):
        if row.get("Metric Name") != "gpu__time_duration.sum":
            continue
        name = re.sub(r"\(.*", "", row["Kernel Name"]).strip()
        if re.search(r"\brows_kernel\b", name):
            passes += 1
        if (skip and skip.search(name)) or (want and passes != want):
            continue
        value = float(row["Metric Value"].replace(",", ""))
        scale = {"nsecond": 1e-6, "usecond": 1e-3, "msecond": 1.0, "second": 1e3}.get(row["Metric Unit"], 1e-6)
        n, ms = totals.get(name, (0, 0.0))
        totals[name] = (n + 1, ms + value * scale)
    print(f"{passes} passes", file=sys.stderr)
    all_ms = sum(ms for _, ms in totals.values()) or 1.0
    out = csv.writer(sys.stdout)
    out.writerow(["kernel", "launches", "total_ms", "mean_us", "share"])
    for name, (n, ms) in sorted(totals.items(), key=lambda kv: -kv[1][1]):
        out.writerow([name, n, f"{ms:.3f}", f"{1000 * ms / n:.2f}", f"{ms / all_ms:.4f}"])


if __name__ == "__main__":
    main()
