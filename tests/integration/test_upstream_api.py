#!/usr/bin/env python3
"""A real third-party API, as the trial that opened the real-upstreams issue used it: HTTPS (a
TLS stub with a CA of the test's own), an API key from the environment sent on every call,
client headers forwarded by allow-list, a virtual Host, a 404 that is a null, a 429 that gives
the client a 503, and a POST that forwards a JSON body. Also: the secret never shows in a log,
/metrics, an answer or `gatherd -t`; failures of kind status carry the upstream status in the
error entry, the metrics and the access line; config mistakes name their place."""

import json
import os
import ssl
import sys
import tempfile
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (GatherdTestCase, StubUpstream, call, config, endpoint,  # noqa: E402
                     loads_ordered, main, run_gatherd, upstream)
from test_tls import Certs  # noqa: E402

SECRET = 'sk-live-7f3a9c1e5b2d4f60'


def admin_get(gd, path):
    port = int(gd.cfg['admin_listen'].rsplit(':', 1)[1])
    with urllib.request.urlopen('http://127.0.0.1:%d%s' % (port, path), timeout=5) as r:
        return r.read().decode()


class UpstreamApiTest(GatherdTestCase):

    @classmethod
    def setUpClass(cls):
        cls.certs = Certs()
        os.environ['GD_TEST_API_KEY'] = SECRET

    @classmethod
    def tearDownClass(cls):
        os.environ.pop('GD_TEST_API_KEY', None)
        cls.certs.remove()

    def start_api(self):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.certs.path('server.pem'), self.certs.path('server.key'))
        api = StubUpstream(ssl_context=ctx)
        self.addCleanup(api.stop)
        api.add('/v1/users/7', json={'id': 7, 'name': 'Ada'})
        api.add('/v1/profiles/7', status=404, json={'error': 'no profile'})
        api.add('/v1/quota', status=429, json={'error': 'slow down'}, headers={'Retry-After': '1'})
        api.add('/v1/expired', status=401, json={'error': 'bad key'})
        api.add('/v1/orders', status=201, json={'order': 'o-1'})
        return api

    def api_upstream(self, api, **kw):
        d = {'tls': {'ca_file': self.certs.path('ca.pem')},
             'headers': {'authorization': 'Bearer {env.GD_TEST_API_KEY}',
                         'x-client': 'gatherd-demo'},
             'forward_headers': ['accept-language'],
             'host': 'api.example.test',
             'null_on': [404],
             'status_map': {'401': 502, '403': 502, '429': 503}}
        d.update(kw)
        return upstream(api.url + '/v1', **d)

    def config(self, api, **up):
        """A whole config for `gatherd -t` (it needs a listen address)."""
        cfg = config(self.endpoints(), {'api': self.api_upstream(api, **up)})
        cfg['listen'] = ['127.0.0.1:1']
        return cfg

    def endpoints(self):
        return [
            endpoint('/users/{id}', {
                'user': call('api', '/users/{id}'),
                'profile': call('api', '/profiles/{id}'),
            }, params={'id': 'int'}),
            endpoint('/quota', {'user': call('api', '/users/7'), 'quota': call('api', '/quota')}),
            endpoint('/expired', {'who': call('api', '/expired')}),
            endpoint('/own-header', {'user': call('api', '/users/7',
                                                  headers={'X-Client': 'call-wins'})}),
            endpoint('/orders', {'order': call('api', '/orders', method='POST', body='{body}')},
                     method='POST'),
        ]

    def start(self, api, **top):
        return self.start_gatherd(config(self.endpoints(), {'api': self.api_upstream(api)},
                                         log={'level': 'info'}, **top))

    def test_the_trial_job_runs_on_gatherd_alone(self):
        api = self.start_api()
        gd = self.start(api)

        st, hdrs, body, _ = gd.request('GET', '/users/7', headers={'Accept-Language': 'fr-CH',
                                                               'Cookie': 'session=browser'})
        self.assertEqual(st, 200, body)
        self.assertEqual(hdrs.get('x-gatherd-complete'), 'true')
        doc = loads_ordered(body)
        self.assertEqual(doc['user'], {'id': 7, 'name': 'Ada'})
        self.assertIsNone(doc['profile'])  # 404 is a null, and a success
        self.assertNotIn('errors', doc)

        reqs = api.requests_for('/v1/users/7')
        self.assertEqual(len(reqs), 1)
        _, _, h = reqs[0]
        self.assertEqual(h['authorization'], 'Bearer ' + SECRET)  # from the environment
        self.assertEqual(h['x-client'], 'gatherd-demo')
        self.assertEqual(h['accept-language'], 'fr-CH')  # on the allow-list
        self.assertNotIn('cookie', h)  # not on it
        self.assertEqual(h['host'], 'api.example.test')  # still verified as 127.0.0.1
        self.assertEqual(api.handshakes_failed, 0)

        # 429 from the API: the client gets a 503, and the error entry the upstream's status
        st, hdrs, body, _ = gd.request('GET', '/quota')
        self.assertEqual(st, 503, body)
        doc = json.loads(body)
        self.assertEqual(doc['user']['id'], 7)
        self.assertIsNone(doc['quota'])
        err = doc['errors']['quota']
        self.assertErrorObject(err, 'status', status=429)

        # 401 caused by the gateway's key: a 502, never a 401 that logs a browser user out
        st, _, body, _ = gd.request('GET', '/expired')
        self.assertEqual(st, 502, body)
        self.assertEqual(json.loads(body)['errors']['who']['status'], 401)

        # a call's own header of the same name wins over the upstream's
        st, _, body, _ = gd.request('GET', '/own-header')
        self.assertEqual(st, 200, body)
        h = api.requests[-1][2]
        self.assertEqual(h['x-client'], 'call-wins')
        self.assertEqual(h['authorization'], 'Bearer ' + SECRET)

        # a POST forwards the client's JSON body and its Content-Type unchanged
        sent = b'{"sku":"A-1","qty":2,"note":"caf\xc3\xa9"}'
        st, _, body, _ = gd.request('POST', '/orders', body=sent,
                                 headers={'Content-Type': 'application/json; charset=utf-8'})
        self.assertEqual(st, 200, body)
        self.assertEqual(json.loads(body)['order'], {'order': 'o-1'})
        method, _, h = api.requests_for('/v1/orders')[-1]
        self.assertEqual(method, 'POST')
        self.assertEqual(api.bodies[-1], sent)
        self.assertEqual(h['content-type'], 'application/json; charset=utf-8')

        # the failure of kind status is counted with its status
        metrics = admin_get(gd, '/metrics')
        self.assertRegex(metrics, r'gatherd_call_failures_total\{[^}]*call="quota"[^}]*'
                                  r'kind="status",status="429"\} 1')
        self.assertNotIn(SECRET, metrics)

        gd.terminate()
        log = gd.log()
        self.assertRegex(log, r'quota:status:429:\d+')  # the access line
        self.assertRegex(log, r'profile:ok:404:\d+')
        self.assertNotIn(SECRET, log)

    def test_a_request_the_socket_takes_in_parts_goes_out_whole(self):
        # gatherd send()s a request (TLS records over https://) directly and queues what the
        # socket did not take through libh2o. Loopback's buffers take everything, so a send()
        # shim takes at most 1000 bytes per call here, over TLS and plain HTTP alike.
        so = os.environ.get('GD_SHORTSEND_SO')
        if not so or not os.path.exists(so):
            self.skipTest('the send() shim is not built (GD_SHORTSEND_SO)')
        sent = json.dumps({'items': ['x%06d' % i for i in range(5000)]}).encode()
        for scheme in ('https', 'http'):
            with self.subTest(scheme=scheme):
                api = self.start_api() if scheme == 'https' else self.start_stub()
                if scheme == 'http':
                    api.add('/v1/orders', status=201, json={'order': 'o-1'})
                up = (self.api_upstream(api) if scheme == 'https'
                      else upstream(api.url + '/v1'))
                gd = self.start_gatherd(
                    config(self.endpoints(), {'api': up}),
                    env={'LD_PRELOAD': so, 'GD_SHORTSEND_MAX': '1000'})
                for _ in range(3):  # and the connection stays usable afterwards
                    st, _, body, _ = gd.request('POST', '/orders', body=sent,
                                                headers={'Content-Type': 'application/json'})
                    self.assertEqual(st, 200, body)
                    self.assertEqual(api.bodies[-1], sent)
                self.assertEqual(api.connections_accepted, 1)
                gd.terminate()

    def test_secret_values_never_show(self):
        api = self.start_api()
        # a URL, an upstream header and conninfo-like mistakes: every message quotes the config
        # as written, never the value of an {env.NAME}
        cfg = self.config(api)
        cfg['upstreams']['api']['url'] = 'ftp{env.GD_TEST_API_KEY}://x'
        with tempfile.NamedTemporaryFile('w', suffix='.json', delete=False) as f:
            json.dump(cfg, f)
        self.addCleanup(os.unlink, f.name)
        r = run_gatherd(['-t', '-c', f.name])
        self.assertNotEqual(r.returncode, 0)
        self.assertIn('upstreams.api.url', r.stderr + r.stdout)
        self.assertNotIn(SECRET, r.stderr + r.stdout)

        # a header value with a control character after substitution
        os.environ['GD_TEST_BAD_HEADER'] = SECRET + '\r\nx-injected: 1'
        self.addCleanup(os.environ.pop, 'GD_TEST_BAD_HEADER', None)
        cfg = self.config(api, headers={'authorization': '{env.GD_TEST_BAD_HEADER}'})
        with open(f.name, 'w') as g:
            json.dump(cfg, g)
        r = run_gatherd(['-t', '-c', f.name])
        self.assertNotEqual(r.returncode, 0)
        self.assertIn('upstreams.api.headers.authorization', r.stderr + r.stdout)
        self.assertNotIn(SECRET, r.stderr + r.stdout)

        # a good config: -t prints nothing secret either
        cfg = self.config(api)
        with open(f.name, 'w') as g:
            json.dump(cfg, g)
        r = run_gatherd(['-t', '-c', f.name])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn(SECRET, r.stderr + r.stdout)

        # an upstream that fails at connect: the error answer and the log show no secret
        api.stop()
        gd = self.start(api)
        st, _, body, _ = gd.request('GET', '/users/7')
        self.assertEqual(st, 502, body)
        self.assertNotIn(SECRET, body.decode() if isinstance(body, bytes) else body)
        gd.terminate()
        self.assertNotIn(SECRET, gd.log())

    def test_config_mistakes_name_their_place(self):
        api = self.start_api()
        cases = [
            ({'headers': {'authorization': 'Bearer {env.GD_TEST_NOT_SET}'}},
             'upstreams.api.headers.authorization', 'GD_TEST_NOT_SET'),
            ({'forward_headers': ['Connection']}, 'upstreams.api.forward_headers[0]',
             'hop-by-hop'),
            ({'forward_headers': ['transfer-encoding']}, 'upstreams.api.forward_headers[0]',
             'hop-by-hop'),
            ({'null_on': [200]}, 'upstreams.api.null_on[0]', '300 and 599'),
            ({'status_map': {'429': 200}}, 'upstreams.api.status_map["429"]', '400'),
            ({'status_map': {'4xx': 503}}, 'upstreams.api.status_map["4xx"]', 'status'),
            ({'host': 'a b'}, 'upstreams.api.host', 'host'),
        ]
        path = tempfile.mktemp(suffix='.json')
        self.addCleanup(lambda: os.path.exists(path) and os.unlink(path))
        for extra, place, words in cases:
            with self.subTest(extra=extra):
                cfg = self.config(api, **extra)
                with open(path, 'w') as f:
                    json.dump(cfg, f)
                r = run_gatherd(['-t', '-c', path])
                out = r.stderr + r.stdout
                self.assertNotEqual(r.returncode, 0, out)
                self.assertIn(place, out)
                self.assertIn(words, out)


if __name__ == '__main__':
    main()
