#!/usr/bin/env python3
"""Hedged calls (retry.hedge_after_ms): a second attempt beside a slow one, the first answer
wins and the other's connection is closed; never for a POST; bounded by the retry budget."""

import json
import os
import re
import sys
import threading
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (GatherdTestCase, Route, StubUpstream, call, config, endpoint,  # noqa: E402
                     main, now, upstream, wait_until)


class RecordingStub(StubUpstream):
    """A StubUpstream whose every @slow_every-th request (counted from 1, over all paths) is
    answered after @slow_ms and the others at once; each slow request is remembered with the
    connection it came on (a ConnRecord: who closed it, and when)."""

    def __init__(self, slow_every=10, slow_ms=500):
        self.slow_every = slow_every
        self.slow_ms = slow_ms
        self.seen = 0
        self.slow = []  # (ConnRecord, arrival time) of each slow request
        self._conn_of_thread = threading.local()
        super().__init__()

    def _serve(self, conn, rec):
        self._conn_of_thread.rec = rec  # one serving thread per connection
        return super()._serve(conn, rec)

    def _respond(self, conn, route, method, req_headers):
        with self._lock:
            self.seen += 1
            slow = self.seen % self.slow_every == 0
            if slow:
                self.slow.append((self._conn_of_thread.rec, now()))
        route = Route(json={'slow': slow}, delay_ms=self.slow_ms if slow else 0)
        return super()._respond(conn, route, method, req_headers)


def metrics(gd, upstream_name):
    port = int(gd.cfg['admin_listen'].rsplit(':', 1)[1])
    with urllib.request.urlopen('http://127.0.0.1:%d/metrics' % port, timeout=5) as r:
        text = r.read().decode()
    out = {}
    for name in ('attempts', 'retries', 'retries_refused', 'hedges', 'hedges_won'):
        m = re.search(r'^gatherd_upstream_%s_total\{upstream="%s"\} (\d+)$' % (name, upstream_name),
                      text, re.M)
        out[name] = int(m.group(1)) if m else None
    return out


def p99_and_max(latencies):
    s = sorted(latencies)
    return s[min(len(s) - 1, int(len(s) * 0.99))], s[-1]


class HedgingTest(GatherdTestCase):

    def start_recording(self, **kw):
        s = RecordingStub(**kw)
        self.addCleanup(s.stop)
        return s

    def test_hedging_cuts_the_tail_of_slow_outliers(self):
        hedged = self.start_recording(slow_every=10, slow_ms=500)
        plain = self.start_recording(slow_every=10, slow_ms=500)
        retry = {'attempts': 2, 'hedge_after_ms': 50, 'min_retries_per_s': 100}
        gd = self.start_gatherd(config(
            [endpoint('/hedged', {'x': call('h', '/a')}),
             endpoint('/plain', {'x': call('p', '/a')})],
            {'h': upstream(hedged.url, retry=retry), 'p': upstream(plain.url)}))
        lat = {'/hedged': [], '/plain': []}
        for _ in range(50):  # interleaved: the machine's load hits both alike
            for path in lat:
                st, hdrs, body, elapsed = gd.get(path)
                self.assertEqual(st, 200, body)
                self.assertEqual(hdrs.get('X-Gatherd-Complete'), 'true', body)
                lat[path].append(elapsed)
        p99h, maxh = p99_and_max(lat['/hedged'])
        p99p, maxp = p99_and_max(lat['/plain'])
        med = sorted(lat['/plain'])[25]
        sys.stderr.write('50 calls, every 10th upstream answer 500 ms: median %.1f ms; '
                         'p99/max without hedging %.0f/%.0f ms, with hedge_after_ms 50 '
                         '%.0f/%.0f ms\n' % (med * 1e3, p99p * 1e3, maxp * 1e3, p99h * 1e3,
                                             maxh * 1e3))
        self.assertGreaterEqual(maxp, 0.45)
        self.assertGreaterEqual(len(plain.slow), 5)
        self.assertLess(maxh, 0.3, lat['/hedged'])  # 50 ms + a fast answer, with a margin
        self.assertGreaterEqual(len(hedged.slow), 5)

        # every slow request was overtaken by its hedge: its connection closed by gatherd long
        # before the answer was due (the stub watches the connection while it waits)
        def all_closed():
            with hedged._lock:
                return all(rec.closed_at is not None for rec, _ in hedged.slow)
        self.assertTrue(wait_until(all_closed, timeout=2), hedged.slow)
        for rec, arrived in hedged.slow:
            self.assertEqual(rec.closed_by, 'peer', rec)
            self.assertLess(rec.closed_at - arrived, 0.4, rec)
        sys.stderr.write('slow requests closed by gatherd after at most %.0f ms\n' % (
            1e3 * max(rec.closed_at - arrived for rec, arrived in hedged.slow)))

        # the metrics: every attempt counted, a hedge per slow answer at least, and the hedges
        # of the slow ones won
        m = metrics(gd, 'h')
        requests = len(hedged.requests_for('/a'))
        self.assertEqual(m['attempts'], requests, m)
        self.assertEqual(m['hedges'], requests - 50, m)
        self.assertGreaterEqual(m['hedges'], len(hedged.slow), m)
        self.assertGreaterEqual(m['hedges_won'], len(hedged.slow), m)
        self.assertLessEqual(m['hedges_won'], m['hedges'], m)
        self.assertEqual(m['retries'], 0, m)
        mp = metrics(gd, 'p')
        self.assertEqual((mp['hedges'], mp['hedges_won']), (0, 0), mp)

    def test_post_is_not_hedged(self):
        up = self.start_stub()
        up.add('/p', json={'ok': 1}, delay_ms=200)
        up.add('/i', json={'ok': 1}, delay_ms=200)
        gd = self.start_gatherd(config(
            [endpoint('/p', {'x': call('r', '/p', method='POST')}),
             endpoint('/i', {'x': call('r', '/i', method='POST', idempotent=True)})],
            {'r': upstream(up, retry={'attempts': 2, 'hedge_after_ms': 30,
                                      'min_retries_per_s': 100})}))
        st, _, body, _ = gd.get('/p')
        self.assertEqual(st, 200, body)
        st, _, body, _ = gd.get('/i')
        self.assertEqual(st, 200, body)
        self.assertEqual(len(up.requests_for('/p')), 1)
        self.assertEqual(len(up.requests_for('/i')), 2)  # the same call, marked idempotent
        self.assertEqual(metrics(gd, 'r')['hedges'], 1)

    def test_always_slow_upstream_sees_budget_bounded_hedges(self):
        up = self.start_stub()
        up.add('/slow', json={'ok': 1}, delay_ms=120)
        gd = self.start_gatherd(config(
            [endpoint('/t', {'x': call('r', '/slow')})],
            {'r': upstream(up, retry={'attempts': 2, 'hedge_after_ms': 10,
                                      'budget_percent': 20, 'min_retries_per_s': 0})}))
        for _ in range(30):
            st, _, body, _ = gd.get('/t')
            self.assertEqual(st, 200, body)
        n = len(up.requests_for('/slow'))
        m = metrics(gd, 'r')
        sys.stderr.write('30 calls to an always slow upstream, hedge_after_ms 10, budget 20%%: '
                         '%d requests (60 without the budget); %s\n' % (n, m))
        self.assertLessEqual(n, 30 + 6 + 1)
        self.assertGreaterEqual(n, 30 + 3)
        self.assertEqual(m['hedges'], n - 30, m)
        self.assertGreaterEqual(m['retries_refused'], 30 - m['hedges'] - 1, m)

    def test_attempts_include_hedges_and_a_timeout_waits_for_both(self):
        up = self.start_stub()
        up.add('/hang', mode='hang')
        gd = self.start_gatherd(config(
            [endpoint('/t', {'x': call('r', '/hang', timeout_ms=300)})],
            {'r': upstream(up, retry={'attempts': 2, 'hedge_after_ms': 50,
                                      'min_retries_per_s': 100})}))
        t0 = now()
        st, _, body, elapsed = gd.get('/t')
        doc = json.loads(body)
        self.assertEqual(doc['errors']['x']['kind'], 'timeout', body)
        self.assertEqual(doc['errors']['x']['attempts'], 2, body)
        self.assertGreaterEqual(elapsed, 0.28)
        self.assertLess(elapsed, 0.8)
        reqs = up.request_times
        self.assertEqual(len(reqs), 2)
        self.assertGreaterEqual(reqs[1] - reqs[0], 0.04)
        self.assertLess(reqs[1] - t0, 0.25)
        self.assertTrue(wait_until(lambda: re.search(r'x:timeout:\d+:a2', gd.log())), gd.log())
        # both connections closed by gatherd at the deadline
        self.assertTrue(wait_until(lambda: all(c.closed_by == 'peer' for c in up.connections)),
                        up.connections)

    def test_no_hedge_without_a_free_connection_slot(self):
        up = self.start_stub()
        up.add('/slow', json={'ok': 1}, delay_ms=150)
        gd = self.start_gatherd(config(
            [endpoint('/t', {'x': call('r', '/slow')})],
            {'r': upstream(up, max_connections=1,
                           retry={'attempts': 2, 'hedge_after_ms': 20,
                                  'min_retries_per_s': 100})}))
        for _ in range(3):
            st, _, body, elapsed = gd.get('/t')
            self.assertEqual(st, 200, body)
            self.assertGreaterEqual(elapsed, 0.14)
        self.assertEqual(len(up.requests_for('/slow')), 3)
        self.assertEqual(up.connections_accepted, 1)
        m = metrics(gd, 'r')
        self.assertEqual((m['hedges'], m['retries_refused']), (0, 0), m)

    def test_a_hedge_takes_a_free_rate_limit_token_or_none(self):
        up = self.start_stub()
        up.add('/slow', json={'ok': 1}, delay_ms=200)
        retry = {'attempts': 2, 'hedge_after_ms': 20, 'min_retries_per_s': 100}
        # one token every 10 s: the first attempt takes it, the hedge finds none and is skipped
        gd = self.start_gatherd(config(
            [endpoint('/t', {'x': call('r', '/slow')})],
            {'r': upstream(up, retry=retry, rate_limit={'calls': 1, 'per_ms': 10000})}))
        st, _, body, elapsed = gd.get('/t')
        self.assertEqual(st, 200, body)
        self.assertGreaterEqual(elapsed, 0.19)
        self.assertEqual(len(up.requests_for('/slow')), 1)
        self.assertEqual(metrics(gd, 'r')['hedges'], 0)
        # with tokens to spare the same call is hedged
        up2 = self.start_stub()
        up2.add('/slow', json={'ok': 1}, delay_ms=200)
        gd2 = self.start_gatherd(config(
            [endpoint('/t', {'x': call('r', '/slow')})],
            {'r': upstream(up2, retry=retry,
                           rate_limit={'calls': 100, 'per_ms': 1000, 'burst': 10})}))
        self.assertEqual(gd2.get('/t')[0], 200)
        self.assertEqual(len(up2.requests_for('/slow')), 2)
        self.assertEqual(metrics(gd2, 'r')['hedges'], 1)

    def test_client_gone_closes_both_attempts(self):
        up = self.start_stub()
        up.add('/hang', mode='hang')
        gd = self.start_gatherd(config(
            [endpoint('/t', {'x': call('r', '/hang', timeout_ms=5000)}, timeout_ms=5000)],
            {'r': upstream(up, retry={'attempts': 2, 'hedge_after_ms': 30,
                                      'min_retries_per_s': 100})}))
        conn = gd.connection()
        conn.request('GET', '/t')
        self.assertEqual(up.wait_requests(2, timeout=3), 2)  # the first attempt and its hedge
        left_at = now()
        conn.close()
        self.assertTrue(wait_until(lambda: len(up.connections) == 2 and
                                   all(c.closed_at is not None for c in up.connections),
                                   timeout=3), up.connections)
        for c in up.connections:
            self.assertEqual(c.closed_by, 'peer', c)
            self.assertLess(c.closed_at - left_at, 1.0, c)
        self.assertTrue(wait_until(lambda: re.search(r'status=499 .*x:cancelled:\d+:a2',
                                                     gd.log())), gd.log())
        self.assertAlive(gd)

    def test_a_failed_hedge_leaves_the_call_to_the_first_attempt(self):
        # the first request is slow and good; the hedge fails at once with a 503 (a failure the
        # policy retries): the call waits for the first instead of failing or retrying
        state = {'n': 0}

        class FirstSlowThenFailing(StubUpstream):
            def _respond(self, conn, route, method, req_headers):
                with self._lock:
                    state['n'] += 1
                    n = state['n']
                route = Route(json={'first': True}, delay_ms=200) if n == 1 else Route(status=503)
                return super()._respond(conn, route, method, req_headers)
        up = FirstSlowThenFailing()
        self.addCleanup(up.stop)
        gd = self.start_gatherd(config(
            [endpoint('/t', {'x': call('r', '/f')})],
            {'r': upstream(up, retry={'attempts': 2, 'hedge_after_ms': 30,
                                      'min_retries_per_s': 100})}))
        st, _, body, elapsed = gd.get('/t')
        self.assertEqual(st, 200, body)
        self.assertEqual(json.loads(body)['x'], {'first': True})
        self.assertEqual(state['n'], 2)  # no third attempt: attempts is 2
        m = metrics(gd, 'r')
        self.assertEqual((m['hedges'], m['hedges_won']), (1, 0), m)

    def test_config_errors_name_their_place(self):
        cases = [
            (call('r', '/p', method='POST', retry={'hedge_after_ms': 30}),
             {}, 'endpoints[0].calls.x.retry.hedge_after_ms: a POST call is never hedged'),
            (call('r', '/p'), {'retry': {'attempts': 1, 'hedge_after_ms': 30}},
             'upstreams.r.retry.hedge_after_ms: a hedge is a second attempt'),
        ]
        for c, up_kw, message in cases:
            cfg = config([endpoint('/t', {'x': c})], {'r': upstream('http://127.0.0.1:1', **up_kw)})
            with self.assertRaises(Exception) as ctx:
                self.start_gatherd(cfg, start_timeout=5)
            self.assertIn(message, str(ctx.exception))
        # inherited from the upstream, a hedge does not apply to a POST: no error
        cfg = config([endpoint('/t', {'x': call('r', '/p', method='POST')})],
                     {'r': upstream('http://127.0.0.1:1', retry={'hedge_after_ms': 30})})
        self.start_gatherd(cfg)


if __name__ == '__main__':
    main()
