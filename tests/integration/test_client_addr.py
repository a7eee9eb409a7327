#!/usr/bin/env python3
"""Who the client is: trusted_proxies, X-Forwarded-For and Forwarded from trusted and untrusted
peers, the access line's client= field, config errors."""

import json
import os
import re
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (GatherdTestCase, call, config, endpoint, main,  # noqa: E402
                     run_gatherd, wait_until)


class ClientAddressTest(GatherdTestCase):

    def setUp(self):
        self.stub = self.start_stub()
        self.stub.add('/u', json={'id': 1})

    def start(self, trusted):
        return self.start_gatherd(config([endpoint('/u', {'u': call('s', '/u')})],
                                         {'s': self.stub}, trusted_proxies=trusted))

    def clients(self, gd, n):
        def found():
            return re.findall(r'access .* client=(\S+) status=', gd.log())
        wait_until(lambda: len(found()) >= n)
        return found()

    def test_trusted_peer(self):
        gd = self.start(['10.0.0.0/8', '127.0.0.1/32', '2001:db8:ff::/48'])
        cases = [
            ({}, '127.0.0.1'),
            ({'X-Forwarded-For': '203.0.113.9'}, '203.0.113.9'),
            # the rightmost address that is not trusted; what is left of it may be forged
            ({'X-Forwarded-For': '6.6.6.6, 203.0.113.9, 10.1.2.3'}, '203.0.113.9'),
            ({'X-Forwarded-For': '198.51.100.7:5555,10.0.0.1'}, '198.51.100.7'),
            ({'X-Forwarded-For': '2001:db8::1, 2001:db8:ff::2'}, '2001:db8::1'),
            ({'X-Forwarded-For': '[2001:db8::2]:443'}, '2001:db8::2'),
            ({'X-Forwarded-For': '::ffff:192.0.2.5'}, '192.0.2.5'),
            # every hop trusted: the leftmost; a hop that does not parse ends the walk
            ({'X-Forwarded-For': '10.9.9.9, 10.0.0.1'}, '10.9.9.9'),
            ({'X-Forwarded-For': '6.6.6.6, garbage, 10.0.0.1'}, '10.0.0.1'),
            ({'X-Forwarded-For': 'garbage'}, '127.0.0.1'),
            # Forwarded (RFC 7239) when there is no X-Forwarded-For
            ({'Forwarded': 'for=192.0.2.60;proto=http;by=203.0.113.43'}, '192.0.2.60'),
            ({'Forwarded': 'for="[2001:db8:cafe::17]:4711", for=10.2.3.4'}, '2001:db8:cafe::17'),
            ({'Forwarded': 'for=unknown'}, '127.0.0.1'),
            ({'Forwarded': 'for=192.0.2.1', 'X-Forwarded-For': '192.0.2.2'}, '192.0.2.2'),
        ]
        for headers, _ in cases:
            st, _, body, _ = gd.get('/u', headers)
            self.assertEqual(st, 200, body)
        # two X-Forwarded-For fields are one list, in order
        out = gd.raw(b'GET /u HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 6.6.6.6, 192.0.2.77\r\n'
                     b'X-Forwarded-For: 10.0.0.1\r\nConnection: close\r\n\r\n', until_close=True)
        self.assertTrue(out.startswith(b'HTTP/1.1 200'), out)
        got = self.clients(gd, len(cases) + 1)
        self.assertEqual(got, [want for _, want in cases] + ['192.0.2.77'])
        # errors of gatherd's own are logged with the client too
        gd.get('/nothing', {'X-Forwarded-For': '192.0.2.99'})
        self.assertEqual(self.clients(gd, len(cases) + 2)[-1], '192.0.2.99')

    def test_untrusted_peer(self):
        gd = self.start(['10.0.0.0/8'])
        gd.get('/u', {'X-Forwarded-For': '203.0.113.9'})
        gd.get('/u', {'Forwarded': 'for=203.0.113.9'})
        self.assertEqual(self.clients(gd, 2), ['127.0.0.1', '127.0.0.1'])

    def test_check_config(self):
        tmp = tempfile.mkdtemp(prefix='gatherd-tp-')
        for value, want in ((['10.0.0.0/8', '::1', '127.0.0.1', '0.0.0.0/0'], None),
                            ('10.0.0.0/8', 'trusted_proxies: must be an array of strings'),
                            (['10.0.0.1/8'], 'trusted_proxies[0]: "10.0.0.1/8" has host bits set'),
                            (['10.0.0.0/33'], 'trusted_proxies[0]: must be an IPv4 or IPv6'),
                            (['::/129'], 'trusted_proxies[0]: must be an IPv4 or IPv6'),
                            (['localhost'], 'trusted_proxies[0]: must be an IPv4 or IPv6'),
                            (['10.0.0.0/'], 'trusted_proxies[0]: must be an IPv4 or IPv6')):
            path = os.path.join(tmp, 'c.json')
            with open(path, 'w') as f:
                json.dump(config([endpoint('/a', {'u': call('s', '/u')})], {'s': 'http://127.0.0.1:1'},
                                 listen=['127.0.0.1:1'], trusted_proxies=value), f)
            r = run_gatherd(['-t', '-c', path])
            if want is None:
                self.assertEqual(r.returncode, 0, r.stderr)
            else:
                self.assertEqual(r.returncode, 1, value)
                self.assertIn(want, r.stderr)


if __name__ == '__main__':
    main()
