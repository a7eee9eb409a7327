#!/usr/bin/env python3
"""CORS at the HTTP level: preflights, actual answers (errors included), config errors."""

import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (GatherdTestCase, call, config, endpoint, main, run_curl,  # noqa: E402
                     run_gatherd, upstream)

APP = 'https://app.example.com'
EXPOSED_BY_DEFAULT = 'X-Gatherd-Complete, X-Request-Id, ETag, Retry-After'


def preflight(gd, path, origin=APP, method='GET', headers=None):
    h = {'Origin': origin, 'Access-Control-Request-Method': method}
    if headers is not None:
        h['Access-Control-Request-Headers'] = headers
    return gd.request('OPTIONS', path, h)


class CorsTest(GatherdTestCase):

    def setUp(self):
        self.stub = self.start_stub()
        self.stub.add('/u', json={'id': 1})
        self.stub.add('/fail', status=500)
        self.stub.add('/slow', json={}, delay_ms=2000)

    def start(self, cors, **ep_extra):
        eps = [endpoint('/users/{id}', {'u': call('s', '/u')}),
               endpoint('/users/{id}', {'u': call('s', '/u', method='POST')}, method='POST'),
               endpoint('/fail', {'f': call('s', '/fail')}),
               endpoint('/slow', {'f': call('s', '/slow')}, timeout_ms=100),
               endpoint('/own', {'u': call('s', '/u')},
                        cors={'origins': ['http://127.0.0.1:1234'], 'methods': ['GET', 'PUT'],
                              'headers': ['X-Tenant'], 'expose_headers': ['X-Request-Id'],
                              'credentials': True, 'max_age_s': 5}),
               endpoint('/own', {'u': call('s', '/u', method='POST')}, method='POST',
                        cors={'origins': ['http://127.0.0.1:1234'], 'methods': ['GET', 'PUT']}),
               endpoint('/none', {'u': call('s', '/u')}, cors=False),
               endpoint('/tenant', {'u': call('s', '/u', headers={'X-Tenant': '{header.x-tenant}'})},
                        params={'header.X-Tenant': {'pattern': '[a-z]+', 'required': True}})]
        return self.start_gatherd(config(eps, {'s': self.stub}, cors=cors, http2=True))

    def test_preflight_allowed(self):
        gd = self.start({'origins': [APP, 'http://localhost:3000']})
        st, h, body, _ = preflight(gd, '/users/1')
        self.assertEqual(st, 204)
        self.assertEqual(body, b'')
        self.assertIsNone(h.get('Content-Length'))
        self.assertIsNone(h.get('Content-Type'))
        self.assertEqual(h.get('Access-Control-Allow-Origin'), APP)
        self.assertEqual(h.get('Access-Control-Allow-Methods'), 'GET, HEAD')
        self.assertEqual(h.get('Access-Control-Allow-Headers'),
                         'content-type, x-request-id, traceparent')
        self.assertEqual(h.get('Access-Control-Max-Age'), '600')
        self.assertIsNone(h.get('Access-Control-Allow-Credentials'))
        self.assertEqual(h.get('Vary'), 'Origin')
        # the other origin; a POST endpoint on the same path, a JSON body's content-type asked
        st, h, _, _ = preflight(gd, '/users/1', 'http://localhost:3000', 'POST',
                                'content-type,x-request-id')
        self.assertEqual(st, 204)
        self.assertEqual(h.get('Access-Control-Allow-Origin'), 'http://localhost:3000')
        self.assertEqual(h.get('Access-Control-Allow-Methods'), 'POST')
        # origins compare case-insensitively (browsers send them in lower case anyway)
        self.assertEqual(preflight(gd, '/users/1', 'HTTPS://APP.example.com')[0], 204)

    def test_preflight_refused(self):
        gd = self.start({'origins': [APP]})
        for origin, method, hdrs, why in (
                ('https://evil.example', 'GET', None, 'origin'),
                (APP + ':444', 'GET', None, 'origin'),
                ('http://app.example.com', 'GET', None, 'origin'),
                ('null', 'GET', None, 'origin'),
                (APP, 'GET', 'authorization', 'header authorization'),
                (APP, 'GET', 'content-type, x-secret', 'header x-secret')):
            st, h, body, _ = preflight(gd, '/users/1', origin, method, hdrs)
            doc = self.assertJsonError(st, h, body, 403, 'cors_rejected')
            self.assertIn(why, doc['message'])
            self.assertIsNone(h.get('Access-Control-Allow-Origin'), origin)
            self.assertIsNone(h.get('Access-Control-Allow-Methods'))
            self.assertEqual(h.get('Vary'), 'Origin')
        # a method no endpoint of the path has: the OPTIONS request it is, 405
        st, h, body, _ = preflight(gd, '/users/1', method='DELETE')
        self.assertJsonError(st, h, body, 405)
        self.assertIsNone(h.get('Access-Control-Allow-Methods'))
        # no endpoint at all: 404 (carrying the top level's CORS headers, so a page can read it)
        st, h, body, _ = preflight(gd, '/nothing')
        self.assertJsonError(st, h, body, 404, 'not_found')
        # an endpoint with "cors": false: no preflight, the OPTIONS request it is (a 405 of a
        # path, which carries the top level's headers like a 404: no endpoint is chosen)
        st, h, body, _ = preflight(gd, '/none')
        self.assertJsonError(st, h, body, 405)
        self.assertIsNone(h.get('Access-Control-Allow-Methods'))
        # OPTIONS without Access-Control-Request-Method is no preflight
        st, h, body, _ = gd.request('OPTIONS', '/users/1', {'Origin': APP})
        self.assertJsonError(st, h, body, 405)

    def test_actual_answers(self):
        gd = self.start({'origins': [APP]})
        st, h, body, _ = gd.get('/users/1', {'Origin': APP})
        self.assertEqual(st, 200)
        self.assertEqual(h.get('Access-Control-Allow-Origin'), APP)
        self.assertEqual(h.get('Access-Control-Expose-Headers'), EXPOSED_BY_DEFAULT)
        self.assertEqual(h.get_all('Vary'), ['Origin', 'Accept-Encoding'])
        # errors of every kind carry it too, so a page can read them
        for path, status, extra in (('/fail', 502, {}), ('/slow', 504, {}),
                                    ('/nothing', 404, {}), ('/users/x%zz', 400, {}),
                                    ('/users/1', 405, {'method': 'PUT'})):
            method = extra.get('method', 'GET')
            st, h, body, _ = gd.request(method, path, {'Origin': APP})
            self.assertEqual(st, status, path)
            self.assertEqual(h.get('Access-Control-Allow-Origin'), APP, path)
            self.assertEqual(h.get('Access-Control-Expose-Headers'), EXPOSED_BY_DEFAULT)
        # another origin, or none: no Allow-Origin, still Vary: Origin (a cache keys on it)
        for hdrs in ({'Origin': 'https://evil.example'}, {}):
            st, h, body, _ = gd.get('/users/1', hdrs)
            self.assertEqual(st, 200)
            self.assertIsNone(h.get('Access-Control-Allow-Origin'))
            self.assertIsNone(h.get('Access-Control-Expose-Headers'))
            self.assertIn('Origin', h.get_all('Vary'))

    def test_endpoint_own_cors_and_credentials(self):
        gd = self.start({'origins': [APP]})
        own = 'http://127.0.0.1:1234'
        st, h, _, _ = preflight(gd, '/own', own, 'GET', 'x-tenant')
        self.assertEqual(st, 204)
        self.assertEqual(h.get('Access-Control-Allow-Origin'), own)
        self.assertEqual(h.get('Access-Control-Allow-Credentials'), 'true')
        self.assertEqual(h.get('Access-Control-Allow-Methods'), 'GET, PUT')
        self.assertEqual(h.get('Access-Control-Allow-Headers'), 'x-tenant')
        self.assertEqual(h.get('Access-Control-Max-Age'), '5')
        self.assertEqual(preflight(gd, '/own', own, 'POST')[0], 403)  # not in its methods
        self.assertEqual(preflight(gd, '/own', own, 'PUT')[0], 405)  # no PUT endpoint
        self.assertEqual(preflight(gd, '/own', own, 'GET', 'content-type')[0], 403)
        self.assertEqual(preflight(gd, '/own', APP)[0], 403)  # not the top level's origins
        st, h, _, _ = gd.get('/own', {'Origin': own})
        self.assertEqual(h.get('Access-Control-Allow-Origin'), own)
        self.assertEqual(h.get('Access-Control-Allow-Credentials'), 'true')
        self.assertEqual(h.get('Access-Control-Expose-Headers'), 'X-Request-Id')
        st, h, _, _ = gd.get('/none', {'Origin': APP})
        self.assertIsNone(h.get('Access-Control-Allow-Origin'))
        self.assertEqual(h.get_all('Vary'), ['Accept-Encoding'])  # no CORS: no Vary: Origin

    def test_header_parameters_count_with_the_default_headers(self):
        gd = self.start({'origins': [APP]})
        st, h, _, _ = preflight(gd, '/tenant', headers='x-tenant,content-type')
        self.assertEqual(st, 204)
        self.assertEqual(h.get('Access-Control-Allow-Headers'),
                         'content-type, x-request-id, traceparent, x-tenant')
        self.assertEqual(preflight(gd, '/users/1', headers='x-tenant')[0], 403)  # not its param
        st, h, body, _ = gd.get('/tenant', {'Origin': APP, 'X-Tenant': 'acme'})
        self.assertEqual(st, 200, body)
        self.assertEqual(h.get('Access-Control-Allow-Origin'), APP)

    def test_any_origin(self):
        gd = self.start({'origins': ['*'], 'expose_headers': []})
        st, h, _, _ = preflight(gd, '/users/1', 'https://anyone.example')
        self.assertEqual(st, 204)
        self.assertEqual(h.get('Access-Control-Allow-Origin'), '*')
        self.assertNotIn('Origin', h.get_all('Vary') or [])
        st, h, _, _ = gd.get('/users/1', {'Origin': 'http://x.example'})
        self.assertEqual(h.get('Access-Control-Allow-Origin'), '*')
        self.assertIsNone(h.get('Access-Control-Expose-Headers'))

    def test_curl_over_http2(self):
        gd = self.start({'origins': [APP]})
        r = run_curl(['--http2-prior-knowledge', '-X', 'OPTIONS', '-D', '-', '-o', '/dev/null',
                      '-H', 'Origin: ' + APP, '-H', 'Access-Control-Request-Method: GET',
                      gd.url('/users/1')])
        head = r.stdout.decode().lower()
        self.assertIn('http/2 204', head)
        self.assertIn('access-control-allow-origin: ' + APP, head)

    def test_config_errors(self):
        cases = [
            ({'origins': ['*'], 'credentials': True},
             'cors.origins[0]: "*" cannot be used with "credentials": true'),
            ({'origins': ['https://a.example/app']}, 'cors.origins[0]: must be an origin like'),
            ({'origins': []}, 'cors.origins: must not be empty'),
            ({'origin': ['https://a.example']}, 'cors.origin: unknown key'),
        ]
        for cors, want in cases:
            cfg = config([endpoint('/a', {'u': call('s', '/u')})],
                         {'s': upstream('http://127.0.0.1:1')}, cors=cors)
            cfg['listen'] = ['127.0.0.1:1']
            with tempfile.NamedTemporaryFile('w', suffix='.json', delete=False) as f:
                json.dump(cfg, f)
            self.addCleanup(os.unlink, f.name)
            r = run_gatherd(['-t', '-c', f.name])
            self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
            self.assertIn('%s: %s' % (f.name, want), r.stderr + r.stdout)
        cfg = config([endpoint('/a', {'u': call('s', '/u')},
                               cors={'origins': ['*'], 'credentials': True})],
                     {'s': upstream('http://127.0.0.1:1')})
        cfg['listen'] = ['127.0.0.1:1']
        with tempfile.NamedTemporaryFile('w', suffix='.json', delete=False) as f:
            json.dump(cfg, f)
        self.addCleanup(os.unlink, f.name)
        r = run_gatherd(['-t', '-c', f.name])
        self.assertEqual(r.returncode, 1)
        self.assertIn('endpoints[0].cors.origins[0]: "*" cannot be used', r.stderr + r.stdout)


if __name__ == '__main__':
    main()
