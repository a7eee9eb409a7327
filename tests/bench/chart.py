#!/usr/bin/env python3
"""Draws req/s and p99 per target and mode from the harness's JSON lines, with gnuplot.

usage: chart.py DIR MODE...   (reads DIR/MODE.jsonl, writes DIR/chart.png and DIR/summary.md)
With DIR/open-loop.jsonl (tests/bench/run.sh -R), a third panel draws p99 against the offered
rate per target, from the open-loop windows, and summary.md gains their table.
Noisy windows (something the run did not start used > 0.15 core) are left out, as the
harness's own report does. The nginx reference is in the table, not on the chart.
"""
import json
import os
import subprocess
import sys
from collections import OrderedDict


def noisy(r):
    return (r.get('other_cpu_s') or 0) > 0.15 * (r.get('wall_s') or 10)


def open_loop(path):
    """{label: [(offered, p50, p99, rate_spec, overloaded)]} from the open-loop windows, the
    median p99 of a target's clean windows per rate (all of them when every one is noisy)."""
    rows = OrderedDict()
    for line in open(path):
        if line.strip():
            r = json.loads(line)
            if r.get('kind') == 'olg':
                rows.setdefault((r['label'], r['rate_spec']), []).append(r)
    out = OrderedDict()
    for (label, spec), rs in rows.items():
        use = [r for r in rs if not noisy(r)] or rs
        use.sort(key=lambda r: r['p99_ms'])
        mid = use[len(use) // 2]
        out.setdefault(label, []).append((mid['offered_rps'], mid['p50_ms'], mid['p99_ms'], spec,
                                          any(r.get('overloaded') for r in use)))
    for points in out.values():
        points.sort()
    return out


def summarize(path):
    per = OrderedDict()
    for line in open(path):
        if not line.strip():
            continue
        r = json.loads(line)
        if noisy(r) or r.get('kind') == 'olg':
            continue
        per.setdefault(r['label'], []).append(r)
    out = OrderedDict()
    for label, rows in per.items():
        def mean(key):
            vals = [x[key] for x in rows if x.get(key) is not None]
            return sum(vals) / len(vals) if vals else float('nan')
        out[label] = {'rps': mean('rps'), 'p99': mean('p99_ms'), 'p50': mean('p50_ms'),
                      'cpu_us': mean('target_cpu_us_per_req'), 'pss': max(
                          (x.get('target_pss_mb') or 0) for x in rows),
                      'non2xx': sum(x.get('non2xx') or 0 for x in rows)}
    return out


def main():
    d, modes = sys.argv[1], sys.argv[2:]
    data = os.path.join(d, 'chart.dat')
    md = ['| mode | target | req/s | p50 ms | p99 ms | CPU µs/req | peak PSS MB | non-2xx |',
          '|---|---|---|---|---|---|---|---|']
    with open(data, 'w') as f:
        f.write('label rps p99\n')
        for mode in modes:
            path = os.path.join(d, mode + '.jsonl')
            if not os.path.exists(path):
                continue
            for label, s in summarize(path).items():
                # The mock alone answers one call, not the profile: a reference for the table
                # (its ceiling, its CPU per exchange), off the chart's scale.
                if label != 'nginx':
                    f.write('"%s/%s" %.0f %.2f\n' % (mode, label, s['rps'], s['p99']))
                md.append('| %s | %s | %.0f | %.2f | %.2f | %.0f | %.1f | %d |' % (
                    mode, label, s['rps'], s['p50'], s['p99'], s['cpu_us'], s['pss'],
                    s['non2xx']))
    olpath = os.path.join(d, 'open-loop.jsonl')
    curves = open_loop(olpath) if os.path.exists(olpath) else {}
    oldata = os.path.join(d, 'open-loop.dat')
    if curves:
        md += ['', 'open loop (p99 from the intended send time; * = overloaded: the target did not',
               'keep up with the offered rate):', '',
               '| target | rate | offered req/s | p50 ms | p99 ms | p99 / p50 |', '|---|---|---|---|---|---|']
        with open(oldata, 'w') as f:
            for label, points in curves.items():
                f.write('"%s"\n' % label)  # a gnuplot block per target, named by its first line
                for offered, p50, p99, spec, over in points:
                    f.write('%.0f %.3f\n' % (offered, p99))
                    md.append('| %s | %s%s | %.0f | %.2f | %.2f | %.1f |' % (
                        label, spec, ' *' if over else '', offered, p50, p99, p99 / p50 if p50 else 0))
                f.write('\n\n')
    with open(os.path.join(d, 'summary.md'), 'w') as f:
        f.write('\n'.join(md) + '\n')
    script = '''
set terminal pngcairo size %d,420 font ",10"
set output "%s"
set multiplot layout 1,%d
set style data histograms
set style fill solid 0.8 border -1
set boxwidth 0.8
set xtics rotate by -30
set grid ytics
set key off
set title "requests/s (higher is better)"
set yrange [0:*]
plot "%s" using 2:xtic(1) skip 1 lc rgb "#3b7dd8"
set title "p99 latency, ms (lower is better)"
set yrange [1:*]
set logscale y
plot "%s" using 3:xtic(1) skip 1 lc rgb "#d8743b"
''' % (1500 if curves else 1000, os.path.join(d, 'chart.png'), 3 if curves else 2, data, data)
    if curves:
        script += '''
unset style
set style data linespoints
set xtics norotate
set key top left
set logscale x
set xlabel "offered req/s (open loop)"
set title "p99 ms against offered load (lower is better)"
plot for [i=0:%d] "%s" index i using 1:2 title columnheader(1) lw 2
''' % (len(curves) - 1, oldata)
    script += 'unset multiplot\n'
    subprocess.run(['gnuplot'], input=script, text=True, check=True)
    print('\n'.join(md))


if __name__ == '__main__':
    main()
