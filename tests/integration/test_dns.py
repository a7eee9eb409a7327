#!/usr/bin/env python3
"""Upstreams named by host name: resolved in the background and cached, never one lookup per new
connection; a name that stops resolving keeps its addresses; one that never resolved fails fast;
a second address is tried when the first refuses.

getaddrinfo() is steered by an LD_PRELOAD shim (slowdns.c): slow, counted, failing on demand."""

import http.client
import os
import socket
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (GatherdTestCase, call, config, endpoint, gatherd_bin, main, now,  # noqa: E402
                     upstream, wait_until)

DELAY_MS = 200


def metrics(gd):
    host, port = gd.cfg['admin_listen'].rsplit(':', 1)
    c = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        c.request('GET', '/metrics')
        return c.getresponse().read().decode()
    finally:
        c.close()


def sample(text, line_prefix):
    for ln in text.splitlines():
        if ln.startswith(line_prefix + ' '):
            return float(ln.split(' ')[-1])
    return None


class DnsTest(GatherdTestCase):

    def setUp(self):
        so = os.environ.get('GD_SLOWDNS_SO')
        if not so or not os.path.exists(so):
            self.skipTest('the getaddrinfo shim is not built (GD_SLOWDNS_SO)')
        addrs = {ai[4][0] for ai in socket.getaddrinfo('localhost', 80, type=socket.SOCK_STREAM)}
        if '127.0.0.1' not in addrs:
            self.skipTest('localhost does not resolve to 127.0.0.1 here (%s)' % sorted(addrs))
        self.tmp = tempfile.mkdtemp(prefix='gatherd-dns-')
        self.count_file = os.path.join(self.tmp, 'count')
        self.fail_file = os.path.join(self.tmp, 'fail')
        self.env = {'LD_PRELOAD': so, 'GD_SLOWDNS_COUNT': self.count_file,
                    'GD_SLOWDNS_DELAY_MS': str(DELAY_MS), 'GD_SLOWDNS_FAIL': self.fail_file}
        self.stub = self.start_stub()
        # keep-alive off: every call needs a new connection
        self.stub.add('/a', json={'a': 1}, headers={'Connection': 'close'})

    def tearDown(self):
        for f in (self.count_file, self.fail_file):
            if os.path.exists(f):
                os.unlink(f)
        os.rmdir(self.tmp)

    def lookups(self):
        return os.path.getsize(self.count_file) if os.path.exists(self.count_file) else 0

    def start(self, threads=2, env=None, **upstream_kw):
        return self.start_gatherd(config(
            [endpoint('/a', {'a': call('n', '/a', timeout_ms=3000)})],
            {'n': upstream('http://localhost:%d' % self.stub.port, **upstream_kw)},
            threads=threads), env=dict(self.env, **(env or {})))

    def test_new_connections_do_not_wait_for_lookups(self):
        gd = self.start(threads=2)
        t0 = now()
        for i in range(50):
            st, _, body, _ = gd.get('/a')
            self.assertEqual((st, body), (200, b'{"a":{"a": 1}}'), 'request %d' % i)
        elapsed = now() - t0
        self.assertGreaterEqual(self.stub.connections_accepted, 50, 'not a new connection each')
        # One lookup per name per worker at start (in the background), none per connection:
        # with a lookup each, 50 requests would take at least 50 x 200 ms = 10 s.
        self.assertLess(elapsed, 4.0, '50 new connections took %.2f s: each waited for a '
                        'lookup' % elapsed)
        self.assertLessEqual(self.lookups(), 4, 'lookups: %d' % self.lookups())
        # gauges and these counters are published every 100 ms
        ok_line = 'gatherd_upstream_dns_lookups_total{upstream="n",result="ok"}'
        self.assertTrue(wait_until(lambda: (sample(metrics(gd), ok_line) or 0) >= 1, timeout=3))
        text = metrics(gd)
        self.assertEqual(sample(
            text, 'gatherd_upstream_dns_lookups_total{upstream="n",result="failed"}'), 0)

    def test_the_probe_gives_up_on_a_hung_lookup_at_its_timeout(self):
        # --probe promises a container's health check an answer within 5 s: a lookup that
        # hangs (a dead resolver) must not hold it longer
        env = dict(os.environ, **dict(self.env, GD_SLOWDNS_DELAY_MS='9000'))
        env['ASAN_OPTIONS'] = ':'.join(filter(None, [env.get('ASAN_OPTIONS'),
                                                    'verify_asan_link_order=0']))
        t0 = now()
        out = subprocess.run([gatherd_bin(), '--probe', 'http://localhost:%d/a' % self.stub.port],
                             capture_output=True, text=True, timeout=30, env=env,
                             stdin=subprocess.DEVNULL)
        elapsed = now() - t0
        self.assertEqual(out.returncode, 1, out.stderr)
        self.assertIn('timed out', out.stderr)
        self.assertLess(elapsed, 7.0, 'the probe took %.1f s' % elapsed)
        self.assertGreater(elapsed, 4.5)

    def test_concurrent_first_connects_share_one_lookup(self):
        # one worker: every connection of a fan-out of 8 waits for the same first lookup
        self.stub.add('/b', json=2, headers={'Connection': 'close'})
        gd = self.start_gatherd(config(
            [endpoint('/fan', {'c%d' % i: call('n', '/b', timeout_ms=3000) for i in range(8)})],
            {'n': upstream('http://localhost:%d' % self.stub.port)}, threads=1), env=self.env)
        st, _, body, _ = gd.get('/fan')
        self.assertEqual(st, 200, body)
        self.assertEqual(self.lookups(), 1)

    def test_a_name_that_stops_resolving_keeps_its_addresses(self):
        gd = self.start(threads=1, dns_refresh_ms=100)
        st, _, body, _ = gd.get('/a')
        self.assertEqual(st, 200, body)
        open(self.fail_file, 'w').close()
        before = self.lookups()
        # the next refreshes fail (100 ms apart, each 200 ms long)
        self.assertTrue(wait_until(lambda: self.lookups() >= before + 2, timeout=5))
        self.assertTrue(wait_until(lambda: 'keep going to its 1 last addresses' in gd.log(),
                                   timeout=5), gd.log())
        for i in range(5):
            st, _, body, _ = gd.get('/a')
            self.assertEqual((st, body), (200, b'{"a":{"a": 1}}'), 'request %d' % i)
        self.assertEqual(gd.log().count('cannot resolve localhost'), 1, gd.log())
        failed = 'gatherd_upstream_dns_lookups_total{upstream="n",result="failed"}'
        self.assertTrue(wait_until(lambda: (sample(metrics(gd), failed) or 0) >= 1, timeout=3))
        os.unlink(self.fail_file)
        self.assertTrue(wait_until(lambda: 'localhost resolves again' in gd.log(), timeout=5),
                        gd.log())

    def test_a_name_that_never_resolved_fails_fast_with_kind_connect(self):
        open(self.fail_file, 'w').close()
        gd = self.start(threads=1, env={'GD_SLOWDNS_DELAY_MS': '0'}, connect_timeout_ms=5000)
        for _ in range(3):
            st, _, body, elapsed = gd.get('/a')
            self.assertEqual(st, 502, body)
            self.assertIn(b'"kind":"connect"', body)
            self.assertLess(elapsed, 1.0, 'waited %.2f s for a name that does not resolve'
                            % elapsed)
        # the one at start, and those the calls asked for, at least a second apart
        self.assertLessEqual(self.lookups(), 3)

    def test_the_next_address_is_tried_when_one_refuses(self):
        # ::1 first: the stub listens on 127.0.0.1 only, so that connect is refused (or has no
        # route when the host has no IPv6 loopback); the second address must be tried
        gd = self.start(threads=1, env={'GD_SLOWDNS_FIRST': '::1', 'GD_SLOWDNS_DELAY_MS': '0'})
        for i in range(10):
            st, _, body, _ = gd.get('/a')
            self.assertEqual((st, body), (200, b'{"a":{"a": 1}}'), 'request %d' % i)
        self.assertGreaterEqual(self.stub.connections_accepted, 10)


if __name__ == '__main__':
    main()
