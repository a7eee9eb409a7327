#!/usr/bin/env python3
"""Three gatherd replicas behind a real haproxy (conf/haproxy.cfg, with the test's ports),
sharing a real PgBouncer in front of a real PostgreSQL, a real Redis and a stub upstream:
- under a steady load through haproxy, a rolling restart (SIGTERM to one replica at a time,
  the next once haproxy's /readyz checks see the new one up) fails no request;
- a cluster-scoped rate limit holds exactly across the three, counted at the upstream;
- under load, a reload (SIGHUP) of every replica fails no request and the new config answers.
"""

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (HOST, Gatherd, call, config, endpoint, free_port, main, now,  # noqa: E402
                     wait_until)
import pgbouncer  # noqa: E402
from test_postgres import PgTestCase, sql_call  # noqa: E402
from test_redis import RedisServer  # noqa: E402

HAPROXY = shutil.which('haproxy') or '/usr/sbin/haproxy'
EXAMPLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'conf',
                       'haproxy.cfg')
REPLICAS = 3


class Haproxy:
    """haproxy -db (foreground) on conf/haproxy.cfg with the example's addresses replaced:
    the frontend's 127.0.0.1:8080, replica i's 127.0.0.1:808i and its check port 909i, the
    stats socket. Stopped by PID."""

    def __init__(self, testcase, replicas):
        self.dir = tempfile.mkdtemp(prefix='gatherd-haproxy-')
        testcase.addCleanup(shutil.rmtree, self.dir, True)
        self.port = free_port()
        self.sock_path = os.path.join(self.dir, 'admin.sock')
        with open(EXAMPLE) as f:
            text = f.read()
        text = text.replace('/run/haproxy-gatherd.sock', self.sock_path)
        text = text.replace('bind 127.0.0.1:8080', 'bind %s:%d' % (HOST, self.port))
        for i, (port, admin_port) in enumerate(replicas, 1):
            old = 'server g%d 127.0.0.1:808%d port 909%d' % (i, i, i)
            assert old in text, old
            text = text.replace(old, 'server g%d %s:%d port %d' % (i, HOST, port, admin_port))
        self.cfg_path = os.path.join(self.dir, 'haproxy.cfg')
        with open(self.cfg_path, 'w') as f:
            f.write(text)
        self.log_path = os.path.join(self.dir, 'haproxy.log')
        self._logf = open(self.log_path, 'wb')
        self.proc = subprocess.Popen([HAPROXY, '-db', '-f', self.cfg_path],
                                     stdin=subprocess.DEVNULL, stdout=self._logf,
                                     stderr=self._logf)
        testcase.addCleanup(self.stop)
        if not wait_until(lambda: os.path.exists(self.sock_path) or self.proc.poll() is not None,
                          10):
            raise AssertionError('haproxy did not start: %s' % self.log())
        if self.proc.poll() is not None:
            raise AssertionError('haproxy exited: %s' % self.log())

    def log(self):
        with open(self.log_path, 'rb') as f:
            return f.read().decode('utf-8', 'replace')

    def command(self, line):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(5)
        try:
            s.connect(self.sock_path)
            s.sendall(line.encode() + b'\n')
            out = b''
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    return out.decode()
                out += chunk
        finally:
            s.close()

    def states(self):
        """{server name: status} of the gatherd backend ("UP", "DOWN", "UP 1/2", ...)."""
        rows = self.command('show stat').splitlines()
        head = rows[0].lstrip('# ').split(',')
        out = {}
        for row in rows[1:]:
            cols = dict(zip(head, row.split(',')))
            if cols.get('pxname') == 'gatherd' and cols.get('svname', '').startswith('g'):
                out[cols['svname']] = cols['status']
        return out

    def wait_up(self, names, timeout=15.0):
        if not wait_until(lambda: all(self.states().get(n) == 'UP' for n in names), timeout,
                          0.05):
            raise AssertionError('haproxy does not see %s up: %s' % (names, self.states()))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._logf.close()


class Load:
    """@nthreads clients sending GET /p/N through haproxy until stop(): keep-alive connections,
    and a new connection every 10th request. Each result is (status, complete header) or the
    exception, else (status, X-Gatherd-Complete, seconds)."""

    def __init__(self, port, nthreads):
        self.port = port
        self.results = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._loop, args=(k,), daemon=True)
                         for k in range(nthreads)]
        for t in self._threads:
            t.start()

    def _loop(self, k):
        conn = None
        i = 0
        while not self._stop.is_set():
            if conn is None or i % 10 == 0:
                if conn is not None:
                    conn.close()
                conn = http.client.HTTPConnection(HOST, self.port, timeout=10)
            t0 = time.monotonic()
            try:
                conn.request('GET', '/p/%d' % (k * 1000000 + i))
                r = conn.getresponse()
                body = r.read()
                res = (r.status, r.getheader('X-Gatherd-Complete'), time.monotonic() - t0)
            except Exception as e:  # a client that saw the connection fail
                res = e
                conn.close()
                conn = None
            with self._lock:
                self.results.append(res)
            i += 1
            time.sleep(0.002)
        if conn is not None:
            conn.close()

    def count(self):
        with self._lock:
            return len(self.results)

    def stop(self):
        self._stop.set()
        for t in self._threads:
            t.join(20)
        return self.results


@unittest.skipUnless(os.access(HAPROXY, os.X_OK), 'haproxy not installed (bash scripts/setup.sh)')
@unittest.skipUnless(pgbouncer.available(), 'pgbouncer not installed (bash scripts/setup.sh)')
class ReplicasTest(PgTestCase):

    def replica_config(self, bouncer, port, admin_port, redis=None, user='/users/1'):
        eps = [endpoint('/p/{n}', {
                   'user': call('s', user),
                   'order': sql_call('SELECT $1::bigint AS n, count(*) AS c FROM orders', ['{n}'],
                                     row='one', timeout_ms=5000)}, params={'n': 'int'}),
               endpoint('/_pg_ready', {'ready': sql_call('SELECT 1 AS ready', row='one')})]
        ups = {'s': self.stub}
        top = {}
        if redis is not None:
            # 10 calls a minute to the quota API for all the replicas together
            eps.append(endpoint('/quota', {'q': call('q', '/ok', timeout_ms=300)}))
            ups['q'] = {'url': self.stub.url,
                        'rate_limit': {'calls': 10, 'per_ms': 60000, 'burst': 10,
                                       'scope': 'cluster'}}
            top['redis'] = {'url': redis.url(), 'timeout_ms': 100}
        cfg = config(
            eps, ups, threads=1,
            postgres={'conninfo': bouncer.conninfo(), 'prepared': False, 'pool_size': 4,
                      'acquire_timeout_ms': 3000},
            shutdown={'drain_delay_ms': 1000, 'timeout_ms': 10000}, **top)
        cfg['listen'] = ['%s:%d' % (HOST, port)]
        cfg['admin_listen'] = '%s:%d' % (HOST, admin_port)
        return cfg

    def start_replica(self, cfg):
        gd = Gatherd(cfg)
        self.addCleanup(gd.cleanup)
        self.wait_sql_ready(gd)
        return gd

    def start_cluster(self, redis=None):
        """PgBouncer, REPLICAS replicas and haproxy in front, all up: (configs, replicas,
        proxy, bouncer)."""
        bouncer = pgbouncer.PgBouncer.for_test(self, self.pg, pool_size=4)
        configs = [self.replica_config(bouncer, free_port(), free_port(), redis)
                   for _ in range(REPLICAS)]
        replicas = [self.start_replica(c) for c in configs]
        proxy = Haproxy(self, [(r.port, int(c['admin_listen'].rsplit(':', 1)[1]))
                               for r, c in zip(replicas, configs)])
        proxy.wait_up(['g%d' % i for i in range(1, REPLICAS + 1)])
        return configs, replicas, proxy, bouncer

    def check_all_answered(self, results):
        failed = [r for r in results if isinstance(r, Exception) or r[0] != 200 or r[1] != 'true']
        self.assertEqual(failed[:5], [], '%d of %d requests failed' % (len(failed), len(results)))

    def test_rolling_restart_under_load_fails_nothing(self):
        configs, replicas, proxy, _ = self.start_cluster()
        names = ['g%d' % i for i in range(1, REPLICAS + 1)]

        load = Load(proxy.port, 6)
        try:
            wait_until(lambda: load.count() >= 200, 20)
            served = []
            for i, name in enumerate(names):
                old = replicas[i]
                t0 = now()
                old.signal(signal.SIGTERM)
                self.assertEqual(old.wait(20), 0, old.log()[-3000:])
                drained = now() - t0
                served.append(old.log().count(' access '))
                self.assertGreater(served[-1], 0, 'replica %s served nothing' % name)
                before = load.count()
                replicas[i] = self.start_replica(configs[i])
                proxy.wait_up(names)
                # the new replica takes traffic before the next one goes
                self.assertTrue(wait_until(lambda: replicas[i].log().count(' access ') > 0, 10),
                                'haproxy sent nothing to the new %s' % name)
                self.assertGreater(load.count(), before)
                self.assertLess(drained, 12)
            time.sleep(0.5)
        finally:
            results = load.stop()
        self.check_all_answered(results)
        self.assertGreater(len(results), 600)
        times = sorted(r[2] for r in results)
        print('rolling restart of %d replicas: %d requests, 0 failed, p50 %.1f ms, p99 %.1f ms, '
              'max %.0f ms' % (REPLICAS, len(times), 1000 * times[len(times) // 2],
                               1000 * times[len(times) * 99 // 100], 1000 * times[-1]),
              file=sys.stderr)
        self.assertGreaterEqual(len(self.stub.requests_for('/users/1')), len(results))

    def test_cluster_limit_and_reloads_across_replicas(self):
        redis = RedisServer()
        self.addCleanup(redis.stop)
        self.stub.add('/users/2', json={'id': 2, 'name': 'Bo'})
        configs, replicas, proxy, bouncer = self.start_cluster(redis)
        # 30 requests through haproxy, round robin over the three: the quota's 10 calls a
        # minute hold for all of them, counted at the upstream
        statuses = []
        for _ in range(30):
            conn = http.client.HTTPConnection(HOST, proxy.port, timeout=10)
            conn.request('GET', '/quota')
            statuses.append(conn.getresponse().status)
            conn.close()
        self.assertEqual(statuses.count(200), 10, statuses)
        self.assertEqual(len(self.stub.requests_for('/ok')), 10)
        self.assertTrue(all(r.log().count('path=/quota') >= 5 for r in replicas))

        # every replica reloaded under load, one after the other, to a config whose answers
        # carry user 2: nothing fails, and the new answers come from every replica
        load = Load(proxy.port, 6)
        try:
            wait_until(lambda: load.count() >= 200, 20)
            for r, c in zip(replicas, configs):
                new = self.replica_config(bouncer, r.port, int(c['admin_listen'].rsplit(':', 1)[1]),
                                          redis, user='/users/2')
                with open(r.config_path, 'w') as f:
                    json.dump(new, f)
                r.signal(signal.SIGHUP)
                self.assertTrue(wait_until(lambda: 'config reloaded from' in r.log(), 10),
                                r.log()[-2000:])
                before = load.count()
                self.assertTrue(wait_until(lambda: load.count() > before + 50, 10))
        finally:
            results = load.stop()
        self.check_all_answered(results)
        print('reload of %d replicas under load: %d requests, 0 failed'
              % (REPLICAS, len(results)), file=sys.stderr)
        for r in replicas:
            self.assertTrue(r.alive())
            self.assertNotIn('reload refused', r.log())
            self.assertNotIn('reload failed', r.log())
        self.assertGreater(len(self.stub.requests_for('/users/2')), 100)
        self.assertEqual([proxy.states()[n] for n in ('g1', 'g2', 'g3')], ['UP'] * 3)


if __name__ == '__main__':
    main()
