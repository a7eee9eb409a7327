#!/usr/bin/env python3
"""Postgres calls, against a real PostgreSQL 15 server the tests start themselves
(pgfixture.PgCluster, scripts/pg-cluster.sh) and the real gatherd binary with real stub
upstreams: the type mapping, args binding, row "one", SQL errors with SQLSTATE, a slow query
cancelled at its timeout next to HTTP calls, pool exhaustion, Postgres down at startup, a
server restart mid-load, backends killed under gatherd, SIGTERM with queries in flight,
`gatherd -t` on SQL configs, and a password that never reaches the log.

One cluster per test class (setUpClass); tests that stop the server start their own.
"""

import json as jsonlib
import os
import re
import signal
import socket
import struct
import sys
import tempfile
import threading
import time
import urllib.request
from decimal import Decimal

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (GatherdTestCase, OrderedPairs, call, config, endpoint,  # noqa: E402
                     free_port, loads_ordered, main, media_type, now, run_gatherd,
                     wait_until)
from pgfixture import PgCluster  # noqa: E402
from test_operations import admin_get  # noqa: E402

# elapsed_ms is whole milliseconds counted from the request's start; a timeout of T ms may
# report T - 1.
SLACK_MS = 1

SCHEMA = r'''
SET client_min_messages = warning;
CREATE TABLE orders (
    id           bigint        PRIMARY KEY,
    user_id      integer       NOT NULL,
    product_name text          NOT NULL,
    quantity     integer       NOT NULL,
    price        numeric(10,2) NOT NULL
);
INSERT INTO orders VALUES
    (1, 1, 'Widget', 2, 12.50),
    (2, 1, 'Gadget "deluxe", v2', 1, 0.99),
    (3, 2, 'Gizmo', 5, 1234567.00);
'''
ORDERS_COUNT = 3

USER_1 = {'id': 1, 'name': 'Ann'}
USER_1_BYTES = jsonlib.dumps(USER_1).encode()


# ---------------------------------------------------------------------------------------------
# builders and helpers

def sql_call(sql, args=None, **kw):
    """An endpoints[i].calls.NAME entry for a Postgres query."""
    d = {'sql': sql}
    if args is not None:
        d['args'] = list(args)
    d.update(kw)
    return d


def loads_exact(body):
    """JSON with key order kept (OrderedPairs) and non-integer numbers as Decimal (exact)."""
    return jsonlib.loads(body, parse_float=Decimal, object_pairs_hook=OrderedPairs)


def raw_member(body, key, text):
    """True when @body holds "key": followed by exactly @text (the raw bytes of the value)."""
    pat = rb'"' + re.escape(key.encode()) + rb'"\s*:\s*' + re.escape(text.encode()) + \
        rb'\s*[,}\]]'
    return re.search(pat, body) is not None


_ADMIN_OFF = None


def admin_off():
    """{"admin_listen": null} when this gatherd knows the key (so no test binds the default
    admin port), else {}."""
    global _ADMIN_OFF
    if _ADMIN_OFF is None:
        cfg = config([endpoint('/x', {'x': call('s', '/x')})], {'s': 'http://127.0.0.1:1'},
                     admin_listen=None)
        cfg['listen'] = ['127.0.0.1:1']
        with tempfile.NamedTemporaryFile('w', suffix='.json', delete=False) as f:
            jsonlib.dump(cfg, f)
        try:
            _ADMIN_OFF = run_gatherd(['-t', '-c', f.name]).returncode == 0
        finally:
            os.unlink(f.name)
    return {'admin_listen': None} if _ADMIN_OFF else {}


class Clients:
    """Concurrent GETs, each on its own connection: (status, headers, body, elapsed) or the
    exception, per request, with the monotonic start time."""

    def __init__(self, gd, paths, stagger=0.0, timeout=20.0):
        self.paths = list(paths)
        self.results = [None] * len(self.paths)
        self.started = [None] * len(self.paths)
        self.threads = []
        for i, p in enumerate(self.paths):
            t = threading.Thread(target=self._run, args=(gd, i, p, timeout), daemon=True)
            self.threads.append(t)
            t.start()
            if stagger:
                time.sleep(stagger)

    def _run(self, gd, i, path, timeout):
        self.started[i] = now()
        try:
            self.results[i] = gd.get(path, timeout=timeout)
        except Exception as e:  # reported by the test
            self.results[i] = e

    def join(self, timeout=30.0):
        for t in self.threads:
            t.join(timeout)
        return self.results



class BackgroundLoad:
    """Requests to @gd from @nthreads threads until stop(): /q/N three times in four, /_http
    the fourth (N unique per request); each recorded in .log as (started, path, status, body),
    with the exception instead of the body when the client failed."""

    def __init__(self, gd, nthreads):
        self.log = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._loop, args=(gd, k), daemon=True)
                         for k in range(nthreads)]
        for t in self._threads:
            t.start()

    def _loop(self, gd, k):
        i = 0
        while not self._stop.is_set():
            path = '/q/%d' % (k * 100000 + i) if i % 4 else '/_http'
            t = now()
            try:
                st, _, body, _ = gd.get(path, timeout=10)
                rec = (t, path, st, body)
            except Exception as e:
                rec = (t, path, None, e)
            with self._lock:
                self.log.append(rec)
            i += 1
            time.sleep(0.005)

    def stop(self):
        self._stop.set()
        for t in self._threads:
            t.join(15)

class PgTestCase(GatherdTestCase):
    """Starts one cluster for the class (SHARED_CLUSTER) with SCHEMA loaded, and a stub
    upstream 's' for every test."""

    SHARED_CLUSTER = True
    pg = None

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        if cls.SHARED_CLUSTER:
            cls.pg = PgCluster.for_class(cls)
            cls.pg.psql(SCHEMA)

    def setUp(self):
        self.stub = self.start_stub()
        self.stub.add('/users/1', json=USER_1)
        self.stub.add('/ok', json={'ok': True})

    # -- gatherd ----------------------------------------------------------------------------
    def pg_config(self, endpoints, pg=None, conninfo=None, postgres=None, threads=1, **top):
        """A config with the stub as upstream 's', a postgres section (conninfo of @pg or
        the class cluster unless @conninfo), the test's endpoints, and /_pg_ready (SQL) and
        /_http (HTTP only) endpoints."""
        if conninfo is None:
            conninfo = (pg or self.pg).conninfo()
        section = {'conninfo': conninfo}
        section.update(postgres or {})
        eps = list(endpoints) + [
            endpoint('/_pg_ready', {'ready': sql_call('SELECT 1 AS ready', row='one')}),
            endpoint('/_http', {'ok': call('s', '/ok')})]
        extra = admin_off()
        extra.update(top)
        return config(eps, {'s': self.stub}, threads=threads, postgres=section, **extra)

    def start_pg_gatherd(self, endpoints, ready=True, **kw):
        gd = self.start_gatherd(self.pg_config(endpoints, **kw))
        if ready:
            self.wait_sql_ready(gd)
        return gd

    def wait_sql_ready(self, gd, timeout=10.0, streak=None):
        """Waits until SQL calls succeed: @streak (default 3 per thread) answers of
        /_pg_ready in a row, each on a new connection (so every thread's pool is up)."""
        threads = gd.cfg.get('threads', 1) or 2
        need = streak or 3 * threads
        deadline = now() + timeout
        ok = 0
        while ok < need:
            st, _, body, _ = gd.get('/_pg_ready')
            ok = ok + 1 if st == 200 else 0
            if ok < need:
                if now() > deadline:
                    self.fail('SQL calls did not succeed within %.0f s (last answer %d %r); '
                              'log:\n%s' % (timeout, st, body, gd.log()[-4000:]))
                time.sleep(0.02 if st == 200 else 0.1)
        return True

    def get_json(self, gd, path, status=200, complete=True, headers=None):
        """GET @path, checks status, content type and X-Gatherd-Complete; returns (doc, body,
        elapsed) with doc parsed by loads_exact."""
        st, hdrs, body, elapsed = gd.request('GET', path, headers=headers)
        self.assertEqual(st, status, body)
        self.assertEqual(media_type(hdrs), 'application/json', body)
        if complete is not None:
            self.assertEqual(hdrs.get('X-Gatherd-Complete'), 'true' if complete else 'false',
                             body)
        try:
            doc = loads_exact(body)
        except ValueError:
            self.fail('answer is not JSON: %r' % body)
        return doc, body, elapsed

    # -- assertions -------------------------------------------------------------------------
    def assertPgError(self, err, kind, sqlstate=None):
        """One errors.<call> object of a Postgres call: kind, message, [sqlstate,] elapsed_ms
        in this order; sqlstate exactly when @sqlstate is given."""
        self.assertIsInstance(err, dict, err)
        keys = err.keys_in_order() if isinstance(err, OrderedPairs) else list(err)
        expected = ['kind', 'message'] + (['sqlstate'] if sqlstate else []) + ['elapsed_ms']
        self.assertEqual(keys, expected, err)
        self.assertEqual(err['kind'], kind, err)
        self.assertIsInstance(err['message'], str)
        self.assertTrue(err['message'], err)
        self.assertIsInstance(err['elapsed_ms'], int, err)
        self.assertNotIsInstance(err['elapsed_ms'], bool)
        self.assertGreaterEqual(err['elapsed_ms'], 0)
        if sqlstate:
            self.assertEqual(err['sqlstate'], sqlstate, err)

    def failed_call(self, gd, path, status, name, kind, sqlstate=None, complete=False):
        """GET @path: status, null key, errors.<name> of @kind (errors last); returns
        (doc, body, elapsed)."""
        doc, body, elapsed = self.get_json(gd, path, status, complete)
        self.assertIn(name, doc, body)
        self.assertIsNone(doc[name], body)
        self.assertEqual(doc.keys_in_order()[-1], 'errors', body)
        self.assertIn(name, doc['errors'], body)
        self.assertPgError(doc['errors'][name], kind, sqlstate)
        return doc, body, elapsed

    def assertOrdersTableIntact(self, pg=None):
        pg = pg or self.pg
        self.assertEqual(pg.scalar("SELECT to_regclass('orders') IS NOT NULL"), 't')
        self.assertEqual(pg.scalar('SELECT count(*) FROM orders'), str(ORDERS_COUNT))


# ---------------------------------------------------------------------------------------------

class TypeMappingTest(PgTestCase):
    """Every column type maps to JSON as README says; numeric digits byte-exact."""

    def one_row(self, sql, name='r'):
        gd = self.start_pg_gatherd([endpoint('/t', {name: sql_call(sql, row='one')})])
        doc, body, _ = self.get_json(gd, '/t')
        self.assertEqual(doc.keys_in_order(), [name], body)
        return doc[name], body, gd

    def test_integers_and_oid(self):
        row, body, _ = self.one_row(
            'SELECT (-32768)::int2 AS i2, 32767::int2 AS i2max, 2147483647::int4 AS i4, '
            '(-9223372036854775808)::int8 AS i8min, 9223372036854775807::int8 AS i8, '
            '4294967295::oid AS o, 0::int4 AS zero')
        self.assertEqual(row, {'i2': -32768, 'i2max': 32767, 'i4': 2147483647,
                               'i8min': -9223372036854775808, 'i8': 9223372036854775807,
                               'o': 4294967295, 'zero': 0}, body)
        self.assertEqual(row.keys_in_order(), ['i2', 'i2max', 'i4', 'i8min', 'i8', 'o', 'zero'])
        for k, v in row.items():
            self.assertIs(type(v), int, (k, body))
        # exact digits (a double would turn 9223372036854775807 into 9223372036854775808)
        self.assertTrue(raw_member(body, 'i8', '9223372036854775807'), body)
        self.assertTrue(raw_member(body, 'i8min', '-9223372036854775808'), body)

    def test_floats_nan_and_infinity_are_null(self):
        row, body, _ = self.one_row(
            "SELECT 1.5::float4 AS f4, 0.1::float8 AS f8, -2.5e-10::float8 AS small, "
            "'1e300'::float8 AS big, '-0'::float8 AS negzero, "
            "'NaN'::float8 AS nan8, 'NaN'::float4 AS nan4, 'Infinity'::float8 AS inf, "
            "'-Infinity'::float8 AS ninf, 'Infinity'::float4 AS inf4")
        expected = {'f4': 1.5, 'f8': 0.1, 'small': -2.5e-10, 'big': 1e300, 'negzero': 0.0,
                    'nan8': None, 'nan4': None, 'inf': None, 'ninf': None, 'inf4': None}
        self.assertEqual(set(row), set(expected), body)
        for k, v in expected.items():
            got = row[k]
            if v is None:
                self.assertIsNone(got, (k, body))
            else:
                self.assertIsInstance(got, (int, Decimal), (k, body))  # a number, not a string
                self.assertEqual(float(got), v, (k, body))

    def test_numeric_keeps_exact_digits(self):
        row, body, _ = self.one_row(
            "SELECT 12.50::numeric(10,2) AS price, 12345678901234567890.123::numeric AS big, "
            "-0.000100::numeric AS small, 1e30::numeric AS e30, 0::numeric AS zero, "
            "1e-7::numeric AS tiny, 'NaN'::numeric AS nan, 'Infinity'::numeric AS inf, "
            "'-Infinity'::numeric AS ninf, NULL::numeric AS nul")
        digits = {'price': '12.50', 'big': '12345678901234567890.123', 'small': '-0.000100',
                  'e30': '1000000000000000000000000000000', 'zero': '0', 'tiny': '0.0000001'}
        for k, text in digits.items():
            self.assertTrue(raw_member(body, k, text),
                            'numeric %s: expected the digits %s verbatim in %r' % (k, text, body))
            self.assertEqual(Decimal(str(row[k])), Decimal(text), (k, body))
            self.assertNotIsInstance(row[k], str, (k, body))
        for k in ('nan', 'inf', 'ninf', 'nul'):
            self.assertIsNone(row[k], (k, body))
        self.assertEqual(row.keys_in_order(), ['price', 'big', 'small', 'e30', 'zero', 'tiny',
                                               'nan', 'inf', 'ninf', 'nul'])

    def test_bool_and_null(self):
        row, body, _ = self.one_row(
            'SELECT true AS t, false AS f, NULL::bool AS nb, NULL::int AS ni, NULL::text AS nt, '
            'NULL::jsonb AS nj, NULL::int[] AS na, NULL::timestamptz AS nts, NULL AS untyped')
        self.assertEqual(row, {'t': True, 'f': False, 'nb': None, 'ni': None, 'nt': None,
                               'nj': None, 'na': None, 'nts': None, 'untyped': None}, body)
        self.assertTrue(raw_member(body, 't', 'true'), body)
        self.assertTrue(raw_member(body, 'f', 'false'), body)
        self.assertTrue(raw_member(body, 'nt', 'null'), body)

    def test_json_and_jsonb_are_embedded_documents(self):
        row, body, _ = self.one_row(
            r"""SELECT '{"b": [1, 2],   "a": "x"}'::json AS j, """
            r"""'{"b":1, "a":[1,2]}'::jsonb AS jb, '"str"'::jsonb AS js, '12.50'::json AS jn, """
            r"""'null'::jsonb AS jnull, '[]'::json AS je, """
            r"""'{"u": "\u00e9\ud83d\ude00", "q": "a\"b\\c\n"}'::jsonb AS ju, """
            r"""true::text::jsonb AS jt""")
        self.assertEqual(row['j'], {'b': [1, 2], 'a': 'x'}, body)
        self.assertEqual(row['jb'], {'a': [1, 2], 'b': 1}, body)
        self.assertEqual(row['js'], 'str', body)  # the document "str", not the text '"str"'
        self.assertEqual(row['jn'], Decimal('12.50'), body)
        self.assertIsNone(row['jnull'], body)
        self.assertEqual(row['je'], [], body)
        self.assertEqual(row['ju'], {'u': '\u00e9\U0001F600', 'q': 'a"b\\c\n'}, body)
        self.assertIs(row['jt'], True, body)
        # embedded as the server wrote them: json keeps its text, jsonb is the server's form
        self.assertIn(b'{"b": [1, 2],   "a": "x"}', body)
        self.assertIn(b'{"a": [1, 2], "b": 1}', body)
        self.assertTrue(raw_member(body, 'jn', '12.50'), body)
        self.assertTrue(raw_member(body, 'js', '"str"'), body)

    def test_arrays(self):
        row, body, _ = self.one_row(
            r"""SELECT ARRAY[1,2,3]::int[] AS ints, ARRAY[1,NULL,3]::int8[] AS with_null, """
            r"""ARRAY['a"b', 'c,d', NULL, 'NULL', '', E'e\\f', ' sp ', E'l1\nl2', '{x}', """
            r"""'é😀']::text[] AS texts, """
            r"""ARRAY[[1,2],[3,4]]::int[] AS nested, """
            r"""ARRAY[[[1],[2]],[[3],[NULL]]]::int2[] AS deep, """
            r"""ARRAY[ARRAY['a','b'],ARRAY['c d',NULL]]::text[] AS nested_text, """
            r"""'{}'::int[] AS empty, """
            r"""ARRAY[1.10, 12345678901234567890.5, 'NaN', NULL]::numeric[] AS nums, """
            r"""ARRAY['{"a":1}'::jsonb, '[1,2]'::jsonb, '"s"'::jsonb, NULL] AS docs, """
            r"""ARRAY['{"k": [true]}'::json] AS jdocs, """
            r"""ARRAY[true,false,NULL] AS bools, """
            r"""ARRAY['NaN'::float8, 1.5, '-Infinity'] AS floats, """
            r"""ARRAY['2026-01-02'::date] AS dates, """
            r"""ARRAY['a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid] AS uuids""")
        expected = {
            'ints': [1, 2, 3],
            'with_null': [1, None, 3],
            'texts': ['a"b', 'c,d', None, 'NULL', '', 'e\\f', ' sp ', 'l1\nl2', '{x}',
                      '\u00e9\U0001F600'],
            'nested': [[1, 2], [3, 4]],
            'deep': [[[1], [2]], [[3], [None]]],
            'nested_text': [['a', 'b'], ['c d', None]],
            'empty': [],
            'nums': [Decimal('1.10'), Decimal('12345678901234567890.5'), None, None],
            'docs': [{'a': 1}, [1, 2], 's', None],
            'jdocs': [{'k': [True]}],
            'bools': [True, False, None],
            'floats': [None, Decimal('1.5'), None],
            'dates': ['2026-01-02'],
            'uuids': ['a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'],
        }
        for k, v in expected.items():
            with self.subTest(column=k):
                self.assertEqual(row.get(k, '<missing>'), v, body)
        self.assertEqual(row.keys_in_order(), list(expected))
        # numeric elements keep their digits
        m = re.search(rb'"nums"\s*:\s*\[\s*1\.10\s*,\s*12345678901234567890\.5\s*,', body)
        self.assertTrue(m, 'numeric[] digits not verbatim in %r' % body)
        self.assertIsInstance(row['nums'][0], Decimal)

    def test_text_and_other_types_are_strings(self):
        text = 'say "hi" \\ back\nnew line\ttab \u00e9 \u65e5\u672c \U0001F600 \x01 </script>'
        pg_text = "E'" + text.replace('\\', '\\\\').replace("'", "''").replace('\n', '\\n') \
            .replace('\t', '\\t').replace('\x01', '\\x01') + "'"
        others = ("'2026-01-02 03:04:05.678+00'::timestamptz", "'2026-01-02'::date",
                  "'2026-01-02 03:04:05'::timestamp", "interval '1 day 2 hours'",
                  "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid", "'\\xdeadbeef'::bytea",
                  "'127.0.0.1/32'::inet", "'ab'::char(4)", "'x'::varchar(5)", "'nm'::name")
        names = ['ts', 'd', 'tsn', 'iv', 'u', 'b', 'ip', 'ch', 'vc', 'nm']
        sql = ('SELECT %s AS t, \'123\'::text AS numeric_text, \'\'::text AS empty, '
               '\'null\'::text AS null_text, 7 AS "we""ird é", ' % pg_text +
               ', '.join('%s AS %s' % (e, n) for e, n in zip(others, names)))
        row, body, _ = self.one_row(sql)
        self.assertEqual(row['t'], text, body)
        self.assertEqual(row['numeric_text'], '123', body)
        self.assertEqual(row['empty'], '', body)
        self.assertEqual(row['null_text'], 'null', body)
        self.assertEqual(row['we"ird \u00e9'], 7, body)
        # the server's text form of each (same database, same session defaults)
        server = self.pg.rows('SELECT ' + ', '.join(others))[0]  # psql prints the text form
        self.assertEqual(server[5], '\\xdeadbeef')
        for n, want in zip(names, server):
            with self.subTest(column=n):
                self.assertIsInstance(row[n], str, body)
                self.assertEqual(row[n], want, body)
        self.assertNotIn(b'\x01', body)  # control characters are escaped
        self.assertNotIn(b'\n', body)

    def test_rows_of_a_table_and_no_rows(self):
        gd = self.start_pg_gatherd([endpoint('/users/{id}/orders', {'orders': sql_call(
            'SELECT id, product_name, quantity, price FROM orders WHERE user_id = $1 '
            'ORDER BY id', ['{id}'])}, params={'id': 'int'})])
        doc, body, _ = self.get_json(gd, '/users/1/orders')
        self.assertEqual(doc['orders'], [
            {'id': 1, 'product_name': 'Widget', 'quantity': 2, 'price': Decimal('12.50')},
            {'id': 2, 'product_name': 'Gadget "deluxe", v2', 'quantity': 1,
             'price': Decimal('0.99')}], body)
        self.assertEqual(doc['orders'][0].keys_in_order(),
                         ['id', 'product_name', 'quantity', 'price'])
        self.assertTrue(raw_member(body, 'price', '12.50'), body)
        self.assertTrue(body.startswith(b'{"orders":['), body)
        doc, body, _ = self.get_json(gd, '/users/2/orders')
        self.assertTrue(raw_member(body, 'price', '1234567.00'), body)
        # no rows: an empty array, a complete answer
        doc, body, _ = self.get_json(gd, '/users/77/orders')
        self.assertEqual(doc['orders'], [], body)
        self.assertTrue(re.fullmatch(rb'\{"orders":\[\s*\]\}', body), body)

    def test_merged_with_http_calls_in_config_order(self):
        gd = self.start_pg_gatherd([endpoint('/users/{id}/profile', {
            'user': call('s', '/users/{id}'),
            'orders': sql_call('SELECT id, product_name, price FROM orders WHERE user_id = $1 '
                               'ORDER BY id DESC', ['{id}'], timeout_ms=1000),
            'stats': sql_call('SELECT count(*) AS n, sum(price) AS total FROM orders '
                              'WHERE user_id = $1', ['{id}'], row='one')},
            params={'id': 'int'})])
        for _ in range(3):
            doc, body, _ = self.get_json(gd, '/users/1/profile')
            self.assertEqual(doc.keys_in_order(), ['user', 'orders', 'stats'], body)
            self.assertTrue(body.startswith(b'{"user":' + USER_1_BYTES + b',"orders":['), body)
            self.assertEqual([o['id'] for o in doc['orders']], [2, 1], body)
            self.assertEqual(doc['stats'], {'n': 2, 'total': Decimal('13.49')}, body)
            self.assertTrue(raw_member(body, 'total', '13.49'), body)
            self.assertIs(type(doc['stats']['n']), int, body)


# ---------------------------------------------------------------------------------------------

class ArgsTest(PgTestCase):
    """Arguments are bound parameters, from path, query and header templates."""

    INJECTIONS = ['1; DROP TABLE orders', "'; DROP TABLE orders; --", "x' OR '1'='1",
                  '$1', '1) OR (1=1', '"orders"', "Robert'); DROP TABLE orders;--"]

    def test_injection_into_an_int_param_is_a_400(self):
        gd = self.start_pg_gatherd([endpoint('/users/{id}/orders', {'orders': sql_call(
            'SELECT id FROM orders WHERE user_id = $1 ORDER BY id', ['{id}'])},
            params={'id': 'int'})])
        st, hdrs, body, _ = gd.get('/users/1%3B%20DROP%20TABLE%20orders/orders')
        self.assertJsonError(st, hdrs, body, 400)
        self.assertOrdersTableIntact()
        doc, body, _ = self.get_json(gd, '/users/1/orders')
        self.assertEqual(doc['orders'], [{'id': 1}, {'id': 2}], body)

    def test_injection_as_a_string_is_just_a_value(self):
        gd = self.start_pg_gatherd([
            endpoint('/by-name/{name}', {'orders': sql_call(
                'SELECT id FROM orders WHERE product_name = $1', ['{name}'])}),
            endpoint('/search', {'orders': sql_call(
                'SELECT id FROM orders WHERE product_name = $1', ['{query.name}'])}),
            endpoint('/echo/{v}', {'e': sql_call('SELECT $1::text AS v', ['{v}'], row='one')})])
        from urllib.parse import quote
        for value in self.INJECTIONS:
            with self.subTest(value=value):
                enc = quote(value, safe='')
                doc, body, _ = self.get_json(gd, '/by-name/' + enc)
                self.assertEqual(doc['orders'], [], body)
                doc, body, _ = self.get_json(gd, '/search?name=' + enc)
                self.assertEqual(doc['orders'], [], body)
                doc, body, _ = self.get_json(gd, '/echo/' + enc)
                self.assertEqual(doc['e'], {'v': value}, body)
        self.assertOrdersTableIntact()
        # and a real value finds its row
        doc, body, _ = self.get_json(gd, '/search?name=' + quote('Gadget "deluxe", v2', safe=''))
        self.assertEqual(doc['orders'], [{'id': 2}], body)

    def test_args_from_path_query_and_header(self):
        gd = self.start_pg_gatherd([endpoint('/echo/{id}', {'e': sql_call(
            'SELECT $1::text AS p, $2::text AS q, $3::text AS h, $4::text AS mixed',
            ['{id}', '{query.q}', '{header.x-tenant}', 'pre-{id}/{query.q}-post'],
            row='one')}, params={'header.x-tenant': {'required': True}})])
        tenant = "t'1 \"quoted\" ; -- {id} %41"
        doc, body, _ = self.get_json(gd, '/echo/a%20b%2Fc%27?q=x%26y%3Dz%27%22&other=1',
                                     headers={'X-Tenant': tenant})
        # values are bound as they are: decoded from the URL, never percent-encoded again
        self.assertEqual(doc['e'], {'p': "a b/c'", 'q': 'x&y=z\'"', 'h': tenant,
                                    'mixed': 'pre-a b/c\'/x&y=z\'"-post'}, body)
        # a missing required header is a 400 before any query
        st, hdrs, body, _ = gd.get('/echo/1?q=2')
        self.assertJsonError(st, hdrs, body, 400)
        # unicode arrives intact
        doc, body, _ = self.get_json(gd, '/echo/%C3%A9%F0%9F%98%80?q=%E6%97%A5',
                                     headers={'X-Tenant': 'x'})
        self.assertEqual(doc['e']['p'], '\u00e9\U0001F600', body)
        self.assertEqual(doc['e']['q'], '\u65e5', body)

    def test_missing_optional_query_arg_gives_its_default(self):
        gd = self.start_pg_gatherd([endpoint('/numbers', {
            'n': sql_call('SELECT g AS n FROM generate_series(1, 10) AS g ORDER BY g LIMIT $1',
                          ['{query.limit}']),
            'tag': sql_call('SELECT $1::text AS tag, $2::text AS undeclared',
                            ['{query.tag}', '{query.nothing}'], row='one')},
            params={'query.limit': {'type': 'int', 'required': False, 'default': '2'},
                    'query.tag': {'required': False, 'default': 'none'}})])
        doc, body, _ = self.get_json(gd, '/numbers')
        self.assertEqual(doc['n'], [{'n': 1}, {'n': 2}], body)
        self.assertEqual(doc['tag'], {'tag': 'none', 'undeclared': ''}, body)
        doc, body, _ = self.get_json(gd, '/numbers?limit=3&tag=red&nothing=x')
        self.assertEqual(doc['n'], [{'n': 1}, {'n': 2}, {'n': 3}], body)
        self.assertEqual(doc['tag'], {'tag': 'red', 'undeclared': 'x'}, body)
        st, hdrs, body, _ = gd.get('/numbers?limit=3;DROP%20TABLE%20orders')
        self.assertJsonError(st, hdrs, body, 400)
        self.assertOrdersTableIntact()

    def test_parallel_requests_get_their_own_rows(self):
        # several queries in flight on few connections: every answer carries its own argument
        gd = self.start_pg_gatherd([endpoint('/n/{n}', {
            'r': sql_call('SELECT $1::int AS n, $1::int * 2 AS twice', ['{n}'], row='one'),
            'h': call('s', '/ok')}, params={'n': 'int'})],
            threads=2, postgres={'pool_size': 4, 'acquire_timeout_ms': 5000})
        errors = []

        def worker(k):
            for i in range(40):
                n = k * 1000 + i
                try:
                    st, _, body, _ = gd.get('/n/%d' % n)
                    doc = jsonlib.loads(body)
                    if st != 200 or doc['r'] != {'n': n, 'twice': 2 * n}:
                        errors.append((n, st, body))
                except Exception as e:
                    errors.append((n, repr(e)))

        ts = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(120)
        self.assertEqual(errors, [], errors[:5])
        self.assertAlive(gd, '/_http')

    def test_empty_conninfo_uses_the_libpq_environment(self):
        env = {'PGHOST': '127.0.0.1', 'PGPORT': str(self.pg.port), 'PGUSER': 'gatherd',
               'PGDATABASE': 'gatherd'}
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            for conninfo in ('', None):
                cfg = self.pg_config([endpoint('/who', {'w': sql_call(
                    'SELECT current_database() AS db, current_user AS usr, '
                    'inet_server_port() AS port', row='one')})], conninfo='')
                if conninfo is None:
                    del cfg['postgres']['conninfo']
                gd = self.start_gatherd(cfg)
                self.wait_sql_ready(gd)
                doc, body, _ = self.get_json(gd, '/who')
                self.assertEqual(doc['w'], {'db': 'gatherd', 'usr': 'gatherd',
                                            'port': self.pg.port}, body)
                gd.cleanup()
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


# ---------------------------------------------------------------------------------------------

class RowOneTest(PgTestCase):
    """"row": "one": an object, null (404 when required), several rows a failure."""

    def start(self, optional=False):
        return self.start_pg_gatherd([endpoint('/orders/{id}', {
            'user': call('s', '/users/1'),
            'order': sql_call('SELECT id, product_name FROM orders WHERE id = $1', ['{id}'],
                              row='one', optional=optional)}, params={'id': 'int'}),
            endpoint('/users/{id}/order', {
                'user': call('s', '/users/1'),
                'order': sql_call('SELECT id FROM orders WHERE user_id = $1 ORDER BY id',
                                  ['{id}'], row='one', optional=optional)},
                params={'id': 'int'})])

    def test_one_row_is_an_object(self):
        gd = self.start()
        doc, body, _ = self.get_json(gd, '/orders/1')
        self.assertEqual(doc['order'], {'id': 1, 'product_name': 'Widget'}, body)
        self.assertEqual(doc.keys_in_order(), ['user', 'order'], body)
        self.assertTrue(body.startswith(b'{"user":' + USER_1_BYTES + b',"order":{'), body)
        # exactly one row of a multi-row capable query is fine too
        doc, body, _ = self.get_json(gd, '/users/2/order')
        self.assertEqual(doc['order'], {'id': 3}, body)

    def test_no_row_on_a_required_call_is_null_and_404(self):
        gd = self.start()
        doc, body, _ = self.failed_call(gd, '/orders/999', 404, 'order', 'not_found')
        self.assertEqual(doc['user'], USER_1, body)
        self.assertEqual(doc.keys_in_order(), ['user', 'order', 'errors'], body)
        self.assertEqual(list(doc['errors']), ['order'], body)
        self.assertAlive(gd, '/_http')

    def test_no_row_on_an_optional_call_is_null_200_and_complete(self):
        gd = self.start(optional=True)
        doc, body, _ = self.get_json(gd, '/orders/999', 200, complete=True)
        self.assertEqual(body, b'{"user":' + USER_1_BYTES + b',"order":null}')
        doc, body, _ = self.get_json(gd, '/orders/1', 200, complete=True)
        self.assertEqual(doc['order'], {'id': 1, 'product_name': 'Widget'}, body)

    def test_expose_error_details_puts_the_server_message_in_the_answer(self):
        gd = self.start_pg_gatherd([
            endpoint('/missing', {'q': sql_call('SELECT * FROM no_such_table_y')})],
            expose_error_details=True)
        doc, body, _ = self.failed_call(gd, '/missing', 502, 'q', 'sql', sqlstate='42P01')
        self.assertIn('no_such_table_y', doc['errors']['q']['message'], body)

    def test_two_rows_is_a_failure_of_kind_sql(self):
        gd = self.start()
        doc, body, _ = self.failed_call(gd, '/users/1/order', 502, 'order', 'sql')
        self.assertEqual(doc['user'], USER_1, body)
        self.assertNotIn('sqlstate', doc['errors']['order'], body)

    def test_two_rows_on_an_optional_call(self):
        gd = self.start(optional=True)
        doc, body, _ = self.failed_call(gd, '/users/1/order', 200, 'order', 'sql')
        self.assertEqual(doc['user'], USER_1, body)
        # and no row there is data, not a failure
        doc, body, _ = self.get_json(gd, '/users/5/order', 200, complete=True)
        self.assertIsNone(doc['order'])
        self.assertNotIn('errors', doc)


# ---------------------------------------------------------------------------------------------

class LimitsTest(PgTestCase):
    """max_rows and max_body_bytes: past either the call fails with kind too_large at once, and
    its connection is cleaned and kept (the same backend answers the next query)."""

    SERIES = 'SELECT g AS n FROM generate_series(1, $1::int) g'

    def start(self, postgres=None, **limits):
        pg = {'pool_size': 1, 'acquire_timeout_ms': 3000}
        pg.update(postgres or {})
        return self.start_pg_gatherd([
            endpoint('/series/{n}', {'user': call('s', '/users/1'),
                                     'rows': sql_call(self.SERIES, ['{n}'], **limits)},
                     params={'n': 'int'}),
            endpoint('/one/{n}', {'row': sql_call(self.SERIES, ['{n}'], row='one', **limits)},
                     params={'n': 'int'}),
            endpoint('/pid', {'pid': sql_call('SELECT pg_backend_pid() AS pid', row='one')})],
            postgres=pg)

    def backend_pid(self, gd):
        doc, body, _ = self.get_json(gd, '/pid')
        return doc['pid']['pid']

    def assertTooLarge(self, gd, path, max_elapsed=1.0):
        doc, body, elapsed = self.failed_call(gd, path, 502, 'rows', 'too_large')
        self.assertEqual(doc['user'], USER_1, body)
        self.assertLess(elapsed, max_elapsed, 'answered after %.3f s' % elapsed)
        return doc

    def test_max_rows_per_call(self):
        gd = self.start(max_rows=5)
        pid = self.backend_pid(gd)
        doc, body, _ = self.get_json(gd, '/series/5')
        self.assertEqual(doc['rows'], [{'n': i} for i in range(1, 6)], body)
        self.assertTooLarge(gd, '/series/6')
        # the connection was drained and kept: the same backend, fresh answers
        self.assertEqual(self.backend_pid(gd), pid)
        doc, body, _ = self.get_json(gd, '/series/3')
        self.assertEqual(doc['rows'], [{'n': 1}, {'n': 2}, {'n': 3}], body)
        self.assertEqual(self.backend_pid(gd), pid)

    def test_pool_default_and_call_override(self):
        gd = self.start_pg_gatherd([
            endpoint('/d/{n}', {'rows': sql_call(self.SERIES, ['{n}'])}, params={'n': 'int'}),
            endpoint('/o/{n}', {'rows': sql_call(self.SERIES, ['{n}'], max_rows=10)},
                     params={'n': 'int'})],
            postgres={'pool_size': 1, 'max_rows': 3})
        doc, body, _ = self.get_json(gd, '/d/3')
        self.assertEqual(len(doc['rows']), 3, body)
        self.failed_call(gd, '/d/4', 502, 'rows', 'too_large')
        doc, body, _ = self.get_json(gd, '/o/10')
        self.assertEqual(len(doc['rows']), 10, body)
        self.failed_call(gd, '/o/11', 502, 'rows', 'too_large')

    def test_max_body_bytes(self):
        # [{"n":1},{"n":2},{"n":3}] is 25 bytes
        gd = self.start(max_body_bytes=25)
        pid = self.backend_pid(gd)
        doc, body, _ = self.get_json(gd, '/series/3')
        self.assertEqual(len(doc['rows']), 3, body)
        self.assertTooLarge(gd, '/series/4')
        self.assertEqual(self.backend_pid(gd), pid)
        # "one": the single row is bounded too ({"n":1} is 7 bytes)
        gd2 = self.start(max_body_bytes=6)
        st, _, body, _ = gd2.get('/one/1')
        self.assertEqual(st, 502, body)
        self.assertEqual(loads_exact(body)['errors']['row']['kind'], 'too_large', body)

    def test_row_one_keeps_its_rules(self):
        gd = self.start(max_rows=5)
        doc, body, _ = self.get_json(gd, '/one/1')
        self.assertEqual(doc['row'], {'n': 1}, body)
        st, _, body, _ = gd.get('/one/0')
        self.assertEqual(st, 404, body)
        st, _, body, _ = gd.get('/one/2')
        self.assertEqual(st, 502, body)
        self.assertEqual(loads_exact(body)['errors']['row']['kind'], 'sql', body)
        # several rows past max_rows still break the one-row rule first
        st, _, body, _ = gd.get('/one/100000')
        self.assertEqual(st, 502, body)
        self.assertEqual(loads_exact(body)['errors']['row']['kind'], 'sql', body)
        doc, body, _ = self.get_json(gd, '/one/1')
        self.assertEqual(doc['row'], {'n': 1}, body)

    def test_huge_result_fails_fast_and_keeps_the_connection(self):
        """SELECT of 5,000,000 rows with the default limits: too_large long before the result
        could have been read, the HTTP-only endpoint stays prompt meanwhile, and the next
        query runs on the same backend."""
        gd = self.start()
        pid = self.backend_pid(gd)
        for cycle in range(2):
            with self.subTest(cycle=cycle):
                doc = self.assertTooLarge(gd, '/series/5000000', max_elapsed=2.0)
                self.assertIn('elapsed_ms', doc['errors']['rows'])
                # the server stops producing rows (a cancel), the rest is drained
                doc, body, el = self.get_json(gd, '/series/2')
                self.assertEqual(doc['rows'], [{'n': 1}, {'n': 2}], body)
                self.assertLess(el, 2.5)
                self.assertEqual(self.backend_pid(gd), pid)
        self.assertAlive(gd, '/_http')


# ---------------------------------------------------------------------------------------------

class SqlErrorTest(PgTestCase):
    """Server errors become failures of kind sql with the SQLSTATE; connections survive."""

    def test_unknown_table_is_42P01(self):
        gd = self.start_pg_gatherd([
            endpoint('/missing/{id}', {'user': call('s', '/users/1'), 'q': sql_call(
                'SELECT * FROM no_such_table_x WHERE id = $1', ['{id}'])}),
            endpoint('/missing-opt', {'user': call('s', '/users/1'), 'q': sql_call(
                'SELECT * FROM no_such_table_x', optional=True)})],
            postgres={'pool_size': 1})
        for _ in range(3):
            doc, body, _ = self.failed_call(gd, '/missing/1', 502, 'q', 'sql', sqlstate='42P01')
            self.assertEqual(doc['user'], USER_1, body)
            # What failed, not where: the server's message (relation names) stays in the log.
            self.assertEqual(doc['errors']['q']['message'], 'the database reported an error')
            self.assertNotIn(b'no_such_table_x', body)
            self.assertRegex(body, rb'"sqlstate":"42P01","elapsed_ms":\d+\}')
        wait_until(lambda: 'no_such_table_x' in gd.log(), timeout=5)
        line = [l for l in gd.log().splitlines() if 'call failed' in l and 'no_such_table_x' in l]
        self.assertTrue(line, gd.log()[-2000:])
        self.assertIn('kind=sql', line[0])
        self.assertIn('request_id=', line[0])
        doc, body, _ = self.failed_call(gd, '/missing-opt', 200, 'q', 'sql', sqlstate='42P01')
        # the one connection is still good
        self.wait_sql_ready(gd, timeout=2)

    def test_a_statement_that_failed_to_prepare_works_once_its_table_exists(self):
        self.addCleanup(self.pg.psql, 'DROP TABLE IF EXISTS late_table')
        gd = self.start_pg_gatherd([endpoint('/late', {'q': sql_call(
            'SELECT v FROM late_table ORDER BY v')})], postgres={'pool_size': 1})
        self.failed_call(gd, '/late', 502, 'q', 'sql', sqlstate='42P01')
        self.pg.psql('CREATE TABLE late_table (v int); INSERT INTO late_table VALUES (7)')
        doc, body, _ = self.get_json(gd, '/late')
        self.assertEqual(doc['q'], [{'v': 7}], body)

    def test_invalid_input_for_an_int_column_is_22P02(self):
        gd = self.start_pg_gatherd([
            endpoint('/by-user/{uid}', {'q': sql_call(
                'SELECT id FROM orders WHERE user_id = $1', ['{uid}'])}),
            endpoint('/by-user-opt/{uid}', {'user': call('s', '/users/1'), 'q': sql_call(
                'SELECT id FROM orders WHERE user_id = $1', ['{uid}'], optional=True)})],
            postgres={'pool_size': 1})
        for path in ('/by-user/abc', '/by-user/1%3B%20DROP%20TABLE%20orders', '/by-user/1.5'):
            with self.subTest(path=path):
                self.failed_call(gd, path, 502, 'q', 'sql', sqlstate='22P02')
        self.assertOrdersTableIntact()
        doc, body, _ = self.failed_call(gd, '/by-user-opt/abc', 200, 'q', 'sql',
                                        sqlstate='22P02')
        self.assertEqual(doc['user'], USER_1, body)
        doc, body, _ = self.get_json(gd, '/by-user/2')
        self.assertEqual(doc['q'], [{'id': 3}], body)

    def test_errors_at_execution_alternate_with_successes_on_one_connection(self):
        gd = self.start_pg_gatherd([endpoint('/div/{n}', {'q': sql_call(
            'SELECT 10 / $1::int AS x', ['{n}'], row='one')})],
            postgres={'pool_size': 1, 'acquire_timeout_ms': 2000})
        for i in range(10):
            self.failed_call(gd, '/div/0', 502, 'q', 'sql', sqlstate='22012')
            doc, body, _ = self.get_json(gd, '/div/%d' % (i % 5 + 1))
            self.assertEqual(doc['q'], {'x': 10 // (i % 5 + 1)}, body)

    def test_invalid_utf8_argument_is_answered(self):
        gd = self.start_pg_gatherd([endpoint('/echo/{v}', {'e': sql_call(
            'SELECT $1::text AS v', ['{v}'], row='one')})], postgres={'pool_size': 1})
        st, hdrs, body, _ = gd.get('/echo/%FF%FE')
        self.assertIn(st, (400, 502), body)
        self.assertEqual(media_type(hdrs), 'application/json', body)
        jsonlib.loads(body)
        doc, body, _ = self.get_json(gd, '/echo/fine')
        self.assertEqual(doc['e'], {'v': 'fine'}, body)


# ---------------------------------------------------------------------------------------------

class TimeoutAndPoolTest(PgTestCase):
    """A query past its timeout is cancelled on the server; pool exhaustion is pool_timeout."""

    def wait_no_sleepers(self, pattern, timeout):
        """Seconds until no other session runs a query containing @pattern, or None."""
        t0 = now()
        gone = wait_until(lambda: not self.pg.active_queries_like(pattern), timeout=timeout,
                          interval=0.02)
        return now() - t0 if gone else None

    def test_slow_query_is_cancelled_while_the_http_call_arrives(self):
        self.stub.add('/fast', json={'fast': True}, delay_ms=50)
        gd = self.start_pg_gatherd([
            endpoint('/mixed', {'user': call('s', '/fast'),
                                'slow': sql_call('SELECT 1 AS done FROM pg_sleep(2)',
                                                 timeout_ms=300)}),
            endpoint('/fast/{n}', {'r': sql_call('SELECT $1::int AS n', ['{n}'], row='one')},
                     params={'n': 'int'})],
            postgres={'pool_size': 1, 'acquire_timeout_ms': 1000})
        for cycle in range(3):
            with self.subTest(cycle=cycle):
                doc, body, elapsed = self.failed_call(gd, '/mixed', 504, 'slow', 'timeout')
                self.assertEqual(doc['user'], {'fast': True}, body)
                self.assertEqual(doc.keys_in_order(), ['user', 'slow', 'errors'], body)
                ms = doc['errors']['slow']['elapsed_ms']
                self.assertGreaterEqual(ms, 300 - SLACK_MS, body)
                self.assertLessEqual(ms, 450, body)
                self.assertGreaterEqual(elapsed, 0.29)
                self.assertLess(elapsed, 0.5, 'answered after %.3f s' % elapsed)
                # the cancel reached the server: pg_sleep(2) would run ~1.7 s more otherwise
                took = self.wait_no_sleepers('pg_sleep(2)', timeout=1.2)
                self.assertIsNotNone(took, 'a backend still runs pg_sleep(2) 1.2 s after the '
                                     'timeout: %r' % self.pg.active_queries_like('pg_sleep(2)'))
                # the one connection came back clean: fresh answers, not the cancelled one's
                for n in range(5):
                    doc, body, el = self.get_json(gd, '/fast/%d' % (cycle * 10 + n))
                    self.assertEqual(doc['r'], {'n': cycle * 10 + n}, body)
                    self.assertLess(el, 0.5)
        self.assertAlive(gd, '/_http')

    def test_optional_slow_query_keeps_200(self):
        gd = self.start_pg_gatherd([endpoint('/mixed', {
            'user': call('s', '/users/1'),
            'slow': sql_call('SELECT 1 AS done FROM pg_sleep(2)', timeout_ms=200,
                             optional=True)})])
        doc, body, elapsed = self.failed_call(gd, '/mixed', 200, 'slow', 'timeout')
        self.assertEqual(doc['user'], USER_1, body)
        self.assertLess(elapsed, 0.4)
        self.assertIsNotNone(self.wait_no_sleepers('pg_sleep(2)', timeout=1.2),
                             self.pg.active_queries_like('pg_sleep(2)'))

    def test_endpoint_deadline_bounds_a_query(self):
        gd = self.start_pg_gatherd([endpoint('/d', {
            'user': call('s', '/users/1'),
            'slow': sql_call('SELECT 1 AS done FROM pg_sleep(3)')}, timeout_ms=300)])
        doc, body, elapsed = self.failed_call(gd, '/d', 504, 'slow', 'timeout')
        self.assertEqual(doc['user'], USER_1, body)
        self.assertGreaterEqual(doc['errors']['slow']['elapsed_ms'], 300 - SLACK_MS)
        self.assertLess(elapsed, 0.5)
        self.assertIsNotNone(self.wait_no_sleepers('pg_sleep(3)', timeout=1.5),
                             self.pg.active_queries_like('pg_sleep(3)'))

    def test_pool_exhaustion_gives_pool_timeout(self):
        gd = self.start_pg_gatherd([endpoint('/sleep/{n}', {'r': sql_call(
            'SELECT $1::int AS n FROM pg_sleep(0.5)', ['{n}'], row='one', timeout_ms=3000)},
            params={'n': 'int'})],
            threads=1, postgres={'pool_size': 1, 'acquire_timeout_ms': 100})
        for attempt in range(2):
            with self.subTest(attempt=attempt):
                c = Clients(gd, ['/sleep/1', '/sleep/2'], stagger=0.05)
                results = c.join()
                for r in results:
                    self.assertNotIsInstance(r, Exception, r)
                by_status = sorted(results, key=lambda r: r[0])
                (st_ok, _, body_ok, el_ok), (st_to, hdrs_to, body_to, el_to) = by_status
                self.assertEqual((st_ok, st_to), (200, 502), [r[2] for r in results])
                self.assertGreaterEqual(el_ok, 0.45, body_ok)
                doc = loads_ordered(body_to)
                name_n = jsonlib.loads(body_ok)['r']['n']
                self.assertIsNone(doc['r'], body_to)
                self.assertPgError(doc['errors']['r'], 'pool_timeout')
                ms = doc['errors']['r']['elapsed_ms']
                self.assertGreaterEqual(ms, 100 - SLACK_MS, body_to)
                self.assertLessEqual(ms, 250, body_to)
                self.assertLess(el_to, 0.35, 'pool_timeout answered after %.3f s' % el_to)
                self.assertEqual(hdrs_to.get('X-Gatherd-Complete'), 'false')
                self.assertIn(name_n, (1, 2))
        # the connection is free again
        doc, body, _ = self.get_json(gd, '/sleep/3')
        self.assertEqual(doc['r'], {'n': 3}, body)

    def test_queries_wait_for_a_connection_within_acquire_timeout(self):
        gd = self.start_pg_gatherd([endpoint('/sleep/{n}', {'r': sql_call(
            'SELECT $1::int AS n FROM pg_sleep(0.2)', ['{n}'], row='one', timeout_ms=3000)},
            params={'n': 'int'})],
            threads=1, postgres={'pool_size': 1, 'acquire_timeout_ms': 2000})
        t0 = now()
        results = Clients(gd, ['/sleep/%d' % i for i in range(3)], stagger=0.02).join()
        total = now() - t0
        for i, r in enumerate(results):
            self.assertNotIsInstance(r, Exception, r)
            self.assertEqual(r[0], 200, r[2])
            self.assertEqual(jsonlib.loads(r[2])['r'], {'n': i}, r[2])
        # one connection: the three queries ran one after the other
        self.assertGreaterEqual(total, 0.55)
        self.assertLess(total, 1.5)


    def test_a_query_waiting_behind_a_cancelled_one_succeeds(self):
        # one connection: the slow query times out and is cancelled; the query queued behind
        # it must then run normally (not be hit by the cancel, not see its result)
        gd = self.start_pg_gatherd([
            endpoint('/slow', {'r': sql_call('SELECT 1 AS done FROM pg_sleep(2)',
                                             timeout_ms=300)}),
            endpoint('/fast/{n}', {'r': sql_call('SELECT $1::int AS n', ['{n}'], row='one',
                                                 timeout_ms=2000)}, params={'n': 'int'})],
            threads=1, postgres={'pool_size': 1, 'acquire_timeout_ms': 1500})
        for attempt in range(3):
            with self.subTest(attempt=attempt):
                slow, fast = Clients(gd, ['/slow', '/fast/%d' % attempt], stagger=0.05).join()
                self.assertNotIsInstance(slow, Exception, slow)
                self.assertNotIsInstance(fast, Exception, fast)
                self.assertEqual(slow[0], 504, slow[2])
                self.assertPgError(loads_ordered(slow[2])['errors']['r'], 'timeout')
                self.assertEqual((fast[0], jsonlib.loads(fast[2]).get('r')),
                                 (200, {'n': attempt}), fast[2])
                self.assertLess(fast[3], 1.0)
                self.assertIsNotNone(self.wait_no_sleepers('pg_sleep(2)', timeout=1.2),
                                     self.pg.active_queries_like('pg_sleep(2)'))

    def test_a_query_timing_out_while_queued_does_not_cancel_the_running_one(self):
        # one connection busy with a 0.5 s query; a second query's call timeout (300 ms) passes
        # while it waits: it fails with kind timeout, and the running query is not cancelled
        gd = self.start_pg_gatherd([
            endpoint('/long', {'r': sql_call('SELECT 7 AS seven FROM pg_sleep(0.5)', row='one',
                                             timeout_ms=3000)}),
            endpoint('/short', {'r': sql_call('SELECT 1 AS done FROM pg_sleep(2)',
                                              timeout_ms=300)})],
            threads=1, postgres={'pool_size': 1, 'acquire_timeout_ms': 1500})
        for attempt in range(2):
            with self.subTest(attempt=attempt):
                long_, short = Clients(gd, ['/long', '/short'], stagger=0.05).join()
                self.assertNotIsInstance(long_, Exception, long_)
                self.assertNotIsInstance(short, Exception, short)
                self.assertEqual((long_[0], jsonlib.loads(long_[2]).get('r')),
                                 (200, {'seven': 7}), long_[2])
                self.assertGreaterEqual(long_[3], 0.45)
                self.assertEqual(short[0], 504, short[2])
                err = loads_ordered(short[2])['errors']['r']
                self.assertPgError(err, 'timeout')
                self.assertLess(short[3], 0.5)
                # the queued query never runs on after its timeout
                self.assertIsNotNone(self.wait_no_sleepers('pg_sleep(2)', timeout=1.2),
                                     self.pg.active_queries_like('pg_sleep(2)'))

    def test_sql_calls_of_one_request_run_at_once(self):
        gd = self.start_pg_gatherd([endpoint('/two', {
            'a': sql_call('SELECT 1 AS a FROM pg_sleep(0.3)', row='one'),
            'b': sql_call('SELECT 2 AS b FROM pg_sleep(0.3)', row='one'),
            'user': call('s', '/users/1')})],
            threads=1, postgres={'pool_size': 2, 'acquire_timeout_ms': 2000})
        self.assertTrue(wait_until(lambda: len(self.pg.gatherd_backends()) >= 2, timeout=5.0),
                        self.pg.gatherd_backends())
        for _ in range(3):
            doc, body, elapsed = self.get_json(gd, '/two')
            self.assertTrue(body.startswith(b'{"a":{') and
                            body.endswith(b'},"user":' + USER_1_BYTES + b'}'), body)
            self.assertEqual((doc['a'], doc['b']), ({'a': 1}, {'b': 2}), body)
            self.assertGreaterEqual(elapsed, 0.29)
            self.assertLess(elapsed, 0.5, 'two 0.3 s queries took %.3f s: run one after the '
                            'other?' % elapsed)

    def test_pool_size_is_for_the_whole_process(self):
        pool = 4
        gd = self.start_pg_gatherd([endpoint('/sleep/{n}', {'r': sql_call(
            'SELECT $1::int AS n FROM pg_sleep(0.3)', ['{n}'], row='one', timeout_ms=5000)},
            params={'n': 'int'})],
            threads=2, postgres={'pool_size': pool, 'acquire_timeout_ms': 4000})
        peak = [0, 0]
        done = threading.Event()

        def watch():
            while not done.is_set():
                peak[0] = max(peak[0], len(self.pg.gatherd_backends()))
                peak[1] = max(peak[1], len(self.pg.active_queries_like('pg_sleep(0.3)')))
                time.sleep(0.02)

        w = threading.Thread(target=watch, daemon=True)
        w.start()
        t0 = now()
        results = Clients(gd, ['/sleep/%d' % i for i in range(12)]).join()
        total = now() - t0
        done.set()
        w.join(5)
        for i, r in enumerate(results):
            self.assertNotIsInstance(r, Exception, r)
            self.assertEqual((r[0], jsonlib.loads(r[2]).get('r')), (200, {'n': i}), r[2])
        self.assertLessEqual(peak[0], pool, 'more connections than pool_size')
        self.assertLessEqual(peak[1], pool)
        self.assertGreaterEqual(peak[1], 2)
        self.assertGreaterEqual(total, 0.85, '12 queries of 0.3 s on %d connections' % pool)

    def test_pool_size_below_threads_is_for_the_whole_process(self):
        # pool_size 2 over 4 threads: never more than 2 backends, connecting ones included,
        # whichever threads hold them, and every thread's requests are served
        pool, threads = 2, 4
        admin_port = free_port()
        gd = self.start_pg_gatherd([endpoint('/sleep/{n}', {'r': sql_call(
            'SELECT $1::int AS n FROM pg_sleep(0.05)', ['{n}'], row='one', timeout_ms=8000)},
            params={'n': 'int'})], ready=False,
            threads=threads, postgres={'pool_size': pool, 'acquire_timeout_ms': 6000},
            admin_listen='127.0.0.1:%d' % admin_port)
        peak = [0]
        done = threading.Event()

        def watch():
            while not done.is_set():
                peak[0] = max(peak[0], len(self.pg.gatherd_backends()))
                time.sleep(0.005)

        w = threading.Thread(target=watch, daemon=True)
        w.start()
        self.addCleanup(done.set)
        # ready once any thread has a connection up: the threads without one take a unit when
        # their queries need it
        self.assertTrue(wait_until(lambda: admin_get(admin_port, '/readyz')[0] == 200,
                                   timeout=10), admin_get(admin_port, '/readyz'))
        self.wait_sql_ready(gd)
        t0 = now()
        results = []
        for _ in range(3):  # waves of requests on new connections, spread over the threads
            results += Clients(gd, ['/sleep/%d' % i for i in range(16)]).join()
        total = now() - t0
        done.set()
        w.join(5)
        for r in results:
            self.assertNotIsInstance(r, Exception, r)
            self.assertEqual(r[0], 200, r[2])
        self.assertLessEqual(peak[0], pool, 'more backends than pool_size: %d' % peak[0])
        self.assertGreaterEqual(peak[0], 1)
        self.assertEqual(admin_get(admin_port, '/readyz')[0], 200)
        # 48 queries of 50 ms on 2 connections
        self.assertGreaterEqual(total, 1.1, 'done in %.2f s' % total)
        # quiet again: the idle connections are kept
        time.sleep(0.3)
        self.assertEqual(len(self.pg.gatherd_backends()), pool)

    def test_statement_timeout_backstop(self):
        """Every connection has statement_timeout set to the longest SQL call's timeout plus
        1 s (here /_pg_ready's 5000 ms), unless the conninfo's options set it."""
        eps = [endpoint('/st', {'t': sql_call("SELECT current_setting('statement_timeout') AS t",
                                              row='one', timeout_ms=300)}, timeout_ms=1000)]
        gd = self.start_pg_gatherd(eps)
        doc, body, _ = self.get_json(gd, '/st')
        self.assertEqual(doc['t'], {'t': '6s'}, body)
        gd.terminate()
        gd = self.start_pg_gatherd(eps, conninfo=self.pg.conninfo(
            options="'-c statement_timeout=2500'"))
        doc, body, _ = self.get_json(gd, '/st')
        self.assertEqual(doc['t'], {'t': '2500ms'}, body)

    def test_a_large_result(self):
        gd = self.start_pg_gatherd([endpoint('/big/{n}', {'rows': sql_call(
            "SELECT g AS n, repeat('x', 100) || g AS s, g * 1.50 AS price "
            "FROM generate_series(1, $1::int) AS g ORDER BY g", ['{n}'], timeout_ms=10000,
            max_rows=20000)},  # over the default of 10000 rows, within this call's own limit
            params={'n': 'int'}, timeout_ms=10000)])
        for n in (20000, 0, 1, 20000):
            doc, body, _ = self.get_json(gd, '/big/%d' % n)
            rows = doc['rows']
            self.assertEqual(len(rows), n)
            for i, r in enumerate(rows):
                if r != {'n': i + 1, 's': 'x' * 100 + str(i + 1),
                         'price': Decimal(i + 1) * Decimal('1.50')}:
                    self.fail('row %d is %r' % (i, r))
            if n:
                self.assertTrue(raw_member(body, 'price', str(n * Decimal('1.50'))),
                                body[-200:])

# ---------------------------------------------------------------------------------------------

class CancelHole:
    """A TCP proxy on 127.0.0.1 in front of a cluster that forwards every session but takes each
    cancel request (the 16-byte CancelRequest, code 80877102) and never answers nor closes it:
    to PQcancel() it is a server host that accepts and goes silent, so a cancel hangs."""

    CANCEL_REQUEST_CODE = 80877102

    def __init__(self, target_port):
        self.target_port = target_port
        self.cancels = 0
        self._socks = []
        self._lock = threading.Lock()
        self._lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._lsock.bind(('127.0.0.1', 0))
        self._lsock.listen(64)
        self.port = self._lsock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _keep(self, sock):
        with self._lock:
            self._socks.append(sock)

    def _accept(self):
        while True:
            try:
                conn, _ = self._lsock.accept()
            except OSError:
                return  # closed
            self._keep(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    @staticmethod
    def _read_exactly(sock, n):
        data = b''
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                return None
            data += chunk
        return data

    def _serve(self, conn):
        try:
            head = self._read_exactly(conn, 8)
            if head is None:
                return
            if struct.unpack('!ii', head)[1] == self.CANCEL_REQUEST_CODE:
                with self._lock:
                    self.cancels += 1
                return  # held open, never read, never answered: closed by close()
            up = socket.create_connection(('127.0.0.1', self.target_port))
            self._keep(up)
            up.sendall(head)
        except OSError:
            return
        threading.Thread(target=self._pump, args=(up, conn), daemon=True).start()
        self._pump(conn, up)

    @staticmethod
    def _pump(src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def held_cancels(self):
        with self._lock:
            return self.cancels

    def close(self):
        self._lsock.close()
        with self._lock:
            socks, self._socks = self._socks, []
        for s in socks:
            s.close()


class HangingCancelTest(PgTestCase):
    """Cancels to a server host that never answers them: they hold only the pool's own
    canceller thread, so name resolution (the pool's reconnects to host=localhost, and an HTTP
    upstream named localhost) goes on, SQL calls work again at once, and SIGTERM ends promptly."""

    # more cancels than libuv's 4 shared threads and than the canceller's line (one being sent
    # and 4 waiting): 3 are dropped at once
    POOL_SIZE = 8

    def metric(self, admin_port, name):
        with urllib.request.urlopen('http://127.0.0.1:%d/metrics' % admin_port, timeout=5) as r:
            text = r.read().decode()
        m = re.search(r'^%s (\d+)$' % re.escape(name), text, re.M)
        self.assertIsNotNone(m, text)
        return int(m.group(1))

    def test_hung_cancels_hold_neither_resolution_nor_sql_nor_shutdown(self):
        hole = CancelHole(self.pg.port)
        self.addCleanup(hole.close)
        self.addCleanup(self.pg.terminate_gatherd_backends)
        self.stub.add('/named', json={'named': True})
        admin_port = free_port()
        cfg = self.pg_config([
            endpoint('/slow', {'slow': sql_call('SELECT 1 AS done FROM pg_sleep(30)',
                                                timeout_ms=300)}),
            endpoint('/named', {'n': call('named', '/named')}),
            endpoint('/fast', {'r': sql_call('SELECT 1 AS one', row='one')})],
            conninfo=self.pg.conninfo(host='localhost', port=hole.port),
            postgres={'pool_size': self.POOL_SIZE, 'acquire_timeout_ms': 3000,
                      'connect_timeout_ms': 1000},
            admin_listen='127.0.0.1:%d' % admin_port)
        cfg['upstreams']['named'] = {'url': 'http://localhost:%d' % self.stub.port}
        gd = self.start_gatherd(cfg)
        self.wait_sql_ready(gd)
        # every connection of the pool busy with a query that times out and is cancelled
        clients = Clients(gd, ['/slow'] * self.POOL_SIZE)
        for r in clients.join():
            self.assertNotIsInstance(r, Exception, r)
            self.assertEqual(r[0], 504, r[2])
        self.assertTrue(wait_until(lambda: hole.held_cancels() >= 1, timeout=2.0),
                        'no cancel request reached the proxy')
        # an HTTP upstream named localhost: resolved while the cancels hang
        t0 = now()
        st, _, body, _ = gd.get('/named')
        self.assertEqual(st, 200, body)
        self.assertLess(now() - t0, 1.0)
        # SQL works again within the drain timeout (2 s): the pool re-resolves localhost and
        # re-makes the connections whose cancels could not be sent
        t0 = now()
        ok = wait_until(lambda: gd.get('/fast')[0] == 200, timeout=6.0, interval=0.1)
        self.assertTrue(ok, 'no SQL call succeeded within 6 s of the hung cancels; log:\n%s'
                        % gd.log()[-3000:])
        self.assertLess(now() - t0, 3.5)
        for _ in range(5):
            doc, body, el = self.get_json(gd, '/fast')
            self.assertEqual(doc['r'], {'one': 1}, body)
        # the cancel that found the line full was dropped and counted (gauges lag by 100 ms)
        self.assertTrue(wait_until(lambda: self.metric(
            admin_port, 'gatherd_postgres_cancels_dropped_total') >= 3, timeout=2.0))
        # ... but warned about once: a server that stops answering cancels must not flood the log
        warnings = [line for line in gd.log().splitlines()
                    if 'cancel requests already wait (a server' in line]
        self.assertEqual(len(warnings), 1, '\n'.join(warnings))
        # the server stops the queries whose cancels hang, at statement_timeout (the longest SQL
        # call's 5000 ms, plus 1 s), not after their 30 s
        self.assertTrue(wait_until(lambda: not self.pg.active_queries_like('pg_sleep(30)'),
                                   timeout=8.0, interval=0.1),
                        self.pg.active_queries_like('pg_sleep(30)'))
        # SIGTERM: the canceller's thread, still hung, is waited for a bounded time only
        t0 = now()
        rc = gd.terminate(timeout=10.0)
        self.assertEqual(rc, 0, gd.log()[-3000:])
        self.assertLess(now() - t0, 4.0)


# ---------------------------------------------------------------------------------------------

class OutageTest(PgTestCase):
    """The server down at startup, restarted under load, backends killed: gatherd recovers
    without a restart. Each test runs its own cluster."""

    SHARED_CLUSTER = False

    def own_cluster(self):
        pg = PgCluster.for_test(self)
        pg.psql(SCHEMA)
        return pg

    def test_postgres_down_at_startup_then_up(self):
        pg = self.own_cluster()
        pg.stop()
        gd = self.start_pg_gatherd([
            endpoint('/q/{n}', {'r': sql_call('SELECT $1::int AS n', ['{n}'], row='one')},
                     params={'n': 'int'}),
            endpoint('/mixed', {'user': call('s', '/users/1'),
                                'orders': sql_call('SELECT id FROM orders ORDER BY id',
                                                   optional=True)})],
            pg=pg, ready=False, threads=1,
            postgres={'pool_size': 2, 'acquire_timeout_ms': 1000, 'connect_timeout_ms': 2000})
        self.assertAlive(gd, '/_http')
        time.sleep(0.3)  # let the first connection attempts fail
        for i in range(5):
            doc, body, elapsed = self.failed_call(gd, '/q/%d' % i, 502, 'r', 'unavailable')
            self.assertLess(doc['errors']['r']['elapsed_ms'], 100, body)
            self.assertLess(elapsed, 0.15, 'unavailable answered after %.3f s' % elapsed)
        doc, body, _ = self.failed_call(gd, '/mixed', 200, 'orders', 'unavailable')
        self.assertEqual(doc['user'], USER_1, body)
        self.assertAlive(gd, '/_http')
        # the server comes up: SQL calls succeed without restarting gatherd
        pg.start()
        t_up = now()
        ok = wait_until(lambda: gd.get('/q/1')[0] == 200, timeout=10.0, interval=0.05)
        took = now() - t_up
        self.assertTrue(ok, 'SQL calls still fail 10 s after the server came up: %r\nlog:\n%s'
                        % (gd.get('/q/1')[2], gd.log()[-4000:]))
        self.assertLess(took, 5.0, 'SQL calls succeeded only %.1f s after the server came up'
                        % took)
        for i in range(20):
            doc, body, _ = self.get_json(gd, '/q/%d' % i)
            self.assertEqual(doc['r'], {'n': i}, body)
        doc, body, _ = self.get_json(gd, '/mixed')
        self.assertEqual(doc['orders'], [{'id': 1}, {'id': 2}, {'id': 3}], body)
        self.assertTrue(gd.alive())

    def test_postgres_down_with_pool_size_below_threads_fails_fast_on_every_thread(self):
        # threads that hold no unit of the process's 2 connections learn from those that do
        # that the server is down, and fail at once too
        pg = self.own_cluster()
        pg.stop()
        gd = self.start_pg_gatherd([
            endpoint('/q/{n}', {'r': sql_call('SELECT $1::int AS n', ['{n}'], row='one')},
                     params={'n': 'int'})],
            pg=pg, ready=False, threads=4,
            postgres={'pool_size': 2, 'acquire_timeout_ms': 2000, 'connect_timeout_ms': 2000})
        self.assertAlive(gd, '/_http')
        time.sleep(0.3)  # let the first connection attempts fail
        results = Clients(gd, ['/q/%d' % i for i in range(16)]).join()
        for r in results:
            self.assertNotIsInstance(r, Exception, r)
            self.assertEqual(r[0], 502, r[2])
            self.assertIn(b'"unavailable"', r[2])
            self.assertLess(r[3], 0.5, 'unavailable answered after %.3f s' % r[3])
        pg.start()
        ok = wait_until(lambda: gd.get('/q/1')[0] == 200, timeout=10.0, interval=0.05)
        self.assertTrue(ok, 'SQL calls still fail 10 s after the server came up; log:\n%s'
                        % gd.log()[-4000:])
        results = Clients(gd, ['/q/%d' % i for i in range(16)]).join()
        for i, r in enumerate(results):
            self.assertNotIsInstance(r, Exception, r)
            self.assertEqual((r[0], jsonlib.loads(r[2]).get('r')), (200, {'n': i}), r[2])
        self.assertLessEqual(len(pg.gatherd_backends()), 2)

    def test_server_restart_mid_load(self):
        pg = self.own_cluster()
        pool = 4
        gd = self.start_pg_gatherd([
            endpoint('/q/{n}', {'r': sql_call('SELECT $1::int AS n, count(*) AS c FROM orders',
                                              ['{n}'], row='one', timeout_ms=2000)},
                     params={'n': 'int'})],
            pg=pg, threads=2,
            postgres={'pool_size': pool, 'acquire_timeout_ms': 500, 'connect_timeout_ms': 1000})
        load = BackgroundLoad(gd, 4)
        log = load.log
        settle = 5.0  # "within a few seconds" of the server being back, every call succeeds
        try:
            time.sleep(0.5)
            t_restart = now()
            pg.restart()
            t_back = now()
            recovered_at = wait_until(
                lambda: next((r[0] for r in list(log) if r[0] > t_back and r[2] == 200
                              and r[1] != '/_http'), None), timeout=10.0)
            time.sleep(max(0.0, t_back + settle + 2.0 - now()))
        finally:
            load.stop()
        self.assertTrue(gd.alive(), 'gatherd died: rc=%s\n%s' % (gd.returncode, gd.log()[-4000:]))
        self.assertIsNotNone(recovered_at, 'no SQL call succeeded within 10 s after the '
                             'restart; log:\n%s' % gd.log()[-4000:])
        self.assertLess(recovered_at - t_back, settle)
        kinds = {}
        last_failure = None
        for t, path, st, body in log:
            self.assertIsNotNone(st, 'request %s failed at the client: %r' % (path, body))
            if path == '/_http':
                self.assertEqual(st, 200, body)  # HTTP-only calls never notice
                continue
            doc = loads_exact(body)  # every answer is a JSON answer
            if st == 200:
                n = int(path.rsplit('/', 1)[1])
                self.assertEqual(doc['r'], {'n': n, 'c': ORDERS_COUNT}, body)
            else:
                self.assertIn(st, (502, 504), body)
                self.assertGreater(t, t_restart - 0.1, 'failure before the restart: %r' % body)
                kind = doc['errors']['r']['kind']
                kinds[kind] = kinds.get(kind, 0) + 1
                last_failure = (t - t_back, body)
        late = [r for r in log if r[0] > t_back + settle and r[1] != '/_http']
        self.assertGreater(len(late), 20, 'too few requests after recovery')
        bad = [(round(r[0] - t_back, 2), r[2], r[3]) for r in late if r[2] != 200]
        self.assertEqual(bad, [], 'SQL calls still fail %.0f s after the server is back '
                         '(first success %.2f s after; failure kinds %r)'
                         % (settle, recovered_at - t_back, kinds))
        # no connection leaked by the reconnects
        backends = wait_until(lambda: len(pg.gatherd_backends()) <= pool, timeout=3.0)
        self.assertTrue(backends, pg.gatherd_backends())

    def test_query_in_flight_when_the_server_stops_fails_promptly(self):
        pg = self.own_cluster()
        gd = self.start_pg_gatherd([
            endpoint('/sleep', {'user': call('s', '/users/1'), 'r': sql_call(
                'SELECT 1 AS s FROM pg_sleep(5)', row='one', timeout_ms=8000)},
                timeout_ms=9000),
            endpoint('/q/{n}', {'r': sql_call('SELECT $1::int AS n', ['{n}'], row='one')},
                     params={'n': 'int'})],
            pg=pg, threads=1, postgres={'pool_size': 2, 'acquire_timeout_ms': 1000})
        c = Clients(gd, ['/sleep'])
        self.assertTrue(wait_until(lambda: pg.active_queries_like('pg_sleep(5)'), timeout=3.0))
        pg.stop()
        t_stopped = now()
        (r,) = c.join()
        answered = now()
        self.assertNotIsInstance(r, Exception, r)
        self.assertEqual(r[0], 502, r[2])
        doc = loads_ordered(r[2])
        self.assertEqual(doc['user'], USER_1, r[2])
        self.assertNotEqual(doc['errors']['r']['kind'], 'timeout', r[2])
        self.assertLess(answered - t_stopped, 1.0, 'the broken query was answered %.2f s after '
                        'the server stopped: %r' % (answered - t_stopped, r[2]))
        # while it is down: fast failures; once it is back: success
        doc, body, elapsed = self.failed_call(gd, '/q/1', 502, 'r', 'unavailable')
        self.assertLess(elapsed, 0.15)
        pg.start()
        self.assertTrue(wait_until(lambda: gd.get('/q/2')[0] == 200, timeout=6.0),
                        gd.log()[-4000:])
        self.assertAlive(gd, '/_http')

    def test_terminated_backends_are_replaced(self):
        pg = self.own_cluster()
        gd = self.start_pg_gatherd([
            endpoint('/q/{n}', {'r': sql_call('SELECT $1::int AS n', ['{n}'], row='one')},
                     params={'n': 'int'}),
            endpoint('/sleep', {'r': sql_call('SELECT 1 AS s FROM pg_sleep(0.2)', row='one')})],
            pg=pg, threads=1, postgres={'pool_size': 2, 'acquire_timeout_ms': 1000})
        # use both connections
        for r in Clients(gd, ['/sleep', '/sleep']).join():
            self.assertEqual(r[0], 200, r)
        self.assertEqual(len(pg.gatherd_backends()), 2, pg.gatherd_backends())
        killed = pg.terminate_gatherd_backends()
        self.assertEqual(killed, 2)
        t0 = now()
        ok = wait_until(lambda: gd.get('/q/1')[0] == 200, timeout=5.0, interval=0.05)
        self.assertTrue(ok, 'no SQL success within 5 s after the backends were terminated; '
                        'log:\n%s' % gd.log()[-4000:])
        # within a second more both connections are healthy again
        time.sleep(1.0)
        for i in range(20):
            doc, body, _ = self.get_json(gd, '/q/%d' % i)
            self.assertEqual(doc['r'], {'n': i}, body)
        for r in Clients(gd, ['/sleep', '/sleep']).join():
            self.assertEqual(r[0], 200, r)
        self.assertLessEqual(len(pg.gatherd_backends()), 2, pg.gatherd_backends())
        self.assertLess(now() - t0, 15)
        self.assertAlive(gd, '/_http')


# ---------------------------------------------------------------------------------------------

class ReadinessTest(PgTestCase):
    """/readyz and a Postgres outage (postgres.readiness): before the first connection 503;
    after it, by default, an outage is reported but keeps the replica in the load balancer."""

    SHARED_CLUSTER = False

    def start_with_admin(self, pg, readiness=None):
        section = {'pool_size': 2, 'acquire_timeout_ms': 500, 'connect_timeout_ms': 1000}
        if readiness is not None:
            section['readiness'] = readiness
        port = free_port()
        gd = self.start_pg_gatherd([
            endpoint('/q/{n}', {'r': sql_call('SELECT $1::int AS n', ['{n}'], row='one')},
                     params={'n': 'int'})],
            pg=pg, ready=False, threads=2, postgres=section,
            admin_listen='127.0.0.1:%d' % port)
        return gd, port

    def readyz(self, port):
        try:
            st, body = admin_get(port, '/readyz')
        except OSError as e:  # the admin listener is not up yet
            return 0, {'error': str(e)}
        return st, jsonlib.loads(body)

    def postgres_up(self, port):
        st, text = admin_get(port, '/metrics')
        self.assertEqual(st, 200)
        m = re.search(r'^gatherd_postgres_up (\d)$', text, re.M)
        self.assertIsNotNone(m, text[-2000:])
        return int(m.group(1))

    def test_an_outage_after_the_first_connection_keeps_the_replica_ready(self):
        pg = PgCluster.for_test(self)
        pg.stop()
        gd, port = self.start_with_admin(pg)
        self.assertTrue(wait_until(lambda: self.readyz(port)[0] != 0, timeout=5))
        time.sleep(0.3)
        st, doc = self.readyz(port)
        self.assertEqual(st, 503, doc)  # never connected: not ready, as before
        self.assertIn('postgres', doc['reason'])
        self.assertEqual(self.postgres_up(port), 0)
        pg.start()
        self.assertTrue(wait_until(lambda: self.readyz(port)[0] == 200, timeout=10),
                        self.readyz(port))
        self.assertEqual(self.readyz(port), (200, {'ready': True}))
        self.assertEqual(self.postgres_up(port), 1)
        pg.stop()
        # the outage shows in the metrics and in /readyz's body, not in its status
        self.assertTrue(wait_until(lambda: self.postgres_up(port) == 0, timeout=10))
        st, doc = self.readyz(port)
        self.assertEqual(st, 200, doc)
        self.assertEqual(doc['ready'], True)
        self.assertIn('postgres', doc['degraded'])
        self.failed_call(gd, '/q/1', 502, 'r', 'unavailable')
        self.assertAlive(gd, '/_http')
        pg.start()
        self.assertTrue(wait_until(lambda: self.postgres_up(port) == 1, timeout=10))
        self.assertEqual(self.readyz(port), (200, {'ready': True}))

    def test_readiness_connected_follows_every_outage(self):
        pg = PgCluster.for_test(self)
        gd, port = self.start_with_admin(pg, readiness='connected')
        self.assertTrue(wait_until(lambda: self.readyz(port)[0] == 200, timeout=10))
        pg.stop()
        self.assertTrue(wait_until(lambda: self.readyz(port)[0] == 503, timeout=10),
                        self.readyz(port))
        self.assertIn('postgres', self.readyz(port)[1]['reason'])
        pg.start()
        self.assertTrue(wait_until(lambda: self.readyz(port)[0] == 200, timeout=10))

    def test_readiness_ignored_is_ready_before_any_connection(self):
        pg = PgCluster.for_test(self)
        pg.stop()
        gd, port = self.start_with_admin(pg, readiness='ignored')
        self.assertTrue(wait_until(lambda: self.readyz(port)[0] == 200, timeout=5))
        st, doc = self.readyz(port)
        self.assertIn('postgres', doc['degraded'])


class ShutdownTest(PgTestCase):
    """SIGTERM with SQL calls in flight: answered, exit 0, connections closed."""

    def no_gatherd_backends(self, timeout):
        return wait_until(lambda: not self.pg.gatherd_backends(), timeout=timeout)

    def test_sigterm_with_sql_calls_in_flight(self):
        self.assertTrue(self.no_gatherd_backends(5.0), self.pg.gatherd_backends())
        gd = self.start_pg_gatherd([endpoint('/sleep/{n}', {'r': sql_call(
            'SELECT $1::int AS n FROM pg_sleep(0.5)', ['{n}'], row='one', timeout_ms=5000)},
            params={'n': 'int'})],
            threads=1, postgres={'pool_size': 8, 'acquire_timeout_ms': 3000})
        n = 6
        clients = Clients(gd, ['/sleep/%d' % i for i in range(n)])
        running = wait_until(lambda: len(self.pg.active_queries_like('pg_sleep(0.5)')) >= n,
                             timeout=3.0, interval=0.01)
        self.assertTrue(running, 'the queries did not all reach the server: %r'
                        % self.pg.active_queries_like('pg_sleep(0.5)'))
        gd.signal(signal.SIGTERM)
        results = clients.join()
        for i, r in enumerate(results):
            self.assertNotIsInstance(r, Exception, r)
            self.assertEqual(r[0], 200, r[2])
            self.assertEqual(jsonlib.loads(r[2]), {'r': {'n': i}}, r[2])
        rc = gd.wait(10)
        self.assertEqual(rc, 0, gd.log()[-4000:])
        self.assertTrue(self.no_gatherd_backends(2.0),
                        'gatherd connections left after the exit: %r' % self.pg.gatherd_backends())

    def test_sigterm_when_idle_closes_the_pool(self):
        self.assertTrue(self.no_gatherd_backends(5.0), self.pg.gatherd_backends())
        gd = self.start_pg_gatherd([], threads=2, postgres={'pool_size': 4})
        self.assertTrue(wait_until(lambda: len(self.pg.gatherd_backends()) >= 2, timeout=5.0),
                        self.pg.gatherd_backends())
        for b in self.pg.gatherd_backends():
            self.assertTrue(b[1].startswith('gatherd'), b)
        t0 = now()
        gd.signal(signal.SIGTERM)
        rc = gd.wait(10)
        self.assertEqual(rc, 0, gd.log()[-4000:])
        self.assertLess(now() - t0, 2.0)
        self.assertTrue(self.no_gatherd_backends(2.0), self.pg.gatherd_backends())


# ---------------------------------------------------------------------------------------------

class ConfigCheckTest(GatherdTestCase):
    """`gatherd -t` on SQL configs: no database needed; obvious errors name their JSON path."""

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix='gatherd-pgcfg-')
        self.addCleanup(self.tmp.cleanup)
        self.nowhere = 'host=127.0.0.1 port=%d dbname=gatherd user=gatherd connect_timeout=1' \
            % free_port()

    def good(self):
        cfg = config([endpoint('/users/{id}/profile', {
            'user': call('accounts', '/users/{id}'),
            'orders': sql_call('SELECT id, price FROM orders WHERE user_id = $1 LIMIT $2',
                               ['{id}', '{query.limit}'], timeout_ms=300),
            'stats': sql_call('SELECT count(*) AS n FROM orders WHERE user_id = $1', ['{id}'],
                              row='one', optional=True),
            'all': sql_call('SELECT 1 AS one', row='many')},
            params={'id': 'int', 'query.limit': {'type': 'int', 'required': False,
                                                 'default': '10'}})],
            {'accounts': 'http://127.0.0.1:1'},
            postgres={'conninfo': self.nowhere, 'pool_size': 8, 'acquire_timeout_ms': 200,
                      'connect_timeout_ms': 2000})
        cfg['listen'] = ['127.0.0.1:1']
        return cfg

    def check(self, cfg):
        path = os.path.join(self.tmp.name, 'c.json')
        with open(path, 'w') as f:
            jsonlib.dump(cfg, f, indent=2)
        r = run_gatherd(['-t', '-c', path])
        return r.returncode, r.stdout + r.stderr, path

    def test_sql_config_is_ok_without_a_database(self):
        for variant in ('keywords', 'uri', 'empty', 'absent', 'defaults'):
            with self.subTest(conninfo=variant):
                cfg = self.good()
                if variant == 'uri':
                    cfg['postgres']['conninfo'] = 'postgresql://gatherd@127.0.0.1:%d/gatherd' \
                        % free_port()
                elif variant == 'empty':
                    cfg['postgres']['conninfo'] = ''
                elif variant == 'absent':
                    del cfg['postgres']['conninfo']
                elif variant == 'defaults':
                    cfg['postgres'] = {}
                t0 = now()
                rc, out, path = self.check(cfg)
                self.assertEqual(rc, 0, out)
                self.assertIn('%s: ok' % path, out)
                self.assertLess(now() - t0, 3.0)

    def test_sql_config_errors_name_their_place(self):
        C = 'endpoints[0].calls.orders'

        def m(f):
            def make():
                cfg = self.good()
                f(cfg)
                return cfg
            return make

        def orders(cfg):
            return cfg['endpoints'][0]['calls']['orders']

        def stats(cfg):
            return cfg['endpoints'][0]['calls']['stats']

        def user(cfg):
            return cfg['endpoints'][0]['calls']['user']

        cases = {
            'sql empty': (m(lambda c: orders(c).update(sql='')), [C + '.sql']),
            'sql not a string': (m(lambda c: orders(c).update(sql=42)), [C + '.sql']),
            'sql null': (m(lambda c: orders(c).update(sql=None)), [C + '.sql']),
            'sql an array': (m(lambda c: orders(c).update(sql=['SELECT 1'])), [C + '.sql']),
            'one arg for $2': (m(lambda c: orders(c).update(args=['{id}'])), [C]),
            'three args for $2': (m(lambda c: orders(c).update(args=['{id}', '1', '2'])), [C]),
            'args without placeholders': (m(lambda c: stats(c).update(
                sql='SELECT count(*) AS n FROM orders')), ['endpoints[0].calls.stats']),
            'no args for $1': (m(lambda c: stats(c).pop('args')), ['endpoints[0].calls.stats']),
            'args not an array': (m(lambda c: orders(c).update(args='{id}')), [C + '.args']),
            'arg not a string': (m(lambda c: orders(c).update(args=['{id}', 10])),
                                 [C + '.args']),
            'arg with an unknown capture': (m(lambda c: orders(c).update(
                args=['{uid}', '{query.limit}'])), [C + '.args']),
            'row not one/many': (m(lambda c: stats(c).update(row='two')),
                                 ['endpoints[0].calls.stats.row']),
            'row not a string': (m(lambda c: stats(c).update(row=1)),
                                 ['endpoints[0].calls.stats.row']),
            'row upper case': (m(lambda c: stats(c).update(row='ONE')),
                               ['endpoints[0].calls.stats.row']),
            'both upstream and sql': (m(lambda c: orders(c).update(upstream='accounts')), [C]),
            'both sql and upstream on an HTTP call': (m(lambda c: user(c).update(
                sql='SELECT 1')), ['endpoints[0].calls.user']),
            'args on an HTTP call': (m(lambda c: user(c).update(args=['{id}'])),
                                     ['endpoints[0].calls.user']),
            'row on an HTTP call': (m(lambda c: user(c).update(row='one')),
                                    ['endpoints[0].calls.user']),
            'neither upstream nor sql': (m(lambda c: c['endpoints'][0]['calls'].update(
                orders={'timeout_ms': 300, 'optional': True})), [C]),
            'unknown key on a SQL call': (m(lambda c: orders(c).update(rows='one')),
                                          [C, 'rows']),
            'zero timeout on a SQL call': (m(lambda c: orders(c).update(timeout_ms=0)),
                                           [C + '.timeout_ms']),
            'optional not a bool': (m(lambda c: orders(c).update(optional='yes')),
                                    [C + '.optional']),
            'postgres not an object': (m(lambda c: c.update(postgres='host=x')), ['postgres']),
            'conninfo not a string': (m(lambda c: c['postgres'].update(conninfo=5)),
                                      ['postgres.conninfo']),
            'pool_size 0': (m(lambda c: c['postgres'].update(pool_size=0)),
                            ['postgres.pool_size']),
            'pool_size a string': (m(lambda c: c['postgres'].update(pool_size='8')),
                                   ['postgres.pool_size']),
            'pipeline_depth 0': (m(lambda c: c['postgres'].update(pipeline_depth=0)),
                                 ['postgres.pipeline_depth']),
            'pipeline_depth 65': (m(lambda c: c['postgres'].update(pipeline_depth=65)),
                                  ['postgres.pipeline_depth']),
            'acquire_timeout_ms 0': (m(lambda c: c['postgres'].update(acquire_timeout_ms=0)),
                                     ['postgres.acquire_timeout_ms']),
            'connect_timeout_ms negative': (m(lambda c: c['postgres'].update(
                connect_timeout_ms=-1)), ['postgres.connect_timeout_ms']),
            'unknown postgres key': (m(lambda c: c['postgres'].update(poolsize=8)),
                                     ['postgres', 'poolsize']),
        }
        for name, (make, expected) in cases.items():
            with self.subTest(case=name):
                rc, out, path = self.check(make())
                self.assertEqual(rc, 1, out)
                self.assertIn(path, out)
                for e in expected:
                    self.assertIn(e, out)

    def test_sql_calls_need_a_postgres_section(self):
        cfg = self.good()
        del cfg['postgres']
        rc, out, path = self.check(cfg)
        self.assertEqual(rc, 1, out)
        self.assertIn(path, out)
        self.assertTrue('postgres' in out or 'endpoints[0].calls.orders' in out, out)
        # and running it fails the same way
        r = run_gatherd(['-c', path])
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)

    def test_postgres_section_without_sql_calls_is_fine(self):
        cfg = self.good()
        for name in ('orders', 'stats', 'all'):
            del cfg['endpoints'][0]['calls'][name]
        rc, out, path = self.check(cfg)
        self.assertEqual(rc, 0, out)


# ---------------------------------------------------------------------------------------------

class SecretTest(PgTestCase):
    """A password in the conninfo never reaches the log (nor an answer)."""

    SHARED_CLUSTER = False
    PASSWORD = 's3cr3t-pw'

    def run_failing(self, conninfo):
        gd = self.start_pg_gatherd([
            endpoint('/q', {'user': call('s', '/users/1'),
                            'r': sql_call('SELECT 1 AS one', optional=True)})],
            conninfo=conninfo, ready=False, threads=2,
            log={'level': 'debug'},
            postgres={'pool_size': 2, 'connect_timeout_ms': 500, 'acquire_timeout_ms': 100})
        bodies = []
        t_end = now() + 2.0  # several connection attempts with their backoff
        while now() < t_end:
            st, _, body, _ = gd.get('/q')
            self.assertEqual(st, 200, body)
            bodies.append(body)
            time.sleep(0.1)
        doc = loads_ordered(bodies[-1])
        self.assertEqual(doc['user'], USER_1)
        self.assertIsNone(doc['r'])
        self.assertIn(doc['errors']['r']['kind'], ('unavailable', 'sql', 'pool_timeout'),
                      bodies[-1])
        rc = gd.terminate()
        self.assertEqual(rc, 0, gd.log()[-4000:])
        log = gd.log()
        self.assertNotIn(self.PASSWORD, log)
        for b in bodies:
            self.assertNotIn(self.PASSWORD.encode(), b)
        return log

    def test_password_not_logged_when_unreachable(self):
        self.run_failing('host=127.0.0.1 port=%d user=gatherd password=%s dbname=gatherd'
                         % (free_port(), self.PASSWORD))

    def test_password_not_logged_uri_form(self):
        self.run_failing('postgresql://gatherd:%s@127.0.0.1:%d/gatherd?connect_timeout=1'
                         % (self.PASSWORD, free_port()))

    def test_password_not_logged_when_the_server_refuses(self):
        pg = PgCluster.for_test(self)
        self.run_failing("host=127.0.0.1 port=%d user=gatherd password='%s' dbname=no_such_db"
                         % (pg.port, self.PASSWORD))


if __name__ == '__main__':
    main()
