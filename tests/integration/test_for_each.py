#!/usr/bin/env python3
"""Per-item fan-out ("for_each" on a call, issue 12): the real gatherd against stub upstreams
and a real Postgres. A for_each call runs once per item, never more than its "concurrency" at
once (measured at the stub), answers an array in item order whatever order the items finish
in, a failed item is null with its own errors entry "c[i]", "max_items" fails the call with
too_large before any item starts, an empty list makes no call, a value that is not an array is
a dependency failure; the list may be a list parameter or another call's result; SQL calls fan
out too; and {item} outside a for_each is a config error naming its place."""
import json as jsonlib
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request

from harness import (GatherdTestCase, call, endpoint, free_port, loads_ordered, main,
                     wait_until)
from pgfixture import PgCluster
from test_cache import check_config_error
from test_debug import wait_for_admin
from test_operations import admin_get, admin_port
from test_postgres import PgTestCase, admin_off, sql_call

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

POSTS = [{'id': 11, 'title': 'a'}, {'id': 12, 'title': 'b'}, {'id': 13, 'title': 'c'},
         {'id': 14, 'title': 'd'}]
IDS = {'query.ids': {'type': 'int_list', 'max_items': 50}}


class ForEachTest(PgTestCase):

    def get(self, gd, path):
        st, hdrs, body, elapsed = gd.get(path)
        return st, hdrs, loads_ordered(body), elapsed

    def items(self, n, delay_ms=0):
        for i in range(1, n + 1):
            self.stub.add('/c/%d' % i, json={'n': i, 'secret': 'x'}, delay_ms=delay_ms)

    def test_concurrency_bounds_the_items_under_way(self):
        self.items(8, delay_ms=150)
        gd = self.start_pg_gatherd([endpoint('/x', {'c': call('s', '/c/{item}', for_each='{query.ids}',
                                                              concurrency=3)}, params=IDS)])
        self.stub.reset_stats()
        st, hdrs, doc, elapsed = self.get(gd, '/x?ids=1,2,3,4,5,6,7,8')
        self.assertEqual(st, 200, doc)
        self.assertEqual(hdrs.get('X-Gatherd-Complete'), 'true')
        self.assertEqual(doc, {'c': [{'n': i, 'secret': 'x'} for i in range(1, 9)]})
        self.assertEqual(len(self.stub.requests), 8)
        self.assertLessEqual(self.stub.max_concurrent_requests, 3)
        self.assertGreaterEqual(self.stub.max_concurrent_requests, 2, 'items run concurrently')
        self.assertGreaterEqual(elapsed, 0.44, '8 items, 3 at once: three waves of 150 ms')
        # the default concurrency (10) runs them all at once
        gd2 = self.start_pg_gatherd([endpoint('/x', {'c': call('s', '/c/{item}',
                                                               for_each='{query.ids}')},
                                              params=IDS)])
        self.stub.reset_stats()
        st, _, doc, elapsed = self.get(gd2, '/x?ids=1,2,3,4,5,6,7,8')
        self.assertEqual(st, 200, doc)
        self.assertLess(elapsed, 0.44)

    def test_each_item_has_its_own_timeout_and_the_deadline_bounds_them_all(self):
        self.items(3, delay_ms=200)
        one_at_a_time = {'for_each': '{query.ids}', 'concurrency': 1, 'timeout_ms': 300}
        gd = self.start_pg_gatherd([
            endpoint('/long', {'c': call('s', '/c/{item}', **one_at_a_time)}, params=IDS,
                     timeout_ms=3000),
            endpoint('/short', {'c': call('s', '/c/{item}', **one_at_a_time)}, params=IDS,
                     timeout_ms=500)])
        # 600 ms in all, but 200 ms from each item's own start: within its 300 ms
        st, hdrs, doc, elapsed = self.get(gd, '/long?ids=1,2,3')
        self.assertEqual(st, 200, doc)
        self.assertEqual(hdrs.get('X-Gatherd-Complete'), 'true')
        self.assertEqual(len(doc['c']), 3)
        self.assertGreaterEqual(elapsed, 0.59)
        # the third item starts at ~400 ms and meets the endpoint deadline at 500 ms
        st, hdrs, doc, elapsed = self.get(gd, '/short?ids=1,2,3')
        self.assertEqual(st, 200, doc)
        self.assertEqual(hdrs.get('X-Gatherd-Complete'), 'false')
        self.assertEqual(doc['c'][:2], [{'n': 1, 'secret': 'x'}, {'n': 2, 'secret': 'x'}])
        self.assertIsNone(doc['c'][2])
        self.assertEqual(doc['errors']['c[2]']['kind'], 'timeout')
        self.assertLess(elapsed, 0.8)

    def leave_after_first_call(self, gd, target):
        """Sends GET @target, closes the connection once the stub has the first call, and waits
        past when a second one (one at a time, 300 ms each) would have started."""
        self.stub.reset_stats()
        sock = socket.create_connection(('127.0.0.1', gd.port), timeout=5)
        sock.sendall(b'GET ' + target.encode() + b' HTTP/1.1\r\nHost: x\r\n\r\n')
        self.stub.wait_requests(1)
        sock.close()
        wait_until(lambda: 'status=499' in gd.log(), timeout=5)
        time.sleep(0.5)

    def test_a_client_that_leaves_stops_the_items_not_started(self):
        self.items(4, delay_ms=300)
        gd = self.start_pg_gatherd([endpoint('/x', {'c': call('s', '/c/{item}',
                                                              for_each='{query.ids}',
                                                              concurrency=1)},
                                             params=IDS, timeout_ms=3000)])
        self.leave_after_first_call(gd, '/x?ids=1,2,3,4')
        self.assertEqual(len(self.stub.requests), 1)
        self.assertEqual(self.get(gd, '/x?ids=1')[0], 200)

    def test_the_live_view_shows_a_for_each_call_and_its_items_started(self):
        self.items(4, delay_ms=1000)
        gd = self.start_gatherd(self.pg_config(
            [endpoint('/x', {'c': call('s', '/c/{item}', for_each='{query.ids}', concurrency=2)},
                     params=IDS, timeout_ms=5000)], admin_listen='127.0.0.1:%d' % free_port()))
        wait_for_admin(gd)
        t = threading.Thread(target=lambda: gd.get('/x?ids=1,2,3,4', timeout=15))
        t.start()
        self.addCleanup(t.join)
        self.stub.wait_requests(2)

        def view():
            st, body = admin_get(admin_port(gd), '/debug/requests')
            reqs = [r for r in jsonlib.loads(body)['requests'] if r['endpoint'] == '/x']
            return reqs[0]['calls'] if reqs else None
        calls = wait_until(view, timeout=5)
        self.assertEqual(calls, [{'name': 'c', 'kind': 'http', 'source': 's', 'state': 'running',
                                  'attempt': 2}])

    def test_more_than_max_items_fails_before_any_item_starts(self):
        self.items(5)
        gd = self.start_pg_gatherd([
            endpoint('/opt', {'c': call('s', '/c/{item}', for_each='{query.ids}', max_items=3,
                                        optional=True), 'ok': call('s', '/ok')}, params=IDS),
            endpoint('/req', {'c': call('s', '/c/{item}', for_each='{query.ids}', max_items=3)},
                     params=IDS)])
        self.stub.reset_stats()
        st, hdrs, doc, _ = self.get(gd, '/opt?ids=1,2,3,4')
        self.assertEqual(st, 200, doc)
        self.assertEqual(hdrs.get('X-Gatherd-Complete'), 'false')
        self.assertIsNone(doc['c'])
        self.assertEqual(doc['errors']['c']['kind'], 'too_large')
        st, _, doc, _ = self.get(gd, '/req?ids=1,2,3,4')
        self.assertEqual(st, 502, doc)
        self.assertEqual(doc['errors']['c']['kind'], 'too_large')
        self.assertEqual([t for _, t, _ in self.stub.requests if t.startswith('/c/')], [])
        st, _, doc, _ = self.get(gd, '/req?ids=1,2,3')  # exactly max_items is fine
        self.assertEqual(st, 200, doc)
        self.assertEqual(len(doc['c']), 3)

    def test_items_answer_in_item_order_whatever_order_they_finish_in(self):
        self.stub.add('/c/1', json={'n': 1}, delay_ms=300)
        self.stub.add('/c/2', json={'n': 2}, delay_ms=150)
        self.stub.add('/c/3', json={'n': 3})
        gd = self.start_pg_gatherd([endpoint('/x', {'c': call('s', '/c/{item}',
                                                              for_each='{query.ids}')},
                                             params=IDS)])
        st, _, doc, _ = self.get(gd, '/x?ids=1,2,3')
        self.assertEqual(st, 200, doc)
        self.assertEqual(doc['c'], [{'n': 1}, {'n': 2}, {'n': 3}])
        times = {t: at for (_, t, _), at in zip(self.stub.requests, self.stub.request_times)}
        self.assertLess(abs(times['/c/1'] - times['/c/3']), 0.1, 'started together')

    def test_a_failed_item_is_null_with_its_own_error(self):
        self.items(4)
        self.stub.add('/c/3', status=500, json={'error': 'boom'})
        gd = self.start_pg_gatherd([endpoint('/x', {'c': call('s', '/c/{item}',
                                                              for_each='{query.ids}',
                                                              fields=['n'])},
                                             params=IDS)])
        st, hdrs, doc, _ = self.get(gd, '/x?ids=1,2,3,4')
        self.assertEqual(st, 200, doc)
        self.assertEqual(hdrs.get('X-Gatherd-Complete'), 'false')
        # shaping ("fields") applies to each item's document
        self.assertEqual(doc['c'], [{'n': 1}, {'n': 2}, None, {'n': 4}])
        self.assertEqual(list(doc['errors'].keys()), ['c[2]'])
        self.assertEqual(doc['errors']['c[2]']['kind'], 'status')
        self.assertEqual(doc['errors']['c[2]']['status'], 500)
        self.assertIn('message', doc['errors']['c[2]'])
        # the detail is in the log, one line per failed item
        self.assertTrue(wait_until(lambda: 'call failed' in gd.log(), timeout=5))
        line, = [ln for ln in gd.log().splitlines() if 'call failed' in ln]
        self.assertIn('call=c[2] kind=status status=500', line)

    def test_every_item_failed_is_a_failed_call(self):
        self.stub.add('/c/1', status=503, json={})
        self.stub.add('/c/2', status=503, json={})
        gd = self.start_pg_gatherd([
            endpoint('/req', {'c': call('s', '/c/{item}', for_each='{query.ids}')}, params=IDS),
            endpoint('/opt', {'c': call('s', '/c/{item}', for_each='{query.ids}', optional=True),
                              'ok': call('s', '/ok')}, params=IDS)])
        st, _, doc, _ = self.get(gd, '/req?ids=1,2')
        self.assertEqual(st, 502, doc)
        self.assertEqual(doc['errors']['c']['kind'], 'status')
        self.assertEqual(list(doc['errors'].keys()), ['c'])
        st, hdrs, doc, _ = self.get(gd, '/opt?ids=1,2')
        self.assertEqual(st, 200, doc)
        self.assertEqual(hdrs.get('X-Gatherd-Complete'), 'false')
        self.assertIsNone(doc['c'])
        self.assertEqual(doc['errors']['c']['kind'], 'status')

    def test_for_each_over_a_calls_result_and_what_depends_on_it(self):
        self.stub.add('/posts', json=POSTS)
        for p in POSTS:
            self.stub.add('/comments/%d' % p['id'], json=[{'post': p['id'], 'body': 'hi'}])
        self.stub.add('/count/3', json={'counted': True})
        gd = self.start_pg_gatherd([endpoint('/x', {
            'posts': call('s', '/posts'),
            'comments': call('s', '/comments/{item.id}?title={item.title}',
                             for_each='{posts[0:3]}'),
            'after': call('s', '/count/{count(comments)}')},
            response={'titles': '{posts[0:3][*].title}', 'comments': '{comments}',
                      'first': '{comments[0][0].body}', 'after': '{after}'})])
        st, hdrs, doc, _ = self.get(gd, '/x')
        self.assertEqual(st, 200, doc)
        self.assertEqual(hdrs.get('X-Gatherd-Complete'), 'true')
        self.assertEqual(doc, {'titles': ['a', 'b', 'c'],
                               'comments': [[{'post': 11, 'body': 'hi'}],
                                            [{'post': 12, 'body': 'hi'}],
                                            [{'post': 13, 'body': 'hi'}]],
                               'first': 'hi', 'after': {'counted': True}})
        targets = sorted(t for _, t, _ in self.stub.requests if t.startswith('/comments'))
        self.assertEqual(targets, ['/comments/11?title=a', '/comments/12?title=b',
                                   '/comments/13?title=c'])
        # the posts must arrive first: a failed one makes the for_each a dependency failure
        self.stub.add('/posts', status=500, json={})
        st, _, doc, _ = self.get(gd, '/x')
        self.assertEqual(st, 502, doc)
        self.assertEqual(doc['errors']['comments']['kind'], 'dependency')

    def test_an_empty_list_is_an_empty_array_without_a_call(self):
        self.stub.add('/posts', json=[])
        gd = self.start_pg_gatherd([
            endpoint('/p', {'c': call('s', '/c/{item}', for_each='{query.ids}')}, params=IDS),
            endpoint('/q', {'posts': call('s', '/posts'),
                            'c': call('s', '/c/{item.id}', for_each='{posts[*].id}')})])
        self.stub.reset_stats()
        st, hdrs, body, _ = gd.get('/p?ids=')
        self.assertEqual((st, body), (200, b'{"c":[]}'))
        self.assertEqual(hdrs.get('X-Gatherd-Complete'), 'true')
        st, _, body, _ = gd.get('/q')
        self.assertEqual((st, body), (200, b'{"posts":[],"c":[]}'))
        self.assertEqual([t for _, t, _ in self.stub.requests if t.startswith('/c/')], [])

    def test_a_value_that_is_not_an_array_is_a_dependency_failure(self):
        self.stub.add('/user', json={'name': 'Ann', 'tags': None})
        gd = self.start_pg_gatherd([endpoint('/x', {
            'user': call('s', '/user'),
            'c': call('s', '/c/{item}', for_each='{user.name}', optional=True),
            'd': call('s', '/c/{item}', for_each='{user.nothing}', optional=True)})])
        st, _, doc, _ = self.get(gd, '/x')
        self.assertEqual(st, 200, doc)
        self.assertEqual(doc['errors']['c']['kind'], 'dependency')
        self.assertIn('is a string, not an array', doc['errors']['c']['message'])
        self.assertEqual(doc['errors']['d']['kind'], 'dependency')
        self.assertIn('missing', doc['errors']['d']['message'])

    def test_string_items_are_percent_encoded_in_the_url(self):
        self.stub.add('*', json={'ok': 1})
        gd = self.start_pg_gatherd([endpoint('/x', {'c': call('s', '/t/{item}',
                                                              for_each='{query.tags}')},
                                             params={'query.tags': 'string_list'})])
        self.stub.reset_stats()
        st, _, doc, _ = self.get(gd, '/x?tags=a%2Fb,c%22d&tags=%C3%A9')
        self.assertEqual(st, 200, doc)
        self.assertEqual(len(doc['c']), 3)
        self.assertEqual(sorted(t for _, t, _ in self.stub.requests),
                         sorted(['/t/a%2Fb', '/t/c%22d', '/t/%C3%A9']))

    def test_sql_calls_fan_out_too(self):
        self.stub.add('/user', json={'orders': [{'id': 1}, {'id': 3}, {'id': 99}]})
        gd = self.start_pg_gatherd([
            endpoint('/x', {'q': sql_call('SELECT id, product_name FROM orders WHERE id = $1',
                                          args=['{item}'], row='one', for_each='{query.ids}',
                                          concurrency=2)}, params=IDS),
            endpoint('/y', {'user': call('s', '/user'),
                            'q': sql_call('SELECT product_name FROM orders WHERE id = $1',
                                          args=['{item.id}'], row='one', optional=True,
                                          for_each='{user.orders}')})])
        st, _, doc, _ = self.get(gd, '/x?ids=2,1')
        self.assertEqual(st, 200, doc)
        self.assertEqual(doc['q'], [{'id': 2, 'product_name': 'Gadget "deluxe", v2'},
                                    {'id': 1, 'product_name': 'Widget'}])
        st, hdrs, doc, _ = self.get(gd, '/y')
        self.assertEqual(st, 200, doc)
        # an optional call's missing row is null, not a failure
        self.assertEqual(doc['q'], [{'product_name': 'Widget'}, {'product_name': 'Gizmo'}, None])
        self.assertEqual(hdrs.get('X-Gatherd-Complete'), 'true')
        st, hdrs, doc, _ = self.get(gd, '/x?ids=1,99')
        self.assertEqual(st, 200, doc)
        self.assertEqual(doc['q'][1], None)
        self.assertEqual(doc['errors']['q[1]']['kind'], 'not_found')

    # -- batch endpoints ---------------------------------------------------------------------
    def test_a_batch_endpoint_answers_one_document_per_item(self):
        for i in (1, 2, 3):
            self.stub.add('/users/%d' % i, json={'id': i, 'name': 'u%d' % i, 'company_id': 10 + i},
                          delay_ms=100)
            self.stub.add('/companies/%d' % (10 + i), json={'name': 'c%d' % i})
        self.stub.add('/users/2', status=404, json={'error': 'no such user'}, delay_ms=100)
        gd = self.start_pg_gatherd([
            endpoint('/profiles', {'user': call('s', '/users/{item}'),
                                   'company': call('s', '/companies/{user.company_id}')},
                     params=IDS, for_each='{query.ids}', concurrency=2,
                     response={'id': '{item}', 'name': '{user.name}', 'company': '{company.name}'}),
            endpoint('/plain', {'user': call('s', '/users/{item}', fields=['id'])},
                     params={'query.names': 'string_list'}, for_each='{query.names}',
                     max_items=3)])
        self.stub.reset_stats()
        st, hdrs, doc, elapsed = self.get(gd, '/profiles?ids=1,2,3')
        self.assertEqual(st, 200, doc)
        self.assertEqual(hdrs.get('X-Gatherd-Complete'), 'false')
        self.assertEqual(len(doc), 3)
        self.assertEqual(doc[0], {'id': 1, 'name': 'u1', 'company': 'c1'})
        self.assertEqual(doc[2], {'id': 3, 'name': 'u3', 'company': 'c3'})
        # the failing item's own answer: what a single-item endpoint answers, with its errors
        self.assertEqual(doc[1]['id'], 2)
        self.assertIsNone(doc[1]['name'])
        self.assertEqual(doc[1]['errors']['user']['kind'], 'status')
        self.assertEqual(doc[1]['errors']['user']['status'], 404)
        self.assertEqual(doc[1]['errors']['company']['kind'], 'dependency')
        # each run's failures are logged with the batch's request id
        rid = hdrs['X-Request-Id']
        self.assertTrue(wait_until(lambda: 'request_id=%s route=/profiles call=user kind=status'
                                   % rid in gd.log(), timeout=5), gd.log())
        self.assertLessEqual(self.stub.max_concurrent_requests, 2)
        self.assertGreaterEqual(elapsed, 0.19, 'three runs, two at once: two waves of 100 ms')
        st, hdrs, doc, _ = self.get(gd, '/profiles?ids=1&ids=3')
        self.assertEqual((st, hdrs.get('X-Gatherd-Complete')), (200, 'true'))
        self.assertEqual([d['id'] for d in doc], [1, 3])
        st, _, body, _ = gd.get('/profiles?ids=')
        self.assertEqual((st, body), (200, b'[]'))
        # without a response template: each run's merged document; strings as {item}
        st, _, body, _ = gd.get('/plain?names=1,3')
        self.assertEqual((st, body), (200, b'[{"user":{"id": 1}},{"user":{"id": 3}}]'))
        st, _, doc, _ = self.get(gd, '/plain?names=1,2,3,1')
        self.assertEqual(st, 400, doc)
        self.assertEqual(doc['error'], 'invalid_parameter')
        self.assertIn('at most 3', doc['message'])

    def test_a_batch_whose_client_leaves_starts_no_more_runs(self):
        self.items(4, delay_ms=300)
        self.stub.add('/posts', json=POSTS)
        gd = self.start_pg_gatherd([endpoint('/b', {
            'c': call('s', '/c/{item}'),
            'posts': call('s', '/posts', after=['c']),
            'per_post': call('s', '/c/{item}', for_each='{posts[0:2][*].id}')},
            params=IDS, for_each='{query.ids}', concurrency=1, timeout_ms=3000)])
        self.leave_after_first_call(gd, '/b?ids=1,2,3,4')
        self.assertEqual(len(self.stub.requests), 1)
        # a batch whose runs have a for_each call of their own: that call's {item} is its own
        self.stub.add('/c/11', json={'post': 11})
        self.stub.add('/c/12', json={'post': 12})
        st, _, doc, _ = self.get(gd, '/b?ids=1')
        self.assertEqual(st, 200, doc)
        self.assertEqual(doc[0]['per_post'], [{'post': 11}, {'post': 12}])

    def test_batch_config_errors(self):
        self.check_error([endpoint('/x', {'c': call('s', '/c/{item}')}, for_each='{query.q}',
                                   params={'query.q': 'string'})],
                         'endpoints[0].for_each: must be exactly one list parameter')
        self.check_error([endpoint('/x', {'c': call('s', '/c')}, concurrency=3)],
                         'endpoints[0]: "concurrency" and "max_items" go with "for_each"')
        self.check_error([endpoint('/x', {'c': call('s', '/c/{item}')}, for_each='{query.ids}',
                                   params=IDS, max_items=0)],
                         'endpoints[0].max_items: must be between 1 and 10000')

    def check_error(self, eps, expected):
        check_config_error(self, self.pg_config(eps), expected)

    def test_config_errors_name_their_place(self):
        self.check_error([endpoint('/x', {'c': call('s', '/c/{item}')})],
                         'endpoints[0].calls.c.path: "{item}": {item} is only available in the '
                         'templates of a call with "for_each"')
        self.check_error([endpoint('/x', {'c': call('s', '/c', headers={'x-a': '{item.id}'})})],
                         'endpoints[0].calls.c.headers["x-a"]: "{item.id}": {item} is only available')
        self.check_error([endpoint('/x', {'c': call('s', '/c/{item}', for_each='{query.ids}')},
                                   params=IDS, response={'a': {'b': '{item}'}})],
                         'endpoints[0].response.a.b: "{item}": {item} is only available')
        self.check_error([endpoint('/x', {'c': sql_call('SELECT $1::int AS a', args=['{item}'])})],
                         'endpoints[0].calls.c.args[0]: "{item}": {item} is only available')
        self.check_error([endpoint('/x', {'c': call('s', '/c/{item}', for_each='{query.q}')},
                                   params={'query.q': 'string'})],
                         'endpoints[0].calls.c.for_each: must be exactly one reference to a '
                         'call\'s result')
        self.check_error([endpoint('/x', {'c': call('s', '/c/{item}', for_each='x{query.ids}')},
                                   params=IDS)],
                         'endpoints[0].calls.c.for_each: must be exactly one reference')
        self.check_error([endpoint('/x', {'c': call('s', '/c/{item}', for_each='{nope[*].id}')})],
                         'endpoints[0].calls.c.for_each: ')
        self.check_error([endpoint('/x', {'c': call('s', '/c', concurrency=2)})],
                         'endpoints[0].calls.c: "concurrency" and "max_items" go with "for_each"')
        self.check_error([endpoint('/x', {'c': call('s', '/c/{item}', for_each='{query.ids}',
                                                    concurrency=0)}, params=IDS)],
                         'endpoints[0].calls.c.concurrency: must be between 1 and 10000')
        self.check_error([endpoint('/x', {'c': call('s', '/c/{item}', for_each='{query.ids}',
                                                    when='{item}')}, params=IDS)],
                         'endpoints[0].calls.c.when: {item} cannot go into "when"')
        self.check_error([endpoint('/x', {'c': call('s', '/c/{item}', for_each='{c}')})],
                         'endpoints[0].calls.c: the calls depend on each other in a cycle: c -> c')


class DemoScreensTest(GatherdTestCase):
    """conf/demo.json as shipped (ports aside) against scripts/demo-upstream.py and a Postgres
    loaded with scripts/demo.sql: the README's worked example, the home screen, and the batch
    form of the classic aggregator."""

    pg = None

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.pg = PgCluster.for_class(cls, sql_files=[os.path.join(REPO, 'scripts', 'demo.sql')])

    def setUp(self):
        key = os.environ['GATHERD_DEMO_API_KEY']
        port = free_port()
        up = subprocess.Popen([sys.executable, os.path.join(REPO, 'scripts', 'demo-upstream.py'),
                               '--port', str(port), '--api-key', key],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
        self.addCleanup(lambda: (up.terminate(), up.wait(10)))

        def answers():
            req = urllib.request.Request('http://127.0.0.1:%d/users/1' % port,
                                         headers={'x-api-key': key})
            try:
                return urllib.request.urlopen(req, timeout=1).status == 200
            except OSError:
                return False
        self.assertTrue(wait_until(answers, timeout=10), 'the demo upstream did not start')
        with open(os.path.join(REPO, 'conf', 'demo.json')) as f:
            cfg = jsonlib.load(f)
        del cfg['listen']
        cfg['threads'] = 1
        cfg.update(admin_off())
        cfg['upstreams']['demo']['url'] = 'http://127.0.0.1:%d' % port
        cfg['postgres']['conninfo'] = self.pg.conninfo()
        self.gd = self.start_gatherd(cfg)
        self.assertTrue(wait_until(lambda: self.gd.get('/orders?ids=1')[0] == 200, timeout=10))

    def test_the_home_screen(self):
        st, hdrs, body, _ = self.gd.get('/users/7/home')
        self.assertEqual(st, 200, body)
        self.assertEqual(hdrs.get('X-Gatherd-Complete'), 'true')
        doc = loads_ordered(body)
        self.assertEqual(list(doc.keys_in_order()), ['user', 'company', 'latest_orders', 'products',
                                                     'latest_posts', 'comments'])
        self.assertEqual(doc['user'], {'id': 7, 'name': 'User 7', 'city': 'Lima'})
        self.assertEqual(doc['company'], 'Initech')  # the call that needed user.company_id
        orders = self.pg.rows('SELECT product_name FROM orders WHERE user_id = 7 '
                              'ORDER BY order_date DESC LIMIT 3')
        self.assertEqual([o['product_name'] for o in doc['latest_orders']],
                         [r[0] for r in orders])
        # one SQL call with the orders' product names as one array
        self.assertEqual([p['name'] for p in doc['products']],
                         sorted(set(r[0] for r in orders)))
        self.assertEqual([p['id'] for p in doc['latest_posts']], [77, 78, 79])
        # the comments of the latest three posts, one for_each call, in post order
        self.assertEqual([[c['name'] for c in cs] for cs in doc['comments']],
                         [['Comment %d on post %d' % (i, p) for i in range(3)]
                          for p in (77, 78, 79)])
        self.assertEqual(set(doc['comments'][0][0]), {'name', 'body'})

    def test_the_batch_form_of_the_classic_aggregator(self):
        singles = []
        for uid in (1, 3):
            st, _, body, _ = self.gd.get('/users/%d/summary' % uid)
            self.assertEqual(st, 200, body)
            singles.append(body)
        st, hdrs, body, _ = self.gd.get('/users/summaries?ids=1,3')
        self.assertEqual(st, 200, body)
        self.assertEqual(hdrs.get('X-Gatherd-Complete'), 'true')
        # each item's answer is the single endpoint's, byte for byte
        self.assertEqual(body, b'[' + b','.join(singles) + b']')
        st, hdrs, body, _ = self.gd.get('/users/summaries?ids=3,404')
        self.assertEqual(st, 200, body)
        self.assertEqual(hdrs.get('X-Gatherd-Complete'), 'false')
        doc = jsonlib.loads(body)
        self.assertEqual(doc[0], jsonlib.loads(singles[1]))
        self.assertEqual(doc[1]['user_id'], 404)
        self.assertIsNone(doc[1]['user_info'])
        self.assertEqual(doc[1]['errors']['user']['status'], 404)
        st, _, body, _ = self.gd.get('/users/summaries?ids=1,x')
        self.assertEqual(st, 400, body)


if __name__ == '__main__':
    main()
