#!/usr/bin/env python3
"""Outbound limits of an upstream: "rate_limit" (a process-wide token bucket, exact across
threads, FIFO, refusing at once what cannot be served in time) and "max_in_flight" (calls at
once for the whole process), their interplay with retries, and their metrics."""

import concurrent.futures
import json
import os
import re
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (GatherdTestCase, call, config, endpoint, main, upstream,  # noqa: E402
                     wait_until)
from test_operations import admin_get, admin_port  # noqa: E402
from test_retries import Scripted  # noqa: E402


def ok(n):
    return 200, {}, 0


def slow(n):
    return 200, {}, 0.2


class OutboundLimitsTest(GatherdTestCase):

    def start_scripted(self, script):
        s = Scripted(script)
        self.addCleanup(s.stop)
        return s

    def fetch_all(self, gd, paths, stagger_s=0.0):
        """GETs @paths at once (each on a connection of its own, @stagger_s apart); returns
        [(status, doc)] in the order of @paths."""
        def one(i, p):
            time.sleep(i * stagger_s)
            st, _, body, _ = gd.get(p, timeout=20)
            return st, json.loads(body)
        with concurrent.futures.ThreadPoolExecutor(len(paths)) as ex:
            futs = [ex.submit(one, i, p) for i, p in enumerate(paths)]
            return [f.result() for f in futs]

    def metrics(self, gd):
        port = int(gd.cfg['admin_listen'].rsplit(':', 1)[1])
        with urllib.request.urlopen('http://127.0.0.1:%d/metrics' % port, timeout=5) as r:
            return r.read().decode()

    def metric(self, text, name, labels='upstream="r"'):
        m = re.search(r'^%s\{%s\} ([0-9.]+)$' % (re.escape(name), re.escape(labels)), text, re.M)
        self.assertIsNotNone(m, '%s{%s} missing:\n%s' % (name, labels, text))
        return float(m.group(1))

    def test_rate_limit_is_exact_across_threads_and_refuses_at_once(self):
        # 5 tokens at once, then one a second: 30 concurrent calls of 500 ms get exactly the
        # burst; the others cannot have a token before their deadline and fail at once.
        up = self.start_scripted({'/r': ok})
        gd = self.start_gatherd(config(
            [endpoint('/t', {'x': call('r', '/r')}, timeout_ms=500)],
            {'r': upstream(up.url, rate_limit={'calls': 5, 'per_ms': 5000, 'burst': 5},
                           retry={'attempts': 3, 'backoff_ms': 1, 'min_retries_per_s': 100})},
            threads=2))
        res = self.fetch_all(gd, ['/t'] * 30)
        kinds = [doc['errors']['x']['kind'] if 'errors' in doc else 'ok' for _, doc in res]
        self.assertEqual(kinds.count('ok'), 5, kinds)
        self.assertEqual(kinds.count('rate_limited'), 25, kinds)
        self.assertEqual(up.count('/r'), 5)  # counted at the upstream: no 6th, no retry
        for st, doc in res:
            if 'errors' in doc:
                self.assertEqual(st, 503)
                err = doc['errors']['x']
                self.assertEqual(err['message'],
                                 'the calls to the service are over their rate limit')
                self.assertNotIn('attempts', err)  # never retried
                # at once: not at the 500 ms deadline
                self.assertLess(err['elapsed_ms'], 150, doc)
        text = self.metrics(gd)
        self.assertEqual(self.metric(text, 'gatherd_upstream_rate_limit_refused_total'), 25)
        self.assertEqual(self.metric(text, 'gatherd_upstream_rate_limit_waits_total'), 0)

    def test_waiting_calls_keep_the_rate_and_go_in_order(self):
        # One token every 100 ms, bursts of 2; calls started 20 ms apart wait for their slots
        # in the order they asked, on both threads.
        n, interval = 12, 0.100
        up = self.start_scripted({'/f/%d' % i: ok for i in range(n)})
        gd = self.start_gatherd(config(
            [endpoint('/t/{i}', {'x': call('r', '/f/{i}')}, timeout_ms=5000)],
            {'r': upstream(up.url, rate_limit={'calls': 10, 'per_ms': 1000, 'burst': 2})},
            threads=2))
        t0 = time.monotonic()
        res = self.fetch_all(gd, ['/t/%d' % i for i in range(n)], stagger_s=0.020)
        self.assertEqual([st for st, _ in res], [200] * n, res)
        arrivals = [up.arrivals('/f/%d' % i)[0] for i in range(n)]
        self.assertEqual(arrivals, sorted(arrivals), 'not in FIFO order')
        first = arrivals[0]
        for k in range(2, n):
            # the k-th call's slot is (k - 1) intervals after the first (burst 2): never early
            self.assertGreaterEqual(arrivals[k] - first, (k - 1) * interval - 0.030,
                                    [round(a - first, 3) for a in arrivals])
        # ... and not much later either: the calls waited for their slots, not more
        self.assertLess(arrivals[-1] - t0, (n - 1) * interval + 0.5)
        text = self.metrics(gd)
        waits = self.metric(text, 'gatherd_upstream_rate_limit_waits_total')
        self.assertGreaterEqual(waits, n - 4)
        self.assertEqual(self.metric(text, 'gatherd_upstream_wait_seconds_count',
                                     'upstream="r",resource="rate_limit"'), waits)
        self.assertGreater(self.metric(text, 'gatherd_upstream_wait_seconds_sum',
                                       'upstream="r",resource="rate_limit"'), 1.0)

    def test_a_call_behind_waiting_ones_fails_at_once(self):
        up = self.start_scripted({'/r': ok})
        gd = self.start_gatherd(config(
            [endpoint('/long', {'x': call('r', '/r')}, timeout_ms=3000),
             endpoint('/short', {'x': call('r', '/r')}, timeout_ms=800)],
            {'r': upstream(up.url, rate_limit={'calls': 1, 'per_ms': 500})}, threads=2))
        st, _, _, _ = gd.get('/long')  # takes the one token at once
        self.assertEqual(st, 200)
        t0 = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(2) as ex:
            futs = [ex.submit(gd.get, '/long')]  # slot at ~500 ms: waits
            time.sleep(0.05)
            futs.append(ex.submit(gd.get, '/long'))  # slot at ~1000 ms: waits
            time.sleep(0.05)
            # its slot would be at ~1500 ms, after its 800 ms deadline: refused now
            st, _, body, _ = gd.get('/short')
            refused_after = time.monotonic() - t0
            results = [f.result() for f in futs]
            served_after = time.monotonic() - t0
        doc = json.loads(body)
        self.assertEqual(st, 503, body)
        self.assertEqual(doc['errors']['x']['kind'], 'rate_limited', body)
        self.assertLess(refused_after, 0.4)
        self.assertEqual([r[0] for r in results], [200, 200])
        self.assertGreaterEqual(served_after, 0.9)
        self.assertEqual(up.count('/r'), 3)

    def test_a_cancelled_wait_gives_its_token_back(self):
        up = self.start_scripted({'/r': ok})
        gd = self.start_gatherd(config(
            [endpoint('/long', {'x': call('r', '/r')}, timeout_ms=3000),
             endpoint('/mid', {'x': call('r', '/r')}, timeout_ms=1000)],
            {'r': upstream(up.url, rate_limit={'calls': 1, 'per_ms': 1000})}))
        self.assertEqual(gd.get('/long')[0], 200)  # the token of now; the next at ~1000 ms
        t0 = time.monotonic()
        conn = gd.connection()
        conn.request('GET', '/long')  # reserves the slot at ~1000 ms and waits for it
        time.sleep(0.15)
        conn.close()  # the client leaves: its call is cancelled, the slot was the last one
        time.sleep(0.15)
        # deadline ~1300 ms: the slot given back fits; the one after it (~2000 ms) would not
        st, _, body, _ = gd.get('/mid')
        self.assertEqual(st, 200, body)
        self.assertGreaterEqual(time.monotonic() - t0, 0.85)
        self.assertEqual(up.count('/r'), 2)

    def test_a_retry_waits_for_a_token(self):
        def fail_once(n):
            return (503 if n == 1 else 200), {}, 0
        up = self.start_scripted({'/r': fail_once})
        gd = self.start_gatherd(config(
            [endpoint('/t', {'x': call('r', '/r')}, timeout_ms=2000)],
            {'r': upstream(up.url, rate_limit={'calls': 1, 'per_ms': 300},
                           retry={'attempts': 2, 'backoff_ms': 1, 'on': [503],
                                  'min_retries_per_s': 100})}))
        st, _, body, _ = gd.get('/t')
        self.assertEqual(st, 200, body)
        t = up.arrivals('/r')
        self.assertEqual(len(t), 2)
        self.assertGreaterEqual(t[1] - t[0], 0.250)  # the retry took the next token, not 1 ms

    def test_max_in_flight_bounds_calls_at_once_across_threads(self):
        up = self.start_scripted({'/s': slow})
        gd = self.start_gatherd(config(
            [endpoint('/t', {'x': call('r', '/s')}, timeout_ms=5000)],
            {'r': upstream(up.url, max_in_flight=3, max_connections=64)},
            threads=2))
        res = self.fetch_all(gd, ['/t'] * 12)
        self.assertEqual([st for st, _ in res], [200] * 12, res)
        t = sorted(up.arrivals('/s'))
        self.assertEqual(len(t), 12)
        # a place is free only when a call (200 ms at the upstream) ended: at most 3 at once
        for k in range(len(t) - 3):
            self.assertGreaterEqual(t[k + 3] - t[k], 0.190, [round(x - t[0], 3) for x in t])
        text = self.metrics(gd)
        self.assertEqual(self.metric(text, 'gatherd_upstream_in_flight_calls'), 0)
        self.assertGreaterEqual(self.metric(text, 'gatherd_upstream_wait_seconds_count',
                                            'upstream="r",resource="in_flight"'), 9)

    def test_max_in_flight_wait_ends_at_the_deadline(self):
        up = self.start_scripted({'/s': lambda n: (200, {}, 0.6)})
        gd = self.start_gatherd(config(
            [endpoint('/hold', {'x': call('r', '/s')}, timeout_ms=3000),
             endpoint('/t', {'x': call('r', '/s', timeout_ms=300)}, timeout_ms=2000)],
            {'r': upstream(up.url, max_in_flight=2)}, threads=2))
        with concurrent.futures.ThreadPoolExecutor(2) as ex:
            holders = [ex.submit(gd.get, '/hold', None, 20) for _ in range(2)]
            wait_until(lambda: up.count('/s') == 2)  # both places taken for 600 ms
            res = self.fetch_all(gd, ['/t'] * 4)
            self.assertEqual([h.result()[0] for h in holders], [200, 200])
        for st, doc in res:
            err = doc['errors']['x']
            self.assertEqual((st, err['kind']), (503, 'in_flight_timeout'), doc)
            self.assertEqual(err['message'], 'too many calls to the service are under way')
            # at the call's own deadline, not at once (a place might have come) nor later
            self.assertGreaterEqual(err['elapsed_ms'], 295, doc)
            self.assertLess(err['elapsed_ms'], 550, doc)
        self.assertEqual(up.count('/s'), 2)
        text = self.metrics(gd)
        self.assertEqual(self.metric(text, 'gatherd_upstream_in_flight_refused_total'), 4)

    def test_live_view_shows_the_waits(self):
        up = self.start_scripted({'/r': ok, '/s': lambda n: (200, {}, 1.0)})
        gd = self.start_gatherd(config(
            [endpoint('/p', {'x': call('paced', '/r')}, timeout_ms=5000),
             endpoint('/a', {'x': call('capped', '/s')}, timeout_ms=5000)],
            {'paced': upstream(up.url, rate_limit={'calls': 1, 'per_ms': 1500}),
             'capped': upstream(up.url, max_in_flight=1)}))
        self.assertEqual(gd.get('/p')[0], 200)  # the token of now
        with concurrent.futures.ThreadPoolExecutor(3) as ex:
            futs = [ex.submit(gd.get, p, None, 20) for p in ('/p', '/a')]
            wait_until(lambda: up.count('/s') == 1)
            futs.append(ex.submit(gd.get, '/a', None, 20))

            def states():
                st, body = admin_get(admin_port(gd), '/debug/requests')
                doc = json.loads(body)
                return sorted(c['state'] for r in doc['requests'] for c in r['calls'])
            self.assertTrue(wait_until(lambda: states() == ['admitting', 'pacing', 'sent']),
                            states())
            self.assertEqual([f.result()[0] for f in futs], [200, 200, 200])

    def test_breaker_state_and_transitions_metrics(self):
        up = self.start_scripted({'/b': lambda n: (503, {}, 0)})
        gd = self.start_gatherd(config(
            [endpoint('/t', {'x': call('r', '/b')})],
            {'r': upstream(up.url, breaker={'failures': 2, 'open_ms': 300}),
             'plain': upstream(up.url)}))

        def states():
            text = self.metrics(gd)
            return ({s: self.metric(text, 'gatherd_upstream_breaker_state',
                                    'upstream="r",state="%s"' % s)
                     for s in ('closed', 'open', 'half_open')},
                    {s: self.metric(text, 'gatherd_upstream_breaker_transitions_total',
                                    'upstream="r",to="%s"' % s)
                     for s in ('closed', 'open', 'half_open')}, text)
        st, tr, text = states()
        self.assertEqual(st, {'closed': 1, 'open': 0, 'half_open': 0})
        self.assertNotIn('gatherd_upstream_breaker_state{upstream="plain"', text)
        gd.get('/t')
        gd.get('/t')
        st, tr, _ = states()
        self.assertEqual(st, {'closed': 0, 'open': 1, 'half_open': 0})
        self.assertEqual(tr, {'closed': 0, 'open': 1, 'half_open': 0})
        time.sleep(0.35)
        st, _, _ = states()
        self.assertEqual(st, {'closed': 0, 'open': 0, 'half_open': 1})
        gd.get('/t')  # the probe fails: open again
        st, tr, _ = states()
        self.assertEqual(st, {'closed': 0, 'open': 1, 'half_open': 0})
        self.assertEqual(tr, {'closed': 0, 'open': 2, 'half_open': 1})

    def test_breaker_opens_on_an_error_rate(self):
        # every other call fails: never 100 in a row, but half of at least 4
        up = self.start_scripted({'/b': lambda n: (503 if n % 2 else 200, {}, 0)})
        gd = self.start_gatherd(config(
            [endpoint('/t', {'x': call('r', '/b')})],
            {'r': upstream(up.url, breaker={'failures': 100, 'open_ms': 5000, 'error_rate': 0.5,
                                            'min_calls': 4, 'window_ms': 10000})},
            threads=2))

        def kind():
            st, _, body, _ = gd.get('/t')
            doc = json.loads(body)
            return 'ok' if doc['x'] is not None else doc['errors']['x']['kind']
        self.assertEqual([kind() for _ in range(4)], ['status', 'ok', 'status', 'ok'])
        self.assertEqual(kind(), 'status')  # 3 failed of 5: the breaker opens
        self.assertEqual(kind(), 'circuit_open')
        self.assertEqual(up.count('/b'), 5)

    def test_limit_refusals_do_not_count_at_the_breaker(self):
        # failures 2: fail, rate_limited, fail must open it; were the refusal an answer (a
        # success), it would have reset the count and the breaker would still be closed
        up = self.start_scripted({'/b': lambda n: (503, {}, 0)})
        gd = self.start_gatherd(config(
            [endpoint('/long', {'x': call('r', '/b')}, timeout_ms=2000),
             endpoint('/short', {'x': call('r', '/b')}, timeout_ms=200)],
            {'r': upstream(up.url, breaker={'failures': 2, 'open_ms': 5000},
                           rate_limit={'calls': 1, 'per_ms': 400})}))

        def kind(path):
            st, _, body, _ = gd.get(path)
            return json.loads(body)['errors']['x']['kind']
        self.assertEqual(kind('/long'), 'status')
        self.assertEqual(kind('/short'), 'rate_limited')
        self.assertEqual(kind('/long'), 'status')  # waited for the next token
        self.assertEqual(kind('/long'), 'circuit_open')
        self.assertEqual(up.count('/b'), 2)

    def test_config_errors_name_their_place(self):
        cases = [
            ({'rate_limit': {'calls': 10}}, 'upstreams.r.rate_limit.per_ms: missing required key'),
            ({'rate_limit': {'calls': 0, 'per_ms': 1000}},
             'upstreams.r.rate_limit.calls: must be between 1 and'),
            ({'rate_limit': {'calls': 5, 'per_ms': 1000, 'burst': 0}},
             'upstreams.r.rate_limit.burst: must be between 1 and'),
            ({'rate_limit': {'calls': 5, 'per_ms': 1000, 'bursts': 2}}, 'upstreams.r.rate_limit'),
            ({'rate_limit': 5}, 'upstreams.r.rate_limit'),
            ({'max_in_flight': -1}, 'upstreams.r.max_in_flight: must be between 0 and'),
            ({'max_in_flight': 'x'}, 'upstreams.r.max_in_flight'),
            ({'breaker': {'error_rate': 0}},
             'upstreams.r.breaker.error_rate: must be above 0 and at most 1'),
            ({'breaker': {'min_calls': 5}},
             'upstreams.r.breaker.min_calls: only applies with error_rate'),
        ]
        for extra, message in cases:
            cfg = config([endpoint('/t', {'x': call('r', '/p')})],
                         {'r': upstream('http://127.0.0.1:1', **extra)})
            with self.assertRaises(Exception) as ctx:
                self.start_gatherd(cfg, start_timeout=5)
            self.assertIn(message, str(ctx.exception))


if __name__ == '__main__':
    main()
