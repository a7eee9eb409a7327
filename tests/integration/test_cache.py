#!/usr/bin/env python3
"""The response cache and request coalescing: hits within the lifetime counted at the stub,
expiry, what the key holds (the rendered request, the headers that vary, not the request id),
identical calls in flight made once, a waiter whose deadline passes and a client that leaves
without cancelling the flight, negative caching, Cache-Control honoured, the LRU bound, a cache
shared by the threads, SQL calls, the metrics and access line, and config errors."""
import json as jsonlib
import os
import socket
import subprocess
import tempfile
import threading
import time

from harness import (HOST, GatherdTestCase, call, config, endpoint, gatherd_bin, main,
                     wait_until)
from test_operations import admin_get, admin_port, metric_value
from test_postgres import PgTestCase, sql_call


def cached(path, ttl_ms=5000, **kw):
    c = call('s', path, cache=dict({'ttl_ms': ttl_ms}, **kw.pop('cache', {})))
    c.update(kw)
    return c


def parallel_gets(gd, paths, timeout=15):
    results = [None] * len(paths)

    def one(i, p):
        results[i] = gd.get(p, timeout=timeout)
    threads = [threading.Thread(target=one, args=(i, p)) for i, p in enumerate(paths)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def check_config_error(test, cfg, expected):
    """`gatherd -t` on @cfg fails and says @expected."""
    cfg['listen'] = ['127.0.0.1:1']
    with tempfile.NamedTemporaryFile('w', suffix='.json', delete=False) as f:
        jsonlib.dump(cfg, f)
    test.addCleanup(os.unlink, f.name)
    out = subprocess.run([gatherd_bin(), '-t', '-c', f.name], capture_output=True, text=True,
                         timeout=30)
    test.assertNotEqual(out.returncode, 0)
    test.assertIn(expected, out.stderr)


class CacheTest(GatherdTestCase):

    def start(self, eps, threads=1, **top):
        gd = self.start_gatherd(config(eps, self.ups, threads=threads, **top))
        wait_until(lambda: self.admin_up(gd), timeout=10)
        return gd

    def admin_up(self, gd):
        try:
            return admin_get(admin_port(gd), '/healthz')[0] == 200
        except OSError:
            return False

    def metrics(self, gd):
        return admin_get(admin_port(gd), '/metrics')[1]

    def setUp(self):
        self.stub = self.start_stub()
        self.ups = {'s': {'url': self.stub.url, 'forward_headers': ['accept-language']}}

    def test_hits_within_the_lifetime_then_expiry(self):
        self.stub.add('/users/1', json={'id': 1})
        gd = self.start([endpoint('/u/{id}', {'user': cached('/users/{id}', ttl_ms=600)})])
        bodies = [gd.get('/u/1')[2] for _ in range(4)]
        self.assertEqual(bodies, [b'{"user":{"id": 1}}'] * 4)
        self.assertEqual(len(self.stub.requests_for('/users/1')), 1)  # request ids differed
        self.assertTrue(wait_until(lambda: gd.log().count(':hit') == 3), gd.log())
        text = self.metrics(gd)
        self.assertEqual(metric_value(text, 'gatherd_call_cache_total', endpoint='/u/{id}',
                                      call='user', result='hit'), 3)
        self.assertEqual(metric_value(text, 'gatherd_call_cache_total', endpoint='/u/{id}',
                                      call='user', result='miss'), 1)
        self.assertEqual(metric_value(text, 'gatherd_cache_entries'), 1)
        self.assertGreater(metric_value(text, 'gatherd_cache_bytes'), 0)
        time.sleep(0.7)
        self.assertEqual(gd.get('/u/1')[0], 200)
        self.assertEqual(len(self.stub.requests_for('/users/1')), 2)  # expired
        gd.check_clean_log()

    def test_a_cached_result_is_shaped_on_every_use(self):
        self.stub.add('/users/1', body=b'{"id": 1, "name": "Ann", "email": "a@x"}')
        gd = self.start([endpoint('/u/{id}', {'user': cached('/users/{id}', omit=['email'])}),
                         endpoint('/n/{id}', {'user': cached('/users/{id}', fields=['name'])})])
        for _ in range(2):
            self.assertEqual(gd.get('/u/1')[2], b'{"user":{"id": 1,"name": "Ann"}}')
            self.assertEqual(gd.get('/n/1')[2], b'{"user":{"name": "Ann"}}')
        # each call's own entry (its shaping is part of its variant), each reused
        self.assertEqual(len(self.stub.requests_for('/users/1')), 2)
        self.assertTrue(wait_until(lambda: gd.log().count(':hit') == 2), gd.log())

    def test_key_holds_the_rendered_request_and_the_headers_that_vary(self):
        self.stub.add('/users/1', json={'id': 1})
        self.stub.add('/users/2', json={'id': 2})
        gd = self.start([endpoint('/u/{id}', {'user': cached('/users/{id}')}),
                         endpoint('/v/{id}', {'user': cached('/users/{id}')})])
        self.assertEqual(gd.get('/u/1')[2], b'{"user":{"id": 1}}')
        self.assertEqual(gd.get('/u/2')[2], b'{"user":{"id": 2}}')
        self.assertEqual(len(self.stub.requests), 2)
        # another endpoint making the same call with the same settings shares the entry
        self.assertEqual(gd.get('/v/1')[2], b'{"user":{"id": 1}}')
        self.assertEqual(len(self.stub.requests), 2)
        # a forwarded header is part of the request: another value is another entry
        gd.get('/u/1', headers={'Accept-Language': 'de'})
        gd.get('/u/1', headers={'Accept-Language': 'de'})
        gd.get('/u/1', headers={'Accept-Language': 'fr'})
        langs = [h.get('accept-language') for _, _, h in self.stub.requests_for('/users/1')]
        self.assertEqual(langs, [None, 'de', 'fr'])

    def test_identical_calls_in_flight_make_one_exchange(self):
        self.stub.add('/slow', json={'n': 1}, delay_ms=800)
        gd = self.start([endpoint('/s', {'slow': cached('/slow')})])
        results = parallel_gets(gd, ['/s'] * 10)
        self.assertEqual([r[0] for r in results], [200] * 10)
        self.assertEqual({r[2] for r in results}, {b'{"slow":{"n": 1}}'})
        self.assertEqual(len(self.stub.requests_for('/slow')), 1)
        text = self.metrics(gd)

        def count(result):
            return metric_value(text, 'gatherd_call_cache_total', endpoint='/s', call='slow',
                                result=result)
        # on a loaded machine a client may start after the flight ended: a hit then
        self.assertEqual(count('miss'), 1)
        self.assertEqual(count('coalesced') + count('hit'), 9)
        self.assertGreaterEqual(count('coalesced'), 5)
        n = int(count('coalesced'))
        self.assertTrue(wait_until(lambda: gd.log().count(':coalesced') == n), gd.log())

    def test_a_waiter_whose_deadline_passes_leaves_the_flight_to_the_others(self):
        self.stub.add('/slow', json={'n': 1}, delay_ms=700)
        slow = cached('/slow')
        gd = self.start([endpoint('/long', {'slow': slow}, timeout_ms=3000),
                         endpoint('/short', {'slow': slow}, timeout_ms=200)])
        out = {}

        def long_one():
            out['long'] = gd.get('/long', timeout=10)
        t = threading.Thread(target=long_one)
        t.start()
        self.assertEqual(self.stub.wait_requests(1), 1)
        st, _, body, elapsed = gd.get('/short')
        self.assertEqual(st, 504, body)
        self.assertLess(elapsed, 0.6)
        t.join()
        self.assertEqual(out['long'][0], 200)
        self.assertEqual(out['long'][2], b'{"slow":{"n": 1}}')
        self.assertEqual(len(self.stub.requests_for('/slow')), 1)

    def test_a_client_that_leaves_does_not_cancel_the_flight(self):
        self.stub.add('/slow', json={'n': 2}, delay_ms=600)
        gd = self.start([endpoint('/s', {'slow': cached('/slow')})])
        first = socket.create_connection((HOST, gd.port))
        first.sendall(b'GET /s HTTP/1.1\r\nHost: x\r\n\r\n')
        self.assertEqual(self.stub.wait_requests(1), 1)
        out = {}

        def second():
            out['r'] = gd.get('/s', timeout=10)
        t = threading.Thread(target=second)
        t.start()
        time.sleep(0.1)
        first.close()  # the client whose request started the flight leaves
        t.join()
        self.assertEqual(out['r'][0], 200)
        self.assertEqual(out['r'][2], b'{"slow":{"n": 2}}')
        self.assertEqual(len(self.stub.requests_for('/slow')), 1)
        # the exchange ran to its end: the stub's connection was not cut before the answer
        conn = self.stub.connections[0]
        self.assertIn(conn.closed_by, (None, 'stub'))
        # and its result was stored: a later request is a hit
        self.assertEqual(gd.get('/s')[0], 200)
        self.assertEqual(len(self.stub.requests_for('/slow')), 1)
        self.assertTrue(wait_until(lambda: 'status=499' in gd.log()), gd.log())
        gd.check_clean_log()

    def test_negative_caching_of_answered_failures_only(self):
        self.stub.add('/missing', status=404, json={'error': 'no'})
        self.stub.add('/down', status=503, json={'error': 'down'})
        gd = self.start([
            endpoint('/m', {'x': cached('/missing', optional=True,
                                        cache={'negative_ttl_ms': 5000})}),
            endpoint('/d', {'x': cached('/down', optional=True)})])
        for _ in range(3):
            st, _, body, _ = gd.get('/m')
            self.assertEqual(st, 200, body)
            self.assertEqual(jsonlib.loads(body)['errors']['x']['status'], 404)
        self.assertEqual(len(self.stub.requests_for('/missing')), 1)
        for _ in range(3):
            gd.get('/d')
        self.assertEqual(len(self.stub.requests_for('/down')), 3)  # no negative_ttl_ms: never

    def test_broken_exchanges_are_never_cached(self):
        self.stub.add('/reset', mode='close')
        gd = self.start([endpoint('/r', {'x': cached('/reset', optional=True,
                                                     cache={'negative_ttl_ms': 5000})})])
        for _ in range(2):
            gd.get('/r')
        self.assertEqual(len(self.stub.requests_for('/reset')), 2)

    def test_cache_control_of_the_upstream_when_honoured(self):
        self.stub.add('/nostore', json={'a': 1}, headers={'Cache-Control': 'no-store'})
        self.stub.add('/private', json={'a': 1}, headers={'Cache-Control': 'private, max-age=60'})
        self.stub.add('/short', json={'a': 1}, headers={'Cache-Control': 'public, max-age=1'})
        self.stub.add('/shared', json={'a': 1},
                      headers={'Cache-Control': 'max-age=0, s-maxage=60'})
        self.stub.add('/ignored', json={'a': 1}, headers={'Cache-Control': 'no-store'})
        honour = {'honor_cache_control': True}
        gd = self.start([endpoint('/' + p, {'x': cached('/' + p, ttl_ms=60000,
                                                         cache=honour if p != 'ignored' else {})})
                         for p in ('nostore', 'private', 'short', 'shared', 'ignored')])
        for p in ('nostore', 'private', 'short', 'shared', 'ignored'):
            gd.get('/' + p)
            gd.get('/' + p)
        count = {p: len(self.stub.requests_for('/' + p))
                 for p in ('nostore', 'private', 'short', 'shared', 'ignored')}
        self.assertEqual(count, {'nostore': 2, 'private': 2, 'short': 1, 'shared': 1,
                                 'ignored': 1})
        time.sleep(1.1)  # max-age=1 shortened the 60 s lifetime
        gd.get('/short')
        gd.get('/shared')
        self.assertEqual(len(self.stub.requests_for('/short')), 2)
        self.assertEqual(len(self.stub.requests_for('/shared')), 1)

    def test_lru_bound_evicts_and_large_documents_are_not_kept(self):
        doc = {'pad': 'x' * 3000}
        for i in range(30):
            self.stub.add('/d/%d' % i, json=doc)
        self.stub.add('/big', json={'pad': 'y' * 20000})
        gd = self.start([endpoint('/d/{id}', {'x': cached('/d/{id}')}),
                         endpoint('/big', {'x': cached('/big')})], cache_max_bytes=65536)
        for i in range(30):
            self.assertEqual(gd.get('/d/%d' % i)[0], 200)
        text = self.metrics(gd)
        self.assertLessEqual(metric_value(text, 'gatherd_cache_bytes'), 65536)
        self.assertGreater(metric_value(text, 'gatherd_cache_evictions_total'), 0)
        self.assertEqual(metric_value(text, 'gatherd_cache_stored_total'), 30)
        gd.get('/d/0')  # the oldest was evicted
        self.assertEqual(len(self.stub.requests_for('/d/0')), 2)
        gd.get('/d/29')  # the newest was not
        self.assertEqual(len(self.stub.requests_for('/d/29')), 1)
        gd.get('/big')
        gd.get('/big')  # over an eighth of the bound: not kept
        self.assertEqual(len(self.stub.requests_for('/big')), 2)

    def test_threads_share_the_cache(self):
        self.stub.add('/users/1', json={'id': 1})
        gd = self.start([endpoint('/u/{id}', {'user': cached('/users/{id}')})], threads=2)
        for _ in range(20):  # new connections: both threads take some
            self.assertEqual(gd.get('/u/1')[0], 200)
        self.assertEqual(len(self.stub.requests_for('/users/1')), 1)

    def test_metrics_absent_without_cache(self):
        self.stub.add('/users/1', json={'id': 1})
        gd = self.start([endpoint('/u/{id}', {'user': call('s', '/users/{id}')})])
        gd.get('/u/1')
        gd.get('/u/1')
        self.assertEqual(len(self.stub.requests_for('/users/1')), 2)
        self.assertIsNone(metric_value(self.metrics(gd), 'gatherd_cache_bytes'))

    def check_config_error(self, eps, expected, **top):
        check_config_error(self, config(eps, self.ups, **top), expected)

    def test_config_errors_name_their_place(self):
        self.check_config_error(
            [endpoint('/p', {'x': call('s', '/p', method='POST', cache={'ttl_ms': 5})},
                      method='POST')],
            'endpoints[0].calls.x.cache: a POST call changes something')
        self.check_config_error([endpoint('/p', {'x': call('s', '/p', cache={})})],
                                'endpoints[0].calls.x.cache: "ttl_ms" is required')
        self.check_config_error([endpoint('/p', {'x': call('s', '/p', cache={'ttl': 5})})],
                                'endpoints[0].calls.x.cache')
        self.check_config_error([endpoint('/p', {'x': call('s', '/p', cache=5)})],
                                'endpoints[0].calls.x.cache')
        self.check_config_error(
            [endpoint('/p', {'x': call('s', '/p', cache={'ttl_ms': 5})})],
            'cache_max_bytes', cache_max_bytes=10)


class SqlCacheTest(PgTestCase):

    def test_sql_results_cached_by_their_arguments(self):
        q = sql_call('SELECT $1::int AS id, clock_timestamp()::text AS at', args=['{id}'],
                     row='one', cache={'ttl_ms': 5000})
        gd = self.start_pg_gatherd([endpoint('/q/{id}', {'q': q}, params={'id': 'int'})])
        a1 = jsonlib.loads(gd.get('/q/1')[2])['q']
        a2 = jsonlib.loads(gd.get('/q/1')[2])['q']
        b = jsonlib.loads(gd.get('/q/2')[2])['q']
        self.assertEqual(a1, a2)  # the same clock_timestamp(): not run again
        self.assertEqual((a1['id'], b['id']), (1, 2))
        self.assertNotEqual(a1['at'], b['at'])
        self.assertTrue(wait_until(lambda: ':hit' in gd.log()), gd.log())

    def test_a_statement_that_writes_is_refused(self):
        eps = [endpoint('/w', {'w': sql_call('INSERT INTO t VALUES (1)', cache={'ttl_ms': 5})})]
        check_config_error(self, self.pg_config(eps),
                           'endpoints[0].calls.w.cache: only a statement that reads')


if __name__ == '__main__':
    main()
