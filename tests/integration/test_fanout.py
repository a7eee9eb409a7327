#!/usr/bin/env python3
"""Fan-out: calls run at once, the merged answer is byte-exact, upstream connections are pooled
and capped."""

import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (GatherdTestCase, call, config, endpoint, loads_ordered, main,  # noqa: E402
                     media_type, upstream, now, wait_until)


def at_once(gd, path, n, timeout=10):
    """@n GETs of @path started together, each on its own connection: the (status, headers,
    body, elapsed) or the exception of each, and the seconds they took in all."""
    results = [None] * n
    barrier = threading.Barrier(n)

    def client(i):
        try:
            barrier.wait(5)
            results[i] = gd.get(path, timeout=timeout)
        except Exception as e:  # reported by the test
            results[i] = e

    threads = [threading.Thread(target=client, args=(i,)) for i in range(n)]
    t0 = now()
    for t in threads:
        t.start()
    for t in threads:
        t.join(2 * timeout)
    return results, now() - t0


class FanoutTest(GatherdTestCase):

    def test_three_calls_take_the_slowest_not_the_sum(self):
        stub = self.start_stub()
        for p in ('/a', '/b', '/c'):
            stub.add(p, json={'p': p}, delay_ms=200)
        gd = self.start_gatherd(config(
            [endpoint('/fan', {'a': call('s', '/a', timeout_ms=2000),
                               'b': call('s', '/b', timeout_ms=2000),
                               'c': call('s', '/c', timeout_ms=2000)})],
            {'s': stub}))
        for i in range(3):
            st, hdrs, body, elapsed = gd.get('/fan')
            self.assertEqual(st, 200, body)
            self.assertEqual(hdrs.get('X-Gatherd-Complete'), 'true', body)
            self.assertGreaterEqual(elapsed, 0.2, 'answered before the upstreams did')
            # Not the sum (0.6 s), with room for a loaded 2-core CI machine.
            self.assertLess(elapsed, 0.45, 'try %d: three 200 ms calls took %.3f s: not run at '
                            'once' % (i, elapsed))
        # the three calls of each request reached the stub at (nearly) the same moment
        times = stub.request_times
        self.assertEqual(len(times), 9)
        for i in range(0, 9, 3):
            self.assertLess(max(times[i:i + 3]) - min(times[i:i + 3]), 0.1, times)

    def test_merged_body_is_byte_exact(self):
        stub = self.start_stub()
        # upstream documents with odd but valid formatting: passed through exactly, never
        # re-serialised
        zeta = b'{"id": 7, "name" : "Zo\\u00eb \xc3\xa9",\n "tags":[1,2.50,"x"], "n":null}'
        alpha = b'[1, 2,3,  {"k":false}]'
        mid = b'"just a string"'
        num = b'12.0e3'
        stub.add('/zeta', body=zeta)
        stub.add('/alpha', body=alpha, chunked=True, chunk_size=3)
        stub.add('/mid', body=mid)
        stub.add('/num', body=num)
        # keys deliberately not in alphabetical order
        calls = {'zeta': call('s', '/zeta'), 'alpha': call('s', '/alpha'),
                 'mid': call('s', '/mid'), 'num': call('s', '/num', optional=True)}
        gd = self.start_gatherd(config([endpoint('/merge', calls)], {'s': stub}))
        expected = (b'{"zeta":' + zeta + b',"alpha":' + alpha + b',"mid":' + mid +
                    b',"num":' + num + b'}')
        for _ in range(3):  # the same inputs always give the same bytes
            st, hdrs, body, _ = gd.get('/merge')
            self.assertEqual(st, 200, body)
            self.assertEqual(hdrs.get('Content-Type'), 'application/json')
            self.assertEqual(hdrs.get('X-Gatherd-Complete'), 'true')
            doc = loads_ordered(body)
            self.assertEqual(doc.keys_in_order(), ['zeta', 'alpha', 'mid', 'num'])
            self.assertNotIn('errors', doc)
            self.assertEqual(body, expected)
            self.assertEqual(int(hdrs.get('Content-Length', len(body))), len(body))

    def test_upstream_named_by_host_name(self):
        # most tests name their upstreams by address; a name is resolved in the background and
        # cached (test_dns steers the resolver itself)
        addrs = {ai[4][0] for ai in socket.getaddrinfo('localhost', 80, type=socket.SOCK_STREAM)}
        if addrs != {'127.0.0.1'}:
            self.skipTest('localhost resolves to %s here, not only 127.0.0.1' % sorted(addrs))
        stub = self.start_stub()
        stub.add('/a', json={'a': 1})
        stub.add('/b', json={'b': 2})
        gd = self.start_gatherd(config(
            [endpoint('/named', {'a': call('n', '/a'), 'b': call('n', '/b')})],
            {'n': upstream('http://localhost:%d' % stub.port, keepalive_timeout_ms=50)}))
        for _ in range(5):
            st, _, body, _ = gd.get('/named')
            self.assertEqual((st, body), (200, b'{"a":{"a": 1},"b":{"b": 2}}'))
            time.sleep(0.1)  # past the keep-alive: each round makes new connections
        self.assertGreaterEqual(stub.connections_accepted, 5)
        host = {h.get('host') for _, _, h in stub.requests}
        self.assertEqual(host, {'localhost:%d' % stub.port})

    def test_call_names_that_need_escaping(self):
        # the config quotes each call name once (name_json); merge writes it as it is: a name
        # with a quote, a backslash and non-ASCII must come out as valid, exact JSON, in the
        # body and in the errors object
        stub = self.start_stub()
        stub.add('/a', json=1)
        stub.add('/down', status=503, json={})
        odd = 'we"ird\\naïve'
        calls = {odd: call('s', '/a'), 'x': call('s', '/down', optional=True)}
        gd = self.start_gatherd(config([endpoint('/odd', calls)], {'s': stub}))
        st, _, body, _ = gd.get('/odd')
        self.assertEqual(st, 200, body)
        self.assertTrue(body.startswith(b'{"we\\"ird\\\\na\xc3\xafve":1,"x":null,'), body)
        doc = loads_ordered(body)
        self.assertEqual(doc.keys_in_order(), [odd, 'x', 'errors'])
        self.assertEqual(doc[odd], 1)
        self.assertEqual(doc['errors']['x']['kind'], 'status')

    def test_keepalive_reuse(self):
        stub = self.start_stub()
        stub.add('/a', json={'a': 1})
        stub.add('/b', json={'b': 2})
        gd = self.start_gatherd(config(
            [endpoint('/ab', {'a': call('s', '/a'), 'b': call('s', '/b')})], {'s': stub},
            threads=1))
        n = 40
        for _ in range(n):
            st, _, body, _ = gd.get('/ab')
            self.assertEqual((st, body), (200, b'{"a":{"a": 1},"b":{"b": 2}}'))
        self.assertEqual(len(stub.requests), 2 * n)
        # two calls at once need two connections; everything after reuses them
        self.assertLessEqual(stub.connections_accepted, 4,
                             '%d upstream requests used %d connections: no keep-alive reuse'
                             % (2 * n, stub.connections_accepted))
        for _, _, h in stub.requests:
            self.assertNotEqual(h.get('connection', '').lower(), 'close', h)

    def test_max_connections_cap(self):
        stub = self.start_stub()
        stub.add('/slow', json={'ok': True}, delay_ms=100)
        gd = self.start_gatherd(config(
            [endpoint('/capped', {'x': call('s', '/slow', timeout_ms=3000)}, timeout_ms=3000)],
            {'s': upstream(stub, max_connections=2)}, threads=1))
        n = 10
        results, total = at_once(gd, '/capped', n)
        for i, r in enumerate(results):
            self.assertIsInstance(r, tuple, 'request %d: %r' % (i, r))
            st, hdrs, body, elapsed = r
            self.assertEqual(st, 200, 'request %d: %r' % (i, body))
            self.assertEqual(body, b'{"x":{"ok": true}}')
            self.assertLess(elapsed, 3.0)
        self.assertEqual(len(stub.requests), n)
        self.assertLessEqual(stub.max_concurrent_connections, 2,
                             'the stub saw %d connections at once with max_connections 2'
                             % stub.max_concurrent_connections)
        self.assertLessEqual(stub.max_concurrent_requests, 2)
        # 10 calls of 100 ms through 2 connections cannot take less than ~500 ms
        self.assertGreaterEqual(total, 0.45)
        self.assertTrue(gd.alive())
        self.assertEqual(media_type(hdrs), 'application/json')

    def test_a_cap_smaller_than_the_threads_holds_for_the_process(self):
        # 2 connections over 4 threads: no thread may open one of its own beyond the cap; a
        # thread whose calls wait gets a unit that another thread gave back, or one that it
        # kept idle (two rounds, so that the second starts with idle connections somewhere)
        stub = self.start_stub()
        stub.add('/slow', json={'ok': True}, delay_ms=100)
        gd = self.start_gatherd(config(
            [endpoint('/capped', {'x': call('s', '/slow', timeout_ms=8000)}, timeout_ms=8000)],
            {'s': upstream(stub, max_connections=2)}, threads=4))
        n = 16
        for round_ in range(2):
            results, total = at_once(gd, '/capped', n, timeout=15)
            for i, r in enumerate(results):
                self.assertIsInstance(r, tuple, 'round %d, request %d: %r' % (round_, i, r))
                self.assertEqual(r[0], 200, 'round %d, request %d: %r' % (round_, i, r[2]))
            # 16 calls of 100 ms through 2 connections cannot take less than ~800 ms
            self.assertGreaterEqual(total, 0.7)
        self.assertEqual(len(stub.requests), 2 * n)
        self.assertLessEqual(stub.max_concurrent_connections, 2,
                             'the stub saw %d connections at once with max_connections 2 over '
                             '4 threads' % stub.max_concurrent_connections)
        # (not max_concurrent_requests: a connection handed to another thread is closed and a
        # new one opened at once, and the stub may count the new request before the old
        # handler's bookkeeping ends)
        self.assertTrue(gd.alive())

    def test_calls_beyond_the_cap_wait_within_their_own_timeout(self):
        # one connection, 200 ms answers, call timeout 300 ms: the first call is answered, the
        # second waits for the connection and times out at 300 ms, never later
        stub = self.start_stub()
        stub.add('/slow', json={'ok': True}, delay_ms=200)
        gd = self.start_gatherd(config(
            [endpoint('/one', {'x': call('s', '/slow', timeout_ms=300)})],
            {'s': upstream(stub, max_connections=1)}, threads=1))
        results = [None, None]
        barrier = threading.Barrier(2)

        def client(i):
            barrier.wait(5)
            results[i] = gd.get('/one', timeout=10)

        threads = [threading.Thread(target=client, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(15)
        statuses = sorted(r[0] for r in results)
        self.assertEqual(statuses, [200, 504], [r[2] for r in results])
        late = [r for r in results if r[0] == 504][0]
        self.assertLess(late[3], 0.4, 'a queued call was held past its timeout')
        err = loads_ordered(late[2])['errors']['x']
        self.assertEqual(err['kind'], 'timeout', late[2])
        self.assertLessEqual(stub.max_concurrent_connections, 1)

    def test_idle_pooled_connections_close_after_keepalive_timeout(self):
        stub = self.start_stub()
        stub.add('/a', json={'a': 1})
        gd = self.start_gatherd(config([endpoint('/a', {'a': call('s', '/a')})],
                                       {'s': upstream(stub, keepalive_timeout_ms=300)}))
        st, _, body, _ = gd.get('/a')
        self.assertEqual(st, 200, body)
        t_answer = now()
        closed = wait_until(lambda: [c for c in stub.connections if c.closed_by == 'peer'],
                            timeout=5.0)
        self.assertTrue(closed, 'the idle pooled connection was still open 5 s later')
        idle = closed[0].closed_at - t_answer
        self.assertGreaterEqual(idle, 0.25, 'closed after %.3f s of a 300 ms keep-alive' % idle)
        self.assertLess(idle, 1.5, 'closed after %.3f s of a 300 ms keep-alive' % idle)
        # and the next call opens a new one
        st, _, body, _ = gd.get('/a')
        self.assertEqual((st, body), (200, b'{"a":{"a": 1}}'))
        self.assertEqual(stub.connections_accepted, 2)

    def test_connection_closed_by_the_upstream_is_not_reused(self):
        # the stub closes each connection right after its answer, without saying so: a pooled
        # connection the upstream has closed must not fail the next call
        stub = self.start_stub()
        stub.add('/a', json={'a': 1}, close_after=True)
        gd = self.start_gatherd(config([endpoint('/a', {'a': call('s', '/a')})], {'s': stub},
                                       threads=1))
        for i in range(10):
            st, hdrs, body, _ = gd.get('/a')
            self.assertEqual((st, body), (200, b'{"a":{"a": 1}}'), 'request %d' % i)
            self.assertEqual(hdrs.get('X-Gatherd-Complete'), 'true')
        self.assertEqual(len(stub.requests), 10)


if __name__ == '__main__':
    main()
