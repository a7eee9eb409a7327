#!/usr/bin/env python3
"""The endpoint's "response" template: the classic aggregator's answer byte for byte, typed
values, a failed call (null, errors last, X-Gatherd-Complete: false), "{errors}" placed by the
template, and the unshaped answer of the same calls unchanged."""

import json as jsonlib
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (GatherdTestCase, call, config, endpoint, main,  # noqa: E402
                     run_gatherd)
from test_postgres import PgTestCase, sql_call  # noqa: E402

USER = b'{"id": 1, "name": "Leanne Graham", "address": {"city": "Gwenborough"}}'
POSTS = b'[' + b','.join(b'{"userId": 1, "id": %d, "title": "p%d"}' % (i, i)
                         for i in range(1, 11)) + b']'
ALBUMS = b'[' + b','.join(b'{"id":%d,"title":"a\\u00e9%d"}' % (i, i) for i in range(1, 8)) + b']'

CLASSIC = {"user_id": "{id}", "user_info": "{user}", "posts_count": "{count(posts)}",
           "albums_count": "{count(albums)}", "posts": "{posts[0:5]}",
           "albums": "{albums[0:3]}"}


def elements(doc, n):
    return b'[' + b','.join(jsonlib.dumps(e, separators=(',', ':')).encode()
                            for e in jsonlib.loads(doc)[:n]) + b']'


class ResponseTest(GatherdTestCase):

    def start(self, response, albums_status=200):
        stub = self.start_stub()
        stub.add('/users/1', body=USER)
        stub.add('/posts', body=POSTS, chunked=True, chunk_size=7)
        if albums_status == 200:
            stub.add('/albums', body=ALBUMS)
        else:
            stub.add('/albums', status=albums_status, json={'error': 'x'})
        calls = {'user': call('s', '/users/{id}'), 'posts': call('s', '/posts'),
                 'albums': call('s', '/albums', optional=True)}
        eps = [endpoint('/users/{id}/summary', calls, params={'id': 'int'}, response=response),
               endpoint('/users/{id}/profile', calls)]
        return self.start_gatherd(config(eps, {'s': stub}))

    def test_classic_aggregator_byte_for_byte(self):
        gd = self.start(CLASSIC)
        st, hdrs, body, _ = gd.get('/users/1/summary')
        self.assertEqual(st, 200, body)
        self.assertEqual(hdrs.get('X-Gatherd-Complete'), 'true')
        # slices copy each element's bytes as the upstream wrote them
        posts5 = b'[' + b','.join(b'{"userId": 1, "id": %d, "title": "p%d"}' % (i, i)
                                  for i in range(1, 6)) + b']'
        albums3 = b'[' + b','.join(b'{"id":%d,"title":"a\\u00e9%d"}' % (i, i)
                                   for i in range(1, 4)) + b']'
        expected = (b'{"user_id":1,"user_info":' + USER + b',"posts_count":10,'
                    b'"albums_count":7,"posts":' + posts5 + b',"albums":' + albums3 + b'}')
        self.assertEqual(body, expected)
        # deterministic: the same inputs give the same bytes
        for _ in range(3):
            self.assertEqual(gd.get('/users/1/summary')[2], expected)

    def test_unshaped_answer_unchanged(self):
        gd = self.start(CLASSIC)
        st, _, body, _ = gd.get('/users/1/profile')
        self.assertEqual(st, 200, body)
        self.assertEqual(body, b'{"user":' + USER + b',"posts":' + POSTS + b',"albums":' +
                         ALBUMS + b'}')

    def test_failed_call_is_null_and_errors_last(self):
        gd = self.start(CLASSIC, albums_status=500)
        st, hdrs, body, _ = gd.get('/users/1/summary')
        self.assertEqual(st, 200, body)  # albums is optional
        self.assertEqual(hdrs.get('X-Gatherd-Complete'), 'false')
        doc = jsonlib.loads(body)
        self.assertEqual(list(doc), ['user_id', 'user_info', 'posts_count', 'albums_count',
                                     'posts', 'albums', 'errors'])
        self.assertIsNone(doc['albums'])
        self.assertIsNone(doc['albums_count'])
        self.assertEqual(doc['errors']['albums']['kind'], 'status')
        self.assertEqual(doc['errors']['albums']['status'], 500)

    def test_paths_typed_values_and_placed_errors(self):
        gd = self.start({"city": "{user.address.city}", "last": "{posts[-1].id}",
                         "ids": "{posts[*].id}", "missing": "{user.address.zip}",
                         "text": "{user.name} ({count(posts)} posts)", "q": "{query.q}",
                         "h": "{header.x-tenant}", "nested": {"a": ["{id}", 2, None]},
                         "problems": "{errors}"}, albums_status=503)
        st, hdrs, body, _ = gd.get('/users/1/summary?q=a%22b', headers={'X-Tenant': 't1'})
        self.assertEqual(st, 200, body)
        self.assertEqual(hdrs.get('X-Gatherd-Complete'), 'false')
        doc = jsonlib.loads(body)
        self.assertEqual(list(doc)[-1], 'problems')  # placed by the template: nothing added
        self.assertEqual(doc['problems']['albums']['status'], 503)
        self.assertEqual(body.split(b',"problems"')[0],
                         b'{"city":"Gwenborough","last":10,"ids":[1,2,3,4,5,6,7,8,9,10],'
                         b'"missing":null,"text":"Leanne Graham (10 posts)","q":"a\\"b",'
                         b'"h":"t1","nested":{"a":[1,2,null]}')

    def test_unknown_reference_is_a_config_error(self):
        stub = self.start_stub()
        cfg = config([endpoint('/u/{id}', {'user': call('s', '/u')},
                               response={"a": ["{usr.name}"]})], {'s': stub})
        cfg['listen'] = ['127.0.0.1:1']
        with tempfile.NamedTemporaryFile('w', suffix='.json') as f:
            jsonlib.dump(cfg, f)
            f.flush()
            r = run_gatherd(['-t', '-c', f.name])
        rc, out = r.returncode, r.stdout + r.stderr
        self.assertEqual(rc, 1, out)
        self.assertIn('endpoints[0].response.a[0]: "{usr.name}": unknown call or source "usr"',
                      out)


class SqlResponseTest(PgTestCase):
    """A Postgres result shaped like an upstream document."""

    def test_sql_rows_shaped(self):
        series = "SELECT n AS id, 'p' || n AS name FROM generate_series(1, $1::int) AS n"
        gd = self.start_pg_gatherd([endpoint('/rows/{n}', {
            'user': call('s', '/users/1'),
            'rows': sql_call(series, ['{n}']),
            'one': sql_call('SELECT 7 AS x, NULL::int AS y', row='one')},
            params={'n': 'int'},
            response={'n': '{count(rows)}', 'first': '{rows[0].name}', 'last': '{rows[-1].id}',
                      'ids': '{rows[*].id}', 'tail': '{rows[-2:]}', 'x': '{one.x}',
                      'y': '{one.y}', 'z': '{one.z}'})])
        st, hdrs, body, _ = gd.get('/rows/3')
        self.assertEqual(st, 200, body)
        self.assertEqual(hdrs.get('X-Gatherd-Complete'), 'true')
        self.assertEqual(body, b'{"n":3,"first":"p1","last":3,"ids":[1,2,3],'
                               b'"tail":[{"id":2,"name":"p2"},{"id":3,"name":"p3"}],'
                               b'"x":7,"y":null,"z":null}')
        st, _, body, _ = gd.get('/rows/0')
        self.assertEqual(body, b'{"n":0,"first":null,"last":null,"ids":[],"tail":[],'
                               b'"x":7,"y":null,"z":null}')


if __name__ == '__main__':
    main()
