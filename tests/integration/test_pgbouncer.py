#!/usr/bin/env python3
"""gatherd behind a real PgBouncer 1.18 in transaction pooling mode (pgbouncer.PgBouncer, with
fewer server connections than gatherd's pool) in front of a real PostgreSQL 15
(pgfixture.PgCluster): with prepared statements (the default) queries fail as a user would see
it (26000 "prepared statement does not exist" / 42P05 "already exists"); with
"prepared": false many concurrent requests all succeed, arguments stay parameters, a schema
change between queries is rendered with the new columns, and a PgBouncer restart under load
fails calls cleanly and recovers without leaking connections.
"""

import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import endpoint, main, now, wait_until  # noqa: E402
import pgbouncer  # noqa: E402
from test_postgres import (ORDERS_COUNT, BackgroundLoad, Clients, PgTestCase, loads_exact,  # noqa: E402
                           sql_call)

GATHERD_POOL = 6
BOUNCER_POOL = 2


@unittest.skipUnless(pgbouncer.available(), 'pgbouncer not installed (bash scripts/setup.sh)')
class PgBouncerTest(PgTestCase):

    def bouncer(self, **kw):
        return pgbouncer.PgBouncer.for_test(self, self.pg, pool_size=BOUNCER_POOL, **kw)

    def start_behind(self, pgb, endpoints, prepared, ready=True, threads=1, **postgres):
        section = {'pool_size': GATHERD_POOL, 'acquire_timeout_ms': 2000,
                   'connect_timeout_ms': 1000}
        if prepared is not None:
            section['prepared'] = prepared
        section.update(postgres)
        return self.start_pg_gatherd(endpoints, ready=ready, conninfo=pgb.conninfo(),
                                     postgres=section, threads=threads,
                                     expose_error_details=True)

    @staticmethod
    def q_endpoint():
        # Slow enough (10 ms) that concurrent requests use several of gatherd's connections
        # and both of PgBouncer's.
        return endpoint('/q/{n}', {'r': sql_call(
            'SELECT $1::int AS n, count(*) AS c FROM orders, pg_sleep(0.01)', ['{n}'], row='one',
            timeout_ms=5000)}, params={'n': 'int'})

    def burst(self, gd, count, width):
        """@count requests /q/i, @width at a time; [(i, status, body)]."""
        out = []
        for start in range(0, count, width):
            paths = ['/q/%d' % i for i in range(start, min(count, start + width))]
            for i, res in zip(range(start, count), Clients(gd, paths).join()):
                self.assertNotIsInstance(res, Exception, res)
                out.append((i, res[0], res[2]))
        return out

    def test_prepared_statements_fail_behind_transaction_pooling(self):
        pgb = self.bouncer()
        gd = self.start_behind(pgb, [self.q_endpoint()], prepared=None, ready=False)
        results = self.burst(gd, 120, 12)
        failures = {}
        for i, st, body in results:
            doc = loads_exact(body)
            if st == 200:
                self.assertEqual(doc['r'], {'n': i, 'c': ORDERS_COUNT}, body)
                continue
            # what a user sees: a 502 whose error names the SQL failure and its SQLSTATE
            self.assertEqual(st, 502, body)
            self.assertIsNone(doc['r'], body)
            self.assertPgError(doc['errors']['r'], 'sql', doc['errors']['r'].get('sqlstate'))
            failures.setdefault(doc['errors']['r']['sqlstate'], doc['errors']['r']['message'])
        self.assertTrue(failures, 'every query succeeded behind transaction pooling with '
                        'prepared statements: the test does not show the problem')
        self.assertLessEqual(set(failures), {'26000', '42P05'}, failures)
        for state, msg in failures.items():
            self.assertRegex(msg, r'prepared statement "gd_\d+" (does not exist|already exists)')
        print('\n  prepared: true behind PgBouncer: %d of %d failed; e.g. %r'
              % (sum(st != 200 for _, st, _ in results), len(results), failures),
              file=sys.stderr)

    def test_unprepared_concurrent_requests_all_succeed(self):
        pgb = self.bouncer()
        tricky = "O'Reilly\\ $1 \"; DROP TABLE orders; --"
        gd = self.start_behind(pgb, [
            self.q_endpoint(),
            endpoint('/echo', {'e': sql_call('SELECT $1::text AS s, length($1) AS n',
                                             ['{query.s}'], row='one')},
                     params={'query.s': 'string'})], prepared=False)
        results = self.burst(gd, 300, 24)
        bad = [(i, st, body) for i, st, body in results if st != 200]
        self.assertEqual(bad, [], 'unprepared queries failed behind PgBouncer')
        for i, st, body in results:
            self.assertEqual(loads_exact(body)['r'], {'n': i, 'c': ORDERS_COUNT}, body)
        # a value is a bound parameter, never SQL text
        import urllib.parse
        doc, body, _ = self.get_json(gd, '/echo?s=' + urllib.parse.quote(tricky))
        self.assertEqual(doc['e'], {'s': tricky, 'n': len(tricky)}, body)
        self.assertOrdersTableIntact()
        # PgBouncer refuses the startup parameter "options" (the statement_timeout backstop):
        # gatherd connects without it and says so once (one thread)
        self.assertEqual(gd.log().count('refuses the startup parameter "options"'), 1, gd.log())
        # gatherd's connections share PgBouncer's few server connections
        self.assertLessEqual(len(pgb.clients()), GATHERD_POOL)
        self.assertLessEqual(len(self.pg.backends("datname = 'gatherd' AND backend_type = "
                                                  "'client backend' AND pid <> "
                                                  "pg_backend_pid()")), BOUNCER_POOL)

    def test_unprepared_follows_a_schema_change(self):
        """The per-statement column cache is checked against each result's own description:
        a column whose type changes between two runs of the same SQL renders as the new type
        (prepared, the server would refuse: "cached plan must not change result type")."""
        self.pg.psql('DROP TABLE IF EXISTS shifting; CREATE TABLE shifting (v int); '
                     'INSERT INTO shifting VALUES (7)')
        pgb = self.bouncer()
        gd = self.start_behind(pgb, [endpoint('/s', {'s': sql_call('SELECT * FROM shifting',
                                                                   row='one')})],
                               prepared=False)
        doc, body, _ = self.get_json(gd, '/s')
        self.assertEqual(doc['s'], {'v': 7}, body)
        self.pg.psql("ALTER TABLE shifting ALTER COLUMN v TYPE text USING 'seven' || v; "
                     "ALTER TABLE shifting ADD COLUMN w bool DEFAULT true")
        for _ in range(2 * GATHERD_POOL):  # on every connection
            doc, body, _ = self.get_json(gd, '/s')
            self.assertEqual(doc['s'], {'v': 'seven7', 'w': True}, body)

    def test_bouncer_restart_under_load(self):
        pgb = self.bouncer()
        gd = self.start_behind(pgb, [self.q_endpoint()], prepared=False, threads=2)
        load = BackgroundLoad(gd, 6)
        log = load.log
        settle = 4.0
        try:
            time.sleep(0.7)
            t_restart = now()
            pgb.restart()
            t_back = now()
            recovered_at = wait_until(
                lambda: next((r[0] for r in list(log) if r[0] > t_back and r[2] == 200
                              and r[1] != '/_http'), None), timeout=10.0)
            time.sleep(max(0.0, t_back + settle + 1.5 - now()))
        finally:
            load.stop()
        self.assertTrue(gd.alive(), 'gatherd died: rc=%s\n%s' % (gd.returncode, gd.log()[-4000:]))
        self.assertIsNotNone(recovered_at, 'no SQL call succeeded within 10 s of the restart; '
                             'log:\n%s' % gd.log()[-4000:])
        kinds = {}
        for t, path, st, body in log:
            self.assertIsNotNone(st, 'request %s failed at the client: %r' % (path, body))
            if path == '/_http':
                self.assertEqual(st, 200, body)
                continue
            doc = loads_exact(body)  # every answer is a JSON answer
            if st == 200:
                self.assertEqual(doc['r'], {'n': int(path.rsplit('/', 1)[1]), 'c': ORDERS_COUNT})
                continue
            # a clean failure: a gateway status and a kind that says what happened
            self.assertIn(st, (502, 503, 504), body)
            self.assertGreater(t, t_restart - 0.2, 'failure before the restart: %r' % body)
            kind = doc['errors']['r']['kind']
            self.assertIn(kind, ('io', 'unavailable', 'pool_timeout', 'timeout'), body)
            kinds[(st, kind)] = kinds.get((st, kind), 0) + 1
        late = [r for r in log if r[0] > t_back + settle and r[1] != '/_http']
        self.assertGreater(len(late), 20, 'too few requests after recovery')
        self.assertEqual([(round(r[0] - t_back, 2), r[2], r[3]) for r in late if r[2] != 200],
                         [], 'SQL calls still fail %.0f s after PgBouncer is back' % settle)
        print('\n  PgBouncer restart: failures by (status, kind) %r; first success %.2f s after'
              % (kinds, recovered_at - t_back), file=sys.stderr)
        # no leaked connections: at most the pool's, on PgBouncer and on the server
        self.assertTrue(wait_until(lambda: len(pgb.clients()) <= GATHERD_POOL, timeout=3.0),
                        pgb.clients())
        self.assertTrue(wait_until(lambda: len(self.pg.backends(
            "datname = 'gatherd' AND backend_type = 'client backend' AND "
            "pid <> pg_backend_pid()")) <= BOUNCER_POOL, timeout=3.0))


if __name__ == '__main__':
    main()
