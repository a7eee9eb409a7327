#!/usr/bin/env python3
"""Operations: the admin listener (/healthz, /readyz, /metrics checked with a real Prometheus
parser), readiness during a drain, JSON logs, request ids and trace context reaching upstreams,
--probe, and the systemd readiness protocol."""
import json as jsonlib
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

from harness import (GatherdTestCase, call, config, endpoint, free_port, main, now, run_gatherd,
                     wait_until)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RFC3339_MS = re.compile(r'^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$')


def admin_get(port, path, timeout=5.0):
    """(status, body text) of GET http://127.0.0.1:PORT/PATH; (0, reason) while nothing listens
    there yet (the admin listener opens just after the main one), so that wait_until() polls."""
    try:
        with urllib.request.urlopen('http://127.0.0.1:%d%s' % (port, path), timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except urllib.error.URLError as e:
        if isinstance(e.reason, ConnectionRefusedError):
            return 0, str(e.reason)
        raise


def admin_port(gd):
    return int(gd.cfg['admin_listen'].rsplit(':', 1)[1])


def promtool():
    out = subprocess.run(['bash', os.path.join(REPO, 'scripts', 'promtool.sh')],
                         capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        raise AssertionError('cannot get promtool: ' + out.stderr)
    return out.stdout.strip()


def metric_value(text, name, **labels):
    """The value of the sample @name{@labels} in exposition @text (None when absent)."""
    want = ','.join('%s="%s"' % kv for kv in labels.items())
    line = '%s{%s} ' % (name, want) if labels else name + ' '
    for ln in text.splitlines():
        if ln.startswith(line):
            return float(ln[len(line):])
    return None


class OperationsTest(GatherdTestCase):
    def setUp(self):
        self.stub = self.start_stub()
        self.stub.add('/users/1', json={'id': 1})
        self.stub.add('/posts', json=[1, 2])
        self.stub.add('/down', status=503, json={})

    def profile_config(self, **top):
        return config([
            endpoint('/users/{id}/profile', {
                'user': call('s', '/users/{id}'),
                'posts': call('s', '/posts?userId={id}', optional=True)}),
            endpoint('/flaky', {'user': call('s', '/users/1'),
                                'down': call('s', '/down', optional=True)})],
            {'s': self.stub}, threads=2, **top)

    def test_healthz_and_readyz(self):
        gd = self.start_gatherd(self.profile_config())
        port = admin_port(gd)
        self.assertEqual(admin_get(port, '/healthz'), (200, '{"status":"ok"}'))
        self.assertEqual(admin_get(port, '/readyz'), (200, '{"ready":true}'))
        st, body = admin_get(port, '/nope')
        self.assertEqual(st, 404)
        self.assertEqual(jsonlib.loads(body)['error'], 'not_found')
        req = urllib.request.Request('http://127.0.0.1:%d/healthz' % port, method='POST', data=b'')
        with self.assertRaises(urllib.error.HTTPError) as cm:
            urllib.request.urlopen(req, timeout=5)
        self.assertEqual(cm.exception.code, 405)

    def test_admin_can_be_turned_off(self):
        port = free_port()
        gd = self.start_gatherd(self.profile_config(admin_listen=None))
        self.assertEqual(gd.get('/users/1/profile')[0], 200)
        s = socket.socket()
        try:
            self.assertNotEqual(s.connect_ex(('127.0.0.1', port)), 0)
        finally:
            s.close()
        self.assertNotIn('admin listening', gd.log())

    def test_readiness_flips_on_sigterm_before_listeners_close(self):
        gd = self.start_gatherd(self.profile_config(
            shutdown={'drain_delay_ms': 1500, 'timeout_ms': 5000}))
        port = admin_port(gd)
        # ready once every worker's Postgres pool has a connection up: not necessarily yet
        wait_until(lambda: admin_get(port, '/readyz')[0] == 200, timeout=10)
        self.assertEqual(admin_get(port, '/readyz')[0], 200)
        t0 = now()
        gd.signal(signal.SIGTERM)
        got = wait_until(lambda: admin_get(port, '/readyz')[0] == 503, timeout=1.0)
        flipped_after = now() - t0
        self.assertTrue(got, '/readyz still 200 after SIGTERM')
        self.assertLess(flipped_after, 0.5)
        st, body = admin_get(port, '/readyz')
        self.assertEqual(jsonlib.loads(body), {'ready': False, 'reason': 'draining: shutting down'})
        # the listener still serves during the drain delay
        self.assertTrue(gd.accepts_connections())
        self.assertEqual(gd.get('/users/1/profile')[0], 200)
        self.assertEqual(admin_get(port, '/healthz')[0], 200)
        self.assertTrue(wait_until(lambda: not gd.accepts_connections(), timeout=3.0))
        self.assertGreater(now() - t0, 1.4)
        self.assertEqual(gd.wait(), 0)

    def test_metrics_parse_and_count_what_was_sent(self):
        gd = self.start_gatherd(self.profile_config())
        for _ in range(5):
            self.assertEqual(gd.get('/users/1/profile')[0], 200)
        for _ in range(3):
            self.assertEqual(gd.get('/flaky')[0], 200)
        for _ in range(2):
            self.assertEqual(gd.get('/nope')[0], 404)
        time.sleep(0.25)  # gauges are published every 100 ms
        st, text = admin_get(admin_port(gd), '/metrics')
        self.assertEqual(st, 200)
        check = subprocess.run([promtool(), 'check', 'metrics'], input=text, capture_output=True,
                               text=True, timeout=60)
        self.assertEqual(check.returncode, 0, 'promtool: %s%s\n%s' % (check.stdout, check.stderr,
                                                                        text))
        self.assertEqual(metric_value(text, 'gatherd_requests_total',
                                      endpoint='/users/{id}/profile', method='GET', status='200'),
                         5)
        self.assertEqual(metric_value(text, 'gatherd_requests_total', endpoint='/flaky',
                                      method='GET', status='200'), 3)
        self.assertEqual(metric_value(text, 'gatherd_requests_total', endpoint='(unmatched)',
                                      method='', status='404'), 2)
        self.assertEqual(metric_value(text, 'gatherd_call_failures_total', endpoint='/flaky',
                                      call='down', kind='status', status='503'), 3)
        # per upstream: the sums of its calls, over endpoints (5 x 2 + 3 users ok, 3 x 503)
        self.assertEqual(metric_value(text, 'gatherd_upstream_calls_total', upstream='s',
                                      outcome='ok'), 13)
        self.assertEqual(metric_value(text, 'gatherd_upstream_calls_total', upstream='s',
                                      outcome='status', status='503'), 3)
        self.assertEqual(metric_value(text, 'gatherd_request_duration_seconds_count',
                                      endpoint='/users/{id}/profile', method='GET'), 5)
        self.assertEqual(metric_value(text, 'gatherd_call_duration_seconds_count',
                                      endpoint='/flaky', call='user'), 3)
        self.assertEqual(metric_value(text, 'gatherd_requests_in_flight'), 0)
        # the keep-alive pool holds the connections the calls used
        self.assertGreaterEqual(metric_value(text, 'gatherd_upstream_connections', upstream='s',
                                             state='idle'), 1)
        self.assertGreater(metric_value(text, 'gatherd_event_loop_lag_seconds_count'), 0)
        self.assertIn('gatherd_build_info{version="', text)

    def test_json_logs_parse(self):
        gd = self.start_gatherd(self.profile_config(log={'format': 'json', 'level': 'info'}))
        gd.get('/users/1/profile', headers={'X-Request-Id': 'req-42'})
        gd.get('/flaky')
        gd.terminate()
        lines = [ln for ln in gd.log().splitlines() if ln.strip()]
        self.assertTrue(lines)
        docs = []
        for ln in lines:
            doc = jsonlib.loads(ln)  # every line is one JSON object
            self.assertRegex(doc['time'], RFC3339_MS)
            self.assertIn(doc['level'], ('debug', 'info', 'warn', 'error'))
            self.assertIsInstance(doc['msg'], str)
            docs.append(doc)
        access = [d for d in docs if d['msg'] == 'access']
        self.assertEqual(len(access), 2)
        # two threads: each request's line is written by its own, in either order
        access.sort(key=lambda d: d['path'] != '/users/1/profile')
        a = access[0]
        self.assertEqual((a['request_id'], a['method'], a['route'], a['path'], a['status'],
                          a['complete']),
                         ('req-42', 'GET', '/users/{id}/profile', '/users/1/profile', 200, 'true'))
        self.assertEqual(set(a['calls']), {'user', 'posts'})
        self.assertEqual(a['calls']['user']['outcome'], 'ok')
        self.assertEqual(access[1]['calls']['down']['outcome'], 'status')
        self.assertEqual(access[1]['complete'], 'false')

    def test_log_level_warn_silences_access_lines(self):
        gd = self.start_gatherd(self.profile_config(log={'level': 'warn'}))
        gd.get('/users/1/profile')
        gd.terminate()
        self.assertNotIn('access', gd.log())

    def test_request_id_is_echoed_and_sent_to_every_call(self):
        gd = self.start_gatherd(self.profile_config())
        st, headers, _, _ = gd.request('GET', '/users/1/profile', headers={'X-Request-Id': 'abc-1'})
        self.assertEqual(st, 200)
        self.assertEqual(headers.get('X-Request-Id'), 'abc-1')
        sent = [h.get('x-request-id') for _, _, h in self.stub.requests]
        self.assertEqual(sent, ['abc-1', 'abc-1'])

        self.stub.reset_stats()
        for bad in ('has space', 'x' * 129, 'a"b'):
            st, headers, _, _ = gd.request('GET', '/users/1/profile', headers={'X-Request-Id': bad})
            made = headers.get('X-Request-Id')
            self.assertRegex(made, r'^[0-9a-f]{32}$')
        st, headers, _, _ = gd.request('GET', '/users/1/profile')
        made = headers.get('X-Request-Id')
        self.assertRegex(made, r'^[0-9a-f]{32}$')
        self.assertEqual([h.get('x-request-id') for _, _, h in self.stub.requests[-2:]],
                         [made, made])
        self.assertTrue(wait_until(lambda: 'request_id=%s ' % made in gd.log(), timeout=2.0))
        # gatherd's own answers carry one too
        st, headers, _, _ = gd.request('GET', '/nope')
        self.assertRegex(headers.get('X-Request-Id'), r'^[0-9a-f]{32}$')

    def test_traceparent_gets_a_new_span_per_call(self):
        gd = self.start_gatherd(self.profile_config())
        tp = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'
        self.assertEqual(gd.get('/users/1/profile', headers={'traceparent': tp})[0], 200)
        got = [h.get('traceparent') for _, _, h in self.stub.requests]
        self.assertEqual(len(got), 2)
        for child in got:
            self.assertRegex(child, r'^00-4bf92f3577b34da6a3ce929d0e0e4736-[0-9a-f]{16}-01$')
            self.assertNotIn('00f067aa0ba902b7', child)
        self.assertNotEqual(got[0], got[1])
        # an invalid one is not passed on
        self.stub.reset_stats()
        gd.get('/users/1/profile', headers={'traceparent': '00-xyz'})
        self.assertEqual([h.get('traceparent') for _, _, h in self.stub.requests], [None, None])

    def test_probe(self):
        gd = self.start_gatherd(self.profile_config())
        port = admin_port(gd)
        self.assertEqual(run_gatherd(['--probe', 'http://127.0.0.1:%d/healthz' % port]).returncode,
                         0)
        out = run_gatherd(['--probe', 'http://127.0.0.1:%d/down' % self.stub.port])
        self.assertEqual(out.returncode, 1)
        self.assertIn('503', out.stderr)
        out = run_gatherd(['--probe', 'http://127.0.0.1:%d/healthz' % free_port()])
        self.assertEqual(out.returncode, 1)
        self.assertIn('refused', out.stderr.lower())
        self.assertEqual(run_gatherd(['--probe', 'ftp://x/']).returncode, 1)

    def test_systemd_notify_ready_and_stopping(self):
        tmp = tempfile.mkdtemp(prefix='gatherd-notify-')
        path = os.path.join(tmp, 'notify.sock')
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        sock.settimeout(5.0)
        self.addCleanup(sock.close)
        old = os.environ.get('NOTIFY_SOCKET')
        os.environ['NOTIFY_SOCKET'] = path
        try:
            gd = self.start_gatherd(self.profile_config())
        finally:
            if old is None:
                del os.environ['NOTIFY_SOCKET']
            else:
                os.environ['NOTIFY_SOCKET'] = old
        self.assertEqual(sock.recv(256), b'READY=1')
        gd.signal(signal.SIGTERM)
        self.assertEqual(sock.recv(256), b'STOPPING=1')
        self.assertEqual(gd.wait(), 0)


if __name__ == '__main__':
    main()
