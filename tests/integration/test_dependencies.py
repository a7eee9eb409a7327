#!/usr/bin/env python3
"""Calls that need other calls' results (issue 12): the real gatherd against stub upstreams and
a real Postgres. Each call starts as soon as what it needs has arrived (the longest path, not a
sum), its timeout counts from its own start, references are checked by `gatherd -t`, failures
and skips propagate with kind dependency / null, a missing field or an object in a URL fails the
call, "when" makes a call conditional, a SQL arg takes a whole array, and a missing user still
answers 404."""

import json
import os
import socket
import sys
import tempfile
import time
import unittest
from urllib.parse import quote

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (GatherdTestCase, call, config, endpoint, free_port,  # noqa: E402
                     loads_ordered, main, run_gatherd, wait_until)
from pgfixture import PgCluster, server_binaries_present  # noqa: E402

USER = {'id': 1, 'name': 'Ann "A" b/c?', 'company': {'id': 7, 'name': 'ACME'},
        'order_ids': [1, 3], 'tags': [], 'active': False}


class DependenciesTest(GatherdTestCase):

    def setUp(self):
        self.stub = self.start_stub()
        self.stub.add('/users/1', json=USER)
        self.stub.add('/users/2', status=404, json={'error': 'no such user'})
        self.stub.add('/ok', json={'ok': True})

    def gatherd(self, calls, **kw):
        return self.start_gatherd(config([endpoint('/u/{id}', calls, **kw)], {'s': self.stub}))

    def get_json(self, gd, path):
        st, hdrs, body, elapsed = gd.get(path)
        return st, hdrs, loads_ordered(body), elapsed

    def arrivals(self, path):
        """The arrival time of each request for @path at the stub."""
        with self.stub._lock:
            return [t for (m, target, h), t in zip(self.stub.requests, self.stub.request_times)
                    if target.split('?', 1)[0] == path]

    # -- the graph ----------------------------------------------------------------------
    def test_time_is_the_longest_path_not_the_sum(self):
        self.stub.add('/a', json={'next': 'b1'}, delay_ms=100)
        self.stub.add('/b/b1', json={'b': True}, delay_ms=100)
        self.stub.add('/c', json={'c': True}, delay_ms=150)
        gd = self.gatherd({'a': call('s', '/a'), 'b': call('s', '/b/{a.next}'),
                           'c': call('s', '/c')}, timeout_ms=3000)
        for i in range(3):
            self.stub.reset_stats()
            st, hdrs, doc, elapsed = self.get_json(gd, '/u/1')
            self.assertEqual(st, 200, doc)
            self.assertEqual(hdrs.get('X-Gatherd-Complete'), 'true')
            self.assertEqual(doc, {'a': {'next': 'b1'}, 'b': {'b': True}, 'c': {'c': True}})
            self.assertGreaterEqual(elapsed, 0.2, 'b cannot have started before a answered')
            # A -> B is 200 ms and C 150 ms beside it: not the sum (350 ms), with room for a
            # loaded 2-core machine.
            self.assertLess(elapsed, 0.32, 'try %d took %.3f s: not the longest path' % (i, elapsed))
            a, b, c = self.arrivals('/a'), self.arrivals('/b/b1'), self.arrivals('/c')
            self.assertLess(abs(a[0] - c[0]), 0.05, 'independent calls start together')
            self.assertGreaterEqual(b[0] - a[0], 0.095, 'b starts once a has answered')
            self.assertLess(b[0] - a[0], 0.16, 'b starts as soon as a has answered')

    def test_a_calls_timeout_counts_from_its_own_start(self):
        self.stub.add('/slow', json={'k': 'x'}, delay_ms=300)
        self.stub.add('/next/x', json={'n': 1}, delay_ms=100)
        gd = self.gatherd({'first': call('s', '/slow', timeout_ms=1000),
                           'second': call('s', '/next/{first.k}', timeout_ms=250)},
                          timeout_ms=2000)
        st, _, doc, elapsed = self.get_json(gd, '/u/1')
        # 400 ms after the request began, but 100 ms after its own start
        self.assertEqual(st, 200, doc)
        self.assertEqual(doc['second'], {'n': 1})
        self.assertGreaterEqual(elapsed, 0.4)

    def test_the_endpoint_deadline_bounds_the_whole_request(self):
        self.stub.add('/slow', json={'k': 'x'}, delay_ms=300)
        self.stub.add('/next/x', json={'n': 1}, delay_ms=300)
        gd = self.gatherd({'first': call('s', '/slow'), 'second': call('s', '/next/{first.k}'),
                           'never': call('s', '/ok', after=['second'])}, timeout_ms=450)
        st, _, doc, elapsed = self.get_json(gd, '/u/1')
        self.assertEqual(st, 504, doc)
        self.assertEqual(doc['first'], {'k': 'x'})
        self.assertEqual(doc['errors']['second']['kind'], 'timeout')
        # "second" timed out at the endpoint deadline: what needed it fails with it
        self.assertIn(doc['errors']['never']['kind'], ('dependency', 'timeout'))
        self.assertGreaterEqual(elapsed, 0.44)
        self.assertLess(elapsed, 0.7)
        self.assertEqual(self.stub.requests_for('/ok'), [])

    def test_after_orders_without_data(self):
        self.stub.add('/first', json={}, delay_ms=100)
        gd = self.gatherd({'later': call('s', '/ok', after=['first']),
                           'first': call('s', '/first')})
        st, _, doc, _ = self.get_json(gd, '/u/1')
        self.assertEqual(st, 200, doc)
        self.assertEqual(list(doc.keys_in_order()), ['later', 'first'])  # config order kept
        self.assertGreaterEqual(self.arrivals('/ok')[0] - self.arrivals('/first')[0], 0.095)

    def test_a_client_that_leaves_stops_the_calls_still_waiting(self):
        self.stub.add('/slow', json={'k': 'x'}, delay_ms=300)
        self.stub.add('/next/x', json={})
        gd = self.gatherd({'first': call('s', '/slow'), 'second': call('s', '/next/{first.k}')},
                          timeout_ms=2000)
        sock = socket.create_connection(('127.0.0.1', gd.port), timeout=5)
        sock.sendall(b'GET /u/1 HTTP/1.1\r\nHost: x\r\n\r\n')
        self.stub.wait_requests(1)
        sock.close()  # while "first" runs
        wait_until(lambda: 'status=499' in gd.log(), timeout=5)
        time.sleep(0.4)  # past the moment "second" would have started
        self.assertEqual(self.stub.requests_for('/next/x'), [])
        self.assertEqual(self.get_json(gd, '/u/1')[0], 200)

    # -- references in every template -----------------------------------------------------
    def test_references_in_path_query_headers_and_body(self):
        self.stub.add('/companies/7', json={'seen': True})
        self.stub.add('/notes', json={'saved': True})
        gd = self.gatherd({
            'user': call('s', '/users/{id}'),
            'company': call('s', '/companies/{user.company.id}?name={user.name}&n={count(user.order_ids)}',
                            headers={'x-user': '{user.name}', 'x-first': 'id-{user.order_ids[0]}'}),
            'note': call('s', '/notes', method='POST',
                         body={'ids': '{user.order_ids}', 'company': '{user.company}',
                               'id': '{user.id}', 'active': '{user.active}',
                               'text': 'for {user.name} at {user.company.name}'}),
        })
        st, _, doc, _ = self.get_json(gd, '/u/1')
        self.assertEqual(st, 200, doc)
        (m, target, headers), = self.stub.requests_for('/companies/7')
        # values substituted into URLs are percent-encoded
        self.assertEqual(target, '/companies/7?name=%s&n=2' % quote(USER['name'], safe=''))
        self.assertEqual(headers['x-user'], USER['name'])
        self.assertEqual(headers['x-first'], 'id-1')
        i = [r[1] for r in self.stub.requests].index('/notes')
        # a string that is exactly one reference keeps its JSON type; text with one is a string
        self.assertEqual(json.loads(self.stub.bodies[i]),
                         {'ids': [1, 3], 'company': {'id': 7, 'name': 'ACME'}, 'id': 1,
                          'active': False, 'text': 'for %s at ACME' % USER['name']})

    def test_a_missing_field_fails_the_call_naming_the_reference(self):
        gd = self.gatherd({'user': call('s', '/users/{id}'),
                           'orders': call('s', '/ok?c={user.company.nope}', optional=True),
                           'page': call('s', '/ok?p={user.order_ids[5]}', optional=True)})
        st, hdrs, doc, _ = self.get_json(gd, '/u/1')
        self.assertEqual(st, 200, doc)  # optional: the answer stays 200
        self.assertEqual(hdrs.get('X-Gatherd-Complete'), 'false')
        err = doc['errors']['orders']
        self.assertEqual(err['kind'], 'dependency')
        self.assertIn('{user.company.nope}', err['message'])
        self.assertIn('missing', err['message'])
        self.assertIn('{user.order_ids[5]}', doc['errors']['page']['message'])
        self.assertEqual(self.stub.requests_for('/ok'), [])

    def test_an_object_cannot_go_into_a_url(self):
        gd = self.gatherd({'user': call('s', '/users/{id}'),
                           'bad': call('s', '/ok/{user.company}'),
                           'hdr': call('s', '/ok', headers={'x-ids': 'ids={user.order_ids}'},
                                       optional=True)})
        st, _, doc, _ = self.get_json(gd, '/u/1')
        self.assertEqual(st, 502, doc)
        self.assertEqual(doc['errors']['bad']['kind'], 'dependency')
        self.assertIn('{user.company} is an object', doc['errors']['bad']['message'])
        self.assertIn('URL', doc['errors']['bad']['message'])
        self.assertIn('{user.order_ids} is an array', doc['errors']['hdr']['message'])
        self.assertEqual(self.stub.requests_for('/ok'), [])

    def test_a_value_with_a_line_break_cannot_add_a_header(self):
        self.stub.add('/evil', json={'v': 'x\r\nx-injected: 1'})
        gd = self.gatherd({'evil': call('s', '/evil'),
                           'hdr': call('s', '/ok', headers={'x-v': '{evil.v}'})})
        st, _, doc, _ = self.get_json(gd, '/u/1')
        self.assertEqual(st, 502, doc)
        self.assertEqual(doc['errors']['hdr']['kind'], 'dependency')
        self.assertIn('control character', doc['errors']['hdr']['message'])
        self.assertEqual(self.stub.requests_for('/ok'), [])
        self.assertLess(doc['errors']['hdr']['elapsed_ms'], 1000)
        self.assertTrue(gd.alive())

    # -- failure and skip propagation, status rules --------------------------------------------
    def test_failure_propagates_and_a_missing_user_answers_404(self):
        # the dependent calls come first in config order: the user's 404 still decides
        gd = self.gatherd({'orders': call('s', '/ok?c={user.company.id}'),
                           'more': call('s', '/ok?o={orders.ok}'),
                           'user': call('s', '/users/{id}'),
                           'free': call('s', '/ok')})
        st, _, doc, _ = self.get_json(gd, '/u/2')
        self.assertEqual(st, 404, doc)
        self.assertEqual(doc['errors']['user']['kind'], 'status')
        self.assertEqual(doc['errors']['orders']['kind'], 'dependency')
        self.assertIn('"user"', doc['errors']['orders']['message'])
        self.assertEqual(doc['errors']['more']['kind'], 'dependency')
        self.assertIn('"orders"', doc['errors']['more']['message'])
        self.assertEqual(doc['free'], {'ok': True})
        self.assertEqual([t for t in self.stub.targets() if t.startswith('/ok?')], [])
        st, _, doc, _ = self.get_json(gd, '/u/1')
        self.assertEqual(st, 200, doc)
        self.assertEqual(doc['more'], {'ok': True})

    def test_when_true_false_and_absent(self):
        gd = self.gatherd({'user': call('s', '/users/{id}'),
                           'orders': call('s', '/ok', when='{query.include_orders}'),
                           'byorders': call('s', '/ok?x={orders.ok}'),
                           'tagged': call('s', '/ok?t=1', when='{count(user.tags)}'),
                           'inactive': call('s', '/ok?a=1', when='{user.active}'),
                           'company': call('s', '/ok?c=1', when='{user.company}')})
        for q, runs in (('?include_orders=1', True), ('?include_orders=true', True),
                        ('?include_orders=false', False), ('?include_orders=0', False),
                        ('?include_orders=', False), ('', False)):
            self.stub.reset_stats()
            st, hdrs, doc, _ = self.get_json(gd, '/u/1' + q)
            self.assertEqual(st, 200, (q, doc))
            self.assertEqual(hdrs.get('X-Gatherd-Complete'), 'true', (q, doc))
            self.assertNotIn('errors', doc, q)
            # a skipped call is null, and so is one that needed it
            self.assertEqual(doc['orders'], {'ok': True} if runs else None, q)
            self.assertEqual(doc['byorders'], {'ok': True} if runs else None, q)
            self.assertIsNone(doc['tagged'])     # count 0
            self.assertIsNone(doc['inactive'])   # false
            self.assertEqual(doc['company'], {'ok': True})  # an object with members
            self.assertEqual(self.stub.targets().count('/ok'), 1 if runs else 0, q)

    def test_when_of_parameters_only_in_an_endpoint_without_dependencies(self):
        # how not to call /users/ with an absent optional parameter
        gd = self.gatherd({'user': call('s', '/users/{query.user}', when='{query.user}'),
                           'free': call('s', '/ok')})
        st, hdrs, doc, _ = self.get_json(gd, '/u/1')
        self.assertEqual(st, 200, doc)
        self.assertEqual(hdrs.get('X-Gatherd-Complete'), 'true')
        self.assertEqual(doc, {'user': None, 'free': {'ok': True}})
        self.assertEqual(self.stub.targets(), ['/ok'])
        st, _, doc, _ = self.get_json(gd, '/u/1?user=1')
        self.assertEqual(doc['user'], USER)
        self.assertIn('/users/1', self.stub.targets())

    # -- gatherd -t -------------------------------------------------------------------------
    def check_t(self, calls, *expected):
        cfg = config([endpoint('/u/{id}', calls)], {'s': 'http://127.0.0.1:9'})
        cfg['listen'] = ['127.0.0.1:%d' % free_port()]
        with tempfile.NamedTemporaryFile('w', suffix='.json', delete=False) as f:
            json.dump(cfg, f)
        self.addCleanup(os.unlink, f.name)
        r = run_gatherd(['-t', '-c', f.name])
        out = r.stdout + r.stderr
        self.assertEqual(r.returncode, 1, out)
        for e in expected:
            self.assertIn(e, out)
        return out

    def test_t_names_cycles_and_bad_references(self):
        self.check_t({'a': call('s', '/a/{b.x}'), 'b': call('s', '/b', headers={'x': '{c.y}'}),
                      'c': call('s', '/c', after=['a'])},
                     'endpoints[0].calls.a: the calls depend on each other in a cycle: '
                     'a -> b -> c -> a')
        self.check_t({'a': call('s', '/a/{a.x}')}, 'endpoints[0].calls.a:', 'cycle: a -> a')
        self.check_t({'a': call('s', '/a'), 'b': call('s', '/b/{usr.id}')},
                     'endpoints[0].calls.b.path: "{usr.id}": unknown call or source "usr"')
        self.check_t({'a': call('s', '/a'), 'b': call('s', '/b', headers={'x': '{a.}'})},
                     'endpoints[0].calls.b.headers.x: "{a.}"')
        self.check_t({'a': call('s', '/a'), 'b': call('s', '/b', after=['a', 'zz'])},
                     'endpoints[0].calls.b.after[1]: unknown call "zz"')
        self.check_t({'a': call('s', '/a', when='yes')},
                     'endpoints[0].calls.a.when: must be exactly one reference')
        self.check_t({'a': call('s', '/a', when='{nope.x}')},
                     'endpoints[0].calls.a.when: "{nope.x}": unknown call or source "nope"')
        self.check_t({'a': call('s', '/a'),
                      'b': call('s', '/b', method='POST', body={'k': ['{a[x]}']})},
                     'endpoints[0].calls.b.body.k[0]: "{a[x]}"')


@unittest.skipUnless(server_binaries_present(), 'PostgreSQL server binaries not installed')
class SqlDependenciesTest(GatherdTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.pg = PgCluster.for_class(cls)
        cls.pg.psql('''
            SET client_min_messages = warning;
            CREATE TABLE products (id bigint PRIMARY KEY, name text NOT NULL);
            INSERT INTO products VALUES (1, 'Widget'), (2, 'Gadget "deluxe", v2'),
                                        (3, 'Gizmo'), (4, 'back\\slash {NULL}');
        ''')

    def test_an_array_is_bound_as_one_postgres_array(self):
        stub = self.start_stub()
        stub.add('/orders', json={'product_ids': [3, 1, 99],
                                  'names': ['Gadget "deluxe", v2', 'back\\slash {NULL}', None],
                                  'none': None, 'empty': []})
        calls = {
            'orders': call('s', '/orders'),
            'products': {'sql': 'SELECT id, name FROM products WHERE id = ANY($1::bigint[]) '
                                'ORDER BY id', 'args': ['{orders.product_ids}']},
            'by_name': {'sql': 'SELECT id FROM products WHERE name = ANY($1::text[]) ORDER BY id',
                        'args': ['{orders.names}']},
            'nulls': {'sql': 'SELECT $1::text IS NULL AS is_null, cardinality($2::int[]) AS n',
                      'args': ['{orders.none}', '{orders.empty}'], 'row': 'one'},
        }
        gd = self.start_gatherd(config([endpoint('/o', calls)], {'s': stub},
                                       postgres={'conninfo': self.pg.conninfo()}))
        st, _, body, _ = gd.get('/o')
        doc = loads_ordered(body)
        self.assertEqual(st, 200, doc)
        # one query for the whole list, not one per element
        self.assertEqual(doc['products'], [{'id': 1, 'name': 'Widget'}, {'id': 3, 'name': 'Gizmo'}])
        self.assertEqual(doc['by_name'], [{'id': 2}, {'id': 4}])
        self.assertEqual(doc['nulls'], {'is_null': True, 'n': 0})

    def test_a_missing_row_answers_404_and_its_dependents_fail(self):
        stub = self.start_stub()
        stub.add('*', json={'ok': True})
        calls = {
            'user': {'sql': 'SELECT id, name FROM products WHERE id = $1::bigint', 'args': ['{id}'],
                     'row': 'one'},
            'orders': call('s', '/orders?name={user.name}'),
        }
        gd = self.start_gatherd(config([endpoint('/p/{id}', calls)], {'s': stub},
                                       postgres={'conninfo': self.pg.conninfo()}))
        st, _, body, _ = gd.get('/p/4')
        doc = loads_ordered(body)
        self.assertEqual(st, 200, doc)
        self.assertEqual(stub.targets(), ['/orders?name=' + quote('back\\slash {NULL}', safe='')])
        st, _, body, _ = gd.get('/p/42')
        doc = loads_ordered(body)
        self.assertEqual(st, 404, doc)
        self.assertEqual(doc['errors']['orders']['kind'], 'dependency')
        self.assertEqual(len(stub.targets()), 1)


if __name__ == '__main__':
    main()
