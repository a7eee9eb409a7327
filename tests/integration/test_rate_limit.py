#!/usr/bin/env python3
"""Per-client rate limits: 429 with Retry-After and RateLimit-* without starting a call, exact
over 2 threads and many connections, a flood of distinct X-Forwarded-For addresses from a
trusted peer held in bounded memory, keys by API key and JWT claim, the metric, config errors."""

import http.client
import json
import os
import sys
import tempfile
import threading
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (HOST, GatherdTestCase, call, config, endpoint, main,  # noqa: E402
                     run_gatherd, wait_until)


class RateLimitTest(GatherdTestCase):

    def setUp(self):
        self.stub = self.start_stub()
        self.stub.add('/u', json={'id': 1})
        self.tmp = tempfile.mkdtemp(prefix='gatherd-rl-')
        self.keys_file = os.path.join(self.tmp, 'keys')
        with open(self.keys_file, 'w') as f:
            f.write('key-one-0123456789\nkey-two-0123456789\n')

    def start(self, threads=1, **top):
        eps = [endpoint('/u', {'u': call('s', '/u')}),
               endpoint('/own', {'u': call('s', '/u')},
                        client_rate_limit={'requests': 1, 'per_ms': 60000, 'burst': 2}),
               endpoint('/free', {'u': call('s', '/u')}, client_rate_limit=False),
               endpoint('/keyed', {'u': call('s', '/u')},
                        auth={'api_keys': {'keys_file': self.keys_file}},
                        client_rate_limit={'requests': 2, 'per_ms': 60000, 'key': 'api_key'})]
        top.setdefault('client_rate_limit', {'requests': 5, 'per_ms': 60000, 'burst': 5})
        return self.start_gatherd(config(eps, {'s': self.stub}, threads=threads,
                                         trusted_proxies=['127.0.0.1/32'], **top))

    def metrics(self, gd):
        with urllib.request.urlopen('http://%s/metrics' % gd.cfg['admin_listen'], timeout=5) as r:
            return r.read().decode()

    def xff(self, addr):
        return {'X-Forwarded-For': addr}

    def test_limit_and_headers(self):
        gd = self.start()
        for i in range(5):
            st, h, body, _ = gd.get('/u', self.xff('203.0.113.1'))
            self.assertEqual(st, 200, body)
            self.assertEqual(h.get('RateLimit-Limit'), '5')
            self.assertEqual(h.get('RateLimit-Remaining'), str(4 - i))
        st, h, body, _ = gd.get('/u', self.xff('203.0.113.1'))
        doc = self.assertJsonError(st, h, body, 429, 'rate_limited')
        self.assertIn('at most 5 every 60000 ms', doc['message'])
        self.assertEqual(h.get('RateLimit-Remaining'), '0')
        self.assertEqual(h.get('Retry-After'), '12')  # one token every 12 s
        self.assertEqual(h.get('RateLimit-Reset'), '60')
        self.assertEqual(h.get('Cache-Control'), 'no-store')
        self.assertEqual(len(self.stub.requests_for('/u')), 5)  # the 429 started no call
        # another client is served; an endpoint's own limit; "false" turns it off
        self.assertEqual(gd.get('/u', self.xff('203.0.113.2'))[0], 200)
        self.assertEqual([gd.get('/own', self.xff('203.0.113.1'))[0] for _ in range(3)],
                         [200, 200, 429])
        self.assertEqual([gd.get('/free', self.xff('203.0.113.1'))[0] for _ in range(8)],
                         [200] * 8)
        self.assertIsNone(gd.get('/free')[1].get('RateLimit-Limit'))
        # by API key: two keys, two buckets, whatever the address
        for key in ('key-one-0123456789', 'key-two-0123456789'):
            sts = [gd.get('/keyed', {'x-api-key': key, 'X-Forwarded-For': '198.51.100.%d' % i})[0]
                   for i in range(3)]
            self.assertEqual(sts, [200, 200, 429])
        metrics = self.metrics(gd)
        self.assertIn('gatherd_rate_limited_total{endpoint="/u",method="GET"} 1', metrics)
        self.assertIn('gatherd_rate_limited_total{endpoint="/own",method="GET"} 1', metrics)
        self.assertIn('gatherd_rate_limited_total{endpoint="/keyed",method="GET"} 2', metrics)
        self.assertNotIn('gatherd_rate_limited_total{endpoint="/free"', metrics)
        self.assertTrue(wait_until(lambda: 'status=429' in gd.log()), gd.log())  # written after
        self.assertNotIn('key-one-0123456789', gd.log())

    def test_exact_over_two_threads(self):
        """8 connections over 2 worker threads, one client: exactly the burst is served."""
        gd = self.start(threads=2, client_rate_limit={'requests': 1, 'per_ms': 600000,
                                                      'burst': 37})
        results = []
        lock = threading.Lock()

        def worker():
            c = http.client.HTTPConnection(HOST, gd.port, timeout=10)
            mine = []
            for _ in range(25):
                c.request('GET', '/u', headers=self.xff('192.0.2.50'))
                r = c.getresponse()
                r.read()
                mine.append(r.status)
            c.close()
            with lock:
                results.extend(mine)

        ts = [threading.Thread(target=worker) for _ in range(8)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        self.assertEqual(len(results), 200)
        self.assertEqual(results.count(200), 37)
        self.assertEqual(results.count(429), 163)
        self.assertEqual(len(self.stub.requests_for('/u')), 37)

    def test_flood_of_addresses(self):
        """20,000 distinct forwarded addresses from 4 connections against a table of 256
        buckets: every new address gets a bucket, the table never holds more than 256, the
        least recently seen client is evicted (it starts afresh), another table is untouched."""
        gd = self.start(threads=2, client_rate_limit={'requests': 1, 'per_ms': 600000,
                                                      'burst': 1, 'max_keys': 256})
        self.assertEqual(gd.get('/u', self.xff('203.0.113.7'))[0], 200)
        self.assertEqual(gd.get('/u', self.xff('203.0.113.7'))[0], 429)
        self.assertEqual([gd.get('/own', self.xff('203.0.113.8'))[0] for _ in range(3)],
                         [200, 200, 429])
        statuses = []
        lock = threading.Lock()

        def flood(part):
            c = http.client.HTTPConnection(HOST, gd.port, timeout=10)
            mine = []
            for i in range(part * 5000, (part + 1) * 5000):
                addr = '10.%d.%d.%d' % (i >> 16, (i >> 8) & 255, i & 255)
                c.request('GET', '/u', headers=self.xff(addr))
                r = c.getresponse()
                r.read()
                mine.append(r.status)
            c.close()
            with lock:
                statuses.extend(mine)

        ts = [threading.Thread(target=flood, args=(p,)) for p in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        self.assertEqual(statuses.count(200), 20000)  # each address is new
        metrics = self.metrics(gd)
        self.assertIn('gatherd_rate_limit_keys{endpoint="(top level)"} 256', metrics)
        self.assertIn('gatherd_rate_limit_keys{endpoint="/own",method="GET"} 1', metrics)
        self.assertEqual(gd.get('/u', self.xff('203.0.113.7'))[0], 200)  # evicted: afresh
        self.assertEqual(gd.get('/own', self.xff('203.0.113.8'))[0], 429)  # kept

    def test_check_config(self):
        def check(top=None, ep=None, auth=None):
            path = os.path.join(self.tmp, 'c.json')
            extra = {}
            if ep is not None:
                extra['client_rate_limit'] = ep
            if auth is not None:
                extra['auth'] = auth
            with open(path, 'w') as f:
                json.dump(config([endpoint('/a', {'u': call('s', '/u')}, **extra)],
                                 {'s': 'http://127.0.0.1:1'}, listen=['127.0.0.1:1'],
                                 **({'client_rate_limit': top} if top is not None else {})), f)
            return run_gatherd(['-t', '-c', path])

        self.assertEqual(check(top={'requests': 20, 'per_ms': 1000, 'burst': 40,
                                    'key': 'client'}).returncode, 0)
        for kw, want in (
                ({'top': {}}, 'client_rate_limit.requests: missing required key'),
                ({'top': {'requests': 0}}, 'client_rate_limit.requests: must be'),
                ({'top': {'requests': 1, 'key': 'ip'}}, 'client_rate_limit.key: must be'),
                ({'top': {'requests': 1, 'max_keys': 1}}, 'client_rate_limit.max_keys'),
                ({'top': {'requests': 1, 'key': 'api_key'}},
                 'endpoints[0]: client_rate_limit.key "api_key" needs "auth": {"api_keys": ...}'),
                ({'ep': {'requests': 1, 'key': 'jwt.sub'}},
                 'endpoints[0]: client_rate_limit.key "jwt.sub" needs "auth": {"jwt": ...}'),
                ({'top': True}, 'client_rate_limit: must be an object or false')):
            r = check(**kw)
            self.assertEqual(r.returncode, 1, kw)
            self.assertIn(want, r.stderr)


if __name__ == '__main__':
    main()
