#!/usr/bin/env python3
"""Request head limits: 414 for a long request target, 431 for too many or too large header
fields, JSON bodies, the defaults and configured limits; what h2o 2.2.5 answers itself beyond."""

import json
import os
import socket
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (GatherdTestCase, call, config, endpoint, main,  # noqa: E402
                     parse_raw_response, recv_until_close, run_gatherd, wait_until)


class CaseInsensitive(dict):
    def get(self, k, default=None):
        return dict.get(self, k.lower(), default)


class RequestLimitsTest(GatherdTestCase):

    def setUp(self):
        self.stub = self.start_stub()
        self.stub.add('/u', json={'id': 1})

    def start(self, **top):
        return self.start_gatherd(config([endpoint('/u', {'u': call('s', '/u')})],
                                         {'s': self.stub}, **top))

    def raw(self, gd, target=b'/u', headers=()):
        data = b'GET ' + target + b' HTTP/1.1\r\nHost: x\r\n' + b''.join(
            b'%s: %s\r\n' % (n, v) for n, v in headers) + b'Connection: close\r\n\r\n'
        st, h, body = parse_raw_response(gd.raw(data, until_close=True))
        return st, CaseInsensitive(h), body

    def test_defaults(self):
        gd = self.start()
        # at the limits: served
        st, _, body = self.raw(gd, b'/u?' + b'a' * (8192 - 3))[:3]
        self.assertEqual(st, 200, body)
        st, _, body = self.raw(gd, headers=[(b'x-h%d' % i, b'v') for i in range(62)])[:3]
        self.assertEqual(st, 200, body)  # (Host is not counted: h2o keeps it apart)
        # beyond: 414 and 431 with JSON bodies, no call made
        calls = len(self.stub.requests_for('/u'))
        for target, headers, status, code in (
                (b'/u?' + b'a' * 8190, [], 414, 'uri_too_long'),
                (b'/u', [(b'x-h%d' % i, b'v') for i in range(66)], 431, 'too_many_headers'),
                (b'/u', [(b'x-big', b'v' * 33000)], 431, 'headers_too_large'),
                (b'/nothing?' + b'a' * 9000, [], 414, 'uri_too_long')):
            st, h, body = self.raw(gd, target, headers)[:3]
            doc = self.assertJsonError(st, h, body, status, code)
            self.assertIn('than', doc['message'])
            self.assertEqual(h.get('Connection'), 'close')
        self.assertEqual(len(self.stub.requests_for('/u')), calls)
        # h2o 2.2.5 answers more than 100 fields itself, in plain text, before gatherd sees them
        st, h, body = self.raw(gd, headers=[(b'x-h%d' % i, b'v') for i in range(101)])[:3]
        self.assertEqual(st, 400)
        self.assertIn('text/plain', h.get('Content-Type'))
        # the access lines are written after the answers: wait for them
        self.assertTrue(wait_until(lambda: 'status=414' in gd.log() and 'status=431' in gd.log()),
                        gd.log())

    def test_heads_longer_than_the_first_input_buffer(self):
        # A client connection's input buffer starts at 4 KiB and grows: a 6,000-byte head that
        # arrives in two writes, with a pause between them, is served, and so is the small
        # request pipelined behind it on the same connection.
        gd = self.start()
        head = (b'GET /u HTTP/1.1\r\nHost: x\r\nx-big: ' + b'v' * 6000 + b'\r\n\r\n')
        s = socket.create_connection(('127.0.0.1', gd.port), timeout=5)
        self.addCleanup(s.close)
        s.sendall(head[:3000])
        time.sleep(0.2)
        s.sendall(head[3000:] + b'GET /u HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
        out = recv_until_close(s)
        self.assertEqual(out.count(b'HTTP/1.1 200 '), 2, out[:300])
        self.assertEqual(out.count(b'{"u":{"id": 1}}'), 2, out)

    def test_configured(self):
        gd = self.start(max_url_bytes=256, max_headers=4, max_header_bytes=1024)
        self.assertEqual(self.raw(gd, b'/u?' + b'a' * 253)[0], 200)
        self.assertEqual(self.raw(gd, b'/u?' + b'a' * 254)[0], 414)
        self.assertEqual(self.raw(gd, headers=[(b'a', b'1'), (b'b', b'2')])[0], 200)
        self.assertEqual(self.raw(gd, headers=[(b'h%d' % i, b'1') for i in range(6)])[0], 431)
        self.assertEqual(self.raw(gd, headers=[(b'a', b'v' * 900)])[0], 200)
        self.assertEqual(self.raw(gd, headers=[(b'a', b'v' * 1100)])[0], 431)

    def test_check_config(self):
        tmp = tempfile.mkdtemp(prefix='gatherd-rql-')
        for key, value, want in (('max_url_bytes', 100, 'max_url_bytes: must be'),
                                 ('max_headers', 100, 'max_headers: must be'),
                                 ('max_header_bytes', 512, 'max_header_bytes: must be')):
            path = os.path.join(tmp, 'c.json')
            with open(path, 'w') as f:
                json.dump(config([endpoint('/a', {'u': call('s', '/u')})], {'s': 'http://127.0.0.1:1'},
                                 listen=['127.0.0.1:1'], **{key: value}), f)
            r = run_gatherd(['-t', '-c', path])
            self.assertEqual(r.returncode, 1)
            self.assertIn(want, r.stderr)


if __name__ == '__main__':
    main()
