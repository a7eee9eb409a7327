#!/usr/bin/env python3
"""Graceful shutdown: drain delay, listeners closed, in-flight requests answered, exit codes."""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (HOST, GatherdTestCase, call, config, endpoint, main, now,  # noqa: E402
                     run_curl)


def connect_refused(port):
    """True when a TCP connect to @port is refused now, or gets no answer: a closing listener
    drops SYNs for its last 50 ms (the client would retry after a second and be refused)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(0.3)
    try:
        s.connect((HOST, port))
        return False
    except (ConnectionRefusedError, socket.timeout):
        return True
    except OSError:
        return False
    finally:
        s.close()


def wait_refused(gd, timeout):
    """Polls every 10 ms until connects to gatherd are refused; returns the monotonic time of
    the first refusal, or None."""
    deadline = now() + timeout
    while now() < deadline:
        if connect_refused(gd.port):
            return now()
        time.sleep(0.01)
    return None


class Clients:
    """@n concurrent GETs of @path, each on its own connection."""

    def __init__(self, gd, path, n, timeout=20.0):
        self.results = [None] * n
        self.done_at = [None] * n

        def run(i):
            try:
                self.results[i] = gd.get(path, timeout=timeout)
            except Exception as e:  # reported by the test
                self.results[i] = e
            self.done_at[i] = now()

        self.threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(n)]
        for t in self.threads:
            t.start()

    def join(self, timeout=30.0):
        deadline = now() + timeout
        for t in self.threads:
            t.join(max(0.0, deadline - now()))
        return self.results


class ShutdownTest(GatherdTestCase):

    def setUp(self):
        self.stub = self.start_stub()
        self.stub.add('/fast', json={'fast': True})

    def gatherd(self, slow_ms, drain_delay_ms=0, timeout_ms=30000, slow_mode=None):
        if slow_mode:
            self.stub.add('/slow', mode=slow_mode)
        else:
            self.stub.add('/slow', json={'slow': True}, delay_ms=slow_ms)
        return self.start_gatherd(config([
            endpoint('/slow', {'slow': call('s', '/slow')}, timeout_ms=60000),
            endpoint('/fast', {'fast': call('s', '/fast')}),
        ], {'s': self.stub}, threads=2, http2=True,
            shutdown={'drain_delay_ms': drain_delay_ms, 'timeout_ms': timeout_ms}))

    def in_flight(self, gd, n):
        clients = Clients(gd, '/slow', n)
        got = self.stub.wait_requests(n, timeout=10)
        self.assertEqual(got, n, 'only %d of %d requests reached the upstream' % (got, n))
        return clients

    def test_sigterm_with_requests_in_flight(self):
        gd = self.gatherd(slow_ms=800, drain_delay_ms=100)
        clients = self.in_flight(gd, 20)
        t0 = now()
        gd.signal(signal.SIGTERM)
        refused_at = wait_refused(gd, timeout=3.0)
        self.assertIsNotNone(refused_at, 'new connections still accepted 3 s after SIGTERM')
        still_running = gd.alive()
        self.assertTrue(still_running, 'gatherd exited before in-flight requests finished '
                        '(rc=%s); log:\n%s' % (gd.returncode, gd.log()))
        self.assertGreaterEqual(refused_at - t0, 0.09, 'listeners closed before drain_delay_ms')
        self.assertLess(refused_at - t0, 0.6)
        results = clients.join()
        for i, r in enumerate(results):
            self.assertIsInstance(r, tuple, 'request %d got no answer: %r; log:\n%s'
                                  % (i, r, gd.log()))
            st, hdrs, body, _ = r
            self.assertEqual((st, body), (200, b'{"slow":{"slow": true}}'), 'request %d' % i)
            self.assertEqual(hdrs.get('X-Gatherd-Complete'), 'true')
        rc = gd.wait(10)
        self.assertEqual(rc, 0, gd.log())
        self.assertLess(now() - max(clients.done_at), 2.0, 'exit long after the last answer')

    def test_in_flight_answers_carry_connection_close(self):
        gd = self.gatherd(slow_ms=500)
        clients = self.in_flight(gd, 3)
        gd.signal(signal.SIGTERM)
        for r in clients.join():
            self.assertIsInstance(r, tuple, r)
            st, hdrs, body, _ = r
            self.assertEqual(st, 200, body)
            self.assertEqual((hdrs.get('Connection') or '').lower(), 'close', dict(hdrs))
        self.assertEqual(gd.wait(10), 0)

    def test_drain_delay_keeps_serving(self):
        gd = self.gatherd(slow_ms=0, drain_delay_ms=600)
        t0 = now()
        gd.signal(signal.SIGTERM)
        served = 0
        # during the delay new connections are accepted and answered
        while now() - t0 < 0.4:
            st, _, body, _ = gd.get('/fast')
            self.assertEqual((st, body), (200, b'{"fast":{"fast": true}}'),
                             'at +%.3f s' % (now() - t0))
            served += 1
            time.sleep(0.05)
        self.assertGreater(served, 3)
        refused_at = wait_refused(gd, timeout=3.0)
        self.assertIsNotNone(refused_at, 'new connections still accepted 3 s after SIGTERM')
        self.assertTrue(gd.alive() or gd.returncode == 0,
                        'gatherd died (rc=%s); log:\n%s' % (gd.returncode, gd.log()))
        self.assertGreaterEqual(refused_at - t0, 0.59)
        self.assertLess(refused_at - t0, 1.5)
        self.assertEqual(gd.wait(5), 0, gd.log())
        self.assertLess(now() - t0, 2.5)

    def test_idle_keepalive_connection_does_not_hold_shutdown(self):
        gd = self.gatherd(slow_ms=0)
        conn = gd.connection()
        self.addCleanup(conn.close)
        st, hdrs, body, _ = gd.request('GET', '/fast', conn=conn)
        self.assertEqual(st, 200, body)
        self.assertNotEqual((hdrs.get('Connection') or '').lower(), 'close')
        t0 = now()
        gd.signal(signal.SIGTERM)
        rc = gd.wait(8)  # h1 idle timeout is 10 s: waiting for it would fail here
        took = now() - t0
        self.assertIsNotNone(rc, 'gatherd still running 8 s after SIGTERM with one idle '
                             'keep-alive connection')
        self.assertEqual(rc, 0, gd.log())
        self.assertLess(took, 1.0, 'shutdown took %.2f s with one idle connection' % took)
        conn.sock.settimeout(1.0)
        try:
            self.assertEqual(conn.sock.recv(100), b'')
        except ConnectionResetError:
            pass

    def test_shutdown_timeout_answers_503_and_exits_1(self):
        gd = self.gatherd(slow_ms=5000, timeout_ms=300)
        clients = self.in_flight(gd, 2)
        t0 = now()
        gd.signal(signal.SIGTERM)
        results = clients.join(10)
        for r in results:
            self.assertIsInstance(r, tuple, 'no answer: %r; log:\n%s' % (r, gd.log()))
            st, hdrs, body, elapsed = r
            self.assertEqual(st, 503, body)
            self.assertEqual((hdrs.get('Content-Type') or '').split(';')[0], 'application/json')
            self.assertIsInstance(json.loads(body), dict, body)
        answered = max(clients.done_at) - t0
        self.assertGreaterEqual(answered, 0.29)
        self.assertLess(answered, 1.5)
        rc = gd.wait(5)
        self.assertEqual(rc, 1, gd.log())

    def test_second_sigterm_is_ignored_and_the_drain_goes_on(self):
        # GNU timeout and some supervisors deliver SIGTERM twice: the drain must go on.
        gd = self.gatherd(slow_ms=800)
        clients = self.in_flight(gd, 2)
        gd.signal(signal.SIGTERM)
        self.assertIsNotNone(wait_refused(gd, 3.0))
        gd.signal(signal.SIGTERM)
        time.sleep(0.1)
        gd.signal(signal.SIGTERM)
        for r in clients.join():
            self.assertIsInstance(r, tuple, 'no answer: %r; log:\n%s' % (r, gd.log()))
            self.assertEqual((r[0], r[2]), (200, b'{"slow":{"slow": true}}'))
        self.assertEqual(gd.wait(10), 0, gd.log())
        self.assertIn('received SIGTERM again: ignored', gd.log())

    def test_second_sigint_exits_at_once(self):
        gd = self.gatherd(slow_ms=0, slow_mode='hang', timeout_ms=30000)
        clients = self.in_flight(gd, 1)
        gd.signal(signal.SIGINT)
        self.assertIsNotNone(wait_refused(gd, 3.0))
        self.assertTrue(gd.alive(), 'exited although a request was in flight')
        t0 = now()
        gd.signal(signal.SIGINT)
        rc = gd.wait(5)
        self.assertIsNotNone(rc, 'still running 5 s after a second SIGINT')
        self.assertLess(now() - t0, 1.0)
        self.assertEqual(rc, 1, gd.log())
        self.assertIn('second SIGINT: exiting at once', gd.log())
        clients.join(5)

    def test_sigint_during_a_sigterm_drain_exits_at_once(self):
        gd = self.gatherd(slow_ms=0, slow_mode='hang', timeout_ms=30000)
        clients = self.in_flight(gd, 1)
        gd.signal(signal.SIGTERM)
        self.assertIsNotNone(wait_refused(gd, 3.0))
        gd.signal(signal.SIGINT)
        self.assertEqual(gd.wait(5), 1, gd.log())
        clients.join(5)

    def test_sigquit_exits_at_once(self):
        for drain_first in (False, True):
            with self.subTest(during_drain=drain_first):
                gd = self.gatherd(slow_ms=0, slow_mode='hang', timeout_ms=30000)
                clients = self.in_flight(gd, 1)
                if drain_first:
                    gd.signal(signal.SIGTERM)
                    self.assertIsNotNone(wait_refused(gd, 3.0))
                t0 = now()
                gd.signal(signal.SIGQUIT)
                rc = gd.wait(5)
                self.assertIsNotNone(rc, 'still running 5 s after SIGQUIT')
                self.assertLess(now() - t0, 1.0)
                self.assertEqual(rc, 1, gd.log())
                self.assertIn('received SIGQUIT: exiting at once', gd.log())
                clients.join(5)
                self.stub.reset_stats()

    def test_hup_reloads_and_usr1_usr2_alrm_are_logged_and_ignored(self):
        gd = self.gatherd(slow_ms=700)
        clients = self.in_flight(gd, 2)
        gd.signal(signal.SIGHUP)  # the same file: reloaded, the requests in flight go on
        time.sleep(0.02)
        sigs = [signal.SIGUSR1, signal.SIGUSR2, signal.SIGALRM]
        for sig in sigs:
            gd.signal(sig)
            time.sleep(0.02)
        for r in clients.join():
            self.assertIsInstance(r, tuple, 'no answer: %r; log:\n%s' % (r, gd.log()))
            self.assertEqual((r[0], r[2]), (200, b'{"slow":{"slow": true}}'))
        self.assertTrue(gd.alive(), 'gatherd died (rc=%s); log:\n%s' % (gd.returncode, gd.log()))
        st, _, body, _ = gd.get('/fast')
        self.assertEqual((st, body), (200, b'{"fast":{"fast": true}}'))
        log = gd.log()
        for sig in sigs:
            self.assertIn('received %s: ignored' % sig.name, log)
        self.assertIn('received SIGHUP: reloading', log)
        self.assertIn('config reloaded from', log)
        self.assertEqual(gd.terminate(10), 0, log)

    def test_sigint_drains_like_sigterm(self):
        gd = self.gatherd(slow_ms=400)
        clients = self.in_flight(gd, 3)
        gd.signal(signal.SIGINT)
        for r in clients.join():
            self.assertIsInstance(r, tuple, r)
            self.assertEqual(r[0], 200, r[2])
        self.assertEqual(gd.wait(10), 0, gd.log())

    def test_http2_request_in_flight_is_answered(self):
        gd = self.gatherd(slow_ms=600)
        run_curl(['--version'])  # skips when curl is missing
        p = subprocess.Popen(['curl', '-sS', '--noproxy', '*', '--http2-prior-knowledge',
                              '-w', '\n%{http_code} %{http_version}', gd.url('/slow')],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)

        def stop_curl():
            if p.poll() is None:
                p.kill()
            p.communicate()
        self.addCleanup(stop_curl)
        self.assertEqual(self.stub.wait_requests(1, 10), 1)
        gd.signal(signal.SIGTERM)
        out, err = p.communicate(timeout=15)
        self.assertEqual(p.returncode, 0, err)
        self.assertEqual(out, b'{"slow":{"slow": true}}\n200 2')
        self.assertEqual(gd.wait(10), 0, gd.log())


if __name__ == '__main__':
    main()
