#!/usr/bin/env python3
"""The SIGTERM drain drops nothing: a bounded load of keep-alive and new connections runs through
the signal, and every request written is answered; connections queued in the kernel with their
request are served; a keep-alive answer still being written does not hold the exit."""

import os
import random
import signal
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (HOST, GatherdTestCase, call, config, endpoint, main, now,  # noqa: E402
                     upstream)

RUNS = int(os.environ.get('GD_DRAIN_RUNS', '20'))
CLIENTS = 16


def read_response(s, buf=b''):
    """Reads one HTTP/1.1 response with a Content-Length from @s. Returns (status, headers,
    rest), or None when the connection ended first (EOF or reset)."""
    try:
        while b'\r\n\r\n' not in buf:
            d = s.recv(65536)
            if not d:
                return None
            buf += d
        head, _, rest = buf.partition(b'\r\n\r\n')
        lines = head.decode('latin-1').split('\r\n')
        status = int(lines[0].split()[1])
        headers = {}
        for ln in lines[1:]:
            k, _, v = ln.partition(':')
            headers[k.strip().lower()] = v.strip()
        n = int(headers.get('content-length', '0'))
        while len(rest) < n:
            d = s.recv(65536)
            if not d:
                return None
            rest += d
        return status, headers, rest[n:]
    except OSError:
        return None


class Load:
    """@n clients sending GET /fast until their connect is refused; half keep their connection
    alive (a new one only after a Connection: close), half open one per request. Counts requests
    written (sendall returned) and answered (a whole 200)."""

    def __init__(self, port, n):
        self.port = port
        self.lock = threading.Lock()
        self.written = self.answered = 0
        self.lost = []  # (client, keep-alive?, request number on its connection, time)
        self.stop_at = now() + 15.0
        self.threads = [threading.Thread(target=self.run, args=(i, i % 2 == 0), daemon=True)
                        for i in range(n)]
        for t in self.threads:
            t.start()

    def run(self, i, keepalive):
        req = b'GET /fast HTTP/1.1\r\nHost: x\r\n%s\r\n' % (
            b'' if keepalive else b'Connection: close\r\n')
        s = None
        nth = 0
        while now() < self.stop_at:
            if s is None:
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.settimeout(5.0)
                try:
                    s.connect((HOST, self.port))
                except OSError:
                    s.close()
                    return  # refused: the listeners are closed
                nth = 0
            try:
                s.sendall(req)
            except OSError:
                s.close()
                s = None
                continue  # not written
            nth += 1
            with self.lock:
                self.written += 1
            r = read_response(s)
            if r is None or r[0] != 200:
                with self.lock:
                    self.lost.append((i, keepalive, nth, now(), r and r[0]))
                s.close()
                s = None
                continue
            with self.lock:
                self.answered += 1
            if not keepalive or r[1].get('connection', '').lower() == 'close':
                s.close()
                s = None
            if random.random() < 0.3:
                time.sleep(random.random() * 0.002)
        if s is not None:
            s.close()

    def join(self, timeout=20.0):
        deadline = now() + timeout
        for t in self.threads:
            t.join(max(0.0, deadline - now()))
        return not any(t.is_alive() for t in self.threads)


class DrainTest(GatherdTestCase):

    def setUp(self):
        self.stub = self.start_stub()
        self.stub.add('/fast', json={'fast': True})

    def gatherd(self, **top):
        top.setdefault('shutdown', {'timeout_ms': 10000})
        return self.start_gatherd(config([endpoint('/fast', {'fast': call('s', '/fast')}),
                                          endpoint('/big', {'big': call('s', '/big')})],
                                         {'s': upstream(self.stub, max_body_bytes=64 << 20)},
                                         threads=2, **top))

    def test_load_through_sigterm_loses_nothing(self):
        total_written = total_lost = 0
        for run in range(RUNS):
            gd = self.gatherd()
            load = Load(gd.port, CLIENTS)
            time.sleep(0.15 + random.random() * 0.15)
            gd.signal(signal.SIGTERM)
            self.assertTrue(load.join(), 'clients still running 20 s after SIGTERM')
            rc = gd.wait(15)
            total_written += load.written
            total_lost += len(load.lost)
            self.assertEqual(load.lost, [], 'run %d: %d of %d requests written were not '
                             'answered; log:\n%s' % (run, len(load.lost), load.written,
                                                     gd.log()[-3000:]))
            self.assertEqual(load.answered, load.written)
            self.assertEqual(rc, 0, gd.log()[-3000:])
            gd.check_clean_log()
            gd.close()
        print('drain: %d runs, %d requests written, %d lost' % (RUNS, total_written, total_lost))

    def test_connections_queued_in_the_kernel_are_served(self):
        # Connections made just before the signal, their requests written just after it: the
        # drain meets them accepted but not yet read, or still in the kernel's backlog.
        for run in range(5):
            gd = self.gatherd()
            socks = []
            for _ in range(20):
                s = socket.create_connection((HOST, gd.port), timeout=5)
                socks.append(s)
            gd.signal(signal.SIGTERM)
            for s in socks:
                s.sendall(b'GET /fast HTTP/1.1\r\nHost: x\r\n\r\n')
            for k, s in enumerate(socks):
                r = read_response(s)
                self.assertIsNotNone(r, 'run %d: connection %d got no answer; log:\n%s'
                                     % (run, k, gd.log()))
                # keep-alive when the worker parsed it before the drain reached it: the
                # connection is closed once idle
                self.assertEqual(r[0], 200)
                s.close()
            self.assertEqual(gd.wait(10), 0, gd.log())
            gd.close()

    def test_keepalive_answer_being_written_does_not_hold_the_exit(self):
        self.stub.add('/big', json={'data': 'x' * (24 << 20)})
        gd = self.gatherd(shutdown={'timeout_ms': 5000})
        # a receive buffer far smaller than the answer: gatherd is still writing it at SIGTERM
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(s.close)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 << 10)
        s.settimeout(10)
        s.connect((HOST, gd.port))
        s.sendall(b'GET /big HTTP/1.1\r\nHost: x\r\n\r\n')
        first = s.recv(4096)
        self.assertTrue(first.startswith(b'HTTP/1.1 200'), first[:200])
        self.assertIn(b'keep-alive', first.split(b'\r\n\r\n')[0].lower())
        gd.signal(signal.SIGTERM)
        time.sleep(0.5)  # the answer is still being written when the drain starts
        r = read_response(s, first)
        self.assertIsNotNone(r)
        done = now()
        rc = gd.wait(12)
        self.assertIsNotNone(rc, 'still running 12 s after SIGTERM')
        self.assertLess(now() - done, 1.5, 'exit long after the last answer was read')
        self.assertEqual(rc, 0, gd.log())
        self.assertNotIn('answering them 503', gd.log())


if __name__ == '__main__':
    main()
