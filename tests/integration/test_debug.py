#!/usr/bin/env python3
"""The live view on the admin listener: /debug/requests lists the requests in flight and
queued with each call's state, /debug/upstreams the pools and breakers, on every worker; and
the slow event-loop turn warning (slow_loop_ms) with its metric."""
import json as jsonlib
import threading
import time

from harness import GatherdTestCase, call, config, endpoint, main, wait_until
from test_operations import admin_get, admin_port, metric_value


def wait_for_admin(gd):
    """The admin listener starts just after the main one."""
    def up():
        try:
            return admin_get(admin_port(gd), '/healthz')[0] == 200
        except OSError:
            return False
    if not wait_until(up, timeout=10):
        raise AssertionError('the admin listener did not come up:\n' + gd.log())


class DebugViewTest(GatherdTestCase):

    def start(self, threads=2, **top):
        stub = self.start_stub()
        stub.add('/fast', json={'ok': True})
        stub.add('/slow', json={'late': True}, delay_ms=1500)
        eps = [endpoint('/slow/{id}', {'fast': call('s', '/fast'), 'slow': call('s', '/slow')},
                        params={'id': 'int'}, timeout_ms=5000)]
        ups = {'s': {'url': stub.url, 'max_connections': 4,
                     'breaker': {'failures': 5, 'open_ms': 1000}},
               'other': {'url': stub.url}}
        top.setdefault('max_requests_in_flight', 4)
        gd = self.start_gatherd(config(eps, ups, threads=threads, **top))
        wait_for_admin(gd)
        return stub, gd

    def background_gets(self, gd, paths):
        results = []

        def one(p):
            results.append(gd.get(p, timeout=15)[0])
        threads = [threading.Thread(target=one, args=(p,)) for p in paths]
        for t in threads:
            t.start()
        return threads, results

    def debug(self, gd, what):
        st, body = admin_get(admin_port(gd), '/debug/' + what)
        self.assertEqual(st, 200, body)
        return jsonlib.loads(body)

    def test_requests_in_flight_and_queued_with_call_states(self):
        stub, gd = self.start(threads=1)
        threads, results = self.background_gets(
            gd, ['/slow/%d' % i for i in range(6)])
        # 4 slots: 4 requests gather (their slow call sent), 2 wait in line
        doc = wait_until(lambda: (lambda d: d if d['in_flight'] == 4 and d['queued'] == 2 and
                                  all(c['state'] in ('sent', 'receiving', 'done')
                                      for r in d['requests'] if r['state'] == 'gathering'
                                      for c in r['calls']) else None)(
                                          self.debug(gd, 'requests')), timeout=5)
        self.assertTrue(doc, self.debug(gd, 'requests'))
        self.assertEqual(doc['unanswered_workers'], [])
        self.assertEqual(doc['omitted'], 0)
        states = sorted(r['state'] for r in doc['requests'])
        self.assertEqual(states, ['gathering'] * 4 + ['queued'] * 2)
        r = next(r for r in doc['requests'] if r['state'] == 'gathering')
        self.assertEqual(r['method'], 'GET')
        self.assertEqual(r['endpoint'], '/slow/{id}')
        self.assertRegex(r['path'], r'^/slow/\d$')
        self.assertEqual(r['client'], '127.0.0.1')
        self.assertTrue(r['request_id'])
        self.assertGreaterEqual(r['age_ms'], 0)
        self.assertEqual(r['worker'], 0)
        calls = {c['name']: c for c in r['calls']}
        self.assertEqual(calls['fast']['state'], 'done')
        self.assertEqual(calls['fast']['attempt'], 1)
        self.assertEqual(calls['slow']['state'], 'sent')
        self.assertEqual(calls['slow']['kind'], 'http')
        self.assertEqual(calls['slow']['source'], 's')
        q = next(r for r in doc['requests'] if r['state'] == 'queued')
        self.assertEqual({c['state'] for c in q['calls']}, {'pending'})
        for t in threads:
            t.join()
        self.assertEqual(results, [200] * 6)
        doc = self.debug(gd, 'requests')
        self.assertEqual((doc['in_flight'], doc['queued'], doc['requests']), (0, 0, []))
        gd.check_clean_log()

    def test_upstreams_view_sums_the_workers(self):
        stub, gd = self.start(threads=2)
        threads, _ = self.background_gets(gd, ['/slow/1', '/slow/2'])
        doc = wait_until(lambda: (lambda d: d if d['upstreams'][0]['busy'] == 2 else None)(
            self.debug(gd, 'upstreams')), timeout=5)
        self.assertTrue(doc, self.debug(gd, 'upstreams'))
        s, other = doc['upstreams']
        self.assertEqual((s['name'], other['name']), ('s', 'other'))
        self.assertEqual(s['breaker'], 'closed')
        self.assertIsNone(other['breaker'])
        self.assertEqual(len(s['workers']), 2)
        self.assertEqual(sum(w['busy'] for w in s['workers']), 2)
        self.assertNotIn('postgres', doc)
        for t in threads:
            t.join()
        doc = self.debug(gd, 'upstreams')
        self.assertEqual(doc['upstreams'][0]['busy'], 0)
        self.assertGreaterEqual(doc['upstreams'][0]['idle'], 1)  # kept alive
        gd.check_clean_log()

    def test_unknown_debug_path_is_a_json_404(self):
        _, gd = self.start(threads=1)
        st, body = admin_get(admin_port(gd), '/debug/nope')
        self.assertEqual(st, 404)
        self.assertIn('/debug/requests', jsonlib.loads(body)['message'])

    def test_slow_loop_turn_is_logged_with_its_route_and_counted(self):
        stub = self.start_stub()
        # An 8 MB document, gzip-coded for the client in the request's coroutine: a step that
        # keeps the loop busy for well over a millisecond even on a fast machine.
        big = b'[' + b','.join(b'{"n":%d,"s":"%s"}' % (i, b'x' * 40) for i in range(150000)) + b']'
        stub.add('/big', body=big)
        eps = [endpoint('/big', {'big': call('s', '/big')})]
        ups = {'s': {'url': stub.url, 'max_body_bytes': 64 << 20}}
        gd = self.start_gatherd(config(eps, ups, slow_loop_ms=1))
        wait_for_admin(gd)

        def slow_lines():
            return [ln for ln in gd.log().splitlines() if 'slow event-loop turn' in ln]
        for _ in range(4):  # one line a second at most: a second apart
            st, _, _, _ = gd.get('/big', headers={'Accept-Encoding': 'gzip'})
            self.assertEqual(st, 200)
            if any('route=/big' in ln for ln in slow_lines()):
                break
            time.sleep(1.1)
        self.assertTrue(any('route=/big' in ln for ln in slow_lines()), gd.log())
        line = next(ln for ln in slow_lines() if 'route=/big' in ln)
        self.assertIn('slow_loop_ms=1', line)
        self.assertRegex(line, r'busy_ms=\d')
        self.assertRegex(line, r'longest_step_ms=\d')
        st, text = admin_get(admin_port(gd), '/metrics')
        self.assertGreaterEqual(metric_value(text, 'gatherd_slow_loop_turns_total'), 1)

    def test_slow_loop_warning_off_with_zero(self):
        stub = self.start_stub()
        big = b'[' + b','.join(b'{"n":%d}' % i for i in range(200000)) + b']'
        stub.add('/big', body=big)
        eps = [endpoint('/big', {'big': call('s', '/big')})]
        ups = {'s': {'url': stub.url, 'max_body_bytes': 64 << 20}}
        gd = self.start_gatherd(config(eps, ups, slow_loop_ms=0))
        wait_for_admin(gd)
        self.assertEqual(gd.get('/big')[0], 200)
        st, text = admin_get(admin_port(gd), '/metrics')
        self.assertEqual(metric_value(text, 'gatherd_slow_loop_turns_total'), 0)
        self.assertNotIn('slow event-loop turn', gd.log())


if __name__ == '__main__':
    main()
