#!/usr/bin/env python3
"""A client that leaves mid-request: an HTTP/1 client that closes its connection, an HTTP/2
client that resets its stream (RST_STREAM, a hand-made frame: the standard library has no
HTTP/2 client) or closes its connection. Each cancels its request's calls at once (the stub sees
the upstream connection closed long before the call's own timeout), is logged as 499 with its
calls, and is counted in gatherd_requests_total; the daemon and the other streams go on."""

import os
import re
import socket
import struct
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (GatherdTestCase, call, config, endpoint, main, now,  # noqa: E402
                     recv_until_close, wait_until)

CALL_TIMEOUT_MS = 8000
# How soon after the client leaves the upstream connection must be closed: far below the
# call's own timeout, generous for a loaded CI machine.
CANCEL_WITHIN_S = 2.0


def metric_value(port, name, **labels):
    with urllib.request.urlopen('http://127.0.0.1:%d/metrics' % port, timeout=5) as r:
        text = r.read().decode()
    want = '%s{%s} ' % (name, ','.join('%s="%s"' % kv for kv in labels.items()))
    for ln in text.splitlines():
        if ln.startswith(want):
            return float(ln[len(want):])
    return 0.0


# -- a minimal HTTP/2 client (RFC 9113), enough to open streams and reset them -----------------

def frame(ftype, flags, stream, payload=b''):
    return struct.pack('>I', len(payload))[1:] + bytes([ftype, flags]) + \
        struct.pack('>I', stream) + payload


def hpack_literal(index, value):
    """A literal header field without indexing, name from the static table (RFC 7541, 6.2.2)."""
    v = value.encode()
    assert index < 15 and len(v) < 127
    return bytes([index, len(v)]) + v


def get_headers(path, authority):
    # :method GET (static 2), :scheme http (static 6), :path (4), :authority (1)
    return b'\x82\x86' + hpack_literal(4, path) + hpack_literal(1, authority)


class H2:
    def __init__(self, port):
        self.sock = socket.create_connection(('127.0.0.1', port), timeout=5)
        self.authority = '127.0.0.1:%d' % port
        self.sock.sendall(b'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n' + frame(4, 0, 0))
        self.buf = b''

    def request(self, stream, path):
        self.sock.sendall(frame(1, 0x5, stream, get_headers(path, self.authority)))

    def reset(self, stream):
        self.sock.sendall(frame(3, 0, stream, struct.pack('>I', 0x8)))  # CANCEL

    def read_frame(self):
        while len(self.buf) < 9:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError('connection closed')
            self.buf += data
        length = int.from_bytes(self.buf[:3], 'big')
        while len(self.buf) < 9 + length:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError('connection closed')
            self.buf += data
        ftype, flags = self.buf[3], self.buf[4]
        stream = struct.unpack('>I', self.buf[5:9])[0] & 0x7fffffff
        payload = self.buf[9:9 + length]
        self.buf = self.buf[9 + length:]
        if ftype == 4 and not flags & 1:
            self.sock.sendall(frame(4, 1, 0))  # SETTINGS ACK
        return ftype, flags, stream, payload

    def read_response(self, stream, timeout=5.0):
        """(first HEADERS payload, body bytes) of @stream."""
        deadline = now() + timeout
        headers, body = None, b''
        while now() < deadline:
            ftype, flags, sid, payload = self.read_frame()
            if sid != stream:
                continue
            if ftype == 1:
                headers = payload
            elif ftype == 0:
                body += payload
            if flags & 1:  # END_STREAM
                return headers, body
        raise AssertionError('no answer on stream %d' % stream)

    def close(self):
        self.sock.close()


class ClientGoneTest(GatherdTestCase):
    def setUp(self):
        self.stub = self.start_stub()
        self.stub.add('/hang', mode='hang')
        self.stub.add('/fast', json={'ok': True})
        cfg = config([endpoint('/hang', {'h': call('s', '/hang', timeout_ms=CALL_TIMEOUT_MS),
                                         'f': call('s', '/fast')},
                               timeout_ms=CALL_TIMEOUT_MS),
                      endpoint('/fast', {'f': call('s', '/fast')})],
                     {'s': self.stub}, http2=True)
        self.gd = self.start_gatherd(cfg)
        self.admin = int(self.gd.cfg['admin_listen'].rsplit(':', 1)[1])

    def hang_connection(self):
        """The stub's connection that carries the /hang call (once it has arrived), after the
        request's other call (/fast) has been answered: the client leaves only then, so that
        the log shows exactly which call the leaving cancelled."""
        def find():
            for c in self.stub.connections:
                if '/hang' in c.paths:
                    return c
            return None
        wait_until(lambda: find() is not None, timeout=5)
        wait_until(lambda: self.stub.requests_for('/fast'), timeout=5)
        time.sleep(0.1)  # the answer's way back to gatherd, on a loaded machine
        return find()

    def assert_cancelled_and_logged(self, left_at, gone_before):
        c = self.hang_connection()
        wait_until(lambda: c.closed_at is not None, timeout=CANCEL_WITHIN_S + 1)
        self.assertIsNotNone(c.closed_at, 'the upstream call was not cancelled')
        self.assertEqual(c.closed_by, 'peer')
        self.assertLess(c.closed_at - left_at, CANCEL_WITHIN_S)
        wait_until(lambda: 'status=499' in self.gd.log(), timeout=5)
        lines = [ln for ln in self.gd.log().splitlines() if 'access' in ln and 'status=499' in ln]
        self.assertEqual(len(lines), 1, self.gd.log()[-3000:])
        self.assertIn('route=/hang', lines[0])
        self.assertRegex(lines[0], r'calls=h:cancelled:\d+,f:ok:\d+')
        wait_until(lambda: metric_value(self.admin, 'gatherd_requests_total', endpoint='/hang',
                                        method='GET', status='499') == gone_before + 1,
                   timeout=5)
        self.assertEqual(metric_value(self.admin, 'gatherd_requests_total', endpoint='/hang',
                                      method='GET', status='499'), gone_before + 1)
        st, _, body, _ = self.gd.get('/fast')
        self.assertEqual((st, body), (200, b'{"f":{"ok": true}}'))
        self.assertTrue(self.gd.alive())

    def test_http1_client_that_closes_cancels_its_calls(self):
        conn = self.gd.connection()
        conn.request('GET', '/hang')
        self.hang_connection()
        left_at = now()
        conn.close()
        self.assert_cancelled_and_logged(left_at, 0)

    def test_http1_client_that_half_closes_cancels_its_calls(self):
        s = socket.create_connection(('127.0.0.1', self.gd.port), timeout=5)
        self.addCleanup(s.close)
        s.sendall(b'GET /hang HTTP/1.1\r\nHost: x\r\n\r\n')
        self.hang_connection()
        left_at = now()
        s.shutdown(socket.SHUT_WR)
        self.assert_cancelled_and_logged(left_at, 0)
        # gatherd answered (h2o must see its request finished) and closed the connection
        s.settimeout(5)
        data = recv_until_close(s)
        self.assertTrue(data.startswith(b'HTTP/1.1 499 '), data)

    def test_http2_stream_reset_cancels_its_calls_and_the_connection_goes_on(self):
        h2 = H2(self.gd.port)
        self.addCleanup(h2.close)
        h2.request(1, '/hang')
        self.hang_connection()
        left_at = now()
        h2.reset(1)
        self.assert_cancelled_and_logged(left_at, 0)
        h2.request(3, '/fast')  # the same connection still serves
        headers, body = h2.read_response(3)
        self.assertEqual(headers[:1], b'\x88', headers)  # :status 200, static index 8
        self.assertEqual(body, b'{"f":{"ok": true}}')

    def test_http2_connection_closed_cancels_its_calls(self):
        h2 = H2(self.gd.port)
        h2.request(1, '/hang')
        self.hang_connection()
        left_at = now()
        h2.close()
        self.assert_cancelled_and_logged(left_at, 0)


if __name__ == '__main__':
    main()
