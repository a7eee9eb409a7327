#!/usr/bin/env python3
"""Overload: max_requests_in_flight slots, the queue in arrival order, its deadline, clients that
leave while queued, and shutdown with requests queued."""

import json
import os
import signal
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (HOST, GatherdTestCase, call, config, endpoint, main, now,  # noqa: E402
                     recv_until_close, wait_until)
from test_operations import admin_get, admin_port, metric_value  # noqa: E402


class Clients:
    """GETs of @paths, each on its own connection and thread, started @gap_s apart."""

    def __init__(self, gd, paths, gap_s=0.0, timeout=20.0):
        self.results = [None] * len(paths)
        self.started_at = [None] * len(paths)

        def run(i, path):
            try:
                self.results[i] = gd.get(path, timeout=timeout)
            except Exception as e:  # reported by the test
                self.results[i] = e

        self.threads = []
        for i, path in enumerate(paths):
            t = threading.Thread(target=run, args=(i, path), daemon=True)
            self.started_at[i] = now()
            t.start()
            self.threads.append(t)
            if gap_s:
                time.sleep(gap_s)

    def join(self, timeout=30.0):
        deadline = now() + timeout
        for t in self.threads:
            t.join(max(0.0, deadline - now()))
        return self.results


class AdmissionTest(GatherdTestCase):

    def setUp(self):
        self.stub = self.start_stub()

    def gatherd(self, limit, delay_ms, timeout_ms=10000, **top):
        self.stub.add('/slow', json={'ok': True}, delay_ms=delay_ms)
        self.stub.add('/fast', json={'fast': True})
        return self.start_gatherd(config([
            endpoint('/slow', {'x': call('s', '/slow?n={query.n}')}, timeout_ms=timeout_ms,
                     params={'query.n': {'type': 'int', 'required': False, 'default': '0'}}),
            endpoint('/short', {'x': call('s', '/fast')}, timeout_ms=500),
        ], {'s': self.stub}, threads=1, max_requests_in_flight=limit, **top))

    def assertAllOk(self, results, gd):
        for i, r in enumerate(results):
            self.assertIsInstance(r, tuple, 'request %d got no answer: %r; log:\n%s'
                                  % (i, r, gd.log()))
            self.assertEqual((r[0], r[2]), (200, b'{"x":{"ok": true}}'), 'request %d' % i)

    def test_requests_beyond_the_limit_wait_their_turn(self):
        gd = self.gatherd(limit=2, delay_ms=300)
        t0 = now()
        clients = Clients(gd, ['/slow'] * 6)
        self.assertEqual(self.stub.wait_requests(2, 5), 2)
        time.sleep(0.1)
        # four wait at the door, and say so on /metrics
        _, text = admin_get(admin_port(gd), '/metrics')
        self.assertEqual(metric_value(text, 'gatherd_requests_queued'), 4, text)
        self.assertEqual(metric_value(text, 'gatherd_requests_in_flight'), 2, text)
        self.assertEqual(len(self.stub.requests), 2)
        self.assertAllOk(clients.join(), gd)
        took = now() - t0
        # three waves of two 300 ms calls, never more than two at once
        self.assertGreaterEqual(took, 0.85)
        self.assertLess(took, 2.5)
        self.assertEqual(self.stub.max_concurrent_requests, 2)
        self.assertEqual(len(self.stub.requests), 6)
        _, text = admin_get(admin_port(gd), '/metrics')
        self.assertEqual(metric_value(text, 'gatherd_requests_queued'), 0, text)
        gd.check_clean_log()

    def test_slots_go_in_arrival_order(self):
        gd = self.gatherd(limit=1, delay_ms=200)
        paths = ['/slow?n=%d' % i for i in range(5)]
        clients = Clients(gd, paths, gap_s=0.05)
        self.assertAllOk(clients.join(), gd)
        self.assertEqual(self.stub.targets(), paths)

    def test_queued_request_gets_503_after_queue_timeout(self):
        gd = self.gatherd(limit=1, delay_ms=1500, queue_timeout_ms=500)
        holder = Clients(gd, ['/slow'])
        self.assertEqual(self.stub.wait_requests(1, 5), 1)
        st, hdrs, body, elapsed = gd.get('/short')
        doc = self.assertJsonError(st, hdrs, body, 503, 'overloaded')
        self.assertIn('queue_timeout_ms', doc['message'])
        self.assertEqual(hdrs.get('Retry-After'), '1')
        self.assertTrue(hdrs.get('X-Request-Id'))
        self.assertGreaterEqual(elapsed, 0.49, 'refused before its 500 ms in the queue')
        self.assertLess(elapsed, 1.2)
        self.assertAllOk(holder.join(), gd)
        # the refused request never reached the upstream
        self.assertEqual(self.stub.targets(), ['/slow?n=0'])
        # and the slot is free again
        st, _, body, _ = gd.get('/short')
        self.assertEqual(st, 200, body)

    def test_time_queued_does_not_count_against_the_deadline(self):
        # each request may take 700 ms; the third waits ~2 x 400 ms first, and still gets its
        # whole deadline once it has a slot
        gd = self.gatherd(limit=1, delay_ms=400, timeout_ms=700)
        clients = Clients(gd, ['/slow'] * 3)
        self.assertAllOk(clients.join(), gd)
        self.assertEqual(self.stub.max_concurrent_requests, 1)

    def test_queue_timeout_0_answers_503_at_once(self):
        gd = self.gatherd(limit=2, delay_ms=400, queue_timeout_ms=0)
        first = Clients(gd, ['/slow'] * 2)
        self.assertEqual(self.stub.wait_requests(2, 5), 2)
        rest = Clients(gd, ['/slow'] * 3)
        for r in rest.join():
            self.assertIsInstance(r, tuple, r)
            self.assertJsonError(r[0], r[1], r[2], 503, 'overloaded')
            self.assertLess(r[3], 0.2, 'the 503 was not immediate')
        self.assertAllOk(first.join(), gd)
        self.assertEqual(len(self.stub.requests), 2)
        st, _, body, _ = gd.get('/slow')  # the slots free up again
        self.assertEqual(st, 200, body)

    def test_client_gone_while_queued_gives_up_its_place(self):
        gd = self.gatherd(limit=1, delay_ms=400)
        first = Clients(gd, ['/slow?n=1'])
        self.assertEqual(self.stub.wait_requests(1, 5), 1)
        s = socket.create_connection((HOST, gd.port), timeout=5)
        s.sendall(b'GET /slow?n=2 HTTP/1.1\r\nHost: x\r\n\r\n')
        time.sleep(0.1)
        # gone while queued: a reset, which is all a server can tell from a half-close
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
        s.close()
        last = Clients(gd, ['/slow?n=3'])
        self.assertAllOk(first.join() + last.join(), gd)
        self.assertEqual(self.stub.targets(), ['/slow?n=1', '/slow?n=3'])
        # the access log has the abandoned request as 499
        self.assertTrue(wait_until(lambda: 'path=/slow?n=2 client=127.0.0.1 status=499' in gd.log()), gd.log())
        _, text = admin_get(admin_port(gd), '/metrics')
        self.assertEqual(metric_value(text, 'gatherd_requests_queued'), 0, text)
        gd.check_clean_log()

    def test_half_closed_client_while_queued_is_answered(self):
        gd = self.gatherd(limit=1, delay_ms=400)
        first = Clients(gd, ['/slow?n=1'])
        self.assertEqual(self.stub.wait_requests(1, 5), 1)
        s = socket.create_connection((HOST, gd.port), timeout=5)
        self.addCleanup(s.close)
        s.sendall(b'GET /slow?n=2 HTTP/1.1\r\nHost: x\r\n\r\n')
        s.shutdown(socket.SHUT_WR)  # done sending, still reading
        data = recv_until_close(s)
        self.assertTrue(data.startswith(b'HTTP/1.1 200 '), data[:300])
        self.assertTrue(data.endswith(b'{"x":{"ok": true}}'), data[-300:])
        self.assertAllOk(first.join(), gd)
        self.assertEqual(self.stub.targets(), ['/slow?n=1', '/slow?n=2'])

    def test_sigterm_answers_queued_requests(self):
        gd = self.gatherd(limit=1, delay_ms=250)
        clients = Clients(gd, ['/slow'] * 4)
        self.assertEqual(self.stub.wait_requests(1, 5), 1)
        time.sleep(0.05)
        gd.signal(signal.SIGTERM)
        self.assertAllOk(clients.join(), gd)
        self.assertEqual(gd.wait(10), 0, gd.log())
        self.assertEqual(len(self.stub.requests), 4)

    def wait_unread(self, gd, nclients, want_unread):
        """/metrics once all @nclients are connected and @want_unread of them are not read."""
        port = admin_port(gd)
        text = ''

        def settled():
            nonlocal text
            _, text = admin_get(port, '/metrics')
            return (metric_value(text, 'gatherd_client_connections') == nclients and
                    metric_value(text, 'gatherd_client_connections_unread') == want_unread)
        self.assertTrue(wait_until(settled, 5), text)
        return text

    def test_requests_beyond_the_read_bound_wait_in_the_kernel(self):
        # 4 slots and 16 read ahead of them (the least READ_AHEAD_MIN gives): of 40 clients,
        # the other 20 are not read; each is read, in turn, as the line shortens, and all are
        # answered.
        gd = self.gatherd(limit=4, delay_ms=300, queue_timeout_ms=10000)
        clients = Clients(gd, ['/slow'] * 40)
        self.assertEqual(self.stub.wait_requests(4, 5), 4)
        text = self.wait_unread(gd, 40, 20)
        self.assertEqual(metric_value(text, 'gatherd_requests_in_flight'), 4, text)
        self.assertEqual(metric_value(text, 'gatherd_requests_queued'), 16, text)
        self.assertAllOk(clients.join(), gd)
        self.assertEqual(self.stub.max_concurrent_requests, 4)
        self.assertEqual(len(self.stub.requests), 40)
        _, text = admin_get(admin_port(gd), '/metrics')
        self.assertEqual(metric_value(text, 'gatherd_client_connections_unread'), 0, text)
        gd.check_clean_log()

    def test_time_unread_counts_against_queue_timeout(self):
        # 4 slots held for 4 s, 16 queued, 10 unread in the kernel. The queued ones get their
        # 503 after their 1 s; the unread ones are read then, and, having waited their 1 s
        # already, get theirs at once, not after another second in the line.
        gd = self.gatherd(limit=4, delay_ms=4000, queue_timeout_ms=1000)
        clients = Clients(gd, ['/slow'] * 30)
        self.assertEqual(self.stub.wait_requests(4, 5), 4)
        self.wait_unread(gd, 30, 10)
        results = clients.join()
        refused = [r for r in results if isinstance(r, tuple) and r[0] == 503]
        self.assertEqual(len(refused), 26, results)
        for st, hdrs, body, elapsed in refused:
            self.assertJsonError(st, hdrs, body, 503, 'overloaded')
            self.assertGreaterEqual(elapsed, 0.9, 'refused before its queue_timeout_ms')
            self.assertLess(elapsed, 1.7, 'waited its queue_timeout_ms unread, then again queued')
        served = [r for r in results if isinstance(r, tuple) and r[0] == 200]
        self.assertEqual(len(served), 4, results)
        self.assertEqual(len(self.stub.requests), 4)
        gd.check_clean_log()

    def test_only_the_time_a_request_was_unread_counts(self):
        # A client connects while the line is full and is not read; its request comes 0.6 s
        # later. When it is read, only the time its request spent in the kernel counts (the
        # kernel's receive stamp), not the time the connection was unread: it waits out the
        # rest of its 1 s in the line instead of a 503 at once.
        gd = self.gatherd(limit=4, delay_ms=4000, queue_timeout_ms=1000)
        clients = Clients(gd, ['/slow'] * 20)
        self.assertEqual(self.stub.wait_requests(4, 5), 4)
        self.wait_unread(gd, 20, 0)
        late = socket.create_connection((HOST, gd.port), timeout=10)
        try:
            self.wait_unread(gd, 21, 1)
            time.sleep(0.6)
            sent_at = now()
            late.sendall(b'GET /short HTTP/1.1\r\nHost: x\r\n\r\n')
            data = b''
            while b'\r\n\r\n' not in data:
                d = late.recv(65536)
                if not d:
                    break
                data += d
            elapsed = now() - sent_at
        finally:
            late.close()
        self.assertIn(b' 503 ', data.split(b'\r\n', 1)[0], data)
        self.assertGreaterEqual(elapsed, 0.8, 'the time it was unread with nothing sent counted')
        self.assertLess(elapsed, 1.6)
        clients.join()
        gd.check_clean_log()

    def test_sigterm_reads_and_answers_unread_requests(self):
        gd = self.gatherd(limit=4, delay_ms=300, queue_timeout_ms=10000)
        clients = Clients(gd, ['/slow'] * 30)
        self.assertEqual(self.stub.wait_requests(4, 5), 4)
        self.wait_unread(gd, 30, 10)
        gd.signal(signal.SIGTERM)
        self.assertAllOk(clients.join(), gd)
        self.assertEqual(gd.wait(10), 0, gd.log())
        self.assertEqual(len(self.stub.requests), 30)

    def test_shutdown_timeout_refuses_queued_requests(self):
        gd = self.gatherd(limit=1, delay_ms=5000, shutdown={'timeout_ms': 300})
        clients = Clients(gd, ['/slow'] * 3)
        self.assertEqual(self.stub.wait_requests(1, 5), 1)
        time.sleep(0.1)
        t0 = now()
        gd.signal(signal.SIGTERM)
        results = clients.join(10)
        for r in results:
            self.assertIsInstance(r, tuple, 'no answer: %r; log:\n%s' % (r, gd.log()))
            self.assertJsonError(r[0], r[1], r[2], 503, 'shutting_down')
        self.assertLess(now() - t0, 2.0)
        self.assertEqual(gd.wait(5), 1, gd.log())
        self.assertEqual(len(self.stub.requests), 1)


if __name__ == '__main__':
    main()
