#!/usr/bin/env python3
"""Call failures: kinds, the errors object, status rules, timeouts, hostile upstreams."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (GatherdTestCase, call, config, endpoint, free_port,  # noqa: E402
                     loads_ordered, main, media_type, upstream, wait_until)


# elapsed_ms is whole milliseconds measured from the call's own start, which may come a
# fraction of a millisecond after the request's: a timeout of T ms may report T - 1.
SLACK_MS = 1


class FailureTest(GatherdTestCase):

    def setUp(self):
        self.stub = self.start_stub()
        self.stub.add('/ok', json={'ok': True})

    def gatherd(self, endpoints, upstreams=None, **top):
        ups = {'s': self.stub}
        ups.update(upstreams or {})
        eps = list(endpoints) + [endpoint('/healthy', {'ok': call('s', '/ok')})]
        return self.start_gatherd(config(eps, ups, **top))

    def failed(self, gd, path, status, call_name, kind, upstream_status=None, complete=False):
        """Requests @path; checks status, the partial answer and errors.<call_name>; returns
        (doc, elapsed_s)."""
        st, hdrs, body, elapsed = gd.get(path)
        self.assertEqual(st, status, body)
        self.assertEqual(media_type(hdrs), 'application/json', body)
        self.assertEqual(hdrs.get('X-Gatherd-Complete'), 'true' if complete else 'false', body)
        doc = loads_ordered(body)
        self.assertIsNone(doc[call_name], body)
        self.assertEqual(doc.keys_in_order()[-1], 'errors', body)
        self.assertErrorObject(doc['errors'][call_name], kind, upstream_status)
        self.assertAlive(gd, '/healthy')
        return doc, elapsed

    # -- timeouts -------------------------------------------------------------------------
    def test_call_timeout_is_accurate_required(self):
        self.stub.add('/slow', json={'late': True}, delay_ms=2000)
        gd = self.gatherd([endpoint('/t', {'slow': call('s', '/slow', timeout_ms=100)},
                                    timeout_ms=5000)])
        for _ in range(3):
            doc, elapsed = self.failed(gd, '/t', 504, 'slow', 'timeout')
            ms = doc['errors']['slow']['elapsed_ms']
            self.assertGreaterEqual(ms, 100 - SLACK_MS, doc)
            self.assertLessEqual(ms, 160, doc)  # measured by gatherd: a timer, not the client
            self.assertLess(elapsed, 0.35)
            self.assertGreaterEqual(elapsed, 0.1)
            self.assertEqual(list(doc['errors'].keys()), ['slow'])

    def test_call_timeout_cancels_the_upstream_request(self):
        self.stub.add('/slow', json={'late': True}, delay_ms=2000)
        gd = self.gatherd([endpoint('/t', {'slow': call('s', '/slow', timeout_ms=100)})])
        self.failed(gd, '/t', 504, 'slow', 'timeout')
        # the timed-out call's connection is closed by gatherd, not left to finish
        closed = wait_until(lambda: [c for c in self.stub.connections
                                     if '/slow' in c.paths and c.closed_by == 'peer'],
                            timeout=1.0)
        self.assertTrue(closed, 'gatherd did not close the connection of the timed-out call '
                        '(%r)' % (self.stub.connections,))
        c = closed[0]
        self.assertLess(c.closed_at - c.accepted_at, 0.6, self.stub.connections)

    def test_optional_call_timeout_keeps_200(self):
        self.stub.add('/slow', json={'late': True}, delay_ms=2000)
        self.stub.add('/fast', json={'fast': 1})
        gd = self.gatherd([endpoint('/t', {
            'fast': call('s', '/fast'),
            'slow': call('s', '/slow', timeout_ms=100, optional=True)})])
        doc, elapsed = self.failed(gd, '/t', 200, 'slow', 'timeout')
        self.assertEqual(doc['fast'], {'fast': 1})
        self.assertLess(elapsed, 0.35)
        st, hdrs, body, _ = gd.get('/t')
        self.assertTrue(body.startswith(b'{"fast":{"fast": 1},"slow":null,"errors":{"slow":'
                                        b'{"kind":"timeout","message":'), body)

    def test_endpoint_deadline(self):
        self.stub.add('/slow', json={'late': True}, delay_ms=2000)
        self.stub.add('/fast', json={'fast': 1})
        gd = self.gatherd([endpoint('/d', {
            'fast': call('s', '/fast'),
            'a': call('s', '/slow', timeout_ms=1000),
            'b': call('s', '/slow', timeout_ms=1000, optional=True)}, timeout_ms=150)])
        st, hdrs, body, elapsed = gd.get('/d')
        self.assertEqual(st, 504, body)
        doc = loads_ordered(body)
        self.assertEqual(doc.keys_in_order(), ['fast', 'a', 'b', 'errors'])
        self.assertEqual(doc['fast'], {'fast': 1})
        self.assertEqual(list(doc['errors'].keys()), ['a', 'b'])
        for name in ('a', 'b'):
            self.assertErrorObject(doc['errors'][name], 'timeout')
            self.assertGreaterEqual(doc['errors'][name]['elapsed_ms'], 150 - SLACK_MS)
            self.assertLessEqual(doc['errors'][name]['elapsed_ms'], 230)
        self.assertGreaterEqual(elapsed, 0.15)
        self.assertLess(elapsed, 0.4)  # not the calls' own 1 s
        self.assertAlive(gd, '/healthy')

    def test_hang_past_timeout(self):
        self.stub.add('/hang', mode='hang')
        gd = self.gatherd([endpoint('/h', {'h': call('s', '/hang', timeout_ms=150)})])
        doc, elapsed = self.failed(gd, '/h', 504, 'h', 'timeout')
        self.assertGreaterEqual(doc['errors']['h']['elapsed_ms'], 150 - SLACK_MS)
        self.assertLessEqual(doc['errors']['h']['elapsed_ms'], 230)
        self.assertLess(elapsed, 0.4)

    def test_slow_body_is_bounded_by_the_call_timeout(self):
        # bytes keep arriving every 20 ms, so no inactivity timeout fires: the call timeout
        # must still end the call at 200 ms
        self.stub.add('/trickle', body=b'"' + b'x' * 200 + b'"', mode='slow_body',
                      chunk_size=2, interval_ms=20)
        gd = self.gatherd([endpoint('/sb', {'t': call('s', '/trickle', timeout_ms=200)})])
        doc, elapsed = self.failed(gd, '/sb', 504, 't', 'timeout')
        self.assertLessEqual(doc['errors']['t']['elapsed_ms'], 280)
        self.assertLess(elapsed, 0.45)

    def test_slow_body_within_timeout_succeeds(self):
        body = b'{"slowly": "' + b'y' * 40 + b'"}'
        self.stub.add('/trickle', body=body, mode='slow_body', chunk_size=8, interval_ms=10)
        self.stub.add('/trickle-chunked', body=body, mode='slow_body', chunked=True,
                      chunk_size=8, interval_ms=10)
        gd = self.gatherd([endpoint('/sb', {'t': call('s', '/trickle', timeout_ms=2000),
                                            'c': call('s', '/trickle-chunked',
                                                      timeout_ms=2000)})])
        st, hdrs, b, _ = gd.get('/sb')
        self.assertEqual((st, b), (200, b'{"t":' + body + b',"c":' + body + b'}'))

    def test_after_a_timeout_the_next_requests_get_fresh_answers(self):
        # a late answer on a connection that were reused would be read as the next answer
        self.stub.add('/flaky', json={'v': 'stale'}, delay_ms=300)
        gd = self.gatherd([endpoint('/f', {'v': call('s', '/flaky', timeout_ms=100)})],
                          threads=1)
        self.failed(gd, '/f', 504, 'v', 'timeout')
        self.stub.add('/flaky', json={'v': 'fresh'})
        for _ in range(10):
            st, hdrs, body, _ = gd.get('/f')
            self.assertEqual((st, body), (200, b'{"v":{"v": "fresh"}}'))
            self.assertEqual(hdrs.get('X-Gatherd-Complete'), 'true')
        # and the stale answer was really sent into a closed connection or never read
        self.assertEqual(len(self.stub.requests_for('/flaky')), 11)

    # -- connect / io / protocol ----------------------------------------------------------
    def test_connect_refused(self):
        dead = 'http://127.0.0.1:%d' % free_port()
        gd = self.gatherd([endpoint('/c', {'dead': call('dead', '/x')})],
                          upstreams={'dead': upstream(dead, connect_timeout_ms=500)})
        doc, elapsed = self.failed(gd, '/c', 502, 'dead', 'connect')
        self.assertLess(elapsed, 0.5)

    def test_connect_refused_optional(self):
        dead = 'http://127.0.0.1:%d' % free_port()
        gd = self.gatherd([endpoint('/c', {'ok': call('s', '/ok'),
                                           'dead': call('dead', '/x', optional=True)})],
                          upstreams={'dead': dead})
        doc, _ = self.failed(gd, '/c', 200, 'dead', 'connect')
        self.assertEqual(doc['ok'], {'ok': True})

    def test_upstream_503_is_502(self):
        self.stub.add('/down', status=503, json={'error': 'down'})
        gd = self.gatherd([endpoint('/s', {'down': call('s', '/down')})])
        st, hdrs, body, _ = gd.get('/s')
        doc, _ = self.failed(gd, '/s', 502, 'down', 'status', upstream_status=503)
        self.assertTrue(body.startswith(b'{"down":null,"errors":{"down":{"kind":"status",'
                                        b'"message":'), body)
        self.assertIn(b',"status":503,"elapsed_ms":', body)

    def test_upstream_500_optional_keeps_200(self):
        self.stub.add('/boom', status=500, body=b'not even json')
        gd = self.gatherd([endpoint('/s', {'ok': call('s', '/ok'),
                                           'boom': call('s', '/boom', optional=True)})])
        doc, _ = self.failed(gd, '/s', 200, 'boom', 'status', upstream_status=500)
        self.assertEqual(doc['ok'], {'ok': True})

    def test_upstream_404_passes_through(self):
        self.stub.add('/users/42', status=404, json={'error': 'no such user'})
        gd = self.gatherd([endpoint('/users/{id}/profile', {
            'user': call('s', '/users/{id}'), 'ok': call('s', '/ok')})])
        doc, _ = self.failed(gd, '/users/42/profile', 404, 'user', 'status', upstream_status=404)
        self.assertEqual(doc['ok'], {'ok': True})

    def test_upstream_4xx_other_passes_through(self):
        self.stub.add('/forbidden', status=403, json={})
        self.stub.add('/busy', status=429, json={})
        gd = self.gatherd([endpoint('/f', {'f': call('s', '/forbidden')}),
                           endpoint('/b', {'b': call('s', '/busy')})])
        self.failed(gd, '/f', 403, 'f', 'status', upstream_status=403)
        self.failed(gd, '/b', 429, 'b', 'status', upstream_status=429)

    def test_invalid_json(self):
        cases = {'/trunc': b'{"a":', '/trail': b'{"a":1} {"b":2}', '/text': b'hello',
                 '/empty': b''}
        eps = []
        for p, b in cases.items():
            self.stub.add(p, body=b)
            eps.append(endpoint('/j' + p, {'bad': call('s', p)}))
        gd = self.gatherd(eps)
        for p in cases:
            with self.subTest(body=cases[p]):
                self.failed(gd, '/j' + p, 502, 'bad', 'invalid_json')

    def test_too_large(self):
        self.stub.add('/big', mode='huge', size=5000)
        self.stub.add('/big-chunked', mode='huge', size=5000, chunked=True)
        self.stub.add('/exact', mode='huge', size=1000)
        self.stub.add('/huge', mode='huge', size=20 * 1024 * 1024)
        gd = self.gatherd([endpoint('/big', {'b': call('s', '/big')}),
                           endpoint('/bigc', {'b': call('s', '/big-chunked')}),
                           endpoint('/exact', {'b': call('s', '/exact')}),
                           endpoint('/huge', {'b': call('h', '/huge')})],
                          upstreams={'s': upstream(self.stub, max_body_bytes=1000),
                                     'h': upstream(self.stub)})
        self.failed(gd, '/big', 502, 'b', 'too_large')
        self.failed(gd, '/bigc', 502, 'b', 'too_large')
        # the default cap is 8 MiB
        self.failed(gd, '/huge', 502, 'b', 'too_large')
        # exactly the cap is fine
        st, _, body, _ = gd.get('/exact')
        self.assertEqual(st, 200, body[:200])
        self.assertEqual(len(body), len(b'{"b":}') + 1000)

    def test_reset_mid_body(self):
        self.stub.add('/reset', body=b'{"data":"' + b'z' * 4000 + b'"}', mode='reset')
        gd = self.gatherd([endpoint('/r', {'r': call('s', '/reset', timeout_ms=2000)})])
        doc, elapsed = self.failed(gd, '/r', 502, 'r', 'io')
        self.assertLess(elapsed, 1.0)

    def test_close_without_answer(self):
        self.stub.add('/close', mode='close')
        gd = self.gatherd([endpoint('/c', {'c': call('s', '/close', timeout_ms=2000)})])
        doc, elapsed = self.failed(gd, '/c', 502, 'c', 'io')
        self.assertLess(elapsed, 1.0)

    def test_garbage_answer(self):
        self.stub.add('/garbage', mode='garbage')
        gd = self.gatherd([endpoint('/g', {'g': call('s', '/garbage', timeout_ms=2000)})])
        doc, elapsed = self.failed(gd, '/g', 502, 'g', 'io')
        self.assertLess(elapsed, 1.0)

    # -- status rules with several failures -------------------------------------------------
    def test_first_required_failure_in_config_order_decides(self):
        self.stub.add('/missing', status=404, json={})
        self.stub.add('/down', status=503, json={})
        self.stub.add('/slow', json={}, delay_ms=2000)
        self.stub.add('/bad', body=b'{')
        gd = self.gatherd([
            endpoint('/one', {'nf': call('s', '/missing'), 'to': call('s', '/slow', timeout_ms=100),
                              'ok': call('s', '/ok')}),
            endpoint('/two', {'to': call('s', '/slow', timeout_ms=100), 'nf': call('s', '/missing'),
                              'ok': call('s', '/ok')}),
            endpoint('/three', {'down': call('s', '/down'), 'nf': call('s', '/missing')}),
            endpoint('/four', {'opt': call('s', '/slow', timeout_ms=100, optional=True),
                               'nf': call('s', '/missing'), 'bad': call('s', '/bad')}),
            endpoint('/five', {'bad': call('s', '/bad'), 'to': call('s', '/slow', timeout_ms=100)}),
        ])
        expectations = {'/one': (404, ['nf', 'to']), '/two': (504, ['to', 'nf']),
                        '/three': (502, ['down', 'nf']), '/four': (404, ['opt', 'nf', 'bad']),
                        '/five': (502, ['bad', 'to'])}
        for path, (status, failed) in expectations.items():
            with self.subTest(path=path):
                st, hdrs, body, _ = gd.get(path)
                self.assertEqual(st, status, body)
                self.assertEqual(hdrs.get('X-Gatherd-Complete'), 'false')
                doc = loads_ordered(body)
                self.assertEqual(doc['errors'].keys_in_order(), failed, body)
                for name in failed:
                    self.assertIsNone(doc[name])
                if 'ok' in doc:
                    self.assertEqual(doc['ok'], {'ok': True})
        self.assertAlive(gd, '/healthy')

    def test_all_kinds_in_one_answer_and_alive_afterwards(self):
        dead = 'http://127.0.0.1:%d' % free_port()
        self.stub.add('/down', status=503, json={})
        self.stub.add('/bad', body=b'[1,')
        self.stub.add('/reset', body=b'[' + b'1,' * 3000 + b'1]', mode='reset')
        self.stub.add('/hang', mode='hang')
        self.stub.add('/big', mode='huge', size=3000)
        gd = self.gatherd([endpoint('/all', {
            'ok': call('s', '/ok'),
            'status': call('s', '/down', optional=True),
            'json': call('s', '/bad', optional=True),
            'io': call('s', '/reset', optional=True),
            'timeout': call('s', '/hang', timeout_ms=200, optional=True),
            'large': call('small', '/big', optional=True),
            'connect': call('dead', '/x', optional=True)})],
            upstreams={'small': upstream(self.stub, max_body_bytes=2000), 'dead': dead})
        for _ in range(3):
            st, hdrs, body, elapsed = gd.get('/all')
            self.assertEqual(st, 200, body)
            self.assertEqual(hdrs.get('X-Gatherd-Complete'), 'false')
            doc = loads_ordered(body)
            self.assertEqual(doc.keys_in_order(), ['ok', 'status', 'json', 'io', 'timeout',
                                                   'large', 'connect', 'errors'])
            self.assertEqual(doc['errors'].keys_in_order(),
                             ['status', 'json', 'io', 'timeout', 'large', 'connect'])
            kinds = {'status': 'status', 'json': 'invalid_json', 'io': 'io',
                     'timeout': 'timeout', 'large': 'too_large', 'connect': 'connect'}
            for name, kind in kinds.items():
                self.assertErrorObject(doc['errors'][name], kind, 503 if kind == 'status' else None)
            self.assertLess(elapsed, 0.6)
        self.assertAlive(gd, '/healthy')

    def test_client_hangs_up_mid_request(self):
        self.stub.add('/slow', json={'late': True}, delay_ms=300)
        gd = self.gatherd([endpoint('/s', {'s': call('s', '/slow', timeout_ms=2000)})])
        for _ in range(5):
            n = len(self.stub.requests)
            conn = gd.connection()
            conn.request('GET', '/s')
            self.assertGreater(self.stub.wait_requests(n + 1, 5), n)
            conn.close()  # while the call is in flight
        st, _, body, _ = gd.get('/s')
        self.assertEqual((st, body), (200, b'{"s":{"late": true}}'))
        self.assertAlive(gd, '/healthy')


if __name__ == '__main__':
    main()
