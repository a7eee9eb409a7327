#!/usr/bin/env python3
"""Shared state in Redis ("redis" at the top level): cluster-scoped rate limits held exactly
across gatherd processes by a GCRA script in a real redis-server the tests start, and what
happens when Redis is killed, restarted or stopped (SIGSTOP): no request fails or blocks,
the limits fall back to their local share, /readyz stays 200 and says so, the metrics count
it, and the limits apply across the processes again once Redis is back."""

import concurrent.futures
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (GatherdTestCase, call, config, endpoint, free_port, main,  # noqa: E402
                     upstream, wait_until)
from test_client_gone import H2  # noqa: E402  (the hand-made HTTP/2 client)
from test_operations import promtool  # noqa: E402
from test_retries import Scripted  # noqa: E402


def ok(n):
    return 200, {}, 0


class RedisServer:
    """A throwaway redis-server on 127.0.0.1 (no persistence), stopped by its PID."""

    def __init__(self, port=None):
        if shutil.which('redis-server') is None:
            raise unittest.SkipTest('redis-server not installed (scripts/setup.sh)')
        self.dir = tempfile.mkdtemp(prefix='gatherd-redis-')
        self.port = port or free_port()
        self.proc = None
        self.start()

    def start(self):
        self.log = open(os.path.join(self.dir, 'redis.log'), 'ab')
        self.proc = subprocess.Popen(
            ['redis-server', '--port', str(self.port), '--bind', '127.0.0.1', '--save', '',
             '--appendonly', 'no', '--dir', self.dir, '--daemonize', 'no'],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)
        if not wait_until(lambda: self._pings(), timeout=10):
            raise AssertionError('redis-server did not start on port %d' % self.port)

    def _pings(self):
        try:
            return self.command('PING') == 'PONG'
        except OSError:
            return False

    def command(self, *args, timeout=2.0):
        """Sends one command (RESP) and returns its reply: str, int, None or a list."""
        data = b'*%d\r\n' % len(args)
        for a in args:
            a = str(a).encode()
            data += b'$%d\r\n%s\r\n' % (len(a), a)
        with socket.create_connection(('127.0.0.1', self.port), timeout=timeout) as s:
            s.sendall(data)
            f = s.makefile('rb')
            return self._read(f)

    def _read(self, f):
        line = f.readline()
        if not line:
            raise OSError('redis closed the connection')
        kind, rest = line[:1], line[1:].rstrip(b'\r\n')
        if kind == b'+':
            return rest.decode()
        if kind == b'-':
            return RuntimeError(rest.decode())
        if kind == b':':
            return int(rest)
        if kind == b'$':
            n = int(rest)
            if n < 0:
                return None
            v = f.read(n + 2)[:-2]
            return v.decode()
        if kind == b'*':
            return [self._read(f) for _ in range(int(rest))]
        raise OSError('bad reply %r' % line)

    def url(self):
        return 'redis://127.0.0.1:%d/0' % self.port

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)  # a stopped process must run to die
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self.log.close()

    def stop(self):
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def metrics(gd):
    port = int(gd.cfg['admin_listen'].rsplit(':', 1)[1])
    with urllib.request.urlopen('http://127.0.0.1:%d/metrics' % port, timeout=5) as r:
        return r.read().decode()


def metric(text, name, labels=None):
    pat = r'^%s%s ([0-9.e+]+)$' % (re.escape(name),
                                  '' if labels is None else re.escape('{%s}' % labels))
    m = re.search(pat, text, re.M)
    if m is None:
        raise AssertionError('%s{%s} missing:\n%s' % (name, labels, text))
    return float(m.group(1))


def all_connected(gd):
    """Whether every worker's Redis connections are ready."""
    text = metrics(gd)
    return (metric(text, 'gatherd_redis_connections', 'state="ready"') ==
            metric(text, 'gatherd_redis_connections', 'state="configured"'))


def readyz(gd):
    port = int(gd.cfg['admin_listen'].rsplit(':', 1)[1])
    try:
        with urllib.request.urlopen('http://127.0.0.1:%d/readyz' % port, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


class RedisTest(GatherdTestCase):

    def start_redis(self, **kw):
        r = RedisServer(**kw)
        self.addCleanup(r.stop)
        return r

    def start_scripted(self, script):
        s = Scripted(script)
        self.addCleanup(s.stop)
        return s

    def limited(self, up, redis, rate, timeout_ms=500, threads=2, **redis_kw):
        rl = dict(rate, scope='cluster')
        r = {'url': redis.url(), 'timeout_ms': 50}
        r.update(redis_kw)
        return config([endpoint('/t', {'x': call('r', '/r')}, timeout_ms=timeout_ms)],
                      {'r': upstream(up.url, rate_limit=rl)}, threads=threads, redis=r)

    def start_ready(self, cfg):
        gd = self.start_gatherd(cfg)
        self.assertTrue(wait_until(lambda: all_connected(gd), 10),
                        gd.log())
        return gd

    def fetch_all(self, targets):
        """GETs /t on each gatherd of @targets at once; returns [(status, doc, seconds)]."""
        def one(gd):
            t0 = time.monotonic()
            st, _, body, _ = gd.get('/t', timeout=20)
            return st, json.loads(body), time.monotonic() - t0
        with concurrent.futures.ThreadPoolExecutor(len(targets)) as ex:
            return [f.result() for f in [ex.submit(one, g) for g in targets]]

    def kinds(self, res):
        return [doc['errors']['x']['kind'] if 'errors' in doc else 'ok' for _, doc, _ in res]

    def test_two_processes_share_a_cluster_limit_exactly(self):
        # 5 tokens at once, then one every second: 40 calls of 500 ms spread over two
        # processes get exactly the burst between them, the rest are refused at once.
        redis = self.start_redis()
        up = self.start_scripted({'/r': ok})
        a, b = [self.start_ready(self.limited(up, redis, {'calls': 5, 'per_ms': 5000, 'burst': 5}))
                for _ in range(2)]
        res = self.fetch_all([a, b] * 20)
        kinds = self.kinds(res)
        self.assertEqual(kinds.count('ok'), 5, kinds)
        self.assertEqual(kinds.count('rate_limited'), 35, kinds)
        self.assertEqual(up.count('/r'), 5)  # counted at the upstream
        for st, doc, secs in res:
            if 'errors' in doc:
                self.assertLess(doc['errors']['x']['elapsed_ms'], 300, doc)  # at once
        self.assertIsNotNone(redis.command('GET', 'gatherd:rl:upstream:r'))
        for gd in (a, b):
            text = metrics(gd)
            self.assertEqual(metric(text, 'gatherd_redis_fallbacks_total'), 0)
            self.assertGreaterEqual(metric(text, 'gatherd_redis_commands_total', 'result="ok"'),
                                    20)
            port = int(gd.cfg['admin_listen'].rsplit(':', 1)[1])
            with urllib.request.urlopen('http://127.0.0.1:%d/debug/upstreams' % port,
                                        timeout=5) as r:
                view = json.loads(r.read())['redis']
            self.assertEqual((view['ready'], view['connecting'], view['down'], view['pending']),
                             (2, 0, 0, 0), view)  # 2 threads, one connection each
            self.assertEqual(len(view['workers']), 2)

    def test_a_reload_keeps_the_connections_and_refuses_a_redis_change(self):
        """SIGHUP with a changed endpoint: taken, the same Redis connections serve it (no new
        connect), the counters go on, the cluster limit still holds. A changed "redis" is a
        restart-only setting: refused, the old config goes on."""
        redis = self.start_redis()
        up = self.start_scripted({'/r': ok, '/s': ok})
        cfg = self.limited(up, redis, {'calls': 3, 'per_ms': 60000, 'burst': 3})
        gd = self.start_ready(cfg)
        self.assertEqual(self.kinds(self.fetch_all([gd] * 2)), ['ok', 'ok'])
        before = metrics(gd)
        connects = metric(before, 'gatherd_redis_connects_total')
        commands = metric(before, 'gatherd_redis_commands_total', 'result="ok"')

        def reload(new_cfg, result):
            with open(gd.config_path, 'w') as f:
                json.dump(new_cfg, f)
            def count():
                return metric(metrics(gd), 'gatherd_config_reloads_total', 'result="%s"' % result)
            n = count()
            gd.signal(signal.SIGHUP)
            self.assertTrue(wait_until(lambda: count() > n, 10), gd.log()[-3000:])
        changed = json.loads(json.dumps(gd.cfg))
        changed['endpoints'][0]['calls']['x']['path'] = '/s'
        reload(changed, 'ok')
        # one token of the burst is left, whichever config a worker serves the calls with
        kinds = self.kinds(self.fetch_all([gd] * 3))
        self.assertEqual(sorted(kinds), ['ok', 'rate_limited', 'rate_limited'], kinds)
        self.assertEqual(up.count('/r') + up.count('/s'), 3)
        after = metrics(gd)
        self.assertEqual(metric(after, 'gatherd_redis_connects_total'), connects)
        self.assertGreater(metric(after, 'gatherd_redis_commands_total', 'result="ok"'), commands)
        self.assertEqual(metric(after, 'gatherd_redis_up'), 1)
        other = json.loads(json.dumps(changed))
        other['redis']['timeout_ms'] = 80
        reload(other, 'refused')
        self.assertIn('redis', gd.log().split('config reload refused')[-1].splitlines()[0])
        self.assertTrue(readyz(gd)[0] == 200)

    def test_calls_wait_for_their_cluster_slot(self):
        # One call every 100 ms for both processes together, calls waiting for their slot: 16
        # calls take at least 1.5 s at the upstream (each process alone would pace its 8 in
        # 0.7 s), and none fails.
        redis = self.start_redis()
        up = self.start_scripted({'/r': ok})
        a, b = [self.start_ready(self.limited(up, redis, {'calls': 10, 'per_ms': 1000, 'burst': 1},
                                              timeout_ms=5000, key_prefix='t2:'))
                for _ in range(2)]
        res = self.fetch_all([a, b] * 8)
        self.assertEqual(self.kinds(res).count('ok'), 16, res)
        times = sorted(up.times['/r'])
        self.assertEqual(len(times), 16)
        self.assertGreater(times[-1] - times[0], 1.3, times)
        # Any 6 calls in a row span at least 5 intervals (less a generous margin: one call's
        # timer may fire late on a noisy machine, which shortens the gap after it).
        spans = [y - x for x, y in zip(times, times[5:])]
        self.assertGreater(min(spans), 0.4, times)
        self.assertIsNotNone(redis.command('GET', 't2:rl:upstream:r'))

    def load(self, gd, seconds, results):
        """GETs /t in a loop for @seconds, appending (status, kind, seconds) to @results."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            t0 = time.monotonic()
            st, _, body, _ = gd.get('/t', timeout=10)
            doc = json.loads(body)
            results.append((st, doc['errors']['x']['kind'] if 'errors' in doc else 'ok',
                            time.monotonic() - t0))

    def run_load(self, gd, seconds, workers=4):
        results = []
        ex = concurrent.futures.ThreadPoolExecutor(workers)
        futs = [ex.submit(self.load, gd, seconds, results) for _ in range(workers)]
        return ex, futs, results

    def test_redis_killed_and_restarted_under_load(self):
        redis = self.start_redis()
        up = self.start_scripted({'/r': ok})
        # Generous: the limit is never reached, so every call must succeed, Redis or not.
        cfg = self.limited(up, redis, {'calls': 1000, 'per_ms': 1000, 'burst': 100},
                           timeout_ms=2000, local_share=0.5)
        # and a tight one, to tell after the restart that Redis holds it (its local share
        # would let 1 through, Redis 3)
        cfg['upstreams']['tight'] = upstream(up.url, rate_limit={
            'calls': 3, 'per_ms': 10000, 'burst': 3, 'scope': 'cluster'})
        cfg['endpoints'].append(endpoint('/tight', {'x': call('tight', '/r')}, timeout_ms=500))
        gd = self.start_ready(cfg)
        ex, futs, results = self.run_load(gd, 3.0)
        time.sleep(1.0)
        redis.kill()
        killed_at = len(results)
        for f in futs:
            f.result()
        ex.shutdown()
        self.assertGreater(len(results), killed_at + 10, 'load went on after the kill')
        bad = [r for r in results if r[0] != 200 or r[1] != 'ok']
        self.assertEqual(bad, [])
        self.assertLess(max(r[2] for r in results), 1.0, 'a request was blocked')
        text = metrics(gd)
        self.assertEqual(metric(text, 'gatherd_redis_up'), 0)
        self.assertGreater(metric(text, 'gatherd_redis_fallbacks_total'), 0)
        st, doc = readyz(gd)
        self.assertEqual(st, 200, doc)
        self.assertEqual(doc.get('redis'), 'down', doc)
        self.assertTrue(doc['ready'])

        # Back: gatherd reconnects (backoff at most 5 s) and the limit is held in Redis again.
        redis.start()
        self.assertTrue(wait_until(lambda: all_connected(gd), 15),
                        gd.log())
        self.assertEqual(readyz(gd)[1].get('redis'), 'up')
        fallbacks = metric(metrics(gd), 'gatherd_redis_fallbacks_total')
        res = self.fetch_all([gd] * 5)
        self.assertEqual(self.kinds(res).count('ok'), 5)
        self.assertEqual(metric(metrics(gd), 'gatherd_redis_fallbacks_total'), fallbacks)
        # the restarted Redis had no script: EVALSHA's NOSCRIPT was followed by EVAL
        self.assertIsNotNone(redis.command('GET', 'gatherd:rl:upstream:r'))
        tight = []
        for _ in range(6):
            st, _, body, _ = gd.get('/tight')
            tight.append('errors' not in json.loads(body))
        self.assertEqual(tight, [True] * 3 + [False] * 3)
        self.assertEqual(metric(metrics(gd), 'gatherd_redis_fallbacks_total'), fallbacks)

    def test_fallback_holds_the_local_share(self):
        # Redis unreachable from the start: the local share (0.2 of 5 per 5 s at burst 5, i.e.
        # burst 1 and one call every 5 s) decides at once.
        redis = self.start_redis()
        up = self.start_scripted({'/r': ok})
        cfg = self.limited(up, redis, {'calls': 5, 'per_ms': 5000, 'burst': 5},
                           local_share=0.2)
        redis.kill()
        gd = self.start_gatherd(cfg)
        res = self.fetch_all([gd] * 10)
        kinds = self.kinds(res)
        self.assertEqual(kinds.count('ok'), 1, kinds)
        self.assertEqual(kinds.count('rate_limited'), 9, kinds)
        text = metrics(gd)
        self.assertEqual(metric(text, 'gatherd_redis_fallbacks_total'), 10)
        self.assertGreaterEqual(metric(text, 'gatherd_redis_commands_total', 'result="down"'),
                                10)
        st, doc = readyz(gd)
        self.assertEqual((st, doc.get('redis')), (200, 'down'), doc)
        # one warning for the outage, not one per connection and attempt
        self.assertEqual(gd.log().count('warn: redis redis://127.0.0.1:%d/0: cannot connect ('
                                        % redis.port), 1, gd.log())

    def test_stopped_redis_does_not_block_requests(self):
        redis = self.start_redis()
        up = self.start_scripted({'/r': ok})
        cfg = self.limited(up, redis, {'calls': 1000, 'per_ms': 1000, 'burst': 100},
                           timeout_ms=3000)
        gd = self.start_ready(cfg)
        os.kill(redis.proc.pid, signal.SIGSTOP)
        try:
            # 4 at once: the stub upstream's listen backlog is 5
            res = [x for _ in range(4) for x in self.fetch_all([gd] * 4)]
            self.assertEqual(self.kinds(res).count('ok'), 16, res)
            # each waited at most the redis timeout (50 ms) plus the machine's noise
            self.assertLess(max(s for _, _, s in res), 1.0, res)
            text = metrics(gd)
            self.assertGreater(metric(text, 'gatherd_redis_commands_total', 'result="timeout"'),
                               0)
            self.assertGreater(metric(text, 'gatherd_redis_fallbacks_total'), 0)
            self.assertEqual(readyz(gd)[0], 200)
        finally:
            os.kill(redis.proc.pid, signal.SIGCONT)
        self.assertTrue(wait_until(lambda: all_connected(gd), 15),
                        gd.log())
        fallbacks = metric(metrics(gd), 'gatherd_redis_fallbacks_total')
        self.assertEqual(self.kinds(self.fetch_all([gd] * 5)).count('ok'), 5)
        self.assertEqual(metric(metrics(gd), 'gatherd_redis_fallbacks_total'), fallbacks)

    def client_limited(self, up, redis, **top):
        return config([endpoint('/t', {'x': call('r', '/r')},
                                client_rate_limit={'requests': 3, 'per_ms': 10000,
                                                   'scope': 'cluster'})],
                      {'r': upstream(up.url)}, threads=2,
                      redis={'url': redis.url(), 'timeout_ms': 50}, **top)

    def test_client_rate_limit_is_shared_by_two_processes(self):
        redis = self.start_redis()
        up = self.start_scripted({'/r': ok})
        a, b = [self.start_ready(self.client_limited(up, redis)) for _ in range(2)]
        answers = []
        for gd in [a, b] * 5:  # one client (127.0.0.1), one at a time
            st, headers, body, _ = gd.get('/t')
            answers.append((st, {k.lower(): v for k, v in headers.items()}, body))
        self.assertEqual([st for st, _, _ in answers], [200] * 3 + [429] * 7, answers)
        self.assertEqual(up.count('/r'), 3)
        self.assertEqual([h['ratelimit-remaining'] for _, h, _ in answers[:4]],
                         ['2', '1', '0', '0'])
        for st, h, body in answers[3:]:
            self.assertEqual(h['ratelimit-limit'], '3')
            self.assertGreaterEqual(int(h['retry-after']), 1)
            self.assertLessEqual(int(h['retry-after']), 4)
            self.assertEqual(json.loads(body)['error'], 'rate_limited')
        self.assertIsNotNone(redis.command('GET', 'gatherd:rl:client:GET /t:127.0.0.1'))
        for gd in (a, b):
            self.assertEqual(metric(metrics(gd), 'gatherd_redis_fallbacks_total'), 0)

    def test_client_rate_limit_falls_back_to_its_local_share(self):
        # Redis gone: 3 per 10 s at share 0.5 is a burst of 1 and one every 20 s locally.
        redis = self.start_redis()
        up = self.start_scripted({'/r': ok})
        gd = self.start_ready(self.client_limited(up, redis))
        redis.kill()
        self.assertTrue(wait_until(lambda: metric(metrics(gd), 'gatherd_redis_up') == 0, 5))
        t0 = time.monotonic()
        sts = [gd.get('/t')[0] for _ in range(4)]
        self.assertLess(time.monotonic() - t0, 2.0)
        self.assertEqual(sts, [200, 429, 429, 429])
        self.assertEqual(metric(metrics(gd), 'gatherd_redis_fallbacks_total'), 4)

    def cached(self, up, redis, **redis_kw):
        r = {'url': redis.url(), 'timeout_ms': 50}
        r.update(redis_kw)
        return config([endpoint('/c', {'x': call('r', '/r', cache={'ttl_ms': 60000,
                                                                  'shared': True})})],
                      {'r': upstream(up.url)}, threads=2, redis=r)

    def test_shared_cache_serves_another_process(self):
        redis = self.start_redis()
        up = self.start_scripted({'/r': ok})
        a, b = [self.start_ready(self.cached(up, redis)) for _ in range(2)]
        st, _, body, _ = a.get('/c')
        self.assertEqual((st, json.loads(body)), (200, {'x': {'n': 1}}))
        self.assertEqual(metric(metrics(a), 'gatherd_redis_cache_total', 'result="stored"'), 1)
        # the SET goes out on A's loop after the answer: B asks once Redis has it
        self.assertTrue(wait_until(lambda: redis.command('KEYS', 'gatherd:cache:*') != []))
        st, _, body, _ = b.get('/c')  # B has it from Redis, not from the upstream
        self.assertEqual((st, json.loads(body)), (200, {'x': {'n': 1}}))
        self.assertEqual(up.count('/r'), 1)
        text = metrics(b)
        self.assertEqual(metric(text, 'gatherd_redis_cache_total', 'result="hit"'), 1)
        st, _, body, _ = b.get('/c')  # now from B's own store (L1): no second lookup
        self.assertEqual(json.loads(body), {'x': {'n': 1}})
        self.assertEqual(metric(metrics(b), 'gatherd_redis_cache_total', 'result="hit"'), 1)
        self.assertEqual(up.count('/r'), 1)
        keys = redis.command('KEYS', 'gatherd:cache:*')
        self.assertEqual(len(keys), 1, keys)
        text = metrics(b)
        check = subprocess.run([promtool(), 'check', 'metrics'], input=text,
                               capture_output=True, text=True, timeout=60)
        self.assertEqual(check.returncode, 0, 'promtool: %s%s' % (check.stdout, check.stderr))
        ttl = redis.command('PTTL', keys[0])
        self.assertTrue(50000 < ttl <= 60000, ttl)

    def test_shared_cache_is_skipped_when_redis_is_down_or_slow(self):
        redis = self.start_redis()
        up = self.start_scripted({'/r': ok})
        gd = self.start_ready(self.cached(up, redis))
        os.kill(redis.proc.pid, signal.SIGSTOP)
        try:
            t0 = time.monotonic()
            st, _, body, _ = gd.get('/c')
            self.assertEqual(st, 200)
            self.assertLess(time.monotonic() - t0, 1.0)
        finally:
            os.kill(redis.proc.pid, signal.SIGCONT)
        self.assertEqual(up.count('/r'), 1)
        redis.kill()
        gd2 = self.start_gatherd(self.cached(up, redis))  # never connects
        t0 = time.monotonic()
        self.assertEqual(gd2.get('/c')[0], 200)
        self.assertLess(time.monotonic() - t0, 1.0)
        self.assertEqual(up.count('/r'), 2)
        self.assertGreaterEqual(
            metric(metrics(gd2), 'gatherd_redis_cache_total', 'result="skipped"'), 1)
        self.assertGreaterEqual(
            metric(metrics(gd), 'gatherd_redis_cache_total', 'result="skipped"'), 1)

    def test_shared_cache_bounds_an_entry(self):
        redis = self.start_redis()
        up = self.start_scripted({'/r': ok})
        gd = self.start_ready(self.cached(up, redis, cache_max_entry_bytes=4))
        self.assertEqual(gd.get('/c')[0], 200)  # {"n": 1} is 8 bytes
        self.assertTrue(wait_until(
            lambda: metric(metrics(gd), 'gatherd_redis_cache_total', 'result="too_large"') == 1))
        self.assertEqual(redis.command('KEYS', 'gatherd:cache:*'), [])

    def test_a_stream_reset_while_redis_is_asked(self):
        # HTTP/2: the stream goes while its client limit waits for a stopped Redis; h2o lets the
        # request go, the wait is dropped, and the answer that comes later touches nothing.
        redis = self.start_redis()
        up = self.start_scripted({'/r': ok})
        cfg = self.client_limited(up, redis, http2=True)
        cfg['redis']['timeout_ms'] = 2000
        gd = self.start_ready(cfg)
        os.kill(redis.proc.pid, signal.SIGSTOP)
        try:
            h2 = H2(gd.port)
            self.addCleanup(h2.close)
            for sid in (1, 3, 5):
                h2.request(sid, '/t')
            time.sleep(0.2)
            for sid in (1, 3, 5):
                h2.reset(sid)
            time.sleep(0.2)
        finally:
            os.kill(redis.proc.pid, signal.SIGCONT)
        self.assertTrue(wait_until(lambda: all_connected(gd), 10), gd.log())
        st, _, body, _ = gd.get('/t')
        self.assertEqual(st, 200, body)
        self.assertEqual(up.count('/r'), 1)  # the reset streams made no call
        self.assertEqual(metric(metrics(gd), 'gatherd_requests_total',
                                'endpoint="/t",method="GET",status="499"'), 3)
        self.assertEqual(metric(metrics(gd), 'gatherd_http2_resets_total'), 3)

    def test_a_host_name_is_resolved_off_the_loop(self):
        # "localhost" may resolve to ::1 first; Redis listens on 127.0.0.1 only: each attempt
        # takes the next address, and the limit works through the name.
        redis = self.start_redis()
        up = self.start_scripted({'/r': ok})
        cfg = self.limited(up, redis, {'calls': 5, 'per_ms': 5000, 'burst': 5})
        cfg['redis']['url'] = 'redis://localhost:%d' % redis.port
        gd = self.start_ready(cfg)
        self.assertEqual(self.kinds(self.fetch_all([gd] * 3)), ['ok'] * 3)
        self.assertEqual(metric(metrics(gd), 'gatherd_redis_fallbacks_total'), 0)

    def test_config_errors_name_their_place(self):
        def rl(**kw):
            return {'r': upstream('http://127.0.0.1:1', rate_limit=dict(
                {'calls': 5, 'per_ms': 1000}, **kw))}
        good = {'url': 'redis://127.0.0.1:6379/0'}
        cluster_client = {'requests': 5, 'scope': 'cluster'}
        cases = [
            (rl(scope='cluster'), {},
             'upstreams.r.rate_limit.scope: "cluster" needs a top-level "redis"'),
            (rl(scope='global'), {'redis': good},
             'upstreams.r.rate_limit.scope: must be "process" or'),
            (rl(), {'client_rate_limit': cluster_client},
             'client_rate_limit.scope: "cluster" needs a top-level "redis"'),
            (rl(), {'redis': {'url': 'http://x'}}, 'redis.url: malformed URL'),
            (rl(), {'redis': {'url': 'rediss://127.0.0.1'}},
             'redis.url: rediss:// (TLS) is not supported'),
            (rl(), {'redis': {'url': 'redis://127.0.0.1:99999'}}, 'redis.url: bad port'),
            (rl(), {'redis': {'url': 'redis://127.0.0.1/x'}}, 'redis.url: the URL\'s /DB must be'),
            (rl(), {'redis': dict(good, tls={})}, 'redis.tls: not supported'),
            (rl(), {'redis': dict(good, local_share=0)}, 'redis.local_share: must be above 0'),
            (rl(), {'redis': dict(good, pool_size=0)},
             'redis.pool_size: must be between 1 and 16'),
            (rl(), {'redis': dict(good, timeout_ms=0)}, 'redis.timeout_ms'),
            (rl(), {'redis': dict(good, password='{env.GD_TEST_UNSET_PW}')}, 'redis.password'),
            (rl(), {'redis': dict(good, bogus=1)}, 'redis.bogus: unknown key'),
            (rl(), {'redis': {}}, 'redis.url: missing required key'),
            (rl(), {'redis': dict(good, cache_max_entry_bytes=0)},
             'redis.cache_max_entry_bytes: must be between 1 and'),
        ]
        shared = [endpoint('/t', {'x': call('r', '/p', cache={'ttl_ms': 1000, 'shared': True})})]
        cfg = config(shared, rl())
        with self.assertRaises(Exception) as ctx:
            self.start_gatherd(cfg, start_timeout=5)
        self.assertIn('calls.x.cache.shared: needs a top-level "redis"', str(ctx.exception))
        for ups, top, message in cases:
            cfg = config([endpoint('/t', {'x': call('r', '/p')})], ups, **top)
            with self.assertRaises(Exception) as ctx:
                self.start_gatherd(cfg, start_timeout=5)
            self.assertIn(message, str(ctx.exception))


if __name__ == '__main__':
    main()
