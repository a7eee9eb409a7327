#!/usr/bin/env python3
"""Answers compressed with gzip (compress), Cache-Control, ETag and 304 round trips."""

import gzip
import json
import os
import sys
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (GatherdTestCase, call, config, endpoint, main, run_curl)  # noqa: E402

# A profile-like document of ~6 KB: compresses well.
BIG = json.dumps({'posts': [{'id': i, 'title': 'post number %d' % i, 'body': 'lorem ipsum ' * 3}
                            for i in range(60)]}).encode()
SMALL = b'{"id":1}'
GZ = {'Accept-Encoding': 'gzip'}


class CompressTest(GatherdTestCase):

    def setUp(self):
        self.stub = self.start_stub()
        self.stub.add('/big', body=BIG)
        self.stub.add('/small', body=SMALL)
        self.stub.add('/fail', status=500)

    def start(self, top=None, **ep):
        eps = [endpoint('/big', {'x': call('s', '/big')}, **ep),
               endpoint('/small', {'x': call('s', '/small')}, **ep),
               endpoint('/partial', {'x': call('s', '/big'),
                                     'y': call('s', '/fail', optional=True)}, **ep),
               endpoint('/fail', {'x': call('s', '/fail')}, **ep),
               endpoint('/off', {'x': call('s', '/big')}, compress=False),
               endpoint('/nine', {'x': call('s', '/big')}, compress={'level': 9}),
               endpoint('/tiny', {'x': call('s', '/small')}, compress={'min_bytes': 0})]
        return self.start_gatherd(config(eps, {'s': self.stub}, http2=True, **(top or {})))

    def test_gzip_decodes_to_the_identity_bytes(self):
        gd = self.start()
        st, h, identity, _ = gd.get('/big')
        self.assertEqual(st, 200)
        self.assertIsNone(h.get('Content-Encoding'))
        self.assertEqual(identity, b'{"x":' + BIG + b'}')
        self.assertEqual(h.get('Vary'), 'Accept-Encoding')
        for ae in ('gzip', 'gzip, deflate, br', 'br;q=1, gzip;q=0.5', '*', 'x-gzip',
                   'identity;q=0.5, *;q=0.1'):
            st, h, body, _ = gd.get('/big', {'Accept-Encoding': ae})
            self.assertEqual(st, 200)
            self.assertEqual(h.get('Content-Encoding'), 'gzip', ae)
            self.assertEqual(h.get('Vary'), 'Accept-Encoding')
            self.assertEqual(int(h.get('Content-Length')), len(body))
            self.assertLess(len(body), len(identity) // 3)
            self.assertEqual(gzip.decompress(body), identity, ae)  # byte for byte
            self.assertEqual(h.get('Content-Type'), 'application/json')

    def test_refused_or_not_worth_it(self):
        gd = self.start()
        for ae in ('gzip;q=0', 'identity', 'deflate, br', '*;q=0', 'gzip;q=0, *', 'gzip;q=0.000',
                   ''):
            st, h, body, _ = gd.get('/big', {'Accept-Encoding': ae})
            self.assertEqual(st, 200)
            self.assertIsNone(h.get('Content-Encoding'), ae)
            self.assertEqual(body, b'{"x":' + BIG + b'}')
        # below min_bytes (1024 by default): as it is, but Vary all the same
        st, h, body, _ = gd.get('/small', GZ)
        self.assertIsNone(h.get('Content-Encoding'))
        self.assertEqual(h.get('Vary'), 'Accept-Encoding')
        self.assertEqual(body, b'{"x":' + SMALL + b'}')
        # min_bytes 0: even the small one
        st, h, body, _ = gd.get('/tiny', GZ)
        self.assertEqual(h.get('Content-Encoding'), 'gzip')
        self.assertEqual(gzip.decompress(body), b'{"x":' + SMALL + b'}')
        # turned off for an endpoint: no coding, no Vary
        st, h, body, _ = gd.get('/off', GZ)
        self.assertIsNone(h.get('Content-Encoding'))
        self.assertIsNone(h.get('Vary'))
        # HEAD: never compressed, the identity length
        st, h, body, _ = gd.request('HEAD', '/big', GZ)
        self.assertEqual(st, 200)
        self.assertEqual(body, b'')
        self.assertIsNone(h.get('Content-Encoding'))
        self.assertEqual(int(h.get('Content-Length')), len(BIG) + 6)

    def test_level_and_top_level_switch(self):
        gd = self.start()
        identity = b'{"x":' + BIG + b'}'

        def deflated_len(level):
            z = zlib.compressobj(level, zlib.DEFLATED, 16 + 12, 5)  # gatherd's window, memLevel
            return len(z.compress(identity) + z.flush())

        # one thread, one zlib stream: its level follows each endpoint's, back and forth
        for _ in range(2):
            one = gd.get('/big', GZ)[2]
            nine = gd.get('/nine', GZ)[2]
            self.assertEqual(gzip.decompress(one), identity)
            self.assertEqual(gzip.decompress(nine), identity)
            # the size Python's zlib gives at each level: the level was really applied
            self.assertEqual(len(one), deflated_len(1))
            self.assertEqual(len(nine), deflated_len(9))
        gd.close()
        gd = self.start(top={'compress': False})
        st, h, body, _ = gd.get('/big', GZ)
        self.assertIsNone(h.get('Content-Encoding'))
        self.assertIsNone(h.get('Vary'))
        self.assertEqual(gd.get('/nine', GZ)[1].get('Content-Encoding'), 'gzip')

    def test_errors_and_partial_answers_are_compressed_too(self):
        gd = self.start(compress={'min_bytes': 10})
        st, h, body, _ = gd.get('/partial', GZ)
        self.assertEqual(st, 200)
        self.assertEqual(h.get('X-Gatherd-Complete'), 'false')
        self.assertEqual(h.get('Content-Encoding'), 'gzip')
        self.assertEqual(json.loads(gzip.decompress(body))['y'], None)
        st, h, body, _ = gd.get('/fail', GZ)
        self.assertEqual(st, 502)
        self.assertEqual(h.get('Content-Encoding'), 'gzip')
        self.assertIn(b'"errors"', gzip.decompress(body))

    def test_curl_and_http2(self):
        gd = self.start()
        identity = gd.get('/big')[2]
        for extra in ([], ['--http2-prior-knowledge']):
            r = run_curl(extra + ['--compressed', '-D', '-', '-o', '-', gd.url('/big')])
            self.assertEqual(r.returncode, 0, r.stderr)
            head, _, body = r.stdout.partition(b'\r\n\r\n')
            self.assertIn(b'content-encoding: gzip', head.lower())
            self.assertEqual(body, identity)


class CachingTest(GatherdTestCase):

    def setUp(self):
        self.stub = self.start_stub()
        self.stub.add('/big', body=BIG)
        self.stub.add('/fail', status=500)
        self.stub.add('/slow', body=SMALL, delay_ms=2000)

    def start(self, **ep):
        eps = [endpoint('/big', {'x': call('s', '/big')}, **ep),
               endpoint('/partial', {'x': call('s', '/big'),
                                     'y': call('s', '/fail', optional=True)}, **ep),
               endpoint('/fail', {'x': call('s', '/fail')}, **ep),
               endpoint('/slow', {'x': call('s', '/slow')}, timeout_ms=200, **ep),
               endpoint('/plain', {'x': call('s', '/big')})]
        return self.start_gatherd(config(eps, {'s': self.stub}, http2=True))

    def test_cache_control(self):
        gd = self.start(cache_control='private, max-age=30')
        st, h, _, _ = gd.get('/big')
        self.assertEqual(st, 200)
        self.assertEqual(h.get('Cache-Control'), 'private, max-age=30')
        for path, status in (('/partial', 200), ('/fail', 502), ('/slow', 504), ('/nope', 404)):
            st, h, _, _ = gd.get(path)
            self.assertEqual(st, status, path)
            self.assertEqual(h.get_all('Cache-Control'), ['no-store'], path)
        st, h, _, _ = gd.request('POST', '/big')
        self.assertEqual(st, 405)
        self.assertEqual(h.get('Cache-Control'), 'no-store')
        # without cache_control: a complete answer says nothing, an error still no-store
        self.assertIsNone(gd.get('/plain')[1].get('Cache-Control'))

    def test_etag_and_304_round_trips(self):
        gd = self.start(etag=True, cache_control='private, max-age=30')
        st, h, body, _ = gd.get('/big')
        etag = h.get('ETag')
        self.assertRegex(etag, r'^"[0-9a-f]{32}"$')
        self.assertEqual(gd.get('/big')[1].get('ETag'), etag)  # deterministic
        st, hz, bodyz, _ = gd.get('/big', GZ)
        etag_gz = hz.get('ETag')
        self.assertEqual(etag_gz, etag[:-1] + '-gz"')  # another representation, another tag
        for inm in (etag, 'W/' + etag, '"nope", ' + etag, '"a", W/%s, "b"' % etag, '*'):
            st, h304, b304, _ = gd.get('/big', {'If-None-Match': inm})
            self.assertEqual(st, 304, inm)
            self.assertEqual(b304, b'')
            self.assertIsNone(h304.get('Content-Length'))
            self.assertIsNone(h304.get('Content-Encoding'))
            self.assertEqual(h304.get('ETag'), etag)
            self.assertEqual(h304.get('Cache-Control'), 'private, max-age=30')
            self.assertEqual(h304.get('Vary'), 'Accept-Encoding')
        # the gzip copy is revalidated by its own tag, not by the identity one
        st, h, b, _ = gd.get('/big', dict(GZ, **{'If-None-Match': etag_gz}))
        self.assertEqual((st, b, h.get('ETag')), (304, b'', etag_gz))
        st, h, b, _ = gd.get('/big', dict(GZ, **{'If-None-Match': etag}))
        self.assertEqual(st, 200)
        self.assertEqual(gzip.decompress(b), body)
        self.assertEqual(gd.get('/big', {'If-None-Match': etag_gz})[0], 200)
        # HEAD too; a mismatch or a malformed list gives the whole answer
        self.assertEqual(gd.request('HEAD', '/big', {'If-None-Match': etag})[0], 304)
        for inm in ('"other"', etag[1:-1], 'w/' + etag, ''):
            st, h, b, _ = gd.get('/big', {'If-None-Match': inm})
            self.assertEqual((st, b), (200, body), inm)
        # the same connection goes on after a 304 (no body was expected, none was sent)
        c = gd.connection()
        try:
            for _ in range(3):
                st, _, b, _ = gd.request('GET', '/big', {'If-None-Match': etag}, conn=c)
                self.assertEqual((st, b), (304, b''))
            self.assertEqual(gd.request('GET', '/big', conn=c)[0], 200)
        finally:
            c.close()
        # when the upstream's answer changes, so does the tag: the old one gets a 200
        self.stub.add('/big', body=BIG.replace(b'post number 1', b'post number X'))
        st, h, b, _ = gd.get('/big', {'If-None-Match': etag})
        self.assertEqual(st, 200)
        self.assertNotEqual(h.get('ETag'), etag)
        # no ETag (and no 304) on incomplete or failed answers
        for path in ('/partial', '/fail'):
            st, h, _, _ = gd.get(path, {'If-None-Match': '*'})
            self.assertNotEqual(st, 304)
            self.assertIsNone(h.get('ETag'), path)

    def test_curl_revalidates_over_http2(self):
        gd = self.start(etag=True)
        etag = gd.get('/big')[1].get('ETag')
        r = run_curl(['--http2-prior-knowledge', '-o', '/dev/null', '-w', '%{http_code}',
                      '-H', 'If-None-Match: ' + etag, gd.url('/big')])
        self.assertEqual(r.stdout, b'304', r.stderr)


if __name__ == '__main__':
    main()
