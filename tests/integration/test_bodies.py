#!/usr/bin/env python3
"""Request bodies: methods with bodies, the client's body forwarded to a call, the body limit
(413 with a JSON body, by Content-Length and chunked), and the idempotent rule for retries."""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import GatherdTestCase, call, config, endpoint, main  # noqa: E402

LIMIT = 1000


class BodiesTest(GatherdTestCase):

    def setUp(self):
        self.stub = self.start_stub()
        self.stub.add('/orders', json={'created': True})
        self.stub.add('/warm', json={'warm': True})
        self.stub.add('/stale', json={'fresh': True}, mode='close_reused')
        cfg = config([
            endpoint('/orders', {'o': call('s', '/orders', method='POST', body='{body}')},
                     method='POST'),
            endpoint('/orders/{id}', {'o': call('s', '/orders', method='PUT', body='{body}')},
                     method='PUT'),
            endpoint('/orders/{id}', {'o': call('s', '/orders', method='PATCH', body='{body}')},
                     method='PATCH'),
            endpoint('/orders/{id}', {'o': call('s', '/orders', method='DELETE')},
                     method='DELETE'),
            endpoint('/plain', {'o': call('s', '/orders', method='POST')}, method='POST'),
            endpoint('/warm', {'w': call('s', '/warm')}),
            endpoint('/render/{id}', {'o': call('s', '/orders', method='POST', body={
                'id': '{id}', 'label': 'user {id}', 'limit': '{query.limit}',
                'note': '{header.x-note}', 'fixed': [1, True, None, 'a {{b}}'],
                'nested': {'tenant': '{query.t}'}})},
                method='POST', params={'id': 'int', 'query.limit': {
                    'type': 'int', 'required': False}}),
            endpoint('/stale/post', {'s': call('s', '/stale', method='POST')}, method='POST'),
            endpoint('/stale/idem', {'s': call('s', '/stale', method='POST', idempotent=True)},
                     method='POST'),
        ], {'s': self.stub}, max_request_body_bytes=LIMIT)
        self.gd = self.start_gatherd(cfg)

    def test_body_forwarded_unchanged_with_its_content_type(self):
        sent = b'{"item": "caf\xc3\xa9", "n": 3}\n'
        st, h, body, _ = self.gd.request('POST', '/orders', body=sent,
                                         headers={'Content-Type': 'application/json; charset=utf-8'})
        self.assertEqual(st, 200, body)
        self.assertEqual(json.loads(body), {'o': {'created': True}})
        method, _, headers = self.stub.requests[-1]
        self.assertEqual(method, 'POST')
        self.assertEqual(self.stub.bodies[-1], sent)
        self.assertEqual(headers['content-type'], 'application/json; charset=utf-8')
        self.assertEqual(headers['content-length'], str(len(sent)))

    def test_json_body_template_typed(self):
        st, _, body, _ = self.gd.request('POST', '/render/007?t=%22x%C3%A9%0A',
                                         headers={'X-Note': 'a "quoted" \\ note'})
        self.assertEqual(st, 200, body)
        self.assertEqual(self.stub.requests[-1][2]['content-type'], 'application/json')
        sent = self.stub.bodies[-1]
        doc = json.loads(sent)
        self.assertEqual(doc, {'id': 7, 'label': 'user 007', 'limit': None,
                               'note': 'a "quoted" \\ note', 'fixed': [1, True, None, 'a {b}'],
                               'nested': {'tenant': '"x\u00e9\n'}})
        self.assertTrue(sent.startswith(b'{"id":7,"label":"user 007","limit":null,'), sent)
        st, _, body, _ = self.gd.request('POST', '/render/-12?limit=5')
        self.assertEqual(st, 200, body)
        doc = json.loads(self.stub.bodies[-1])
        self.assertEqual((doc['id'], doc['limit'], doc['label']), (-12, 5, 'user -12'))
        # not UTF-8: still a valid JSON document
        st, _, body, _ = self.gd.request('POST', '/render/1?t=%FF')
        self.assertEqual(st, 200, body)
        self.assertEqual(json.loads(self.stub.bodies[-1].decode('utf-8'))['nested']['tenant'],
                         '\ufffd')

    def test_methods_with_bodies(self):
        for method in ('PUT', 'PATCH'):
            sent = ('{"m": "%s"}' % method).encode()
            st, _, body, _ = self.gd.request(method, '/orders/7', body=sent,
                                             headers={'Content-Type': 'text/plain'})
            self.assertEqual(st, 200, body)
            self.assertEqual(self.stub.requests[-1][0], method)
            self.assertEqual(self.stub.bodies[-1], sent)
            self.assertEqual(self.stub.requests[-1][2]['content-type'], 'text/plain')
        st, _, body, _ = self.gd.request('DELETE', '/orders/7')
        self.assertEqual(st, 200, body)
        self.assertEqual(self.stub.requests[-1][0], 'DELETE')
        self.assertNotIn('content-length', self.stub.requests[-1][2])

    def test_call_without_body_key_sends_empty_body(self):
        st, _, body, _ = self.gd.request('POST', '/plain', body=b'{"ignored": 1}')
        self.assertEqual(st, 200, body)
        self.assertEqual(self.stub.bodies[-1], b'')
        self.assertEqual(self.stub.requests[-1][2]['content-length'], '0')
        self.assertNotIn('content-type', self.stub.requests[-1][2])

    def test_body_of_exactly_the_limit_passes(self):
        sent = b'"' + b'a' * (LIMIT - 2) + b'"'
        st, _, body, _ = self.gd.request('POST', '/orders', body=sent)
        self.assertEqual(st, 200, body)
        self.assertEqual(self.stub.bodies[-1], sent)
        chunked = b'POST /orders HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n' + \
            b'%x\r\n' % LIMIT + b'b' * LIMIT + b'\r\n0\r\n\r\n'
        out = self.gd.raw(chunked)
        self.assertTrue(out.startswith(b'HTTP/1.1 200'), out[:200])

    def assert_json_413(self, out):
        head, _, body = out.partition(b'\r\n\r\n')
        self.assertTrue(head.startswith(b'HTTP/1.1 413'), out[:300])
        self.assertIn(b'content-type: application/json', head.lower())
        doc = json.loads(body)
        self.assertEqual(doc['error'], 'too_large')

    def test_too_large_by_one_byte(self):
        out = self.gd.raw(b'POST /orders HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n'
                          % (LIMIT + 1) + b'x' * (LIMIT + 1))
        self.assert_json_413(out)
        self.assertEqual(self.stub.requests, [])

    def test_too_large_content_length_refused_without_reading(self):
        # only the head is sent: the answer must come without the body
        out = self.gd.raw(b'POST /orders HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n',
                          timeout=3)
        self.assertTrue(out.startswith(b'HTTP/1.1 413'), out[:300])
        self.assert_json_413(out)
        self.assertEqual(self.stub.requests, [])

    def test_too_large_chunked(self):
        data = b'POST /orders HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n'
        data += (b'100\r\n' + b'c' * 256 + b'\r\n') * 8  # 2048 bytes, no final chunk
        out = self.gd.raw(data, timeout=3)
        self.assert_json_413(out)
        self.assertEqual(self.stub.requests, [])

    def warm_then(self, path):
        conn = self.gd.connection()
        try:
            st, _, body, _ = self.gd.request('GET', '/warm', conn=conn)
            self.assertEqual(st, 200, body)
        finally:
            conn.close()
        self.stub.reset_stats()
        return self.gd.request('POST', path, body=b'{}')

    def test_post_never_retried_on_stale_connection(self):
        # the first answer leaves a keep-alive connection in the pool; the stub closes it
        # without answering when the POST arrives on it
        self.stub.add('/warm', json={'warm': True}, mode='close_reused')
        st, _, body, _ = self.warm_then('/stale/post')
        self.assertEqual(st, 502, body)
        self.assertEqual(json.loads(body)['errors']['s']['kind'], 'io')
        self.assertEqual(len(self.stub.requests), 1)

    def test_idempotent_post_retried_on_stale_connection(self):
        self.stub.add('/warm', json={'warm': True}, mode='close_reused')
        st, _, body, _ = self.warm_then('/stale/idem')
        self.assertEqual(st, 200, body)
        self.assertEqual(json.loads(body), {'s': {'fresh': True}})
        self.assertEqual(len(self.stub.requests), 2)


if __name__ == '__main__':
    main()
