#!/usr/bin/env python3
"""What a cluster-scoped rate limit costs a call on localhost: one gatherd (1 thread), one
redis-server, one stub upstream; N sequential keep-alive requests to an endpoint whose call's
upstream has a process-scoped rate limit, then N to one with the same limit "scope": "cluster"
(a rate never reached, so nobody waits), alternating in rounds. Prints the median and p99 of
each and the difference, and Redis's round trip as gatherd measured it.

    python3 tests/bench/redis_limit_cost.py [N]      (uses build/gatherd; GATHERD_BIN to change)
"""

import http.client
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'integration'))
from harness import Gatherd, StubUpstream, call, config, endpoint, upstream  # noqa: E402
from test_redis import RedisServer, metric, metrics  # noqa: E402


def loop(port, path, n):
    c = http.client.HTTPConnection('127.0.0.1', port, timeout=10)
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        c.request('GET', path)
        r = c.getresponse()
        r.read()
        out.append((time.perf_counter() - t0) * 1e6)
        assert r.status == 200, r.status
    c.close()
    return out


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    os.environ.setdefault('GATHERD_BIN', os.path.join(HERE, '..', '..', 'build', 'gatherd'))
    redis = RedisServer()
    stub = StubUpstream()
    stub.add('/r', json={'ok': True})
    rate = {'calls': 1000000, 'per_ms': 1000, 'burst': 1000}
    cfg = config([endpoint('/p', {'x': call('local', '/r')}),
                  endpoint('/c', {'x': call('shared', '/r')})],
                 {'local': upstream(stub, rate_limit=rate),
                  'shared': upstream(stub, rate_limit=dict(rate, scope='cluster'))},
                 threads=1, redis={'url': redis.url()}, log={'level': 'warn'})
    gd = Gatherd(cfg)
    try:
        time.sleep(0.5)
        loop(gd.port, '/p', 200)  # warm up both
        loop(gd.port, '/c', 200)
        p, c = [], []
        for _ in range(5):
            p += loop(gd.port, '/p', n // 5)
            c += loop(gd.port, '/c', n // 5)
        text = metrics(gd)
        rtt = (metric(text, 'gatherd_redis_command_duration_seconds_sum') /
               metric(text, 'gatherd_redis_command_duration_seconds_count') * 1e6)
        for name, xs in (('process scope', p), ('cluster scope', c)):
            xs.sort()
            print('%-14s n=%d median %.0f us  p99 %.0f us' %
                  (name, len(xs), statistics.median(xs), xs[int(len(xs) * 0.99)]))
        print('extra (median) %.0f us; Redis round trip seen by gatherd: %.0f us (mean), '
              'fallbacks %d' % (statistics.median(c) - statistics.median(p), rtt,
                                metric(text, 'gatherd_redis_fallbacks_total')))
    finally:
        gd.close()
        stub.stop()
        redis.stop()


if __name__ == '__main__':
    main()
