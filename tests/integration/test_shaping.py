#!/usr/bin/env python3
"""Per-call shaping ("select", "fields", "omit", "rename") on HTTP and on Postgres results: the
merged answer byte for byte, a response template that sees the shaped results, a select that
finds nothing (a failed call of kind "select": 502 when required, null and an errors entry when
optional), an unshaped call next to shaped ones unchanged, and config errors named by their
JSON place in `gatherd -t`."""

import json as jsonlib
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (GatherdTestCase, call, config, endpoint, main,  # noqa: E402
                     run_gatherd)
from test_postgres import PgTestCase, sql_call  # noqa: E402

USER = (b'{"id": 1, "userId": 10, "name": "Leanne", "email": "l@example.com", '
        b'"address": {"city": "Gwenborough"}}')
POSTS = (b'{"data": {"items": [{"id": 1, "title": "p1", "body": "b1", "userId": 1}, '
         b'{"id": 2, "title": "p2", "body": "b2", "userId": 1}]}, "total": 2}')


class HttpShapingTest(GatherdTestCase):

    def start(self, calls, response=None):
        stub = self.start_stub()
        stub.add('/users/1', body=USER)
        stub.add('/posts', body=POSTS, chunked=True, chunk_size=5)
        kw = {'response': response} if response is not None else {}
        eps = [endpoint('/p', calls, **kw)]
        return self.start_gatherd(config(eps, {'s': stub}))

    def test_every_key_on_http_results(self):
        gd = self.start({
            'user': call('s', '/users/1', omit=['email', 'address'],
                         rename={'userId': 'user_id'}),
            'posts': call('s', '/posts', select='data.items', fields=['id', 'title']),
            'titles': call('s', '/posts', select='data.items[*].title'),
            'first': call('s', '/posts', select='data.items[0]', fields=['title', 'userId'],
                          rename={'userId': 'author'}),
            'raw': call('s', '/users/1')})
        st, hdrs, body, _ = gd.get('/p')
        self.assertEqual(st, 200, body)
        self.assertEqual(hdrs.get('X-Gatherd-Complete'), 'true')
        # each member kept as the upstream wrote it, a renamed one as "new":value
        self.assertEqual(body, b'{"user":{"id": 1,"user_id":10,"name": "Leanne"},'
                               b'"posts":[{"id": 1,"title": "p1"},{"id": 2,"title": "p2"}],'
                               b'"titles":["p1","p2"],'
                               b'"first":{"title": "p1","author":1},'
                               b'"raw":' + USER + b'}')

    def test_response_template_sees_shaped_results(self):
        gd = self.start({'user': call('s', '/users/1', fields=['id', 'userId', 'email'],
                                      rename={'userId': 'user_id'}),
                         'posts': call('s', '/posts', select='data.items')},
                        response={'uid': '{user.user_id}', 'old': '{user.userId}',
                                  'email': '{user.email}', 'name': '{user.name}',
                                  'n': '{count(posts)}', 'ids': '{posts[*].id}',
                                  'user': '{user}'})
        st, _, body, _ = gd.get('/p')
        self.assertEqual(st, 200, body)
        self.assertEqual(body, b'{"uid":10,"old":null,"email":"l@example.com","name":null,'
                               b'"n":2,"ids":[1,2],'
                               b'"user":{"id": 1,"user_id":10,"email": "l@example.com"}}')

    def test_select_finding_nothing_fails_the_call(self):
        gd = self.start({'user': call('s', '/users/1'),
                         'posts': call('s', '/posts', select='data.missing', optional=True)})
        st, hdrs, body, _ = gd.get('/p')
        self.assertEqual(st, 200, body)
        self.assertEqual(hdrs.get('X-Gatherd-Complete'), 'false')
        doc = jsonlib.loads(body)
        self.assertIsNone(doc['posts'])
        self.assertEqual(doc['errors']['posts']['kind'], 'select')
        self.assertEqual(doc['user'], jsonlib.loads(USER))

    def test_required_call_whose_select_finds_nothing_is_a_502(self):
        gd = self.start({'user': call('s', '/users/1', select='address.zip')},
                        response={'zip': '{user}'})
        st, hdrs, body, _ = gd.get('/p')
        self.assertEqual(st, 502, body)
        self.assertEqual(hdrs.get('X-Gatherd-Complete'), 'false')
        doc = jsonlib.loads(body)
        self.assertIsNone(doc['zip'])
        self.assertEqual(doc['errors']['user']['kind'], 'select')
        # no internal detail without expose_error_details
        self.assertNotIn('address.zip', body.decode())

    def test_dependent_calls_see_shaped_results(self):
        stub = self.start_stub()
        stub.add('/users/1', body=USER)
        stub.add('/posts', body=POSTS)
        stub.add('/companies/10', json={'c': 10})
        stub.add('/companies/1', json={'c': 1})
        eps = [endpoint('/p', {
            'user': call('s', '/users/1', select='userId', optional=True),
            'company': call('s', '/companies/{user}'),
            'posts': call('s', '/posts', select='data.items', fields=['id']),
            'first': call('s', '/companies/{posts[0].id}?t={posts[0].title}', optional=True),
            'gone': call('s', '/posts', select='data.none', optional=True),
            'after_gone': call('s', '/companies/{gone.id}', optional=True)})]
        gd = self.start_gatherd(config(eps, {'s': stub}))
        st, _, body, _ = gd.get('/p')
        self.assertEqual(st, 200, body)
        doc = jsonlib.loads(body)
        self.assertEqual(doc['user'], 10)
        self.assertEqual(doc['company'], {'c': 10})  # the selected value went into the path
        self.assertEqual(doc['posts'], [{'id': 1}, {'id': 2}])
        # "title" was dropped by "fields": the reference to it finds nothing
        self.assertIsNone(doc['first'])
        self.assertEqual(doc['errors']['first']['kind'], 'dependency')
        self.assertEqual(doc['errors']['gone']['kind'], 'select')
        self.assertEqual(doc['errors']['after_gone']['kind'], 'dependency')

    def check_config_error(self, calls, want):
        stub = self.start_stub()
        cfg = config([endpoint('/p', calls)], {'s': stub})
        cfg['listen'] = ['127.0.0.1:1']
        with tempfile.NamedTemporaryFile('w', suffix='.json') as f:
            jsonlib.dump(cfg, f)
            f.flush()
            r = run_gatherd(['-t', '-c', f.name])
        out = r.stdout + r.stderr
        self.assertEqual(r.returncode, 1, out)
        self.assertIn(want, out)

    def test_config_errors_name_their_place(self):
        self.check_config_error({'u': call('s', '/u', fields=['a'], omit=['b'])},
                                'endpoints[0].calls.u.omit: a call has either "fields" or '
                                '"omit", not both')
        self.check_config_error({'u': call('s', '/u', fields=[])},
                                'endpoints[0].calls.u.fields: an empty list')
        self.check_config_error({'u': call('s', '/u', omit=['a', 3])},
                                'endpoints[0].calls.u.omit[1]: must be a string, not an integer')
        self.check_config_error({'u': call('s', '/u', rename={'a': None})},
                                'endpoints[0].calls.u.rename.a: must be a string')
        self.check_config_error({'u': call('s', '/u', select='data..items')},
                                'endpoints[0].calls.u.select: "data..items": a field name')
        self.check_config_error({'u': call('s', '/u', fields='a')},
                                'endpoints[0].calls.u.fields: must be an array of key names')


class SqlShapingTest(PgTestCase):

    def test_every_key_on_sql_results(self):
        rows = ("SELECT n AS id, 'p' || n AS title, 'secret' AS email, n * 10 AS \"userId\" "
                "FROM generate_series(1, 2) AS n")
        gd = self.start_pg_gatherd([endpoint('/rows', {
            'fields': sql_call(rows, fields=['id', 'title']),
            'omit': sql_call(rows, omit=['email'], rename={'userId': 'user_id'}),
            'one': sql_call("SELECT 7 AS x, '{\"a\": [1, 2]}'::jsonb AS doc", row='one',
                            select='doc.a[-1]'),
            'ids': sql_call(rows, select='[*].id'),
            'missing': sql_call(rows, select='[5]', optional=True),
            'raw': sql_call('SELECT 1 AS a', row='one')})])
        st, hdrs, body, _ = gd.get('/rows')
        self.assertEqual(st, 200, body)
        self.assertEqual(hdrs.get('X-Gatherd-Complete'), 'false')
        doc = jsonlib.loads(body)
        self.assertEqual(body.split(b',"missing"')[0],
                         b'{"fields":[{"id":1,"title":"p1"},{"id":2,"title":"p2"}],'
                         b'"omit":[{"id":1,"title":"p1","user_id":10},'
                         b'{"id":2,"title":"p2","user_id":20}],'
                         b'"one":2,"ids":[1,2]')
        self.assertIsNone(doc['missing'])
        self.assertEqual(doc['raw'], {'a': 1})
        self.assertEqual(doc['errors']['missing']['kind'], 'select')

    def test_sql_shaping_with_a_response_template(self):
        rows = "SELECT n AS id, 'p' || n AS name FROM generate_series(1, 3) AS n"
        gd = self.start_pg_gatherd([endpoint('/rows', {
            'user': call('s', '/users/1', rename={'name': 'user_name'}),
            'rows': sql_call(rows, fields=['name'], rename={'name': 'n'})},
            response={'who': '{user.user_name}', 'names': '{rows[*].n}', 'c': '{count(rows)}'})])
        st, _, body, _ = gd.get('/rows')
        self.assertEqual(st, 200, body)
        self.assertEqual(body, b'{"who":"Ann","names":["p1","p2","p3"],"c":3}')


if __name__ == '__main__':
    main()
