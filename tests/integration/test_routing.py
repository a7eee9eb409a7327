#!/usr/bin/env python3
"""Routing, parameters, percent-encoding of templates, gatherd's own errors, HTTP/2."""

import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (GatherdTestCase, call, config, endpoint, main,  # noqa: E402
                     parse_raw_response, run_curl, upstream)


def routing_config(stub, **top):
    return config([
        endpoint('/users/{id}/profile', {'user': call('s', '/users/{id}')}),
        endpoint('/users/me/profile', {'me': call('s', '/me')}),
        endpoint('/items/{id}', {'itm': call('s', '/items/{id}')}, params={'id': 'int'}),
        endpoint('/search', {'found': call('s', '/find?term={query.q}&page={query.page}')},
                 params={'query.q': {'type': 'string', 'required': True}}),
        endpoint('/limit', {'l': call('s', '/l?limit={query.limit}')},
                 params={'query.limit': {'type': 'int', 'required': False, 'default': '10'}}),
        endpoint('/tenant', {'t': call('s', '/t', headers={
            'x-tenant': '{header.x-tenant}',
            'x-fixed': 'literal value',
            'x-mixed': 't={header.x-tenant};q={query.q}',
            'x-note': '{header.x-note}'})},
            params={'header.x-tenant': {'pattern': '[a-z0-9-]{1,32}', 'required': True}}),
        endpoint('/things', {'t': call('s', '/things')}),
        endpoint('/things', {'t': call('s', '/things', method='DELETE')}, method='DELETE'),
        endpoint('/based/{id}', {'b': call('based', '/users/{id}')}),
    ], {'s': stub, 'based': upstream(stub.url + '/api/v1')}, **top)


class RoutingTest(GatherdTestCase):

    def setUp(self):
        self.stub = self.start_stub()
        for p in ('/me', '/find', '/l', '/t', '/things'):
            self.stub.add(p, json={'p': p})
        self.stub.add('*', json={'any': True})
        self.gd = self.start_gatherd(routing_config(self.stub, http2=True))

    def upstream_target_of(self, path, headers=None):
        """Requests @path, expects 200, returns the one target the stub received."""
        before = len(self.stub.requests)
        st, _, body, _ = self.gd.get(path, headers=headers)
        self.assertEqual(st, 200, body)
        reqs = self.stub.requests[before:]
        self.assertEqual(len(reqs), 1, reqs)
        return reqs[0][1]

    def assertRejectedBeforeAnyCall(self, path, status=400, headers=None, names=()):
        before = len(self.stub.requests)
        st, hdrs, body, _ = self.gd.get(path, headers=headers)
        doc = self.assertJsonError(st, hdrs, body, status)
        for n in names:
            self.assertIn(n, doc['message'], doc)
        self.assertEqual(self.stub.requests[before:], [], 'an upstream call was made')
        return doc

    # -- 404 / 405 / 400 ------------------------------------------------------------------
    def test_unknown_path_is_404_json(self):
        for p in ('/nope', '/', '/users/1', '/users/1/profile/extra', '/users//profile',
                  '/users/a/b/profile', '/USERS/1/profile'):
            with self.subTest(path=p):
                self.assertRejectedBeforeAnyCall(p, 404)

    def test_other_method_is_405_with_allow(self):
        for method in ('POST', 'PUT', 'PATCH'):
            st, hdrs, body, _ = self.gd.request(method, '/things')
            self.assertJsonError(st, hdrs, body, 405)
            allow = {m.strip() for m in (hdrs.get('Allow') or '').split(',')}
            self.assertEqual(allow, {'GET', 'DELETE'}, hdrs.get('Allow'))
        st, hdrs, body, _ = self.gd.request('POST', '/users/1/profile')
        self.assertJsonError(st, hdrs, body, 405)
        self.assertEqual(hdrs.get('Allow'), 'GET')
        st, _, body, _ = self.gd.request('DELETE', '/things')
        self.assertEqual(st, 200, body)
        self.assertEqual(self.stub.requests[-1][0], 'DELETE')
        self.assertEqual(self.stub.requests[-1][1], '/things')

    def test_int_param_mistyped_is_400_before_any_call(self):
        for v in ('abc', '12abc', '1.5', '99999999999999999999', '%2D', '0x10', '%20'):
            with self.subTest(value=v):
                self.assertRejectedBeforeAnyCall('/items/' + v, 400, names=('id',))
        for v in ('12', '-5', '0', '9223372036854775807'):
            with self.subTest(value=v):
                self.assertEqual(self.upstream_target_of('/items/' + v), '/items/' + v)

    def test_required_query_param_missing_is_400(self):
        self.assertRejectedBeforeAnyCall('/search', 400, names=('q',))
        self.assertRejectedBeforeAnyCall('/search?page=2', 400, names=('q',))
        self.assertRejectedBeforeAnyCall('/search?qq=1', 400, names=('q',))

    def test_optional_int_query_param_default_and_type(self):
        self.assertEqual(self.upstream_target_of('/limit'), '/l?limit=10')
        self.assertEqual(self.upstream_target_of('/limit?limit=25'), '/l?limit=25')
        self.assertRejectedBeforeAnyCall('/limit?limit=ten', 400, names=('limit',))

    def test_malformed_escapes_are_400_json(self):
        for p in ('/users/%ZZ/profile', '/users/%4/profile', '/users/a%00b/profile'):
            with self.subTest(path=p):
                self.assertRejectedBeforeAnyCall(p, 400)

    def test_unparseable_http_request_is_400_and_closed(self):
        # Bytes that are not HTTP never reach gatherd: h2o 2.2.5's parser answers them with its
        # own canned plain-text 400, written straight to the socket (README, "Limits and known
        # gaps"). What a client can rely on: a 400, the connection closed, the server unharmed.
        data = self.gd.raw(b'GARBAGE\r\n\r\n', until_close=True)
        self.assertTrue(data, 'no answer to a malformed request')
        st, hdrs, body = parse_raw_response(data)
        self.assertEqual(st, 400, data)
        self.assertEqual(hdrs.get('connection', '').lower(), 'close', data)
        self.assertAlive(self.gd, '/users/me/profile')

    def test_pipelined_requests_are_answered_in_order(self):
        data = self.gd.raw(b'GET /users/1/profile HTTP/1.1\r\nHost: x\r\n\r\n'
                           b'GET /nope HTTP/1.1\r\nHost: x\r\n\r\n'
                           b'GET /users/2/profile HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
                           until_close=True)
        statuses = [int(m) for m in re.findall(rb'HTTP/1\.1 (\d{3}) ', data)]
        self.assertEqual(statuses, [200, 404, 200], data)
        self.assertEqual(self.stub.targets()[-2:], ['/users/1', '/users/2'])

    def test_call_method(self):
        st, _, body, _ = self.gd.request('DELETE', '/things')
        self.assertEqual(st, 200, body)
        method, target, headers = self.stub.requests[-1]
        self.assertEqual((method, target), ('DELETE', '/things'))
        self.assertIn(headers.get('content-length', '0'), ('0',))

    # -- percent-encoding -----------------------------------------------------------------
    def test_path_capture_is_one_encoded_segment(self):
        cases = {
            '/users/..%2Fadmin/profile': '/users/..%2Fadmin',
            '/users/../profile': '/users/%2E%2E',
            '/users/./profile': '/users/%2E',
            '/users/%2E%2E/profile': '/users/%2E%2E',
            '/users/...%2F/profile': '/users/...%2F',
            '/users/%c3%a9t%C3%A9/profile': '/users/%C3%A9t%C3%A9',
            '/users/a-b.c_d~e09/profile': '/users/a-b.c_d~e09',
            '/users/a%20b%3Fc%23d%26e%3Df/profile': '/users/a%20b%3Fc%23d%26e%3Df',
            '/users/a+b/profile': '/users/a%2Bb',
            '/users/%2F/profile': '/users/%2F',
            "/users/a;b,c:d@e!$'()*/profile": '/users/a%3Bb%2Cc%3Ad%40e%21%24%27%28%29%2A',
        }
        for path, target in cases.items():
            with self.subTest(path=path):
                self.assertEqual(self.upstream_target_of(path), target)

    def test_literal_segment_beats_capture(self):
        self.assertEqual(self.upstream_target_of('/users/me/profile'), '/me')
        self.assertEqual(self.upstream_target_of('/users/mee/profile'), '/users/mee')

    def test_query_values_are_encoded(self):
        cases = {
            '/search?q=a%26b%3Dc%20d%23e': '/find?term=a%26b%3Dc%20d%23e&page=',
            '/search?q=x+y&page=2': '/find?term=x%20y&page=2',
            '/search?page=..&q=%2F..%2F': '/find?term=%2F..%2F&page=%2E%2E',
            '/search?q=1&q=2': '/find?term=1&page=',
            '/search?q=%3Fadmin%3Dtrue&page=1%262': '/find?term=%3Fadmin%3Dtrue&page=1%262',
            '/search?q=%E2%82%AC': '/find?term=%E2%82%AC&page=',
        }
        for path, target in cases.items():
            with self.subTest(path=path):
                self.assertEqual(self.upstream_target_of(path), target)

    def test_upstream_base_path_is_prepended(self):
        self.stub.add('/api/v1/users/7', json={'based': True})
        st, _, body, _ = self.gd.get('/based/7')
        self.assertEqual((st, body), (200, b'{"b":{"based": true}}'))
        self.assertEqual(self.stub.requests[-1][1], '/api/v1/users/7')
        self.assertEqual(self.upstream_target_of('/based/..%2F..'), '/api/v1/users/..%2F..')

    # -- header templates -----------------------------------------------------------------
    def test_header_templates(self):
        before = len(self.stub.requests)
        st, _, body, _ = self.gd.get('/tenant?q=a%20b', headers={
            'X-TENANT': 'acme-1', 'X-Note': 'hello world/%41?&=x'})
        self.assertEqual(st, 200, body)
        (method, target, h), = self.stub.requests[before:]
        self.assertEqual(target, '/t')
        self.assertEqual(h.get('x-tenant'), 'acme-1')
        self.assertEqual(h.get('x-fixed'), 'literal value')
        self.assertEqual(h.get('x-mixed'), 't=acme-1;q=a b')
        self.assertEqual(h.get('x-note'), 'hello world/%41?&=x')

    def test_header_param_pattern_and_required(self):
        self.assertRejectedBeforeAnyCall('/tenant', 400, names=('x-tenant',))
        for bad in ('ACME', 'acme corp', 'a' * 33, 'acme_1', ''):
            with self.subTest(value=bad):
                self.assertRejectedBeforeAnyCall('/tenant', 400, headers={'X-Tenant': bad},
                                                 names=('x-tenant',))
        self.assertEqual(self.upstream_target_of('/tenant', headers={'X-Tenant': 'a' * 32}), '/t')

    def test_control_character_in_header_value_is_400(self):
        # a query value is decoded and inserted into a header as it is: CR LF must not inject
        for q in ('%0D%0Ax-evil:%201', '%01', '%0A'):
            with self.subTest(q=q):
                self.assertRejectedBeforeAnyCall('/tenant?q=' + q, 400,
                                                 headers={'X-Tenant': 'acme'})
        for _, _, h in self.stub.requests:
            self.assertNotIn('x-evil', h)

    # -- HTTP/2 ---------------------------------------------------------------------------
    def curl(self, gd, path, *opts):
        r = run_curl(list(opts) + ['-o', '-', '-D', '/dev/stderr', '-w',
                                   '\n%{http_code} %{http_version}', gd.url(path)])
        out = r.stdout
        body, _, meta = out.rpartition(b'\n')
        code, version = meta.decode().split(' ') if r.returncode == 0 else ('000', '0')
        return r.returncode, code, version, body, r.stderr

    def test_http2_prior_knowledge_and_h2c_upgrade(self):
        self.stub.add('/users/5', json={'id': 5, 'name': 'five'})
        st, _, h1_body, _ = self.gd.get('/users/5/profile')
        self.assertEqual(st, 200, h1_body)
        rc, code, version, body, err = self.curl(self.gd, '/users/5/profile',
                                                 '--http2-prior-knowledge')
        self.assertEqual((rc, code, version), (0, '200', '2'), err)
        self.assertEqual(body, h1_body)
        self.assertIn(b'x-gatherd-complete: true', err.lower())
        rc, code, version, body, err = self.curl(self.gd, '/users/5/profile', '--http2')
        self.assertEqual((rc, code, version), (0, '200', '2'), err)
        self.assertEqual(body, h1_body)
        # gatherd's own errors over HTTP/2 too
        rc, code, version, body, err = self.curl(self.gd, '/nope', '--http2-prior-knowledge')
        self.assertEqual((rc, code, version), (0, '404', '2'), err)
        self.assertIn(b'"message"', body)

    def test_http2_off(self):
        for top in ({'http2': False}, {}):  # and off by default (README: Rapid Reset)
            gd = self.start_gatherd(routing_config(self.stub, **top))
            self.stub.add('/users/5', json={'id': 5})
            rc, code, version, body, err = self.curl(gd, '/users/5/profile',
                                                     '--http2-prior-knowledge')
            self.assertFalse(rc == 0 and code == '200' and version == '2',
                             'HTTP/2 by prior knowledge was served with "http2": false')
            # an Upgrade: h2c offer is ignored: the answer comes over HTTP/1.1
            rc, code, version, body, err = self.curl(gd, '/users/5/profile', '--http2')
            self.assertEqual((rc, code, version), (0, '200', '1.1'), err)
            self.assertEqual(body, b'{"user":{"id": 5}}')
            st, _, body, _ = gd.get('/users/5/profile')
            self.assertEqual((st, body), (200, b'{"user":{"id": 5}}'))
            self.assertAlive(gd)


if __name__ == '__main__':
    main()
