#!/usr/bin/env python3
"""Retries: backoff with full jitter, attempt_timeout_ms, Retry-After, the retry budget, and what
is never retried."""

import http.server
import json
import os
import re
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (GatherdTestCase, call, config, endpoint, main, upstream,  # noqa: E402
                     wait_until)


class Scripted:
    """An HTTP/1.1 upstream on 127.0.0.1 whose answer to the n-th request of a path (from 1) is
    script[path](n): (status, headers dict, delay_s). Records arrival times per path."""

    def __init__(self, script):
        self.script = script
        self.lock = threading.Lock()
        self.times = {}
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = 'HTTP/1.1'
            wbufsize = -1  # head and body in one write: no Nagle delay between them

            def log_message(self, *args):
                pass

            def answer(self):
                n = int(self.headers.get('content-length') or 0)
                if n:
                    self.rfile.read(n)
                path = self.path.split('?', 1)[0]
                with outer.lock:
                    t = outer.times.setdefault(path, [])
                    t.append(time.monotonic())
                    count = len(t)
                status, headers, delay = outer.script[path](count)
                if delay:
                    time.sleep(delay)
                body = json.dumps({'n': count}).encode()
                try:
                    self.send_response(status)
                    self.send_header('content-type', 'application/json')
                    self.send_header('content-length', str(len(body)))
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    self.close_connection = True

            do_GET = do_POST = answer

        self.server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.server.daemon_threads = True
        self.url = 'http://127.0.0.1:%d' % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def count(self, path):
        with self.lock:
            return len(self.times.get(path, []))

    def arrivals(self, path):
        with self.lock:
            return list(self.times.get(path, []))

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def ok(n):
    return 200, {}, 0


def every_third_fails(n):
    return (503 if n % 3 == 0 else 200), {}, 0


def always_503(n):
    return 503, {}, 0


class RetryTest(GatherdTestCase):

    def start_scripted(self, script):
        s = Scripted(script)
        self.addCleanup(s.stop)
        return s

    def test_flaky_upstream_is_answered_complete_with_retries(self):
        up = self.start_scripted({'/a': every_third_fails, '/b': every_third_fails})
        retry = {'attempts': 3, 'backoff_ms': 5, 'max_backoff_ms': 50}
        gd = self.start_gatherd(config(
            [endpoint('/with', {'x': call('r', '/a')}),
             endpoint('/without', {'x': call('n', '/b')})],
            {'r': upstream(up.url, retry=retry), 'n': upstream(up.url)}))
        complete = {'/with': 0, '/without': 0}
        for path in complete:
            for _ in range(30):
                st, hdrs, body, _ = gd.get(path)
                complete[path] += hdrs.get('X-Gatherd-Complete') == 'true'
        sys.stderr.write('complete answers of 30, upstream failing every 3rd call: '
                         'without retries %d, with %d\n' % (complete['/without'],
                                                            complete['/with']))
        self.assertEqual(complete['/with'], 30)
        self.assertEqual(complete['/without'], 20)
        self.assertEqual(up.count('/a'), 44)  # 30 successes, 14 failures each retried once

    def test_attempts_shown_in_errors_and_access_line(self):
        up = self.start_scripted({'/down': always_503})
        gd = self.start_gatherd(config(
            [endpoint('/t', {'posts': call('r', '/down')})],
            {'r': upstream(up.url, retry={'attempts': 3, 'backoff_ms': 1,
                                          'min_retries_per_s': 100})}))
        st, _, body, _ = gd.get('/t')
        doc = json.loads(body)
        self.assertEqual(doc['errors']['posts']['kind'], 'status', body)
        self.assertEqual(doc['errors']['posts']['attempts'], 3, body)
        self.assertEqual(up.count('/down'), 3)
        # the access line is written after the answer is sent
        self.assertTrue(wait_until(lambda: re.search(r'posts:status:503:\d+:a3', gd.log())),
                        gd.log())

    def test_metrics_count_attempts_retries_and_refusals(self):
        up = self.start_scripted({'/down': always_503})
        gd = self.start_gatherd(config(
            [endpoint('/t', {'x': call('r', '/down')})],
            {'r': upstream(up.url, retry={'attempts': 3, 'backoff_ms': 1,
                                          'budget_percent': 20, 'min_retries_per_s': 0})},
            threads=2))
        for _ in range(20):
            gd.get('/t')
        port = int(gd.cfg['admin_listen'].rsplit(':', 1)[1])
        with urllib.request.urlopen('http://127.0.0.1:%d/metrics' % port, timeout=5) as r:
            text = r.read().decode()

        def metric(name):
            m = re.search(r'^%s\{upstream="r"\} (\d+)$' % name, text, re.M)
            self.assertIsNotNone(m, text)
            return int(m.group(1))
        attempts = metric('gatherd_upstream_attempts_total')
        retries = metric('gatherd_upstream_retries_total')
        refused = metric('gatherd_upstream_retries_refused_total')
        self.assertEqual(attempts, up.count('/down'))
        self.assertEqual(attempts, 20 + retries)
        self.assertLessEqual(retries, 4 + 2)  # 20 % of 20 calls; + one per thread at most
        self.assertGreaterEqual(refused, 20 - retries)

    def test_backoff_spacing_within_jitter_bounds(self):
        up = self.start_scripted({'/down': always_503})
        gd = self.start_gatherd(config(
            [endpoint('/t', {'x': call('r', '/down')}, timeout_ms=5000)],
            {'r': upstream(up.url, retry={'attempts': 4, 'backoff_ms': 40, 'max_backoff_ms': 100,
                                          'min_retries_per_s': 100})}))
        gaps = []
        for _ in range(8):
            before = up.count('/down')
            gd.get('/t')
            t = up.arrivals('/down')[before:]
            self.assertEqual(len(t), 4)
            gaps.append([t[i + 1] - t[i] for i in range(3)])
        # retry n waits random [0, min(100, 40 * 2^(n-1))] ms: caps 40, 80, 100 (+ slack)
        for g in gaps:
            for i, cap in enumerate((0.040, 0.080, 0.100)):
                self.assertLessEqual(g[i], cap + 0.030, gaps)
        # jittered, not fixed: the waits differ
        self.assertGreater(max(g[2] for g in gaps) - min(g[2] for g in gaps), 0.010, gaps)

    def test_always_failing_upstream_sees_budget_bounded_attempts(self):
        up = self.start_scripted({'/down': always_503})
        gd = self.start_gatherd(config(
            [endpoint('/t', {'x': call('r', '/down')})],
            {'r': upstream(up.url, retry={'attempts': 3, 'backoff_ms': 1,
                                          'budget_percent': 20, 'min_retries_per_s': 0})}))
        for _ in range(50):
            gd.get('/t')
        n = up.count('/down')
        sys.stderr.write('50 calls to an upstream 100%% down, 3 attempts, budget 20%%: %d '
                         'attempts (%.2fx; 150 without the budget)\n' % (n, n / 50.0))
        self.assertLessEqual(n, 50 + 10 + 1)
        self.assertGreaterEqual(n, 50 + 5)

    def test_attempt_timeout_is_retried_inside_the_call_timeout(self):
        up = self.start_scripted({'/hang': lambda n: (200, {}, 1.0 if n == 1 else 0)})
        gd = self.start_gatherd(config(
            [endpoint('/t', {'x': call('r', '/hang', timeout_ms=800)})],
            {'r': upstream(up.url, retry={'attempts': 2, 'backoff_ms': 0,
                                          'attempt_timeout_ms': 100})}))
        st, hdrs, body, elapsed = gd.get('/t')
        self.assertEqual(st, 200, body)
        self.assertEqual(json.loads(body)['x'], {'n': 2})
        self.assertGreaterEqual(elapsed, 0.1)
        self.assertLess(elapsed, 0.5)

    def test_attempt_timeout_never_goes_past_the_call_timeout(self):
        up = self.start_scripted({'/hang': lambda n: (200, {}, 1.0)})
        gd = self.start_gatherd(config(
            [endpoint('/t', {'x': call('r', '/hang', timeout_ms=250)})],
            {'r': upstream(up.url, retry={'attempts': 5, 'backoff_ms': 0,
                                          'attempt_timeout_ms': 100,
                                          'min_retries_per_s': 100})}))
        st, _, body, elapsed = gd.get('/t')
        doc = json.loads(body)
        self.assertEqual(doc['errors']['x']['kind'], 'timeout', body)
        self.assertLess(elapsed, 0.4)
        self.assertEqual(up.count('/hang'), 3)  # at 0, 100 and 200 ms; the third cut at 250

    def test_post_is_not_retried(self):
        up = self.start_scripted({'/p': always_503, '/i': always_503})
        gd = self.start_gatherd(config(
            [endpoint('/t', {'x': call('r', '/p', method='POST')}),
             endpoint('/i', {'x': call('r', '/i', method='POST', idempotent=True)})],
            {'r': upstream(up.url, retry={'attempts': 3, 'backoff_ms': 1,
                                          'min_retries_per_s': 100})}))
        gd.get('/t')
        self.assertEqual(up.count('/p'), 1)
        gd.get('/i')
        self.assertEqual(up.count('/i'), 3)

    def test_retry_after_honoured_when_it_fits(self):
        up = self.start_scripted({'/ra': lambda n: (503, {'Retry-After': '1'}, 0) if n == 1
                                  else (200, {}, 0)})
        gd = self.start_gatherd(config(
            [endpoint('/t', {'x': call('r', '/ra', timeout_ms=3000)}, timeout_ms=3000)],
            {'r': upstream(up.url, retry={'attempts': 2, 'backoff_ms': 1})}))
        st, _, body, elapsed = gd.get('/t')
        self.assertEqual(st, 200, body)
        t = up.arrivals('/ra')
        self.assertGreaterEqual(t[1] - t[0], 0.95)
        self.assertLess(t[1] - t[0], 1.3)

    def test_retry_after_that_does_not_fit_fails_at_once(self):
        date = time.strftime('%a, %d %b %Y %H:%M:%S GMT', time.gmtime(time.time() + 30))
        up = self.start_scripted({'/ra': lambda n: (429, {'Retry-After': date}, 0),
                                  '/rs': lambda n: (503, {'Retry-After': '5'}, 0)})
        gd = self.start_gatherd(config(
            [endpoint('/d', {'x': call('r', '/ra', timeout_ms=1000)}),
             endpoint('/s', {'x': call('r', '/rs', timeout_ms=1000)})],
            {'r': upstream(up.url, retry={'attempts': 3, 'backoff_ms': 1,
                                          'on': [429, 503]})}))
        for path, up_path, status in (('/d', '/ra', 429), ('/s', '/rs', 503)):
            st, _, body, elapsed = gd.get(path)
            doc = json.loads(body)
            self.assertEqual(doc['errors']['x']['status'], status, body)
            self.assertNotIn('attempts', doc['errors']['x'])
            self.assertLess(elapsed, 0.2)
            self.assertEqual(up.count(up_path), 1)

    def test_breaker_opens_probes_and_closes(self):
        state = {'up': False}
        up = self.start_scripted({'/b': lambda n: (200 if state['up'] else 503, {}, 0)})
        gd = self.start_gatherd(config(
            [endpoint('/t', {'x': call('r', '/b')})],
            {'r': upstream(up.url, breaker={'failures': 3, 'open_ms': 300},
                           retry={'attempts': 3, 'backoff_ms': 1, 'min_retries_per_s': 100,
                                  'on': [503]})},
            threads=2))

        def kind():
            st, _, body, _ = gd.get('/t')
            doc = json.loads(body)
            return 'ok' if doc['x'] is not None else doc['errors']['x']['kind'], st
        for _ in range(3):
            self.assertEqual(kind()[0], 'status')
        self.assertEqual(up.count('/b'), 9)  # 3 calls of 3 attempts: the breaker counts calls
        # open: refused at once, nothing reaches the upstream, never retried
        t0 = time.monotonic()
        for _ in range(5):
            self.assertEqual(kind(), ('circuit_open', 503))
        self.assertLess(time.monotonic() - t0, 0.25)
        self.assertEqual(up.count('/b'), 9)
        # half-open after open_ms: one probe; it fails (3 attempts), the breaker opens again
        time.sleep(0.35)
        self.assertEqual(kind()[0], 'status')
        self.assertEqual(up.count('/b'), 12)
        self.assertEqual(kind()[0], 'circuit_open')
        self.assertEqual(up.count('/b'), 12)
        # the upstream recovers: the next probe succeeds and closes it
        state['up'] = True
        time.sleep(0.35)
        self.assertEqual(kind()[0], 'ok')
        for _ in range(4):
            self.assertEqual(kind()[0], 'ok')
        self.assertEqual(up.count('/b'), 17)

    def test_what_the_breaker_counts_is_configurable(self):
        """By default a 4xx is an answer and never opens the breaker; with "on": [429] a quota
        that keeps answering 429 opens it, while a 5xx then counts for nothing."""
        up = self.start_scripted({'/q': lambda n: (429, {}, 0), '/e': lambda n: (500, {}, 0)})
        gd = self.start_gatherd(config(
            [endpoint('/d', {'x': call('d', '/q')}), endpoint('/q', {'x': call('q', '/q')}),
             endpoint('/e', {'x': call('q', '/e')})],
            {'d': upstream(up.url, breaker={'failures': 2, 'open_ms': 60000}),
             'q': upstream(up.url, breaker={'failures': 2, 'open_ms': 60000, 'on': [429]})}))

        def kind(path):
            doc = json.loads(gd.get(path)[2])
            return doc['errors']['x']['kind']
        for _ in range(4):
            self.assertEqual(kind('/d'), 'status')  # the default never counts a 429
        self.assertEqual(up.count('/q'), 4)
        for _ in range(4):
            self.assertEqual(kind('/e'), 'status')  # a 500 is not in this breaker's "on"
        self.assertEqual(up.count('/e'), 4)
        self.assertEqual([kind('/q') for _ in range(4)],
                         ['status', 'status', 'circuit_open', 'circuit_open'])
        self.assertEqual(up.count('/q'), 6)

    def test_config_errors_name_their_place(self):
        cfg = config([endpoint('/t', {'x': call('r', '/p', method='POST', retry={})})],
                     {'r': upstream('http://127.0.0.1:1')})
        with self.assertRaises(Exception) as ctx:
            self.start_gatherd(cfg, start_timeout=5)
        self.assertIn('endpoints[0].calls.x.retry: a POST call is never retried', str(ctx.exception))


if __name__ == '__main__':
    main()
