#!/usr/bin/env python3
"""Ambiguous HTTP/1.1 framing (request smuggling) is refused with a JSON 400 and the connection
closed, so nothing pipelined after it is served (RFC 9112 section 6.3). Raw sockets."""

import json
import os
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import HOST, GatherdTestCase, call, config, endpoint, main, now  # noqa: E402

SMUGGLED = b'GET /fast?smuggled=1 HTTP/1.1\r\nHost: x\r\n\r\n'


def exchange(port, data, timeout=5.0):
    """Sends @data on a new connection and reads until the server closes it (or @timeout)."""
    s = socket.create_connection((HOST, port), timeout=timeout)
    try:
        s.sendall(data)
        out = b''
        deadline = now() + timeout
        while now() < deadline:
            try:
                d = s.recv(65536)
            except (socket.timeout, ConnectionResetError):
                break
            if not d:
                return out, True
            out += d
        return out, False
    finally:
        s.close()


class FramingTest(GatherdTestCase):

    def setUp(self):
        self.stub = self.start_stub()
        self.stub.add('/fast', json={'fast': True})
        self.gd = self.start_gatherd(config([
            endpoint('/fast', {'fast': call('s', '/fast')}),
            endpoint('/fast', {'fast': call('s', '/fast')}, method='POST'),
        ], {'s': self.stub}))

    def assertRefused(self, data):
        out, closed = exchange(self.gd.port, data)
        self.assertTrue(closed, 'connection left open: %r' % out)
        self.assertEqual(out.count(b'HTTP/1.1 '), 1, out)  # nothing after it was served
        head, _, body = out.partition(b'\r\n\r\n')
        self.assertTrue(head.startswith(b'HTTP/1.1 400 '), out)
        self.assertIn(b'connection: close', head.lower())
        err = json.loads(body)
        self.assertEqual(err['error'], 'bad_request', err)
        self.assertEqual(self.stub.requests_for('/fast'), [])
        self.assertTrue(self.gd.alive())

    def test_two_different_content_lengths(self):
        self.assertRefused(b'POST /fast HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n'
                           b'Content-Length: 44\r\n\r\n' + SMUGGLED)

    def test_transfer_encoding_with_content_length(self):
        self.assertRefused(b'POST /fast HTTP/1.1\r\nHost: x\r\nContent-Length: 49\r\n'
                           b'Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n' + SMUGGLED)

    def test_content_length_after_transfer_encoding(self):
        self.assertRefused(b'POST /fast HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n'
                           b'Content-Length: 49\r\n\r\n0\r\n\r\n' + SMUGGLED)

    def test_same_content_length_twice_is_served(self):
        out, _ = exchange(self.gd.port, b'POST /fast HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n'
                          b'Content-Length: 2\r\nConnection: close\r\n\r\n{}')
        self.assertTrue(out.startswith(b'HTTP/1.1 200 '), out)

    def test_plain_pipelined_requests_are_served(self):
        out, _ = exchange(self.gd.port, b'POST /fast HTTP/1.1\r\nHost: x\r\nContent-Length: 2'
                          b'\r\n\r\n{}GET /fast HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
        self.assertEqual(out.count(b'HTTP/1.1 200 '), 2, out)


if __name__ == '__main__':
    main()
