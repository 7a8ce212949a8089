#!/usr/bin/env python3
"""Summary of the per-round rows of scripts/serve-bench.sh and bench/serve/perf-analyzer-batching.sh:
per cell (payload or kind, and connection count or concurrency), each batching mode's median
throughput and other figures over the rounds, and its throughput against the first mode, taken per
round (the modes took turns within a round, so a round's ratio compares like with like) as median
(min-max).

    bench_summary.py ROWS   (the Markdown table the script printed, header included; the lines before it
                             are skipped, and it ends at the first line that is not a table row)

Columns are found by name: the mode (`batching` or `mode`), `round`, the throughput (the first name
with "/s"), the cell (`payload` or `kind`, and `conns` or `conc`); every other column whose values are
all numbers is reported as "mode1 / mode2 ..." medians, except `errors`.
"""
import statistics
import sys


def cells_of(line):
    return [c.strip() for c in line.strip().strip("|").split("|")]


def number(text):
    try:
        return float(text)
    except ValueError:
        return None


def main(path):
    header, rows = None, []
    with open(path) as f:
        for line in f:
            if not line.startswith("|"):
                if rows:  # the table ended (what follows may be another table, e.g. a summary)
                    break
                continue
            if line.startswith("|---"):
                continue
            c = cells_of(line)
            if "round" in c:
                header = header or c
            elif header and len(c) == len(header):
                rows.append(dict(zip(header, c)))
    if not rows:
        sys.exit(f"bench_summary.py: no rows under a header with a 'round' column in {path}")
    mode = next(n for n in ("batching", "mode") if n in header)
    keys = [next(n for n in names if n in header) for names in (("payload", "kind"), ("conns", "conc"))]
    rate = next(n for n in header if "/s" in n)
    rows = [r for r in rows if number(r[rate]) is not None]  # a run that gave no figure has its error in the row
    shown = [n for n in header if n not in (mode, "round", rate, "errors", *keys)
             and all(number(r[n]) is not None for r in rows)]
    # Each figure with as many decimals as the rows give it.
    places = {n: max(len(r[n].partition(".")[2]) for r in rows) for n in shown}
    cells, modes = {}, []
    for r in rows:
        if r[mode] not in modes:
            modes.append(r[mode])
        cells.setdefault(tuple(r[k] for k in keys), {}).setdefault(r[mode], {})[r["round"]] = r
    base = modes[0]
    head = keys + [f"{rate} {m}" for m in modes] + [f"{m}/{base} per round" for m in modes[1:]]
    head += [f"{n} " + " / ".join(modes) for n in shown]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(keys) + "---:|" * len(modes) + "---|" * (len(head) - len(keys) - len(modes)))

    def median(m, by_mode, n):
        return statistics.median(number(r[n]) for r in by_mode[m].values()) if m in by_mode else None

    for cell, by_mode in cells.items():
        row = list(cell) + [f"{median(m, by_mode, rate):.0f}" if m in by_mode else "" for m in modes]
        for m in modes[1:]:
            rounds = set(by_mode.get(m, {})) & set(by_mode.get(base, {}))
            ratios = sorted(number(by_mode[m][k][rate]) / number(by_mode[base][k][rate]) for k in rounds
                            if number(by_mode[base][k][rate]) > 0)
            row.append(f"{statistics.median(ratios):.2f} ({ratios[0]:.2f}-{ratios[-1]:.2f})" if ratios else "")
        for n in shown:
            row.append(" / ".join(f"{median(m, by_mode, n):.{places[n]}f}" if m in by_mode else "-" for m in modes))
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] in ("-h", "--help"):
        print(__doc__.strip())
        sys.exit(0 if len(sys.argv) == 2 else 2)
    main(sys.argv[1])
