"""Config reload (SIGHUP): a load generator runs through 20+ reloads with zero failed answers;
pools of unchanged upstreams (and Postgres) keep their connections; an invalid reload keeps
the old config and is counted; a restart-only change is refused; breaker state and metrics
counters survive; gatherd -t --running names restart-only changes."""
import http.client
import json
import os
import signal
import socket
import subprocess
import threading
import time
import unittest

from harness import (GatherdTestCase, call, config, endpoint, free_port, gatherd_bin, main, now,
                     run_gatherd, wait_until)
from test_operations import admin_get, admin_port, metric_value

RELOADS = 24


def metrics(gd):
    st, text = admin_get(admin_port(gd), '/metrics')
    if st != 200:
        raise AssertionError('/metrics answered %d: %s' % (st, text))
    return text


def write_config(gd, cfg):
    """Writes @cfg (with gd's listen address) over gd's config file, atomically."""
    cfg = json.loads(json.dumps(cfg))
    cfg['listen'] = gd.cfg['listen']
    cfg['admin_listen'] = gd.cfg['admin_listen']
    tmp = gd.config_path + '.new'
    with open(tmp, 'w') as f:
        json.dump(cfg, f, indent=2)
    os.replace(tmp, gd.config_path)


def write_text(gd, text):
    tmp = gd.config_path + '.new'
    with open(tmp, 'w') as f:
        f.write(text)
    os.replace(tmp, gd.config_path)


def assert_logged(gd, text, timeout=5):
    """Waits for @text in gd's log: lines go out through a writer thread, a little later."""
    if not wait_until(lambda: text in gd.log(), timeout=timeout):
        raise AssertionError('%r not logged; log:\n%s' % (text, gd.log()[-4000:]))


def reloads(gd, result):
    return metric_value(metrics(gd), 'gatherd_config_reloads_total', result=result) or 0


def reload_and_wait(gd, result='ok'):
    """Sends SIGHUP and waits until /metrics counts one more reload with @result."""
    before = reloads(gd, result)
    gd.signal(signal.SIGHUP)
    if not wait_until(lambda: reloads(gd, result) > before, timeout=10):
        raise AssertionError('no reload counted as %s; log:\n%s' % (result, gd.log()[-4000:]))


class Load:
    """Requests to @paths from @nthreads threads until stop(): even threads keep one keep-alive
    connection (a new one only after an error or a close), odd threads open a new connection
    per request. Each answer is recorded as (time, path, status, body) or (time, path, None,
    exception)."""

    def __init__(self, gd, paths, nthreads=8):
        self.gd = gd
        self.paths = list(paths)
        self.log = []
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
            path = self.paths[(i + k) % len(self.paths)]
            i += 1
            t = now()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection('127.0.0.1', self.gd.port, timeout=10)
                conn.request('GET', path)
                r = conn.getresponse()
                body = r.read()
                rec = (t, path, r.status, body)
                if k % 2 == 1 or r.getheader('connection', '').lower() == 'close':
                    conn.close()
                    conn = None
            except Exception as e:
                rec = (t, path, None, e)
                if conn is not None:
                    conn.close()
                conn = None
            with self._lock:
                self.log.append(rec)
        if conn is not None:
            conn.close()

    def stop(self):
        self._stop.set()
        for t in self._threads:
            t.join(20)

    def failures(self):
        return [r for r in self.log if r[2] != 200]


class ReloadTest(GatherdTestCase):
    def setUp(self):
        self.a = self.start_stub()
        self.a.add('/one', json={'v': 'one'})
        self.a.add('/two', json={'v': 'two'})
        self.a.add('/same', json={'same': True}, delay_ms=20)
        self.b = self.start_stub()
        self.b.add('/b', json={'b': True})

    def two_configs(self, threads=2):
        """Config A and B: /e answers "one" under A and "two" under B; /k is the same in both;
        upstream "b" changes its connect_timeout_ms (a new pool each reload), "a" does not."""
        def cfg(which, b_timeout):
            return config([
                endpoint('/e', {'e': call('a', '/' + which)}),
                endpoint('/k', {'k': call('a', '/same')}),
                endpoint('/b', {'b': call('b', '/b')}),
            ], {'a': self.a,
                'b': {'url': self.b.url, 'connect_timeout_ms': b_timeout}},
                threads=threads)
        return cfg('one', 1000), cfg('two', 2000)

    def test_reloads_under_load_fail_no_request(self):
        cfg_a, cfg_b = self.two_configs(threads=2)
        gd = self.start_gatherd(cfg_a)
        load = Load(gd, ['/e', '/k', '/b', '/k'])
        try:
            time.sleep(1.0)  # every pool has its connections
            conns_a = self.a.connections_accepted
            conns_b = self.b.connections_accepted
            for n in range(RELOADS):
                cfg, want = (cfg_b, b'"two"') if n % 2 == 0 else (cfg_a, b'"one"')
                write_config(gd, cfg)
                reload_and_wait(gd)
                # Every worker takes the new config on its next turn: a fresh request sees it
                # soon (both workers, by trying a few connections).
                seen = wait_until(lambda: all(want in gd.get('/e')[2] for _ in range(6)),
                                  timeout=5)
                self.assertTrue(seen, 'reload %d: /e does not answer %s; log:\n%s'
                                % (n, want, gd.log()[-3000:]))
                time.sleep(0.1)
        finally:
            load.stop()
        self.assertEqual(load.failures()[:5], [], 'failed answers during reloads')
        self.assertGreater(len(load.log), RELOADS * 10)
        # Upstream "a" kept its pools: its connections were made before the reloads (the load
        # generator's concurrency is steady; a few may be re-made by keep-alive expiry).
        self.assertLessEqual(self.a.connections_accepted - conns_a, 4,
                             'upstream a, unchanged, made new connections at reloads')
        # Upstream "b" changed at every reload: a new pool each time, new connections.
        self.assertGreaterEqual(self.b.connections_accepted - conns_b, RELOADS // 2)
        text = metrics(gd)
        self.assertEqual(metric_value(text, 'gatherd_config_reloads_total', result='ok'), RELOADS)
        self.assertEqual(metric_value(text, 'gatherd_config_reloads_total', result='error'), 0)
        assert_logged(gd, 'upstreams: 1 kept with their connections, 1 new or changed')
        # The old configs were freed once their last request ended.
        self.assertTrue(wait_until(lambda: gd.log().count('its last request has ended; freed')
                                   == RELOADS, timeout=10), gd.log()[-3000:])
        self.assertEqual(gd.terminate(15), 0, gd.log()[-3000:])

    def test_unchanged_upstream_keeps_its_connection(self):
        cfg_a, cfg_b = self.two_configs(threads=1)
        gd = self.start_gatherd(cfg_a)
        self.assertEqual(gd.get('/k')[0], 200)
        self.assertEqual(gd.get('/b')[0], 200)
        self.assertEqual(self.a.connections_accepted, 1)
        self.assertEqual(self.b.connections_accepted, 1)
        for n in range(4):
            write_config(gd, cfg_b if n % 2 == 0 else cfg_a)
            reload_and_wait(gd)
            self.assertEqual(gd.get('/k')[0], 200)
            self.assertEqual(gd.get('/b')[0], 200)
        self.assertEqual(self.a.connections_accepted, 1, 'upstream a reconnected')
        self.assertEqual(self.b.connections_accepted, 5, 'upstream b, changed, kept its pool')

    def test_invalid_reload_keeps_the_old_config(self):
        cfg_a, cfg_b = self.two_configs(threads=1)
        gd = self.start_gatherd(cfg_a)
        hash_a = self.config_hash(gd)
        bad = json.loads(json.dumps(cfg_b))
        bad['endpoints'][0]['calls']['e']['upstream'] = 'nope'
        write_config(gd, bad)
        reload_and_wait(gd, 'error')
        assert_logged(gd, 'config reload failed; config %s goes on serving' % hash_a)
        assert_logged(gd, 'endpoints[0].calls.e.upstream')
        self.assertIn(b'"one"', gd.get('/e')[2])
        text = metrics(gd)
        self.assertEqual(metric_value(text, 'gatherd_config_last_reload_successful'), 0)
        self.assertEqual(self.config_hash(gd), hash_a)
        write_text(gd, '{"listen": [')  # a syntax error: file:line:column
        reload_and_wait(gd, 'error')
        assert_logged(gd, 'gatherd.json:1:')
        self.assertEqual(reloads(gd, 'error'), 2)
        loaded_before = metric_value(metrics(gd), 'gatherd_config_loaded_timestamp_seconds')
        write_config(gd, cfg_b)
        reload_and_wait(gd)
        self.assertIn(b'"two"', gd.get('/e')[2])
        text = metrics(gd)
        self.assertEqual(metric_value(text, 'gatherd_config_last_reload_successful'), 1)
        self.assertNotEqual(self.config_hash(gd), hash_a)
        self.assertGreaterEqual(
            metric_value(text, 'gatherd_config_loaded_timestamp_seconds'), loaded_before)

    def config_hash(self, gd):
        for ln in metrics(gd).splitlines():
            if ln.startswith('gatherd_config_info{hash="'):
                return ln.split('"')[1]
        raise AssertionError('no gatherd_config_info')

    def test_restart_only_change_is_refused(self):
        cfg_a, cfg_b = self.two_configs(threads=1)
        gd = self.start_gatherd(cfg_a)
        changed = json.loads(json.dumps(cfg_b))
        changed['threads'] = 2
        changed['http2'] = True
        changed['coroutine_stack_kb'] = 128
        write_config(gd, changed)
        with open(gd.config_path) as f:
            cfg = json.load(f)
        cfg['listen'] = ['127.0.0.1:%d' % free_port()]
        write_text(gd, json.dumps(cfg))
        reload_and_wait(gd, 'refused')
        assert_logged(gd, 'config reload refused: listen, threads, http2, coroutine_stack_kb '
                          'changed')
        self.assertIn(b'"one"', gd.get('/e')[2])
        self.assertEqual(reloads(gd, 'ok'), 0)

    def test_check_against_the_running_config(self):
        cfg_a, cfg_b = self.two_configs(threads=1)
        d = self.tmpdir()
        for name, cfg in (('a.json', cfg_a), ('b.json', cfg_b)):
            cfg = dict(cfg, listen=['127.0.0.1:8080'], admin_listen=cfg_a['admin_listen'])
            with open(os.path.join(d, name), 'w') as f:
                json.dump(cfg, f)
        r = run_gatherd(['-t', '-c', os.path.join(d, 'b.json'), '--running',
                         os.path.join(d, 'a.json')])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn('b.json: ok', r.stdout)
        cfg = dict(cfg_b, listen=['127.0.0.1:8081'], threads=3, shutdown={'timeout_ms': 1234},
                   admin_listen=cfg_a['admin_listen'])
        with open(os.path.join(d, 'c.json'), 'w') as f:
            json.dump(cfg, f)
        r = run_gatherd(['-t', '-c', os.path.join(d, 'c.json'), '--running',
                         os.path.join(d, 'a.json')])
        self.assertEqual(r.returncode, 3, r.stdout + r.stderr)
        self.assertIn('a reload from %s would be refused: listen, threads, shutdown.timeout_ms '
                      'changed' % os.path.join(d, 'a.json'), r.stdout)
        r = run_gatherd(['-c', os.path.join(d, 'c.json'), '--running', os.path.join(d, 'a.json')])
        self.assertEqual(r.returncode, 1)
        self.assertIn('--running is an option of -t', r.stderr)

    def tmpdir(self):
        import tempfile
        import shutil
        d = tempfile.mkdtemp(prefix='gatherd-reload-')
        self.addCleanup(shutil.rmtree, d, True)
        return d

    def test_breaker_survives_a_reload_that_keeps_its_upstream(self):
        self.b.add('/down', status=503, json={})
        breaker = {'failures': 2, 'open_ms': 60000}

        def cfg(which, b_breaker):
            return config([
                endpoint('/e', {'e': call('a', '/' + which)}),
                endpoint('/down', {'d': call('b', '/down')}),
            ], {'a': self.a, 'b': {'url': self.b.url, 'breaker': b_breaker}}, threads=1)
        gd = self.start_gatherd(cfg('one', breaker))
        for _ in range(2):
            self.assertEqual(gd.get('/down')[0], 502)
        st, _, body, _ = gd.get('/down')
        self.assertIn(b'circuit_open', body)
        seen = len(self.b.requests)
        write_config(gd, cfg('two', breaker))  # b unchanged
        reload_and_wait(gd)
        self.assertIn(b'"two"', gd.get('/e')[2])
        st, _, body, _ = gd.get('/down')
        self.assertIn(b'circuit_open', body, 'the breaker closed at a reload that kept b')
        self.assertEqual(len(self.b.requests), seen)
        text = metrics(gd)
        self.assertEqual(metric_value(text, 'gatherd_upstream_breaker_state', upstream='b',
                                      state='open'), 1)
        opened = metric_value(text, 'gatherd_upstream_breaker_opened_total', upstream='b')
        self.assertEqual(opened, 1)
        # A changed breaker starts closed; its counters go on.
        write_config(gd, cfg('two', dict(breaker, failures=3)))
        reload_and_wait(gd)
        gd.get('/down')
        self.assertEqual(len(self.b.requests), seen + 1, 'a new breaker setting kept it open')
        self.assertEqual(metric_value(metrics(gd), 'gatherd_upstream_breaker_opened_total',
                                      upstream='b'), 1)

    def test_metrics_counters_do_not_reset(self):
        cfg_a, cfg_b = self.two_configs(threads=2)
        gd = self.start_gatherd(cfg_a)
        for _ in range(5):
            self.assertEqual(gd.get('/k')[0], 200)
            self.assertEqual(gd.get('/b')[0], 200)

        def count(text, path):
            return metric_value(text, 'gatherd_requests_total', endpoint=path, method='GET',
                                status='200')

        def calls_b(text):
            return metric_value(text, 'gatherd_upstream_calls_total', upstream='b', outcome='ok')

        def settles(want):
            """Waits until /metrics shows @want (a request is counted just after its answer
            goes out), and returns the last scrape."""
            texts = []

            def check():
                texts.append(metrics(gd))
                return all(f(texts[-1]) == v for f, v in want)
            self.assertTrue(wait_until(check, timeout=5), texts[-1] if texts else None)
            return texts[-1]
        settles([(lambda t: count(t, '/k'), 5), (calls_b, 5)])
        # B without /b: its series leave /metrics, the upstream's calls stay.
        no_b = json.loads(json.dumps(cfg_b))
        no_b['endpoints'] = no_b['endpoints'][:2]
        write_config(gd, no_b)
        reload_and_wait(gd)
        for _ in range(3):
            gd.get('/k')
        settles([(lambda t: count(t, '/k'), 8), (lambda t: count(t, '/b'), None), (calls_b, 5)])
        # /b comes back: its series goes on from where it stopped.
        write_config(gd, cfg_a)
        reload_and_wait(gd)
        self.assertTrue(wait_until(lambda: gd.get('/b')[0] == 200))
        settles([(lambda t: count(t, '/b'), 6), (lambda t: count(t, '/k'), 8), (calls_b, 6)])

    def test_requests_in_flight_finish_on_the_old_config(self):
        self.a.add('/slow-one', json={'v': 'slow-one'}, delay_ms=800)
        cfg_a, cfg_b = self.two_configs(threads=1)
        cfg_a['endpoints'][0]['calls']['e']['path'] = '/slow-one'
        gd = self.start_gatherd(cfg_a)
        results = []
        threads = [threading.Thread(target=lambda: results.append(gd.get('/e', timeout=10)))
                   for _ in range(4)]
        for t in threads:
            t.start()
        self.a.wait_requests(4)
        write_config(gd, cfg_b)
        reload_and_wait(gd)
        self.assertIn(b'"two"', gd.get('/e')[2])  # new requests: the new config, at once
        for t in threads:
            t.join(10)
        self.assertEqual(len(results), 4)
        for st, _, body, _ in results:
            self.assertEqual((st, body), (200, b'{"e":{"v": "slow-one"}}'))
        self.assertTrue(wait_until(lambda: 'its last request has ended; freed' in gd.log(),
                                   timeout=10), gd.log())


class ReloadTLSTest(GatherdTestCase):
    """An HTTPS upstream keeps its pool at a reload while its tls files hold the same bytes,
    and takes rotated files (a new pool) when they do not."""

    def test_rotated_ca_file_makes_a_new_pool(self):
        import shutil
        from test_tls import Certs, TLSServer
        certs = Certs()
        self.addCleanup(certs.remove)
        server = TLSServer(certs)
        self.addCleanup(server.stop)
        server.add('/ok')
        ca = os.path.join(certs.dir, 'rotating-ca.pem')
        shutil.copy(certs.path('ca.pem'), ca)

        def cfg(which):
            return config([endpoint('/e', {'c': call('api', '/ok')}),
                           endpoint('/which', {'w': call('api', '/ok', optional=which)})],
                          {'api': {'url': server.url(), 'tls': {'ca_file': ca}}}, threads=1)
        gd = self.start_gatherd(cfg(False))
        self.assertEqual(gd.get('/e')[0], 200, gd.log())
        self.assertEqual(server.connections, 1)
        write_config(gd, cfg(True))  # the upstream and its file unchanged
        reload_and_wait(gd)
        self.assertEqual(gd.get('/e')[0], 200)
        self.assertEqual(server.connections, 1, 'the pool of an unchanged upstream reconnected')
        with open(ca, 'a') as f:  # rotated in place: the same CA, a file of other bytes
            f.write('\n')
        write_config(gd, cfg(False))
        reload_and_wait(gd)
        assert_logged(gd, 'upstreams: 0 kept with their connections, 1 new or changed')
        self.assertEqual(gd.get('/e')[0], 200)
        self.assertEqual(server.connections, 2)


class ReloadPostgresTest(GatherdTestCase):
    """Reloads under load with SQL calls on a real Postgres: the pool and its connections are
    kept when "postgres" and the statements are unchanged."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        from pgfixture import PgCluster
        cls.pg = PgCluster.for_class(cls)

    def setUp(self):
        self.stub = self.start_stub()
        self.stub.add('/one', json={'v': 'one'})
        self.stub.add('/two', json={'v': 'two'})

    def backends(self):
        out = self.pg.psql("SELECT pid FROM pg_stat_activity WHERE application_name = 'gatherd' "
                           "ORDER BY pid")
        return out.split()

    def test_reloads_under_load_keep_the_postgres_pool(self):
        def cfg(which):
            return config([
                endpoint('/e', {'e': call('s', '/' + which),
                                'n': {'sql': 'SELECT 2 AS n', 'row': 'one'}}),
                endpoint('/p/{id}', {'p': {'sql': 'SELECT $1::int + 1 AS n', 'args': ['{id}'],
                                           'row': 'one'}}),
                endpoint('/q', {'q': {'sql': 'SELECT 42 AS answer', 'row': 'one'}}),
            ], {'s': self.stub}, threads=2,
                postgres={'conninfo': self.pg.conninfo(), 'pool_size': 4,
                          'acquire_timeout_ms': 3000})
        cfg_a, cfg_b = cfg('one'), cfg('two')
        gd = self.start_gatherd(cfg_a)
        self.assertTrue(wait_until(lambda: gd.get('/q')[0] == 200, timeout=10), gd.log())
        load = Load(gd, ['/e', '/q', '/p/5'], nthreads=6)
        try:
            time.sleep(1.0)
            pids = self.backends()
            self.assertGreater(len(pids), 0)
            for n in range(RELOADS):
                cfg_n, want = (cfg_b, b'"two"') if n % 2 == 0 else (cfg_a, b'"one"')
                write_config(gd, cfg_n)
                reload_and_wait(gd)
                self.assertTrue(wait_until(lambda: all(want in gd.get('/e')[2] for _ in range(6)),
                                           timeout=5), gd.log()[-3000:])
                time.sleep(0.1)
            pids_after = self.backends()
        finally:
            load.stop()
        self.assertEqual(load.failures()[:5], [])
        self.assertGreater(len(load.log), RELOADS * 10)
        self.assertTrue(set(pids) <= set(pids_after),
                        'Postgres connections were re-made: %s then %s' % (pids, pids_after))
        assert_logged(gd, 'postgres pool kept')
        # New and changed SQL: the pool and its connections go on (the statements of the
        # config before keep their positions, the new ones follow).
        cfg_c = json.loads(json.dumps(cfg_a))
        cfg_c['endpoints'][2]['calls']['q']['sql'] = 'SELECT 43 AS answer'
        cfg_c['endpoints'].append(
            endpoint('/new', {'s': {'sql': 'SELECT $1::text AS seven', 'args': ['7'],
                                    'row': 'one'}}))
        kept_before = gd.log().count('postgres pool kept')
        write_config(gd, cfg_c)
        reload_and_wait(gd)
        self.assertTrue(wait_until(lambda: gd.log().count('postgres pool kept') > kept_before))
        answers = []

        def all_43():
            answers[:] = [gd.get('/q')[2] for _ in range(6)]
            return all(json.loads(a) == {'q': {'answer': 43}} for a in answers)
        self.assertTrue(wait_until(all_43, timeout=5), answers)
        self.assertEqual(json.loads(gd.get('/new')[2]), {'s': {'seven': '7'}})
        self.assertEqual(json.loads(gd.get('/p/5')[2]), {'p': {'n': 6}})
        self.assertTrue(set(pids) <= set(self.backends()), 'new SQL re-made the connections')
        # A changed postgres section makes a new pool; the old one closes once unused.
        write_config(gd, dict(cfg_a, postgres={'conninfo': self.pg.conninfo(), 'pool_size': 2}))
        reload_and_wait(gd)
        self.assertEqual(gd.get('/q')[0], 200)
        assert_logged(gd, 'postgres pool new')
        self.assertTrue(wait_until(lambda: not set(pids) & set(self.backends()), timeout=10),
                        'the old pool kept its connections')


if __name__ == '__main__':
    main()
