#!/usr/bin/env python3
"""The accept loop at its limits. max_client_connections: at the cap the listener stops
accepting, new clients wait in the kernel's backlog and are served as connections close; by
default the cap is half the open-files limit. Out of file descriptors (a cap set above the
limit): the listener backs off instead of spinning (CPU stays low, one warn line, not one per
loop turn), gatherd_accept_backoffs_total counts it, and once connections close the waiting
ones are served."""

import os
import resource
import socket
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (GatherdTestCase, Gatherd, call, config, endpoint, main,  # noqa: E402
                     wait_until)

NOFILE = 64


def cpu_seconds(pid):
    with open('/proc/%d/stat' % pid) as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


class LowLimitGatherd(Gatherd):
    """gatherd with RLIMIT_NOFILE lowered in the child before exec."""

    def _start(self, start_timeout):
        old = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, old[1]))
        try:
            return super()._start(start_timeout)
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, old)


def metric(admin, name):
    with urllib.request.urlopen('http://127.0.0.1:%d/metrics' % admin, timeout=5) as r:
        text = r.read().decode()
    line = [ln for ln in text.splitlines() if ln.startswith(name + ' ')]
    return float(line[0].split()[1]) if line else None


def raw_get(sock, path):
    sock.sendall(b'GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' % path.encode())


def read_all(sock):
    chunks = []
    while True:
        b = sock.recv(65536)
        if not b:
            return b''.join(chunks)
        chunks.append(b)


class AcceptTest(GatherdTestCase):
    def test_at_max_client_connections_new_clients_wait_in_the_backlog(self):
        stub = self.start_stub()
        stub.add('/a', json=1)
        g = self.start_gatherd(config([endpoint('/a', {'a': call('s', '/a')})], {'s': stub},
                                      threads=1, max_client_connections=4))
        admin = int(g.cfg['admin_listen'].rsplit(':', 1)[1])
        self.assertEqual(metric(admin, 'gatherd_client_connections_max'), 4)
        held = [socket.create_connection(('127.0.0.1', g.port), timeout=5) for _ in range(4)]
        self.addCleanup(lambda: [s.close() for s in held])
        self.assertTrue(wait_until(lambda: metric(admin, 'gatherd_client_connections') == 4,
                                   timeout=5))
        # the fifth client connects (the kernel's backlog) but is not served while 4 are open
        late = socket.create_connection(('127.0.0.1', g.port), timeout=5)
        self.addCleanup(late.close)
        raw_get(late, '/a')
        late.settimeout(0.7)
        with self.assertRaises(socket.timeout):
            late.recv(1)
        self.assertEqual(metric(admin, 'gatherd_client_connections'), 4)
        self.assertEqual(g.log().count('max_client_connections'), 1, g.log()[-2000:])
        # one connection closes: the waiting client is accepted and answered
        held.pop().close()
        late.settimeout(5)
        t0 = time.monotonic()
        answer = read_all(late)
        self.assertLess(time.monotonic() - t0, 2.0)
        self.assertTrue(answer.startswith(b'HTTP/1.1 200'), answer[:200])
        self.assertTrue(answer.endswith(b'{"a":1}'), answer[-200:])
        self.assertTrue(g.alive())

    def test_the_default_cap_is_half_the_open_files_limit(self):
        stub = self.start_stub()
        stub.add('/a', json=1)
        g = LowLimitGatherd(config([endpoint('/a', {'a': call('s', '/a')})], {'s': stub},
                                   threads=1))
        self.addCleanup(g.cleanup)
        admin = int(g.cfg['admin_listen'].rsplit(':', 1)[1])
        self.assertEqual(metric(admin, 'gatherd_client_connections_max'), NOFILE // 2)
        socks = []
        self.addCleanup(lambda: [s.close() for s in socks])
        for _ in range(NOFILE + 40):  # beyond the limit: the cap, not EMFILE, stops accepting
            socks.append(socket.create_connection(('127.0.0.1', g.port), timeout=5))
        self.assertTrue(wait_until(lambda: 'max_client_connections' in g.log(), timeout=5))
        self.assertTrue(wait_until(
            lambda: metric(admin, 'gatherd_client_connections') == NOFILE // 2, timeout=5),
            metric(admin, 'gatherd_client_connections'))
        time.sleep(0.3)
        self.assertEqual(metric(admin, 'gatherd_client_connections'), NOFILE // 2)
        self.assertNotIn('cannot accept connections', g.log())
        self.assertEqual(metric(admin, 'gatherd_accept_backoffs_total'), 0)
        for s in socks:
            s.close()
        socks.clear()
        self.assertTrue(wait_until(lambda: g.get('/a')[0] == 200, timeout=10))

    def test_out_of_descriptors_backs_off_and_recovers(self):
        stub = self.start_stub()
        stub.add('/a', json=1)
        # a cap above the open-files limit, so that accept() itself runs out of descriptors
        g = LowLimitGatherd(config([endpoint('/a', {'a': call('s', '/a')})], {'s': stub},
                                   max_client_connections=100000))
        self.addCleanup(g.cleanup)
        admin = int(g.cfg['admin_listen'].rsplit(':', 1)[1])
        st, _, body, _ = g.get('/a')
        self.assertEqual((st, body), (200, b'{"a":1}'))

        socks = []
        self.addCleanup(lambda: [s.close() for s in socks])
        for _ in range(NOFILE + 40):  # more than gatherd can hold; the rest wait in the backlog
            socks.append(socket.create_connection(('127.0.0.1', g.port), timeout=5))
        wait_until(lambda: 'cannot accept connections' in g.log(), timeout=5)
        self.assertIn('cannot accept connections', g.log())
        cpu0, t0 = cpu_seconds(g.pid), time.monotonic()
        time.sleep(1.5)
        busy = (cpu_seconds(g.pid) - cpu0) / (time.monotonic() - t0)
        self.assertLess(busy, 0.3, 'gatherd spun at %.0f%% CPU while out of descriptors' % (busy * 100))
        self.assertEqual(g.log().count('cannot accept connections'), 1, g.log()[-2000:])
        self.assertTrue(g.alive())

        for s in socks:
            s.close()
        socks.clear()
        # the backlog drains as descriptors come back; a new client is served
        wait_until(lambda: g.get('/a')[0] == 200, timeout=10)
        st, _, body, _ = g.get('/a')
        self.assertEqual((st, body), (200, b'{"a":1}'))
        self.assertGreaterEqual(metric(admin, 'gatherd_accept_backoffs_total'), 1)


if __name__ == '__main__':
    main()
