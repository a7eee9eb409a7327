#!/usr/bin/env python3
"""HTTP/2 Rapid Reset (CVE-2023-44487, issue 15): a client that opens streams and resets each at
once, as fast as it can, on an endpoint whose upstream is slow. A stream reset in the same read
as its HEADERS never starts its calls (the upstream sees nothing of it); gatherd counts the
streams reset before their answer per connection (http2_reset_budget) and past the budget sends
GOAWAY with ENHANCE_YOUR_CALM and closes the connection, also for a client that resets its
streams only once their calls have started, so the upstream sees a bounded number of requests
and connections, and a normal client meanwhile gets its 200s in normal time. A client that
cancels a few streams, or that cancels many but also gets answers, is never cut off."""

import os
import socket
import struct
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (GatherdTestCase, call, config, endpoint, main, now,  # noqa: E402
                     run_curl, wait_until)
from test_client_gone import H2, frame, get_headers  # noqa: E402  (the hand-made HTTP/2 client)

GOAWAY, RST_STREAM, HEADERS = 7, 3, 1
ENHANCE_YOUR_CALM = 0xb
BUDGET = 100
# Streams the attacker tries to open and reset: far beyond the budget, so that without the
# containment the stub would see thousands of requests.
ATTACK_STREAMS = 3000
BATCH = 50


def metric(port, name):
    with urllib.request.urlopen('http://127.0.0.1:%d/metrics' % port, timeout=5) as r:
        for ln in r.read().decode().splitlines():
            if ln.startswith(name + ' '):
                return float(ln.split()[1])
    return None


def read_goaways(h2, timeout=5.0):
    """Reads @h2's connection until gatherd closes it (or @timeout passes), sending nothing.
    Returns (the error codes of the GOAWAY frames in it, whether it was closed)."""
    data, closed = h2.buf, False
    h2.sock.settimeout(timeout)
    while True:
        try:
            d = h2.sock.recv(65536)
        except socket.timeout:
            break
        except ConnectionResetError:  # unread attack bytes at gatherd's close(): a reset
            closed = True
            break
        if not d:
            closed = True
            break
        data += d
    codes = []
    while len(data) >= 9:
        length = int.from_bytes(data[:3], 'big')
        if len(data) < 9 + length:
            break
        if data[3] == GOAWAY:
            codes.append(struct.unpack('>I', data[13:17])[0])
        data = data[9 + length:]
    return codes, closed


def rapid_reset(port, streams=ATTACK_STREAMS, path='/slow'):
    """Opens and resets @streams streams in batches on one connection, until gatherd stops
    reading or closes. Returns (GOAWAY error codes received, whether the connection was closed
    by gatherd, streams sent, seconds until the close)."""
    h2 = H2(port)
    t0 = now()
    sent = 0
    sid = 1
    try:
        while sent < streams:
            out = b''
            for _ in range(BATCH):
                out += frame(HEADERS, 0x5, sid, get_headers(path, h2.authority))
                out += frame(RST_STREAM, 0, sid, struct.pack('>I', 0x8))  # CANCEL
                sid += 2
            try:
                h2.sock.sendall(out)
            except OSError:
                break  # gatherd closed the connection
            sent += BATCH
        codes, closed = read_goaways(h2)
        return codes, closed, sent, now() - t0
    finally:
        h2.close()


class NormalClient(threading.Thread):
    """HTTP/1.1 keep-alive GETs of @path in a loop until stopped: status and latency of each."""

    def __init__(self, gd, path):
        super().__init__(daemon=True)
        self.gd, self.path = gd, path
        self.stop = threading.Event()
        self.results = []  # (status, seconds)

    def run(self):
        conn = self.gd.connection(timeout=10)
        try:
            while not self.stop.is_set():
                try:
                    st, _, _, elapsed = self.gd.request('GET', self.path, conn=conn)
                except OSError as e:
                    self.results.append((repr(e), 0.0))
                    conn.close()
                    conn = self.gd.connection(timeout=10)
                    continue
                self.results.append((st, elapsed))
        finally:
            conn.close()


class H2ResetTest(GatherdTestCase):
    def start(self, **top):
        self.stub = self.start_stub()
        self.stub.add('/slow', json={'slow': True}, delay_ms=3000)
        self.stub.add('/fast', json={'ok': True})
        cfg = config([endpoint('/slow', {'s': call('s', '/slow', timeout_ms=5000)},
                               timeout_ms=5000),
                      endpoint('/fast', {'f': call('s', '/fast')})],
                     {'s': self.stub}, http2=True, **top)
        self.gd = self.start_gatherd(cfg)
        self.admin = int(self.gd.cfg['admin_listen'].rsplit(':', 1)[1])

    def test_rapid_reset_gets_goaway_and_normal_clients_are_unaffected(self):
        self.start()
        client = NormalClient(self.gd, '/fast')
        client.start()
        self.addCleanup(client.join, 10)
        self.addCleanup(client.stop.set)
        self.assertTrue(wait_until(lambda: len(client.results) >= 5, 5), client.results)

        codes, closed, sent, took = rapid_reset(self.gd.port)
        self.assertTrue(codes, 'no GOAWAY after %d streams reset' % sent)
        self.assertEqual(codes[0], ENHANCE_YOUR_CALM, codes)
        self.assertTrue(closed, 'gatherd did not close the connection')
        self.assertLess(took, 5.0)

        # Streams reset in the same read as their HEADERS start no call: the upstream saw at
        # most a batch of them (one that straddled two reads), not the attack's thousands.
        self.assertTrue(wait_until(lambda: metric(self.admin, 'gatherd_http2_reset_goaways_total')
                                   == 1, 5))
        resets = metric(self.admin, 'gatherd_http2_resets_total')
        self.assertGreaterEqual(resets, BUDGET + 1)
        self.assertLess(resets, BUDGET + 2 * BATCH, 'streams started after the GOAWAY')
        self.assertLessEqual(len(self.stub.requests_for('/slow')), BATCH)
        self.assertLessEqual(self.stub.connections_accepted, BATCH + 10)

        client.stop.set()
        client.join(10)
        bad = [r for r in client.results if r[0] != 200]
        self.assertFalse(bad, bad[:5])
        worst = max(e for _, e in client.results)
        self.assertLess(worst, 1.0, 'a normal request took %.3f s during the attack' % worst)
        # logged once, with the client
        self.assertEqual(self.gd.log().count('reset more streams before their answer'), 1,
                         self.gd.log()[-3000:])
        # a new HTTP/2 connection is served
        r = run_curl(['--http2-prior-knowledge', '-w', '\n%{http_code}', self.gd.url('/fast')])
        self.assertEqual(r.stdout.splitlines()[-1], b'200', r)

    def test_resets_after_the_calls_started_get_goaway(self):
        self.start()
        h2 = H2(self.gd.port)
        self.addCleanup(h2.close)
        sid, sent = 1, 0
        try:
            for _ in range(2 * BUDGET // BATCH + 1):
                # a batch of streams whose calls reach the upstream, then their resets
                first = sid
                for _ in range(BATCH):
                    h2.request(sid, '/slow')
                    sid += 2
                self.stub.wait_requests(sent + BATCH, 5)
                h2.sock.sendall(b''.join(frame(RST_STREAM, 0, s, struct.pack('>I', 0x8))
                                         for s in range(first, sid, 2)))
                sent += BATCH
        except OSError:
            pass  # closed by gatherd
        codes, closed = read_goaways(h2)
        self.assertEqual(codes[:1], [ENHANCE_YOUR_CALM])
        self.assertTrue(closed)
        self.assertLessEqual(len(self.stub.requests_for('/slow')), BUDGET + BATCH)
        self.assertEqual(metric(self.admin, 'gatherd_http2_reset_goaways_total'), 1)

    def test_a_client_that_cancels_a_few_streams_is_not_cut_off(self):
        self.start()
        h2 = H2(self.gd.port)
        self.addCleanup(h2.close)
        sid = 1
        for _ in range(3):
            # streams cancelled mid-gather, as a browser does when the user navigates on
            for _ in range(20):
                h2.request(sid, '/slow')
                sid += 2
            self.assertTrue(self.stub.wait_requests(len(self.stub.requests) + 1, 5))
            for s in range(sid - 40, sid, 2):
                h2.reset(s)
            h2.request(sid, '/fast')
            headers, body = h2.read_response(sid)
            self.assertEqual(body, b'{"f":{"ok": true}}')
            sid += 2
        self.assertEqual(metric(self.admin, 'gatherd_http2_reset_goaways_total'), 0)
        self.assertEqual(metric(self.admin, 'gatherd_http2_resets_total'), 60)

    def test_answers_give_the_budget_back(self):
        self.start(http2_reset_budget=5)
        h2 = H2(self.gd.port)
        self.addCleanup(h2.close)
        sid = 1
        # each answered request earns one more reset: 20 resets on a budget of 5
        for _ in range(20):
            h2.request(sid, '/fast')
            h2.read_response(sid)
            h2.request(sid + 2, '/slow')
            h2.reset(sid + 2)
            sid += 4
        h2.request(sid, '/fast')
        _, body = h2.read_response(sid)
        self.assertEqual(body, b'{"f":{"ok": true}}')
        sid += 2
        self.assertEqual(metric(self.admin, 'gatherd_http2_reset_goaways_total'), 0)
        # with no answers in between, the sixth reset ends the connection (the seventh when a
        # second passes meanwhile and gives one back)
        for i in range(8):
            h2.request(sid, '/slow')
            h2.reset(sid)
            sid += 2
        codes, closed = read_goaways(h2)
        self.assertTrue(closed)
        self.assertEqual(codes[:1], [ENHANCE_YOUR_CALM])
        self.assertEqual(metric(self.admin, 'gatherd_http2_reset_goaways_total'), 1)


class CancelledCallTest(GatherdTestCase):
    """A call cancelled when its answer is nearly complete (head received, at most 64 KiB of
    the body missing) reads the rest and keeps its connection for the next call; one far from
    complete closes it, as HTTP/1.1 demands."""

    def run_case(self, size, missing, chunked):
        stub = self.start_stub()
        body = b'"' + b'a' * (size - 2) + b'"'
        # the head and all but @missing bytes at once, the rest in pieces 300 ms apart
        stub.add('/nearly', body=body, mode='slow_body', chunk_size=size - missing,
                 interval_ms=300, chunked=chunked)
        stub.add('/fast', json={'ok': True})
        gd = self.start_gatherd(config(
            [endpoint('/nearly', {'n': call('s', '/nearly', timeout_ms=5000)}, timeout_ms=150),
             endpoint('/fast', {'f': call('s', '/fast')})], {'s': stub}))
        st, _, body, elapsed = gd.get('/nearly')
        self.assertEqual(st, 504, body)  # the endpoint deadline cancelled the call
        self.assertLess(elapsed, 1.0)
        time.sleep(0.5)  # the rest of the answer came meanwhile
        st, _, body, _ = gd.get('/fast')
        self.assertEqual((st, body), (200, b'{"f":{"ok": true}}'))
        return stub

    def test_nearly_complete_answer_keeps_its_connection(self):
        for chunked in (False, True):
            stub = self.run_case(200, 50, chunked)
            self.assertEqual(stub.connections_accepted, 1, stub.connections)
            self.assertEqual(stub.connections[0].paths, ['/nearly', '/fast'])

    def test_shutdown_while_an_answer_is_drained(self):
        stub = self.start_stub()
        stub.add('/nearly', body=b'"' + b'a' * 198 + b'"', mode='slow_body', chunk_size=150,
                 interval_ms=2000)
        gd = self.start_gatherd(config(
            [endpoint('/nearly', {'n': call('s', '/nearly', timeout_ms=5000)}, timeout_ms=150)],
            {'s': stub}, shutdown={'timeout_ms': 1000}))
        st, _, body, _ = gd.get('/nearly')
        self.assertEqual(st, 504, body)
        # the connection is still reading the rest of the answer: the exit closes it
        self.assertEqual(gd.terminate(10), 0, gd.log())
        self.assertTrue(wait_until(lambda: stub.connections[0].closed_by == 'peer', 5))

    def test_answer_far_from_complete_closes_its_connection(self):
        stub = self.run_case(200000, 150000, False)
        self.assertEqual(stub.connections_accepted, 2, stub.connections)
        self.assertTrue(wait_until(lambda: stub.connections[0].closed_by == 'peer', 5),
                        stub.connections)


if __name__ == '__main__':
    main()
