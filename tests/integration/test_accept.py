#!/usr/bin/env python3
"""The accept loop out of file descriptors: gatherd started with a low open-files limit, then
more client connections than it can hold. The listener backs off instead of spinning (CPU stays
low, one warn line, not one per loop turn), gatherd_accept_backoffs_total counts it, and once
connections close the waiting ones are served."""

import os
import resource
import socket
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (GatherdTestCase, Gatherd, call, config, endpoint, main,  # noqa: E402
                     wait_until)

NOFILE = 64


def cpu_seconds(pid):
    with open('/proc/%d/stat' % pid) as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


class LowLimitGatherd(Gatherd):
    """gatherd with RLIMIT_NOFILE lowered in the child before exec."""

    def _start(self, start_timeout):
        old = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, old[1]))
        try:
            return super()._start(start_timeout)
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, old)


class AcceptTest(GatherdTestCase):
    def test_out_of_descriptors_backs_off_and_recovers(self):
        stub = self.start_stub()
        stub.add('/a', json=1)
        g = LowLimitGatherd(config([endpoint('/a', {'a': call('s', '/a')})], {'s': stub}))
        self.addCleanup(g.cleanup)
        admin = int(g.cfg['admin_listen'].rsplit(':', 1)[1])
        st, _, body, _ = g.get('/a')
        self.assertEqual((st, body), (200, b'{"a":1}'))

        socks = []
        self.addCleanup(lambda: [s.close() for s in socks])
        for _ in range(NOFILE + 40):  # more than gatherd can hold; the rest wait in the backlog
            socks.append(socket.create_connection(('127.0.0.1', g.port), timeout=5))
        wait_until(lambda: 'cannot accept connections' in g.log(), timeout=5)
        self.assertIn('cannot accept connections', g.log())
        cpu0, t0 = cpu_seconds(g.pid), time.monotonic()
        time.sleep(1.5)
        busy = (cpu_seconds(g.pid) - cpu0) / (time.monotonic() - t0)
        self.assertLess(busy, 0.3, 'gatherd spun at %.0f%% CPU while out of descriptors' % (busy * 100))
        self.assertEqual(g.log().count('cannot accept connections'), 1, g.log()[-2000:])
        self.assertTrue(g.alive())

        for s in socks:
            s.close()
        socks.clear()
        # the backlog drains as descriptors come back; a new client is served
        wait_until(lambda: g.get('/a')[0] == 200, timeout=10)
        st, _, body, _ = g.get('/a')
        self.assertEqual((st, body), (200, b'{"a":1}'))
        with urllib.request.urlopen('http://127.0.0.1:%d/metrics' % admin, timeout=5) as r:
            text = r.read().decode()
        line = [ln for ln in text.splitlines() if ln.startswith('gatherd_accept_backoffs_total ')]
        self.assertTrue(line and float(line[0].split()[1]) >= 1, line)


if __name__ == '__main__':
    main()
