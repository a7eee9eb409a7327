#!/usr/bin/env python3
"""The command line: -t, --version, --help, config errors naming their place, access log."""

import glob
import json
import os
import re
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (REPO, GatherdTestCase, call, config, endpoint, main,  # noqa: E402
                     run_gatherd, wait_until)

ACCESS_RE = re.compile(r'access request_id=[0-9a-f]{32} method=(\S+) route=\S+ path=(\S+) '
                       r'client=127\.0\.0\.1 status=(\d+) duration_ms=(\d+(?:\.\d+)?) bytes=(\d+) '
                       r'complete=(true|false|-)(?: calls=\S+)?$')


def good_config():
    cfg = config([endpoint('/users/{id}/profile', {'user': call('accounts', '/users/{id}')}),
                  endpoint('/users/{id}/posts', {
                      'user': call('accounts', '/users/{id}'),
                      'posts': call('accounts', '/posts?userId={id}', optional=True)})],
                 {'accounts': 'http://127.0.0.1:18081'})
    cfg['listen'] = ['127.0.0.1:18080']
    return cfg


class CliTest(GatherdTestCase):

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix='gatherd-cli-')
        self.addCleanup(self.tmp.cleanup)

    def write(self, name, content):
        path = os.path.join(self.tmp.name, name)
        with open(path, 'w') as f:
            f.write(content if isinstance(content, str) else json.dumps(content, indent=2))
        return path

    def check_t(self, path):
        r = run_gatherd(['-t', '-c', path])
        return r.returncode, r.stdout + r.stderr

    def assertBadConfig(self, cfg, *expected):
        path = self.write('bad.json', cfg)
        rc, out = self.check_t(path)
        self.assertEqual(rc, 1, out)
        self.assertIn(path, out)
        for e in expected:
            self.assertIn(e, out)
        return out

    # -- -t -------------------------------------------------------------------------------
    def test_good_config_is_ok(self):
        path = self.write('good.json', good_config())
        for args in (['-t', '-c', path], ['--test-config', '--config', path]):
            r = run_gatherd(args)
            out = r.stdout + r.stderr
            self.assertEqual(r.returncode, 0, out)
            self.assertIn('%s: ok' % path, out)

    def test_syntax_error_gives_line_and_column(self):
        path = self.write('syntax.json', '{\n  "listen": ["127.0.0.1:1"],\n  "upstreams": {,\n}\n')
        rc, out = self.check_t(path)
        self.assertEqual(rc, 1, out)
        self.assertIn('%s:3:17' % path, out)

    def test_unknown_upstream_names_the_json_path(self):
        cfg = good_config()
        cfg['endpoints'][1]['calls']['user']['upstream'] = 'acounts'
        path = self.write('unknown.json', cfg)
        rc, out = self.check_t(path)
        self.assertEqual(rc, 1, out)
        self.assertIn('%s: endpoints[1].calls.user.upstream: unknown upstream "acounts"' % path,
                      out)

    def test_semantic_errors_name_their_place(self):
        def mutated(f):
            cfg = good_config()
            f(cfg)
            return cfg

        cases = {
            'unknown top-level key': (lambda c: c.update(treads=1), ['treads']),
            'unknown endpoint key': (lambda c: c['endpoints'][0].update(timout=5),
                                     ['endpoints[0]', 'timout']),
            'unknown call key': (lambda c: c['endpoints'][0]['calls']['user'].update(optinal=True),
                                 ['endpoints[0].calls.user', 'optinal']),
            'call named errors': (lambda c: c['endpoints'][0]['calls'].update(
                errors=call('accounts', '/x')), ['endpoints[0].calls', 'errors']),
            'zero call timeout': (lambda c: c['endpoints'][0]['calls']['user'].update(
                timeout_ms=0), ['endpoints[0].calls.user.timeout_ms']),
            'negative endpoint timeout': (lambda c: c['endpoints'][1].update(timeout_ms=-5),
                                          ['endpoints[1].timeout_ms']),
            'zero connect timeout': (lambda c: c['upstreams']['accounts'].update(
                connect_timeout_ms=0), ['upstreams.accounts.connect_timeout_ms']),
            'bad url scheme': (lambda c: c['upstreams']['accounts'].update(
                url='ftp://127.0.0.1:21'), ['upstreams.accounts.url']),
            'duplicate route': (lambda c: c['endpoints'].append(
                endpoint('/users/{uid}/profile', {'u': call('accounts', '/u')})),
                ['endpoints[2]']),
            'unknown capture in a call': (lambda c: c['endpoints'][0]['calls']['user'].update(
                path='/users/{uid}'), ['endpoints[0].calls.user.path']),
            'no calls': (lambda c: c['endpoints'][0].update(calls={}),
                         ['endpoints[0].calls']),
            'no listen': (lambda c: c.pop('listen'), ['listen']),
            'bad param type': (lambda c: c['endpoints'][0].update(params={'id': 'float'}),
                               ['endpoints[0].params.id']),
        }
        for name, (f, expected) in cases.items():
            with self.subTest(case=name):
                self.assertBadConfig(mutated(f), *expected)

    def test_running_with_a_bad_config_exits_1(self):
        cfg = good_config()
        cfg['endpoints'][1]['calls']['user']['upstream'] = 'acounts'
        path = self.write('unknown.json', cfg)
        r = run_gatherd(['-c', path])
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn('unknown upstream "acounts"', r.stdout + r.stderr)

    def test_missing_config_file(self):
        path = os.path.join(self.tmp.name, 'does-not-exist.json')
        for args in (['-t', '-c', path], ['-c', path]):
            r = run_gatherd(args)
            out = r.stdout + r.stderr
            self.assertEqual(r.returncode, 1, out)
            self.assertIn(path, out)
            self.assertRegex(out.lower(), r'no such file|not found|cannot open|could not open')

    def test_config_bombs_end_quickly_with_an_error(self):
        # `gatherd -t` runs in ExecStartPre: none of these may hang it or eat the machine's
        # memory (before: /dev/zero read 2 GiB and aborted; the pattern took 30 s and 8 GB)
        cfg = good_config()
        cfg['endpoints'][0]['params'] = {'query.q': {'type': 'pattern', 'required': False,
                                                     'pattern': '(a{1,1000}){1,1000}'}}
        path = self.write('bomb.json', cfg)
        for args, words in ((['-t', '-c', '/dev/zero'], 'larger than 16 MiB'),
                            (['-t', '-c', path], 'too complex')):
            with self.subTest(args=args):
                r = run_gatherd(args, timeout=20)
                out = r.stdout + r.stderr
                self.assertEqual(r.returncode, 1, out)
                self.assertIn(words, out)

    def test_every_file_in_conf_passes(self):
        files = sorted(glob.glob(os.path.join(REPO, 'conf', '*.json')))
        if not files:
            self.skipTest('conf/ has no *.json files yet')
        for f in files:
            with self.subTest(file=os.path.relpath(f, REPO)):
                rc, out = self.check_t(f)
                self.assertEqual(rc, 0, out)
                self.assertIn('ok', out)

    # -- --version / --help ---------------------------------------------------------------
    def test_version(self):
        with open(os.path.join(REPO, 'meson.build')) as f:
            m = re.search(r"(?<!\w)version\s*:\s*'([^']+)'", f.read())
        r = run_gatherd(['--version'])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(m.group(1), r.stdout + r.stderr)

    def test_help(self):
        r = run_gatherd(['--help'])
        self.assertEqual(r.returncode, 0, r.stderr)
        out = r.stdout + r.stderr
        for opt in ('--config', '--test-config', '--version', '--help'):
            self.assertIn(opt, out)

    def test_bad_usage(self):
        for args in (['--no-such-option'], ['-c']):
            with self.subTest(args=args):
                r = run_gatherd(args, timeout=5)
                self.assertNotEqual(r.returncode, 0)
                self.assertTrue((r.stdout + r.stderr).strip())

    # -- access log -----------------------------------------------------------------------
    def test_access_log_line_per_request(self):
        stub = self.start_stub()
        stub.add('/ok', json={'ok': 1})
        stub.add('/down', status=503, json={})
        gd = self.start_gatherd(config([
            endpoint('/ok', {'ok': call('s', '/ok')}),
            endpoint('/partial', {'ok': call('s', '/ok'),
                                  'down': call('s', '/down', optional=True)})],
            {'s': stub}))
        sent = [('GET', '/ok'), ('GET', '/partial'), ('GET', '/nope'), ('POST', '/ok'),
                ('GET', '/ok')]
        answers = [gd.request(m, p) for m, p in sent]

        def lines():
            return [ACCESS_RE.search(line) for line in gd.log().splitlines()
                    if ACCESS_RE.search(line)]

        got = wait_until(lambda: len(lines()) >= len(sent) and lines(), timeout=3.0)
        self.assertTrue(got, 'no access log lines; log:\n' + gd.log())
        self.assertEqual(len(got), len(sent), gd.log())
        for (method, path), (status, _, body, _), m in zip(sent, answers, got):
            self.assertEqual(m.group(1), method)
            self.assertEqual(m.group(2), path)
            self.assertEqual(int(m.group(3)), status)
            self.assertGreaterEqual(float(m.group(4)), 0.0)
            self.assertGreaterEqual(int(m.group(5)), len(body))
        # endpoint answers say whether they are complete ('-' is accepted only for gatherd's
        # own errors, which have no calls)
        self.assertEqual([m.group(6) for m in got[:2]] + [got[4].group(6)],
                         ['true', 'false', 'true'])
        # one event per line: no access line spans two lines
        for line in gd.log().splitlines():
            self.assertLessEqual(line.count(' access '), 1, line)


if __name__ == '__main__':
    main()
