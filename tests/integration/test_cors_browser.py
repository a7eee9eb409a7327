#!/usr/bin/env python3
"""CORS with a real browser: headless Chromium loads a page from another origin (a Python
http.server on another 127.0.0.1 port), which calls gatherd with fetch() and writes what it
could read into the DOM; --dump-dom prints it. Exits 77 (a skip for meson) only when there is
no chromium (scripts/setup.sh installs Debian's)."""

import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import GatherdTestCase, call, config, endpoint, main  # noqa: E402

CHROMIUM = shutil.which('chromium') or shutil.which('chromium-browser')
BIG = json.dumps({'items': [{'id': i, 'name': 'item %d' % i} for i in range(200)]})

# The page: every call's outcome as one JSON object in <pre id="out">.
PAGE = '''<!doctype html><html><body><pre id="out">running</pre><script>
const base = %(base)s;
async function probe(path, init) {
  try {
    const r = await fetch(base + path, init || {});
    const h = {};
    for (const n of ['x-gatherd-complete', 'x-request-id', 'etag', 'content-type',
                     'cache-control', 'vary'])
      h[n] = r.headers.get(n);
    return {ok: true, status: r.status, headers: h, body: await r.text()};
  } catch (e) {
    return {ok: false, error: String(e)};
  }
}
(async () => {
  const out = {};
  out.simple = await probe('/users/1');
  out.preflighted = await probe('/users/1', {headers: {'X-Request-Id': 'browser-1'}});
  out.post = await probe('/users/1', {method: 'POST', body: '{"a":1}',
                                      headers: {'Content-Type': 'application/json'}});
  out.failed = await probe('/fail');
  out.missing = await probe('/nothing');
  out.big = await probe('/big');
  out.revalidated = await probe('/big', {cache: 'no-cache'});
  out.secret_header = await probe('/users/1', {headers: {'X-Secret': 'x'}});
  document.getElementById('out').textContent = JSON.stringify(out);
})();
</script></body></html>
'''


class PageServer:
    """Serves @html as /index.html on a kernel-chosen 127.0.0.1 port: an origin of its own."""

    def __init__(self, html):
        self.dir = tempfile.mkdtemp(prefix='gd-cors-page-')
        with open(os.path.join(self.dir, 'index.html'), 'w') as f:
            f.write(html)

        class Quiet(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args):
                pass

        handler = functools.partial(Quiet, directory=self.dir)
        self.httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
        self.port = self.httpd.server_address[1]
        self.origin = 'http://127.0.0.1:%d' % self.port
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        shutil.rmtree(self.dir, ignore_errors=True)


def run_browser(url):
    """Loads @url in headless Chromium and returns the page's result object."""
    profile = tempfile.mkdtemp(prefix='gd-chromium-')
    try:
        # The flags keep Chromium off the network (this machine has none) and out of the way.
        r = subprocess.run([CHROMIUM, '--headless=new', '--no-sandbox', '--disable-gpu',
                            '--disable-quic', '--no-first-run', '--disable-background-networking',
                            '--disable-component-update', '--disable-sync',
                            '--disable-extensions', '--no-proxy-server',
                            '--user-data-dir=' + profile, '--virtual-time-budget=15000',
                            '--dump-dom', url],
                           capture_output=True, timeout=90, stdin=subprocess.DEVNULL)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    dom = r.stdout.decode('utf-8', 'replace')
    m = re.search(r'<pre id="out">(.*?)</pre>', dom, re.S)
    if m is None or m.group(1) == 'running':
        raise AssertionError('the page did not finish: rc=%d\n%s\n%s' %
                             (r.returncode, dom[-2000:], r.stderr.decode()[-2000:]))
    return json.loads(m.group(1).replace('&quot;', '"').replace('&lt;', '<')
                      .replace('&gt;', '>').replace('&amp;', '&'))


class BrowserCorsTest(GatherdTestCase):

    def setUp(self):
        self.stub = self.start_stub()
        self.stub.add('/u', json={'id': 1, 'name': 'Zoë'})
        self.stub.add('/fail', status=500)
        self.stub.add('/big', body=BIG)

    def start(self, origins):
        eps = [endpoint('/users/{id}', {'user': call('s', '/u')}),
               endpoint('/users/{id}', {'user': call('s', '/u', method='POST')}, method='POST'),
               endpoint('/fail', {'f': call('s', '/fail')}),
               endpoint('/big', {'b': call('s', '/big')}, etag=True,
                        cache_control='private, max-age=30')]
        return self.start_gatherd(config(eps, {'s': self.stub}, cors={'origins': origins}))

    def page(self):
        """The page's server; its origin is known once it listens, before gatherd starts."""
        p = PageServer('')
        self.addCleanup(p.stop)
        return p

    def load(self, p, gd):
        with open(os.path.join(p.dir, 'index.html'), 'w') as f:
            f.write(PAGE % {'base': json.dumps(gd.url(''))})
        return run_browser(p.origin + '/index.html')

    def test_allowed_origin_reads_everything(self):
        p = self.page()
        gd = self.start([p.origin])
        out = self.load(p, gd)

        for name in ('simple', 'preflighted', 'post'):
            r = out[name]
            self.assertTrue(r['ok'], (name, r))
            self.assertEqual(r['status'], 200, name)
            self.assertEqual(r['headers']['x-gatherd-complete'], 'true', name)
            self.assertEqual(json.loads(r['body']), {'user': {'id': 1, 'name': 'Zoë'}}, name)
            self.assertRegex(r['headers']['x-request-id'], r'^[0-9a-f]{32}$|^browser-1$')
        self.assertEqual(out['preflighted']['headers']['x-request-id'], 'browser-1')
        # error answers of gatherd are readable too: the page can tell what failed
        self.assertEqual(out['failed']['status'], 502)
        self.assertEqual(out['failed']['headers']['x-gatherd-complete'], 'false')
        self.assertEqual(json.loads(out['failed']['body'])['errors']['f']['kind'], 'status')
        self.assertEqual(out['missing']['status'], 404)
        self.assertEqual(json.loads(out['missing']['body'])['error'], 'not_found')
        # the big answer came gzip-coded (Chromium asks for it) and was decoded by the browser
        self.assertEqual(json.loads(out['big']['body']), {'b': json.loads(BIG)})
        self.assertRegex(out['big']['headers']['etag'], r'^"[0-9a-f]{32}-gz"$')
        self.assertEqual(out['big']['headers']['cache-control'], 'private, max-age=30')
        # revalidated from the browser's cache: gatherd answered 304, the page saw the 200
        self.assertEqual(out['revalidated']['status'], 200)
        self.assertEqual(out['revalidated']['body'], out['big']['body'])
        # a header outside cors.headers: the preflight is refused, the browser blocks the call
        self.assertFalse(out['secret_header']['ok'], out['secret_header'])
        self.assertIn('TypeError', out['secret_header']['error'])
        log = gd.log()
        self.assertRegex(log, r'method=OPTIONS route=/users/\{id\} path=/users/1 client=127\.0\.0\.1 status=204')
        self.assertRegex(log, r'method=GET route=/big path=/big client=127\.0\.0\.1 status=304')
        self.assertRegex(log, r'method=OPTIONS route=/users/\{id\} path=/users/1 client=127\.0\.0\.1 status=403')

    def test_other_origin_is_blocked(self):
        p = self.page()
        gd = self.start(['https://app.example.com'])  # not the page's origin
        out = self.load(p, gd)
        for name in ('simple', 'preflighted', 'post', 'failed', 'missing', 'big'):
            self.assertFalse(out[name]['ok'], (name, out[name]))
            self.assertIn('TypeError', out[name]['error'], name)
        log = gd.log()
        # the simple GET reached gatherd (no preflight for it) but its answer named no origin,
        # so the browser kept it from the page; the preflighted ones stopped at the preflight
        self.assertRegex(log, r'method=GET route=/users/\{id\} path=/users/1 client=127\.0\.0\.1 status=200')
        self.assertRegex(log, r'method=OPTIONS route=/users/\{id\} path=/users/1 client=127\.0\.0\.1 status=403')
        self.assertNotRegex(log, r'method=POST ')
        self.assertNotIn('browser-1', log)


if __name__ == '__main__':
    if CHROMIUM is None:
        print('chromium is not installed (scripts/setup.sh installs it): skipped')
        sys.exit(77)
    main()
