#!/usr/bin/env python3
"""Summary of scripts/serve-bench.sh rows: per payload and connection count, each batching mode's
median requests/s and latency over the rounds, and its ratio to the first mode, taken per round (the
modes took turns within a round, so a round's ratio compares like with like) as median (min-max).

    bench_summary.py ROWS   (the table serve-bench.sh prints; lines that are not rows are skipped)
"""
import re
import statistics
import sys

ROW = re.compile(r"\| (\S+) \| (\S+) \| (\d+) \| (\d+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| (\d+) \| [^|]* \| (\d+) \|")


def main(path):
    cells, modes = {}, []
    with open(path) as f:
        for line in f:
            m = ROW.match(line)
            if not m:
                continue
            mode, payload, conns, rps, p50, p99, batch, _errors, rnd = m.groups()
            if mode not in modes:
                modes.append(mode)
            cells.setdefault((payload, int(conns)), {}).setdefault(mode, {})[int(rnd)] = (
                int(rps), float(p50), float(p99), float(batch))
    if not cells:
        sys.exit(f"bench_summary.py: no serve-bench rows in {path}")
    base = modes[0]
    head = ["payload", "conns"] + [f"req/s {m}" for m in modes] + [f"{m}/{base} per round" for m in modes[1:]]
    head += ["p50 ms " + " / ".join(modes), "p99 ms " + " / ".join(modes), "mean batch " + " / ".join(modes)]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for (payload, conns), by_mode in cells.items():
        med = {m: [statistics.median(r[i] for r in by_mode[m].values()) for i in range(4)] for m in modes if m in by_mode}
        row = [payload, str(conns)] + [f"{med[m][0]:.0f}" if m in med else "" for m in modes]
        for m in modes[1:]:
            rounds = sorted(set(by_mode.get(m, {})) & set(by_mode.get(base, {})))
            ratios = sorted(by_mode[m][r][0] / by_mode[base][r][0] for r in rounds if by_mode[base][r][0] > 0)
            row.append(f"{statistics.median(ratios):.2f} ({ratios[0]:.2f}-{ratios[-1]:.2f})" if ratios else "")
        for i, fmt in ((1, "{:.2f}"), (2, "{:.2f}"), (3, "{:.1f}")):
            row.append(" / ".join(fmt.format(med[m][i]) if m in med else "-" for m in modes))
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] in ("-h", "--help"):
        print(__doc__.strip())
        sys.exit(0 if len(sys.argv) == 2 else 2)
    main(sys.argv[1])
