#!/usr/bin/env python3
"""Batches of Postgres queries (postgres.pipeline_depth), against a real PostgreSQL 15 and the
real gatherd binary: concurrent SQL calls waiting for the one connection share batches (one
write and one Sync each, counted by gatherd_postgres_batches_total), a failing query fails only
its own call while the others of its batch answer right, a query that times out inside a batch
is cancelled without failing the others, a write goes alone so that another call's failure
never rolls it back, a serialization failure in a batch is retried by its own policy while
the others are only sent again, and a backend killed with a batch in flight fails only that
batch.
(`gatherd -t` on postgres.pipeline_depth: test_postgres's ConfigCheckTest.)

Each test holds the only connection busy with a slow query first, so that the calls started
next wait for it and leave the line together, as one batch.
"""

import json as jsonlib
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import endpoint, free_port, main, now, wait_until  # noqa: E402
from test_operations import admin_get  # noqa: E402
from test_postgres import Clients, PgTestCase, sql_call  # noqa: E402
from test_reload import reload_and_wait, write_config  # noqa: E402
from test_sql_retries import FLAKY  # noqa: E402

BUSY_S = 0.4  # how long the first query holds the connection


def metric(port, name):
    st, text = admin_get(port, '/metrics')
    if st != 200:
        raise AssertionError('/metrics answered %d' % st)
    m = re.search(r'^%s (\d+)$' % re.escape(name), text, re.M)
    if m is None:
        raise AssertionError('%s not in /metrics' % name)
    return int(m.group(1))


class BatchTest(PgTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.pg.psql(FLAKY)

    def setUp(self):
        super().setUp()
        self.pg.psql('DROP TABLE IF EXISTS batch_writes; CREATE TABLE batch_writes (v int)')

    def start(self, depth=8, extra_endpoints=(), **pg):
        self.admin_port = free_port()
        gd = self.start_pg_gatherd(self.endpoints(extra_endpoints), postgres=self.section(depth, pg),
                                   admin_listen='127.0.0.1:%d' % self.admin_port)
        return gd

    def section(self, depth, pg=None):
        section = {'pool_size': 1, 'pipeline_depth': depth, 'acquire_timeout_ms': 5000}
        section.update(pg or {})
        return section

    def endpoints(self, extra_endpoints=()):
        return [
            endpoint('/busy', {'q': sql_call('SELECT pg_sleep(%s) AS s' % BUSY_S, row='one',
                                             timeout_ms=5000)}),
            endpoint('/n/{n}', {'q': sql_call('SELECT $1::int AS n', ['{n}'], row='one',
                                              timeout_ms=5000)}, params={'n': 'int'}),
            endpoint('/div/{n}', {'q': sql_call('SELECT 10 / $1::int AS d', ['{n}'], row='one',
                                                timeout_ms=5000)}, params={'n': 'int'}),
            endpoint('/slow/{n}', {'q': sql_call('SELECT $1::int AS n FROM pg_sleep(3)', ['{n}'],
                                                 row='one', timeout_ms=900)},
                     params={'n': 'int'}),
            endpoint('/write/{n}', {'q': sql_call('INSERT INTO batch_writes VALUES ($1)',
                                                  ['{n}'], timeout_ms=5000)},
                     params={'n': 'int'}),
        ] + list(extra_endpoints)

    def behind_busy(self, gd, paths, stagger=0.0):
        """/busy first, then @paths concurrently while it holds the connection: they wait
        together (in their order with @stagger seconds between them). Returns the results of
        @paths."""
        busy = Clients(gd, ['/busy'])
        time.sleep(BUSY_S / 4)
        results = Clients(gd, paths, stagger=stagger).join()
        busy.join()
        self.assertEqual(busy.results[0][0], 200, busy.results[0])
        return results

    def counters(self):
        time.sleep(0.3)  # the threads publish their counters every 100 ms
        return (metric(self.admin_port, 'gatherd_postgres_batches_total'),
                metric(self.admin_port, 'gatherd_postgres_batched_queries_total'),
                metric(self.admin_port, 'gatherd_postgres_resent_queries_total'))

    def assertAnswers(self, results, paths, expect):
        for path, r in zip(paths, results):
            self.assertNotIsInstance(r, Exception, (path, r))
            st, _, body, _ = r
            want = expect(path)
            if isinstance(want, int):  # the value of a good call
                self.assertEqual(st, 200, (path, body))
                self.assertEqual(jsonlib.loads(body)['q'], {'n': want}, (path, body))
            else:  # (kind, sqlstate) of a failed one
                doc = jsonlib.loads(body)
                self.assertIsNone(doc['q'], (path, body))
                self.assertEqual(doc['errors']['q']['kind'], want[0], (path, body))
                self.assertEqual(doc['errors']['q'].get('sqlstate'), want[1], (path, body))

    def test_waiting_reads_share_batches(self):
        gd = self.start(depth=8)
        b0, q0, _ = self.counters()
        paths = ['/n/%d' % i for i in range(16)]
        results = self.behind_busy(gd, paths)
        self.assertAnswers(results, paths, lambda p: int(p.split('/')[-1]))
        b1, q1, r1 = self.counters()
        batches, queries = b1 - b0, q1 - q0
        # /busy alone, then 16 waiting reads in batches of at most 8: 3 batches when all 16
        # waited together (more when some came late, never one per query)
        self.assertEqual(queries, 17, (batches, queries))
        self.assertLessEqual(batches, 9, (batches, queries))
        self.assertGreaterEqual(batches, 3, (batches, queries))
        self.assertEqual(r1, 0)
        st, text = admin_get(self.admin_port, '/debug/upstreams')
        self.assertEqual(st, 200, text)
        pg = jsonlib.loads(text)['postgres']  # the live view has the same counters
        self.assertGreaterEqual(pg['batched_queries'], pg['batches'] + 8, pg)
        self.assertEqual(pg['workers'][0]['batches'], pg['batches'], pg)

    def test_depth_1_sends_one_query_per_sync(self):
        gd = self.start(depth=1)
        b0, q0, _ = self.counters()
        paths = ['/n/%d' % i for i in range(8)]
        results = self.behind_busy(gd, paths)
        self.assertAnswers(results, paths, lambda p: int(p.split('/')[-1]))
        b1, q1, _ = self.counters()
        self.assertEqual((b1 - b0, q1 - q0), (9, 9))

    def test_locking_reads_and_non_idempotent_calls_go_alone(self):
        gd = self.start(depth=8, extra_endpoints=[
            endpoint('/lock/{n}', {'q': sql_call(
                'SELECT $1::int AS n FROM orders WHERE id = 1 FOR UPDATE', ['{n}'], row='one',
                timeout_ms=5000)}, params={'n': 'int'}),
            endpoint('/writes/{n}', {'q': sql_call(
                'SELECT $1::int AS n', ['{n}'], row='one', idempotent=False,
                timeout_ms=5000)}, params={'n': 'int'})])
        for prefix in ('/lock/', '/writes/'):
            with self.subTest(prefix):
                b0, q0, _ = self.counters()
                paths = [prefix + str(i) for i in range(6)]
                results = self.behind_busy(gd, paths)
                self.assertAnswers(results, paths, lambda p: int(p.split('/')[-1]))
                b1, q1, _ = self.counters()
                self.assertEqual((b1 - b0, q1 - q0), (7, 7))

    def test_a_reload_with_new_sql_calls_keeps_batching_right(self):
        gd = self.start(depth=8)
        backends = [b[0] for b in self.pg.gatherd_backends()]
        # a write and a read ahead of the old ones: the statements' positions change, the
        # pool (same postgres section) is kept, and which of them may share a batch goes along
        new = [endpoint('/w2/{n}', {'q': sql_call('INSERT INTO batch_writes VALUES ($1 + 1000)',
                                                  ['{n}'], timeout_ms=5000)}, params={'n': 'int'}),
               endpoint('/m/{n}', {'q': sql_call('SELECT $1::int - 100 AS n', ['{n}'], row='one',
                                                 timeout_ms=5000)}, params={'n': 'int'})]
        write_config(gd, self.pg_config(new + self.endpoints(), postgres=self.section(8)))
        reload_and_wait(gd)
        self.wait_sql_ready(gd)
        self.assertEqual([b[0] for b in self.pg.gatherd_backends()], backends)  # kept
        b0, q0, _ = self.counters()
        paths = ['/m/101', '/n/2', '/m/103', '/n/4', '/m/105', '/n/6']
        results = self.behind_busy(gd, paths)
        self.assertAnswers(results, paths, lambda p: int(p.split('/')[-1]) - (
            100 if p.startswith('/m/') else 0))
        b1, q1, _ = self.counters()
        self.assertEqual(q1 - q0, 7)
        self.assertLessEqual(b1 - b0, 5, (b1 - b0, q1 - q0))
        # the new write goes alone
        b0, q0, _ = self.counters()
        paths = ['/w2/%d' % i for i in range(4)]
        for r in self.behind_busy(gd, paths):
            self.assertEqual(r[0], 200, r)
        b1, q1, _ = self.counters()
        self.assertEqual((b1 - b0, q1 - q0), (5, 5))
        self.assertEqual(self.pg.scalar('SELECT count(*) FROM batch_writes WHERE v >= 1000'), '4')

    def test_a_failing_query_fails_only_its_own_call(self):
        gd = self.start(depth=8)
        _, _, r0 = self.counters()
        paths = ['/n/1', '/n/2', '/div/0', '/n/3', '/div/5', '/n/4', '/div/0', '/n/5']
        results = self.behind_busy(gd, paths, stagger=0.01)

        def expect(p):
            if p == '/div/0':
                return ('sql', '22012')
            if p == '/div/5':
                return 2
            return int(p.split('/')[-1])
        for path, r in zip(paths, results):
            if path == '/div/5':
                self.assertEqual(r[0], 200, r)
                self.assertEqual(jsonlib.loads(r[2])['q'], {'d': 2}, r)
        self.assertAnswers([r for p, r in zip(paths, results) if p != '/div/5'],
                           [p for p in paths if p != '/div/5'], expect)
        # the ones behind a failure were skipped by the server and sent again
        _, _, r1 = self.counters()
        self.assertGreaterEqual(r1 - r0, 1)
        self.wait_sql_ready(gd, timeout=2)

    def test_a_serialization_failure_in_a_batch_is_retried_the_others_answer(self):
        self.pg.psql('DROP SEQUENCE IF EXISTS batch_runs; CREATE SEQUENCE batch_runs')
        gd = self.start(depth=8, extra_endpoints=[endpoint('/flaky', {'q': sql_call(
            "SELECT flaky('batch_runs', 1, '40001') AS n", row='one', timeout_ms=5000,
            retry={'attempts': 3, 'backoff_ms': 5, 'max_backoff_ms': 20})})])
        _, _, r0 = self.counters()
        t0 = metric(self.admin_port, 'gatherd_postgres_retries_total')
        paths = ['/n/1', '/flaky', '/n/2', '/n/3']
        results = self.behind_busy(gd, paths, stagger=0.02)
        # the flaky one failed once (40001), was retried as the user's policy says, and ran
        # again; the two behind it were skipped and sent again, which is no retry
        self.assertAnswers(results, paths, lambda p: 2 if p == '/flaky' else
                           int(p.split('/')[-1]))
        self.assertEqual(self.pg.scalar('SELECT last_value FROM batch_runs'), '2')
        _, _, r1 = self.counters()
        self.assertEqual(metric(self.admin_port, 'gatherd_postgres_retries_total') - t0, 1)
        self.assertGreaterEqual(r1 - r0, 1)

    def test_a_timeout_inside_a_batch_fails_only_its_call(self):
        gd = self.start(depth=8)
        time.sleep(0.3)  # published every 100 ms
        c0 = metric(self.admin_port, 'gatherd_postgres_cancels_total')
        paths = ['/n/1', '/n/2', '/slow/9', '/n/3', '/n/4']
        t0 = now()
        results = self.behind_busy(gd, paths, stagger=0.02)
        elapsed = now() - t0
        self.assertAnswers(results, paths,
                           lambda p: ('timeout', None) if p.startswith('/slow') else
                           int(p.split('/')[-1]))
        # the slow one was cancelled on the server, not waited for (3 s)
        self.assertLess(elapsed, 2.5, elapsed)
        # the server sends a batch's answers at its Sync: the two ahead of the slow one come
        # once it is cancelled, the two behind it are sent again; none waits for the 3 s
        for r in results:
            self.assertLess(r[3], 2.5, r)
        time.sleep(0.3)
        self.assertGreaterEqual(metric(self.admin_port, 'gatherd_postgres_cancels_total') - c0, 1)
        self.assertTrue(wait_until(lambda: not self.pg.active_queries_like('pg_sleep(3)'),
                                   timeout=3))
        self.wait_sql_ready(gd, timeout=3)

    def test_a_write_is_never_rolled_back_by_another_call(self):
        gd = self.start(depth=8)
        paths = ['/write/1', '/div/0', '/write/2', '/n/1', '/div/0', '/write/3', '/div/0']
        results = self.behind_busy(gd, paths)
        ok_writes = []
        for path, r in zip(paths, results):
            self.assertNotIsInstance(r, Exception, (path, r))
            if path.startswith('/write'):
                self.assertEqual(r[0], 200, (path, r[2]))
                ok_writes.append(path.split('/')[-1])
            elif path.startswith('/div'):
                self.assertEqual(jsonlib.loads(r[2])['errors']['q']['sqlstate'], '22012', r)
        self.assertEqual(sorted(x[0] for x in self.pg.rows('SELECT v FROM batch_writes')),
                         sorted(ok_writes))

    def test_a_backend_killed_with_a_batch_in_flight(self):
        gd = self.start(depth=8, extra_endpoints=[
            endpoint('/nap/{n}', {'q': sql_call('SELECT $1::int AS n FROM pg_sleep(0.3)',
                                                ['{n}'], row='one', timeout_ms=5000)},
                     params={'n': 'int'})])
        busy = Clients(gd, ['/busy'])
        time.sleep(BUSY_S / 4)
        naps = Clients(gd, ['/nap/%d' % i for i in range(6)])
        # the batch of naps is on the connection once /busy is done
        self.assertTrue(wait_until(lambda: self.pg.active_queries_like('pg_sleep(0.3)'),
                                   timeout=3))
        self.assertGreaterEqual(self.pg.terminate_gatherd_backends(), 1)
        t0 = now()
        results = naps.join()
        busy.join()
        self.assertLess(now() - t0, 4)
        for r in results:
            self.assertNotIsInstance(r, Exception, r)
            st, _, body, _ = r
            if st != 200:  # answered, as JSON, with the connection's loss
                self.assertEqual(jsonlib.loads(body)['errors']['q']['kind'], 'io', body)
        self.assertTrue(any(r[0] != 200 for r in results), results)
        # a new connection, and every call answers again
        self.wait_sql_ready(gd, timeout=5)
        paths = ['/n/%d' % i for i in range(6)]
        self.assertAnswers(self.behind_busy(gd, paths), paths, lambda p: int(p.split('/')[-1]))


if __name__ == '__main__':
    main()
