#!/usr/bin/env python3
"""Clients that do not read their answers (issue 15): an HTTP/1 client that asks for a large
answer and never reads it, an HTTP/2 client whose flow-control window stays at zero. Their
connections are closed after write_timeout_ms (logged, counted in gatherd_write_timeouts_total),
other clients are served meanwhile, the answer bytes they hold are bounded per connection and for
the process (503 beyond, counted in gatherd_unsent_refusals_total, served again once drained), and
gatherd's RSS comes back near its baseline after a burst of large answers."""

import json
import os
import re
import socket
import struct
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (GatherdTestCase, call, config, endpoint, main, now,  # noqa: E402
                     wait_until)
from test_client_gone import frame, hpack_literal  # noqa: E402  (the raw HTTP/2 frames)

WRITE_TIMEOUT_MS = 1000
BIG = 7_000_000  # bytes of the upstream's answer, passed through whole
MB = 1 << 20


def big_doc(size):
    return json.dumps({'data': 'x' * (size - 12)}).encode()


def metrics_text(port):
    with urllib.request.urlopen('http://127.0.0.1:%d/metrics' % port, timeout=5) as r:
        return r.read().decode()


def metric(port, name, labels=''):
    want = name + labels + ' '
    for ln in metrics_text(port).splitlines():
        if ln.startswith(want):
            return float(ln[len(want):])
    return 0.0


def rss_bytes(pid):
    with open('/proc/%d/status' % pid) as f:
        for ln in f:
            if ln.startswith('VmRSS:'):
                return int(ln.split()[1]) * 1024
    raise AssertionError('no VmRSS')


def is_sanitized(pid):
    """Whether the process runs under ASan, whose allocator keeps freed memory in quarantine."""
    with open('/proc/%d/maps' % pid) as f:
        return 'libasan' in f.read()


def stalled_client(port, path):
    """An HTTP/1 client that sends its request and never reads: a small receive buffer, so that
    gatherd's writes block soon."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(('127.0.0.1', port))
    s.sendall(b'GET %s HTTP/1.1\r\nHost: t\r\n\r\n' % path.encode())
    return s


def drain(s, timeout=10.0):
    """Reads @s until the end (EOF or reset); returns (bytes read, whether it ended)."""
    s.settimeout(timeout)
    n = 0
    try:
        while True:
            data = s.recv(1 << 20)
            if not data:
                return n, True
            n += len(data)
    except ConnectionResetError:
        return n, True
    except socket.timeout:
        return n, False
    finally:
        s.close()


def get(port, path, timeout=10.0):
    """(status, body) of a plain GET that reads its answer."""
    req = urllib.request.Request('http://127.0.0.1:%d%s' % (port, path))
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class SlowReaderCase(GatherdTestCase):
    def start(self, body_size=BIG, **top):
        self.stub = self.start_stub()
        self.stub.add('/big', body=big_doc(body_size), headers={'Content-Type': 'application/json'})
        self.stub.add('/small', json={'ok': True})
        top.setdefault('write_timeout_ms', WRITE_TIMEOUT_MS)
        cfg = config([endpoint('/big', {'b': call('s', '/big', timeout_ms=8000)},
                               timeout_ms=8000, compress=False),
                      endpoint('/small', {'s': call('s', '/small')})],
                     {'s': self.stub}, **top)
        self.gd = self.start_gatherd(cfg)
        self.admin = int(self.gd.cfg['admin_listen'].rsplit(':', 1)[1])
        self.port = self.gd.port

    def wait_metric(self, name, labels, value, timeout):
        return wait_until(lambda: metric(self.admin, name, labels) >= value, timeout=timeout,
                          interval=0.05)


class Http1SlowReaders(SlowReaderCase):
    def test_stalled_clients_are_closed_after_the_write_timeout(self):
        self.start()
        self.assertEqual(get(self.port, '/big')[0], 200)  # warm: the pools, the allocator
        time.sleep(0.5)
        baseline = rss_bytes(self.gd.pid)
        clients = [stalled_client(self.port, '/big') for _ in range(8)]
        started = now()
        # Held meanwhile: the unsent bytes show, and other clients are served at once.
        self.assertTrue(wait_until(lambda: metric(self.admin, 'gatherd_unsent_answer_bytes')
                                   >= 8 * BIG, timeout=5, interval=0.05))
        t0 = now()
        status, body = get(self.port, '/small', timeout=5)
        self.assertEqual(status, 200)
        self.assertLess(now() - t0, 1.0)
        held_rss = rss_bytes(self.gd.pid)
        if not is_sanitized(self.gd.pid):
            # The bytes are those of the 8 answers, not more (generous: allocator slack).
            self.assertLess(held_rss - baseline, 8 * BIG * 2 + 32 * MB, (baseline, held_rss))

        self.assertTrue(self.wait_metric('gatherd_write_timeouts_total', '', 8, timeout=10),
                        metrics_text(self.admin))
        elapsed = now() - started
        self.assertGreater(elapsed, WRITE_TIMEOUT_MS / 1000 * 0.9)
        self.assertLess(elapsed, WRITE_TIMEOUT_MS / 1000 + 5)
        for c in clients:
            n, ended = drain(c)
            self.assertTrue(ended, 'the connection was left open')
            self.assertLess(n, BIG, 'the whole answer came: it was not cut off')
        self.assertTrue(wait_until(lambda: metric(self.admin, 'gatherd_unsent_answer_bytes') == 0,
                                   timeout=5, interval=0.05))
        self.assertEqual(get(self.port, '/big')[0], 200)
        if not is_sanitized(self.gd.pid):
            # The answers are gone with their connections: memory is back near the baseline
            # once the thread is idle (a trim at most every second). Without the trim it stays
            # 37 MB above; 17 MB was seen after the trim on a fresh machine (fragments of the
            # 7 MB answer just sent), so the bound between is 24 MB.
            wait_until(lambda: rss_bytes(self.gd.pid) - baseline < 24 * MB, timeout=4)
            self.assertLess(rss_bytes(self.gd.pid) - baseline, 24 * MB)
        log = self.gd.log()
        lines = [ln for ln in log.splitlines() if 'write_timeout_ms' in ln]
        self.assertEqual(len(lines), 8, log[-3000:])
        self.assertIn('client 127.0.0.1', lines[0])
        self.assertIn('GET /big', lines[0])

    def test_a_slow_client_that_reads_is_not_cut_off(self):
        """The write timeout is for no progress at all: a client that reads the answer slowly,
        taking longer than the timeout in all, gets all of it."""
        self.start()
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(s.close)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        s.connect(('127.0.0.1', self.port))
        s.sendall(b'GET /big HTTP/1.1\r\nHost: t\r\n\r\n')
        s.settimeout(10)
        t0 = now()
        head = b''
        while b'\r\n\r\n' not in head:
            head += s.recv(4096)
        got = len(head.split(b'\r\n\r\n', 1)[1])
        length = int(re.search(rb'(?i)content-length: *(\d+)', head).group(1))
        while got < length:  # about 1.6 MB/s: the answer takes several write timeouts
            time.sleep(0.02)
            data = s.recv(32768)
            if not data:
                break
            got += len(data)
        self.assertEqual(got, length)
        self.assertGreater(now() - t0, WRITE_TIMEOUT_MS / 1000)
        self.assertEqual(metric(self.admin, 'gatherd_write_timeouts_total'), 0)

    def test_process_bound_refuses_with_503_and_recovers(self):
        # Two 7 MB answers fit; a third would pass 20 MB.
        self.start(max_unsent_bytes=20 * MB, write_timeout_ms=3000)
        clients = [stalled_client(self.port, '/big') for _ in range(2)]
        self.assertTrue(wait_until(lambda: metric(self.admin, 'gatherd_unsent_answer_bytes')
                                   >= 2 * BIG, timeout=5, interval=0.05))
        status, body = get(self.port, '/big')
        self.assertEqual(status, 503, body[:200])
        doc = json.loads(body)
        self.assertEqual(doc['error'], 'overloaded')
        self.assertIn('max_unsent_bytes', doc['message'])
        self.assertEqual(metric(self.admin, 'gatherd_unsent_refusals_total', '{bound="process"}'),
                         1)
        # A small answer still fits.
        self.assertEqual(get(self.port, '/small')[0], 200)
        self.assertTrue(self.wait_metric('gatherd_write_timeouts_total', '', 2, timeout=10))
        for c in clients:
            drain(c)
        self.assertTrue(wait_until(lambda: metric(self.admin, 'gatherd_unsent_answer_bytes') == 0,
                                   timeout=5, interval=0.05))
        status, body = get(self.port, '/big')
        self.assertEqual(status, 200)
        self.assertGreater(len(body), BIG)

    def test_no_call_is_made_when_no_room_is_left(self):
        """One answer larger than the process bound is served (nothing was held); while its
        client does not read it, new requests are refused at once, before their calls."""
        self.start(max_unsent_bytes=5 * MB, write_timeout_ms=3000)
        c = stalled_client(self.port, '/big')
        self.addCleanup(c.close)
        self.assertTrue(wait_until(lambda: metric(self.admin, 'gatherd_unsent_answer_bytes')
                                   >= BIG, timeout=5, interval=0.05))
        calls = len(self.stub.requests_for('/big'))
        for path in ('/big', '/small'):
            status, body = get(self.port, path)
            self.assertEqual(status, 503, body[:200])
            self.assertEqual(json.loads(body)['error'], 'overloaded')
        self.assertEqual(len(self.stub.requests_for('/big')), calls)
        self.assertEqual(len(self.stub.requests_for('/small')), 0)
        self.assertTrue(self.wait_metric('gatherd_write_timeouts_total', '', 1, timeout=10))
        self.assertTrue(wait_until(lambda: metric(self.admin, 'gatherd_unsent_answer_bytes') == 0,
                                   timeout=5, interval=0.05))
        self.assertEqual(get(self.port, '/small')[0], 200)


class MemoryAfterBurst(SlowReaderCase):
    def test_rss_returns_near_baseline_after_a_burst(self):
        # Room for the 40 answers at once: the burst is about memory coming back, not bounds;
        # and the default write timeout, since 40 Python readers on a loaded machine may each
        # go more than the other tests' second without reading (a fresh-machine run saw it).
        self.start(threads=2, max_unsent_bytes=1 << 30, write_timeout_ms=30000)
        for _ in range(2):
            self.assertEqual(get(self.port, '/big')[0], 200)
        time.sleep(0.5)  # idle: the warm-up's memory is given back too
        baseline = rss_bytes(self.gd.pid)
        results = []

        def one():
            results.append(get(self.port, '/big', timeout=60))
        threads = [threading.Thread(target=one) for _ in range(40)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(90)
        self.assertEqual(len(results), 40)
        self.assertEqual([st for st, _ in results], [200] * 40)
        self.assertTrue(all(len(b) > BIG for _, b in results))
        peak = rss_bytes(self.gd.pid)
        if is_sanitized(self.gd.pid):
            return
        # Idle again: within a few heartbeats the freed memory is given back.
        t0 = now()
        wait_until(lambda: rss_bytes(self.gd.pid) - baseline < 6 * MB, timeout=3, interval=0.05)
        after = rss_bytes(self.gd.pid)
        sys.stderr.write('RSS baseline %.1f MB, at the end of the burst %.1f MB, %.1f MB %.2f s '
                         'later\n' % (baseline / MB, peak / MB, after / MB, now() - t0))
        # Measured: +1 MB with the idle trim, +37 MB (29.6 -> 66.3 MB) without it, and 7-20 MB
        # with malloc_trim() alone (the free top of a worker's own arena, one or two answers).
        self.assertLess(after - baseline, 6 * MB, (baseline, after))


# -- HTTP/2 with a zero window (RFC 9113 section 6.9.2: SETTINGS_INITIAL_WINDOW_SIZE 0) ----------

class Http2ZeroWindow(SlowReaderCase):
    def test_zero_window_streams_are_bounded_and_closed(self):
        body = 2 * MB
        self.start(body_size=body, max_unsent_bytes_per_connection=9 * MB, http2=True)
        s = socket.create_connection(('127.0.0.1', self.port), timeout=10)
        self.addCleanup(s.close)
        settings = struct.pack('>HI', 4, 0)  # SETTINGS_INITIAL_WINDOW_SIZE = 0
        s.sendall(b'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n' + frame(4, 0, 0, settings))
        authority = '127.0.0.1:%d' % self.port
        for i in range(20):
            s.sendall(frame(1, 0x5, 1 + 2 * i, b'\x82\x86' + hpack_literal(4, '/big') +
                            hpack_literal(1, authority)))
        # Five 2 MB answers fit in 9 MB (the fifth one the first to pass it); the rest are 503.
        self.assertTrue(wait_until(
            lambda: metric(self.admin, 'gatherd_unsent_refusals_total', '{bound="connection"}')
            >= 15, timeout=10, interval=0.05), metrics_text(self.admin))
        # The gauge is published every 100 ms.
        self.assertTrue(wait_until(lambda: metric(self.admin, 'gatherd_unsent_answer_bytes')
                                   >= 4 * body, timeout=5, interval=0.05))
        held = metric(self.admin, 'gatherd_unsent_answer_bytes')
        self.assertLessEqual(held, 9 * MB + body + 65536)
        # Other clients are served meanwhile.
        self.assertEqual(get(self.port, '/small')[0], 200)
        # No DATA can flow: the write timeout closes the connection.
        self.assertTrue(self.wait_metric('gatherd_write_timeouts_total', '', 1, timeout=10))
        s.settimeout(10)
        ended = False
        try:
            while s.recv(65536):
                pass
            ended = True
        except ConnectionResetError:
            ended = True
        self.assertTrue(ended)
        self.assertTrue(wait_until(lambda: metric(self.admin, 'gatherd_unsent_answer_bytes') == 0,
                                   timeout=5, interval=0.05))
        lines = [ln for ln in self.gd.log().splitlines() if 'write_timeout_ms' in ln]
        self.assertEqual(len(lines), 1, lines)  # one line per connection, not per stream
        self.assertIn('HTTP/2 connection', lines[0])
        self.assertEqual(metric(self.admin, 'gatherd_write_timeouts_total'), 1)


if __name__ == '__main__':
    main()
