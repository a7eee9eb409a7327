#!/usr/bin/env python3
"""Authentication: API keys from a file or the environment, 401s, per-endpoint overrides,
`gatherd -t` on bad key files, keys never in the log."""

import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (GatherdTestCase, call, config, endpoint, main,  # noqa: E402
                     run_gatherd, wait_until)

KEY_A = 'k-alpha-0123456789abcdef'
KEY_B = 'k-beta-fedcba9876543210'
ENV_KEY = 'k-env-secret-42'


class ApiKeyTest(GatherdTestCase):

    def setUp(self):
        self.stub = self.start_stub()
        self.stub.add('/u', json={'id': 1})
        self.tmp = tempfile.mkdtemp(prefix='gatherd-auth-')
        self.keys_file = os.path.join(self.tmp, 'keys')
        with open(self.keys_file, 'w') as f:
            f.write('# API keys, one a line\n%s\r\n\n  %s  \n' % (KEY_A, KEY_B))

    def start(self, **top):
        eps = [endpoint('/users/{id}', {'u': call('s', '/u')}, params={'id': 'int'}),
               endpoint('/open', {'u': call('s', '/u')}, auth=False),
               endpoint('/env', {'u': call('s', '/u')},
                        auth={'api_keys': {'header': 'X-Env-Key',
                                           'keys': '{env.GD_TEST_KEYS}'}})]
        top.setdefault('auth', {'api_keys': {'keys_file': self.keys_file}})
        return self.start_gatherd(config(eps, {'s': self.stub}, **top),
                                  env={'GD_TEST_KEYS': 'other-key, %s' % ENV_KEY})

    def test_keys(self):
        gd = self.start()
        for key in (KEY_A, KEY_B):
            st, _, body, _ = gd.get('/users/1', {'x-api-key': key})
            self.assertEqual(st, 200, body)
            self.assertEqual(json.loads(body), {'u': {'id': 1}})
        # missing, empty, wrong, a prefix, a key with a suffix, the comment line, two fields
        for headers, msg in (({}, 'an API key is required'),
                             ({'x-api-key': ''}, 'an API key is required'),
                             ({'x-api-key': 'nope'}, 'the API key is not valid'),
                             ({'x-api-key': KEY_A[:-1]}, 'the API key is not valid'),
                             ({'x-api-key': KEY_A + 'x'}, 'the API key is not valid'),
                             ({'x-api-key': '#'}, 'the API key is not valid'),
                             ({'x-env-key': ENV_KEY}, 'an API key is required')):
            st, h, body, _ = gd.get('/users/1', headers)
            doc = self.assertJsonError(st, h, body, 401, 'unauthorized')
            self.assertEqual(doc['message'], msg)
            self.assertEqual(h.get('WWW-Authenticate'), 'ApiKey realm="gatherd", header="x-api-key"')
            self.assertEqual(h.get('Cache-Control'), 'no-store')
        out = gd.raw(('GET /users/1 HTTP/1.1\r\nHost: x\r\nx-api-key: %s\r\n'
                      'x-api-key: %s\r\nConnection: close\r\n\r\n'
                      % (KEY_A, KEY_A)).encode(), until_close=True)
        self.assertTrue(out.startswith(b'HTTP/1.1 401'), out)
        # a refused request starts no call; parameters are not checked before the key
        self.assertEqual(len(self.stub.requests_for('/u')), 2)
        self.assertEqual(gd.get('/users/x')[0], 401)
        self.assertEqual(gd.get('/users/x', {'x-api-key': KEY_A})[0], 400)
        # "auth": false opens an endpoint; an endpoint's own auth replaces the top level's
        self.assertEqual(gd.get('/open')[0], 200)
        self.assertEqual(gd.get('/env', {'x-env-key': ENV_KEY})[0], 200)
        self.assertEqual(gd.get('/env', {'x-env-key': 'other-key'})[0], 200)
        st, h, _, _ = gd.get('/env', {'x-api-key': KEY_A})
        self.assertEqual(st, 401)
        self.assertEqual(h.get('WWW-Authenticate'), 'ApiKey realm="gatherd", header="x-env-key"')
        # unknown paths are 404 as before; the admin listener stays outside auth
        self.assertEqual(gd.get('/nothing')[0], 404)
        admin = gd.cfg['admin_listen']
        import urllib.request
        for p in ('/healthz', '/metrics'):
            with urllib.request.urlopen('http://%s%s' % (admin, p), timeout=5) as r:
                self.assertEqual(r.status, 200)
        self.assertTrue(wait_until(lambda: 'status=401' in gd.log()), gd.log())  # written after
        log = gd.log()
        for secret in (KEY_A, KEY_B, ENV_KEY, 'other-key'):
            self.assertNotIn(secret, log)

    def test_cors_preflight_allows_the_auth_header(self):
        """With the default cors.headers, the header an endpoint's auth reads may be sent by a
        page: the API key header, or Authorization for bearer tokens."""
        secret = os.path.join(self.tmp, 'secret')
        with open(secret, 'w') as f:
            f.write('0123456789abcdef0123456789abcdef\n')
        eps = [endpoint('/k', {'u': call('s', '/u')},
                        auth={'api_keys': {'keys_file': self.keys_file}}),
               endpoint('/j', {'u': call('s', '/u')},
                        auth={'jwt': {'algorithms': ['HS256'], 'key_file': secret}}),
               endpoint('/open', {'u': call('s', '/u')})]
        gd = self.start_gatherd(config(eps, {'s': self.stub},
                                       cors={'origins': ['https://app.example.com']}))

        def preflight(path, headers):
            return gd.request('OPTIONS', path, {'Origin': 'https://app.example.com',
                                                'Access-Control-Request-Method': 'GET',
                                                'Access-Control-Request-Headers': headers})
        st, h, _, _ = preflight('/k', 'x-api-key')
        self.assertEqual(st, 204)
        self.assertEqual(h.get('Access-Control-Allow-Headers'),
                         'content-type, x-request-id, traceparent, x-api-key')
        st, h, _, _ = preflight('/j', 'authorization')
        self.assertEqual(st, 204)
        self.assertIn('authorization', h.get('Access-Control-Allow-Headers'))
        self.assertEqual(preflight('/open', 'x-api-key')[0], 403)
        self.assertEqual(preflight('/k', 'authorization')[0], 403)

    def test_check_config(self):
        def check(auth, env=None):
            path = os.path.join(self.tmp, 'c.json')
            with open(path, 'w') as f:
                json.dump(config([endpoint('/a', {'u': call('s', '/u')})],
                                 {'s': 'http://127.0.0.1:1'}, auth=auth,
                                 listen=['127.0.0.1:1']), f)
            old = dict(os.environ)
            os.environ.update(env or {})
            try:
                return run_gatherd(['-t', '-c', path])
            finally:
                os.environ.clear()
                os.environ.update(old)

        r = check({'api_keys': {'keys_file': self.keys_file}})
        self.assertEqual(r.returncode, 0, r.stderr)
        empty = os.path.join(self.tmp, 'empty')
        with open(empty, 'w') as f:
            f.write('# nothing\n\n')
        bad = os.path.join(self.tmp, 'bad')
        with open(bad, 'w') as f:
            f.write('good-key\nsecret with space\n')
        for auth, env, want in (
                ({'api_keys': {'keys_file': os.path.join(self.tmp, 'missing')}}, None,
                 'auth.api_keys.keys_file: cannot open'),
                ({'api_keys': {'keys_file': empty}}, None, 'holds no key'),
                ({'api_keys': {'keys_file': bad}}, None,
                 'key 2 has a byte that is not printable ASCII'),
                ({'api_keys': {'keys': 'inline-secret'}}, None,
                 'auth.api_keys.keys: must be one {env.NAME} reference'),
                ({'api_keys': {'keys': '{env.GD_NOT_SET_X}'}}, None, 'GD_NOT_SET_X'),
                ({'api_keys': {}}, None, 'needs exactly one of'),
                ({}, None, 'auth: needs exactly one of "api_keys" and "jwt"')):
            r = check(auth, env)
            self.assertEqual(r.returncode, 1, (auth, r.stderr))
            self.assertIn(want, r.stderr)
            self.assertNotIn('secret with space', r.stderr)
            self.assertNotIn('inline-secret', r.stderr.replace('"inline-secret"', ''))


if __name__ == '__main__':
    main()
