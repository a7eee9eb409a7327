#!/usr/bin/env python3
"""Retries of SQL calls against a real PostgreSQL 15 (pgfixture.PgCluster) and the real gatherd:
a serialization failure (40001, raised by a plpgsql function on its first N runs, counted by a
sequence, which a rollback does not undo) and a real deadlock (two requests taking advisory
locks in opposite orders; the server's deadlock detector ends one with 40P01) are retried and
answered; a unique violation (23505) is not; attempts run out; a backoff that cannot end before
the call's deadline is not started; the postgres section's "retry" is every SQL call's default
but never applies to a call that is not a plain SELECT nor marked idempotent; the budget refuses;
metrics count; and `gatherd -t` names the place of a "retry" that cannot be.
"""

import json as jsonlib
import os
import re
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (GatherdTestCase, config, endpoint, free_port, main,  # noqa: E402
                     run_gatherd, wait_until)
from test_operations import admin_get  # noqa: E402
from test_postgres import Clients, PgTestCase, sql_call  # noqa: E402

FLAKY = r'''
SET client_min_messages = warning;
CREATE OR REPLACE FUNCTION flaky(seq regclass, fails int, code text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v bigint := nextval(seq);
BEGIN
    IF v <= fails THEN
        RAISE EXCEPTION 'simulated failure % of %', v, fails USING ERRCODE = code;
    END IF;
    RETURN v;
END $$;
CREATE TABLE IF NOT EXISTS writes (id serial PRIMARY KEY, v bigint);
'''

FAST = {'backoff_ms': 5, 'max_backoff_ms': 20}


class SqlRetryTest(PgTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.pg.psql(FLAKY)
        cls.seqs = 0

    def seq(self):
        """A fresh sequence: the number of runs of one flaky call."""
        type(self).seqs += 1
        name = 'runs_%d' % type(self).seqs
        self.pg.psql('CREATE SEQUENCE %s' % name)
        return name

    def runs(self, seq):
        return int(self.pg.scalar('SELECT CASE WHEN is_called THEN last_value ELSE 0 END '
                                  'FROM %s' % seq))

    def flaky_ep(self, path, seq, fails, code, retry=None, sql=None, **kw):
        c = sql_call(sql or "SELECT flaky('%s', %d, '%s') AS v" % (seq, fails, code), row='one',
                     **kw)
        if retry is not None:
            c['retry'] = retry
        return endpoint(path, {'r': c})

    def start(self, endpoints, postgres=None, env=None, **top):
        top.setdefault('admin_listen', '127.0.0.1:%d' % free_port())
        gd = self.start_gatherd(self.pg_config(endpoints, postgres=postgres,
                                               expose_error_details=True, **top),
                                env=env or {})
        self.wait_sql_ready(gd)
        return gd

    def metric(self, gd, name):
        st, text = admin_get(int(gd.cfg['admin_listen'].rsplit(':', 1)[1]), '/metrics')
        self.assertEqual(st, 200)
        m = re.search(r'^%s (\d+)$' % name, text, re.M)
        self.assertIsNotNone(m, text)
        return int(m.group(1))

    def test_serialization_failure_is_retried_and_answered(self):
        s = self.seq()
        gd = self.start([self.flaky_ep('/t', s, 2, '40001', dict(attempts=3, **FAST))])
        doc, body, _ = self.get_json(gd, '/t')
        self.assertEqual(doc['r'], {'v': 3}, body)
        self.assertEqual(self.runs(s), 3)
        self.assertEqual(self.metric(gd, 'gatherd_postgres_retries_total'), 2)
        # the access line is written after the answer is sent; one per request (the readiness
        # probe's included), so attempts are the retries plus one per call
        self.assertTrue(wait_until(lambda: re.search(r'calls=r:ok:\d+:a3', gd.log())), gd.log())
        self.assertEqual(self.metric(gd, 'gatherd_postgres_retries_refused_total'), 0)

    def test_real_deadlock_is_retried(self):
        lock = endpoint('/lock/{a}/{b}', {'r': sql_call(
            'SELECT pg_advisory_xact_lock($1::bigint) IS NOT NULL AS a, '
            'pg_sleep(0.3) IS NOT NULL AS s, pg_advisory_xact_lock($2::bigint) IS NOT NULL AS b', ['{a}', '{b}'], row='one',
            timeout_ms=8000, retry=dict(attempts=2, **FAST))},
            params={'a': 'int', 'b': 'int'}, timeout_ms=8000)
        gd = self.start([lock])
        before = self.metric(gd, 'gatherd_postgres_retries_total')
        results = Clients(gd, ['/lock/101/102', '/lock/102/101']).join()
        for res in results:
            self.assertNotIsInstance(res, Exception, res)
            st, _, body, _ = res
            self.assertEqual(st, 200, body)
            self.assertEqual(jsonlib.loads(body)['r'], {'a': True, 's': True, 'b': True})
        self.assertEqual(self.metric(gd, 'gatherd_postgres_retries_total') - before, 1)
        self.assertIn('deadlock detected', self.pg.server_log())

    def test_unique_violation_is_not_retried(self):
        s = self.seq()
        gd = self.start([self.flaky_ep('/t', s, 1, '23505', dict(attempts=3, **FAST))])
        self.failed_call(gd, '/t', 502, 'r', 'sql', '23505')
        self.assertEqual(self.runs(s), 1)
        self.assertEqual(self.metric(gd, 'gatherd_postgres_retries_total'), 0)

    def test_attempts_run_out(self):
        s = self.seq()
        gd = self.start([self.flaky_ep('/t', s, 5, '40P01', dict(attempts=3, **FAST))])
        doc, body, _ = self.get_json(gd, '/t', 502, complete=False)
        self.assertIsNone(doc['r'], body)
        # the answer says how many attempts the call made, as for HTTP calls
        self.assertEqual(doc['errors']['r'].keys_in_order(),
                         ['kind', 'message', 'sqlstate', 'attempts', 'elapsed_ms'], body)
        self.assertEqual(doc['errors']['r']['kind'], 'sql', body)
        self.assertEqual(doc['errors']['r']['sqlstate'], '40P01', body)
        self.assertEqual(doc['errors']['r']['attempts'], 3, body)
        self.assertIn('simulated failure 3 of 5', doc['errors']['r']['message'])
        self.assertEqual(self.runs(s), 3)
        self.assertEqual(self.metric(gd, 'gatherd_postgres_retries_total'), 2)

    def test_no_retry_without_a_policy(self):
        s = self.seq()
        gd = self.start([self.flaky_ep('/t', s, 1, '40001')])
        self.failed_call(gd, '/t', 502, 'r', 'sql', '40001')
        self.assertEqual(self.runs(s), 1)

    def test_a_backoff_that_cannot_end_before_the_deadline_is_not_started(self):
        """Backoffs drawn from [0, 5 s] for a call of 200 ms: nearly all cannot fit, and the
        call fails at once with the server's error rather than waiting into a timeout."""
        eps, seqs = [], []
        for i in range(8):
            s = self.seq()
            seqs.append(s)
            eps.append(self.flaky_ep('/t%d' % i, s, 1, '40001', {
                'attempts': 2, 'backoff_ms': 5000, 'max_backoff_ms': 5000}, timeout_ms=200))
        gd = self.start(eps)
        failed_fast = 0
        for i in range(8):
            st, _, body, elapsed = gd.get('/t%d' % i)
            self.assertIn(st, (200, 502), body)  # never 504: no wait runs into the deadline
            if st == 502:
                self.assertEqual(jsonlib.loads(body)['errors']['r']['sqlstate'], '40001', body)
                self.assertLess(elapsed, 0.15, body)
                self.assertEqual(self.runs(seqs[i]), 1)
                failed_fast += 1
        self.assertGreaterEqual(failed_fast, 5)

    def test_postgres_retry_is_the_default_of_plain_selects_only(self):
        s1, s2, s3 = self.seq(), self.seq(), self.seq()
        gd = self.start([
            self.flaky_ep('/select', s1, 1, '40001'),
            # not a plain SELECT: the section's retry does not apply...
            self.flaky_ep('/with', s2, 1, '40001',
                          sql="WITH x AS (SELECT flaky('%s', 1, '40001') AS v) SELECT v FROM x"
                          % s2),
            # ...unless the call says it is idempotent
            self.flaky_ep('/marked', s3, 1, '40001', idempotent=True,
                          sql="WITH x AS (SELECT flaky('%s', 1, '40001') AS v) SELECT v FROM x"
                          % s3)],
            postgres={'retry': dict(attempts=2, **FAST)})
        doc, body, _ = self.get_json(gd, '/select')
        self.assertEqual(doc['r'], {'v': 2}, body)
        self.failed_call(gd, '/with', 502, 'r', 'sql', '40001')
        self.assertEqual(self.runs(s2), 1)
        doc, body, _ = self.get_json(gd, '/marked')
        self.assertEqual(doc['r'], {'v': 2}, body)

    def test_a_select_marked_not_idempotent_is_not_retried(self):
        s = self.seq()
        gd = self.start([self.flaky_ep('/t', s, 1, '40001', idempotent=False)],
                        postgres={'retry': dict(attempts=3, **FAST)})
        self.failed_call(gd, '/t', 502, 'r', 'sql', '40001')
        self.assertEqual(self.runs(s), 1)

    def test_the_budget_refuses_and_metrics_count(self):
        s = self.seq()
        gd = self.start([self.flaky_ep('/t', s, 1, '40001', dict(attempts=3, **FAST))],
                        postgres={'retry': {'budget_percent': 0, 'min_retries_per_s': 0}})
        attempts_before = self.metric(gd, 'gatherd_postgres_attempts_total')
        self.failed_call(gd, '/t', 502, 'r', 'sql', '40001')
        self.assertEqual(self.runs(s), 1)
        self.assertEqual(self.metric(gd, 'gatherd_postgres_retries_total'), 0)
        self.assertEqual(self.metric(gd, 'gatherd_postgres_retries_refused_total'), 1)
        self.assertEqual(self.metric(gd, 'gatherd_postgres_attempts_total') - attempts_before, 1)

    def sendfail_env(self):
        so = os.environ.get('GD_SENDFAIL_SO')
        if not so or not os.path.exists(so):
            self.skipTest('the send() shim is not built (GD_SENDFAIL_SO)')
        return {'LD_PRELOAD': so, 'GD_SENDFAIL_MARKER': 'gd-sendfail', 'GD_SENDFAIL_TIMES': '1'}

    def test_a_connection_broken_before_the_query_was_sent_is_retried(self):
        """The send() shim breaks the connection as the query's first bytes are written: the
        server never sees that attempt, the retry runs it once."""
        s = self.seq()
        sql = "SELECT /* gd-sendfail */ flaky('%s', 0, '40001') AS v" % s
        gd = self.start([self.flaky_ep('/t', s, 0, '40001', dict(attempts=2, **FAST), sql=sql)],
                        env=self.sendfail_env())
        doc, body, _ = self.get_json(gd, '/t')
        self.assertEqual(doc['r'], {'v': 1}, body)
        self.assertEqual(self.runs(s), 1)  # the broken attempt never reached the server
        self.assertEqual(self.metric(gd, 'gatherd_postgres_retries_total'), 1)
        self.assertTrue(wait_until(lambda: re.search(r'calls=r:ok:\d+:a2', gd.log())), gd.log())

    def test_without_retry_a_connection_broken_before_sending_fails_with_io(self):
        s = self.seq()
        sql = "SELECT /* gd-sendfail */ flaky('%s', 0, '40001') AS v" % s
        gd = self.start([self.flaky_ep('/t', s, 0, '40001', sql=sql)], env=self.sendfail_env())
        doc, body, _ = self.failed_call(gd, '/t', 502, 'r', 'io')
        self.assertEqual(self.runs(s), 0)
        doc, body, _ = self.get_json(gd, '/t')  # the connection is re-made
        self.assertEqual(doc['r'], {'v': 1}, body)


class SqlRetryConfigTest(GatherdTestCase):
    """`gatherd -t`: a "retry" that cannot apply is an error naming its place."""

    def check(self, calls, postgres=None):
        cfg = config([endpoint('/x', calls)], {'s': 'http://127.0.0.1:1'},
                     postgres=dict({'conninfo': 'host=127.0.0.1 port=1 dbname=x'},
                                   **(postgres or {})))
        cfg['listen'] = ['127.0.0.1:1']
        with tempfile.NamedTemporaryFile('w', suffix='.json', delete=False) as f:
            jsonlib.dump(cfg, f)
        self.addCleanup(os.unlink, f.name)
        r = run_gatherd(['-t', '-c', f.name])
        return r.returncode, r.stdout + r.stderr

    def test_errors_name_their_place(self):
        R = {'attempts': 3}
        cases = {
            'retry on an INSERT': ({'w': sql_call('INSERT INTO writes (v) VALUES (1)', retry=R)},
                                   None, 'endpoints[0].calls.w.retry', 'idempotent'),
            'retry on a WITH': ({'w': sql_call('WITH x AS (SELECT 1) SELECT * FROM x',
                                               retry=R)},
                                None, 'endpoints[0].calls.w.retry', 'plain SELECT'),
            'retry on a SELECT marked not idempotent': (
                {'w': sql_call('SELECT 1', retry=R, idempotent=False)}, None,
                'endpoints[0].calls.w.retry', 'idempotent'),
            '"on" in a SQL call': ({'w': sql_call('SELECT 1', retry={'on': ['io']})}, None,
                                   'endpoints[0].calls.w.retry.on', '40001'),
            'attempt_timeout_ms in the section': (
                {'w': sql_call('SELECT 1')}, {'retry': {'attempt_timeout_ms': 100}},
                'postgres.retry.attempt_timeout_ms', '40P01'),
            'hedge_after_ms in a call': (
                {'w': sql_call('SELECT 1', retry={'attempts': 2, 'hedge_after_ms': 10})}, None,
                'endpoints[0].calls.w.retry.hedge_after_ms', '40001'),
            'budget in a call': ({'w': sql_call('SELECT 1', retry={'budget_percent': 5})}, None,
                                 'endpoints[0].calls.w.retry.budget_percent', 'postgres'),
            'idempotent not a bool': ({'w': sql_call('SELECT 1', idempotent='yes')}, None,
                                      'endpoints[0].calls.w.idempotent', ''),
            'prepared not a bool': ({'w': sql_call('SELECT 1')}, {'prepared': 'no'},
                                    'postgres.prepared', ''),
        }
        for name, (calls, pg, place, word) in cases.items():
            with self.subTest(case=name):
                rc, out = self.check(calls, pg)
                self.assertEqual(rc, 1, out)
                self.assertIn(place, out)
                self.assertIn(word, out)

    def test_valid_retries(self):
        for name, calls, pg in [
                ('a SELECT', {'w': sql_call('  /* c */ (select 1)', retry={'attempts': 2})},
                 None),
                ('an INSERT marked idempotent',
                 {'w': sql_call('INSERT INTO t VALUES (1) ON CONFLICT DO NOTHING',
                                idempotent=True, retry={'attempts': 2, 'backoff_ms': 1})}, None),
                ('a section default over an INSERT', {'w': sql_call('INSERT INTO t VALUES (1)')},
                 {'retry': {'attempts': 3, 'budget_percent': 10, 'min_retries_per_s': 1},
                  'prepared': False})]:
            with self.subTest(case=name):
                rc, out = self.check(calls, pg)
                self.assertEqual(rc, 0, out)


if __name__ == '__main__':
    main()
