#!/usr/bin/env python3
"""Gzip-coded answers: asked for by default, decoded, bounded by max_body_bytes when decoded."""

import gzip
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (GatherdTestCase, call, config, endpoint, main, upstream,  # noqa: E402
                     loads_ordered)


DOC = b'{"user": {"id": 42, "name": "Zo\xc3\xab"}, "tags": ["a", "b"]}'


class GzipTest(GatherdTestCase):

    def setUp(self):
        self.stub = self.start_stub()
        self.stub.add('/gz', body=gzip.compress(DOC), headers={'Content-Encoding': 'gzip'})
        self.stub.add('/gz-chunked', body=gzip.compress(DOC), headers={'Content-Encoding': 'gzip'},
                      chunked=True, chunk_size=7)
        # 16 MiB of spaces inside a JSON string: about 16 KiB coded
        self.stub.add('/bomb', body=gzip.compress(b'"' + b' ' * (16 << 20) + b'"'),
                      headers={'Content-Encoding': 'gzip'})
        self.stub.add('/broken', body=b'\x1f\x8b\x08\x00garbage',
                      headers={'Content-Encoding': 'gzip'})
        self.stub.add('/br', body=b'{}', headers={'Content-Encoding': 'br'})
        self.stub.add('/plain', body=DOC)

    def start(self, **up):
        names = ('gz', 'gz-chunked', 'bomb', 'broken', 'br', 'plain')
        eps = [endpoint('/' + n, {'x': call('s', '/' + n)}) for n in names]
        return self.start_gatherd(config(eps, {'s': upstream(self.stub, **up)}))

    def test_decoded_answers(self):
        gd = self.start(max_body_bytes=1 << 20)
        for path in ('/gz', '/gz-chunked', '/plain'):
            st, _, body, _ = gd.get(path)
            self.assertEqual(st, 200, body)
            self.assertEqual(body, b'{"x":' + DOC + b'}', path)
        sent = [h for (_, target, h) in self.stub.requests if target == '/gz']
        self.assertEqual(sent[0].get('accept-encoding'), 'gzip')

    def test_a_bomb_is_too_large_and_bad_codings_fail_the_call(self):
        gd = self.start(max_body_bytes=1 << 20)
        for path, kind in (('/bomb', 'too_large'), ('/broken', 'io'), ('/br', 'io')):
            st, _, body, _ = gd.get(path)
            self.assertEqual(st, 502, body)
            self.assertEqual(loads_ordered(body)['errors']['x']['kind'], kind, path)
        self.assertEqual(gd.get('/gz')[0], 200)  # the process and the pool are fine

    def test_gzip_can_be_turned_off(self):
        gd = self.start(gzip=False)
        self.assertEqual(gd.get('/plain')[0], 200)
        sent = [h for (_, target, h) in self.stub.requests if target == '/plain']
        self.assertNotIn('accept-encoding', sent[0])


if __name__ == '__main__':
    main()
