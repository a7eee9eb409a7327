#!/usr/bin/env python3
"""HTTPS upstreams: real TLS servers (Python's ssl module) with certificates made at test time by
the openssl CLI from a CA of the test's own. Verification (chain, expiry, name under TLS 1.2 and
1.3), client certificates, keep-alive, session resumption counted at the server, TLS records on
idle connections, close_notify against truncation, and `gatherd -t` on the TLS files."""

import ctypes
import ctypes.util
import json
import os
import re
import select
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (HOST, GatherdTestCase, call, config, endpoint, loads_ordered,  # noqa: E402
                     main, run_gatherd, upstream, wait_until)


def openssl(*args, cwd):
    r = subprocess.run(['openssl'] + list(args), cwd=cwd, capture_output=True, text=True,
                       timeout=30, stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        raise RuntimeError('openssl %s failed: %s' % (' '.join(args), r.stderr))


class Certs:
    """A CA and leaf certificates in a temp dir: server.pem (localhost, 127.0.0.1),
    wrongname.pem (other.example), expired.pem, client.pem, other.key (matches nothing)."""

    CA_CNF = """
[ca]
default_ca = test_ca
[test_ca]
dir = .
database = index.txt
new_certs_dir = .
serial = serial
default_md = sha256
policy = any
copy_extensions = none
[any]
commonName = supplied
"""

    def __init__(self):
        if shutil.which('openssl') is None:
            raise unittest.SkipTest('the openssl command is not installed')
        self.dir = tempfile.mkdtemp(prefix='gatherd-tls-')
        try:
            self._make()
        except BaseException:
            self.remove()
            raise

    def path(self, name):
        return os.path.join(self.dir, name)

    def _key(self, name):
        openssl('genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out',
                name, cwd=self.dir)

    def _leaf(self, name, cn, san, eku='serverAuth', dates=None):
        d = self.dir
        self._key(name + '.key')
        openssl('req', '-new', '-key', name + '.key', '-out', name + '.csr', '-subj', '/CN=' + cn,
                cwd=d)
        ext = name + '.ext'
        with open(self.path(ext), 'w') as f:
            f.write('basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n'
                    'extendedKeyUsage=%s\n' % eku)
            if san:
                f.write('subjectAltName=%s\n' % san)
        if dates is None:
            openssl('x509', '-req', '-in', name + '.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key',
                    '-CAcreateserial', '-days', '2', '-sha256', '-extfile', ext,
                    '-out', name + '.pem', cwd=d)
        else:  # openssl ca: the only way to set dates in the past with OpenSSL 3.0's CLI
            openssl('ca', '-batch', '-config', 'ca.cnf', '-cert', 'ca.pem', '-keyfile', 'ca.key',
                    '-in', name + '.csr', '-out', name + '.pem', '-startdate', dates[0],
                    '-enddate', dates[1], '-extfile', ext, '-notext', cwd=d)

    def _make(self):
        d = self.dir
        self._key('ca.key')
        openssl('req', '-x509', '-new', '-key', 'ca.key', '-out', 'ca.pem', '-days', '2',
                '-subj', '/CN=gatherd test CA', '-addext', 'basicConstraints=critical,CA:TRUE',
                '-addext', 'keyUsage=critical,keyCertSign,cRLSign', cwd=d)
        with open(self.path('ca.cnf'), 'w') as f:
            f.write(self.CA_CNF)
        open(self.path('index.txt'), 'w').close()
        with open(self.path('serial'), 'w') as f:
            f.write('1000\n')
        self._leaf('server', 'localhost', 'DNS:localhost,IP:127.0.0.1')
        self._leaf('wrongname', 'other.example', 'DNS:other.example')
        self._leaf('expired', 'localhost', 'DNS:localhost,IP:127.0.0.1',
                   dates=('20200101000000Z', '20200102000000Z'))
        self._leaf('client', 'gatherd client', None, eku='clientAuth')
        self._key('other.key')
        openssl('pkey', '-in', 'client.key', '-aes256', '-passout', 'pass:secret', '-out',
                'encrypted.key', cwd=d)
        with open(self.path('garbage.pem'), 'w') as f:
            f.write('-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n')

    def remove(self):
        shutil.rmtree(self.dir, ignore_errors=True)


_libssl = None


def send_session_ticket(sslsock):
    """Makes the server send one more TLS 1.3 NewSessionTicket now (OpenSSL's
    SSL_new_session_ticket, which Python does not expose; found through CPython's PySSLSocket
    layout: PyObject_HEAD (two words), the socket's weakref, then SSL *). Returns False when that is not
    possible here."""
    global _libssl
    if _libssl is None:
        _libssl = ctypes.CDLL(ctypes.util.find_library('ssl') or 'libssl.so.3')
        _libssl.SSL_new_session_ticket.argtypes = [ctypes.c_void_p]
        _libssl.SSL_version.argtypes = [ctypes.c_void_p]
    obj = sslsock._sslobj
    ptr = ctypes.c_void_p.from_address(id(obj) + 3 * ctypes.sizeof(ctypes.c_void_p)).value
    if not ptr or _libssl.SSL_version(ptr) != 0x0304:
        return False
    if _libssl.SSL_new_session_ticket(ptr) != 1:
        return False
    sslsock.do_handshake()  # sends the queued ticket
    return True


class Route:
    def __init__(self, body=b'{"ok":true}', mode='length', ticket_after_s=None,
                 close_idle_after_s=None):
        self.body = body
        self.mode = mode  # length | close_notify | truncate
        self.ticket_after_s = ticket_after_s
        self.close_idle_after_s = close_idle_after_s


class TLSServer:
    """A threaded HTTP/1.1 keep-alive server over TLS on 127.0.0.1. Counts handshakes, resumed
    sessions, connections, SNI names and the versions negotiated."""

    def __init__(self, certs, cert='server', version=None, client_ca=False):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(certs.path(cert + '.pem'), certs.path(cert + '.key'))
        if version == '1.2':
            ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        elif version == '1.3':
            ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        if client_ca:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(certs.path('ca.pem'))
        ctx.sni_callback = self._on_sni
        self.ctx = ctx
        self.routes = {}
        self.lock = threading.Lock()
        self.handshakes = self.resumed = self.failed_handshakes = self.connections = 0
        self.tickets_sent_idle = 0
        self.closed_idle = 0
        self.sni = []
        self.versions = []
        self.requests = 0
        self.stopping = False
        self.conns = set()
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind((HOST, 0))
        self.lsock.listen(64)
        self.port = self.lsock.getsockname()[1]
        self.thread = threading.Thread(target=self._accept_loop, daemon=True)
        self.thread.start()

    def url(self, host=HOST):
        return 'https://%s:%d' % (host, self.port)

    def add(self, path, **kw):
        self.routes[path] = Route(**kw)

    def _on_sni(self, sslobj, name, ctx):
        with self.lock:
            self.sni.append(name)

    def _accept_loop(self):
        while not self.stopping:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
                self.conns.add(c)
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, raw):
        s = None
        try:
            raw.settimeout(5)
            try:
                s = self.ctx.wrap_socket(raw, server_side=True)
            except (ssl.SSLError, OSError):
                with self.lock:
                    self.failed_handshakes += 1
                return
            with self.lock:
                self.conns.add(s)
                self.handshakes += 1
                self.resumed += 1 if s.session_reused else 0
                self.versions.append(s.version())
            buf = b''
            idle_timeout = 5.0
            while not self.stopping:
                if not self._wait_readable(s, idle_timeout):
                    return self._close_idle(s)
                while b'\r\n\r\n' not in buf:
                    d = s.recv(65536)
                    if not d:
                        return
                    buf += d
                head, buf = buf.split(b'\r\n\r\n', 1)
                path = head.split(b' ')[1].decode()
                with self.lock:
                    self.requests += 1
                route = self.routes.get(path) or Route(body=b'{"error":"no route"}')
                if route.mode == 'length':
                    s.sendall(b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n'
                              b'Content-Length: %d\r\n\r\n' % len(route.body) + route.body)
                else:
                    s.sendall(b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n'
                              b'Connection: close\r\n\r\n' + route.body)
                    if route.mode == 'close_notify':
                        try:
                            s.settimeout(1)
                            s.unwrap().close()  # close_notify, then the FIN
                        except (ssl.SSLError, OSError):
                            pass
                    else:  # truncate: the TCP connection closes without close_notify
                        raw.shutdown(socket.SHUT_RDWR)
                    return
                if route.ticket_after_s is not None:
                    if not self._wait_readable(s, route.ticket_after_s):
                        if send_session_ticket(s):
                            with self.lock:
                                self.tickets_sent_idle += 1
                idle_timeout = route.close_idle_after_s or 5.0
        except (ssl.SSLError, OSError, IndexError):
            return
        finally:
            try:
                (s or raw).close()
            except OSError:
                pass

    def _wait_readable(self, s, timeout):
        if s.pending():
            return True
        r, _, _ = select.select([s], [], [], timeout)
        return bool(r)

    def _close_idle(self, s):
        with self.lock:
            self.closed_idle += 1
        try:
            s.settimeout(1)
            s.unwrap().close()
        except (ssl.SSLError, OSError):
            pass

    def stats(self):
        with self.lock:
            return {'handshakes': self.handshakes, 'resumed': self.resumed,
                    'connections': self.connections, 'failed': self.failed_handshakes,
                    'requests': self.requests, 'closed_idle': self.closed_idle,
                    'tickets_sent_idle': self.tickets_sent_idle}

    def stop(self):
        self.stopping = True
        try:
            self.lsock.shutdown(socket.SHUT_RDWR)  # wakes the accept(), which close() does not
        except OSError:
            pass
        try:
            self.lsock.close()
        except OSError:
            pass
        with self.lock:
            conns = list(self.conns)
        for c in conns:
            try:
                c.close()
            except OSError:
                pass
        self.thread.join(5)


class TLSTest(GatherdTestCase):

    @classmethod
    def setUpClass(cls):
        cls.certs = Certs()

    @classmethod
    def tearDownClass(cls):
        cls.certs.remove()

    def server(self, **kw):
        s = TLSServer(self.certs, **kw)
        self.addCleanup(s.stop)
        return s

    def tls(self, **kw):
        d = {'ca_file': self.certs.path('ca.pem')}
        d.update(kw)
        return d

    def gatherd(self, url, tls=None, paths=('/ok',), log_level='info', **up):
        if tls is not None:
            up['tls'] = tls
        eps = [endpoint('/e%s' % p, {'c': call('api', p, timeout_ms=3000)}) for p in paths]
        return self.start_gatherd(config(eps, {'api': upstream(url, **up)},
                                         log={'level': log_level}))

    def ok(self, gd, path='/e/ok'):
        st, hdrs, body, _ = gd.get(path)
        self.assertEqual(st, 200, body + gd.log().encode())
        self.assertEqual(json.loads(body), {'c': {'ok': True}})

    def failed(self, gd, kind, detail_re, path='/e/ok', status=502):
        st, hdrs, body, _ = gd.get(path)
        self.assertEqual(st, status, body)
        doc = loads_ordered(body)
        self.assertIsNone(doc['c'], body)
        self.assertErrorObject(doc['errors']['c'], kind)
        # The public answer has the fixed text only; the log line says why.
        if kind == 'tls':
            self.assertEqual(doc['errors']['c']['message'],
                             'the secure connection to the service failed')
        rid = hdrs.get('X-Request-Id')
        line = wait_until(lambda: next((ln for ln in gd.log().splitlines()
                                        if 'call failed' in ln and rid in ln), None), 5)
        self.assertIsNotNone(line, gd.log())
        self.assertIn('kind=%s' % kind, line)
        self.assertRegex(line, detail_re)
        return line

    # -- success ------------------------------------------------------------------------
    def test_tls12_and_tls13(self):
        for version in ('1.2', '1.3'):
            with self.subTest(version=version):
                srv = self.server(version=version)
                srv.add('/ok')
                gd = self.gatherd(srv.url(), self.tls())
                self.ok(gd)
                self.assertEqual(srv.versions, ['TLSv' + version])
                # An IP URL sends no SNI (RFC 6066 section 3) and is checked against the IP SAN.
                self.assertEqual(srv.sni, [None])

    def test_server_name_is_sni_and_verified_name(self):
        srv = self.server()
        srv.add('/ok')
        gd = self.gatherd(srv.url(), self.tls(server_name='localhost'))
        self.ok(gd)
        self.assertEqual(srv.sni, ['localhost'])
        gd = self.gatherd(srv.url('localhost'), self.tls())  # a name: resolved, sent as SNI
        self.ok(gd)
        self.assertEqual(srv.sni, ['localhost', 'localhost'])

    # -- verification failures ---------------------------------------------------------
    def test_wrong_name_fails_under_tls13_and_tls12(self):
        for version in ('1.3', '1.2'):
            for name in (None, 'localhost'):
                with self.subTest(version=version, server_name=name):
                    srv = self.server(cert='wrongname', version=version)
                    srv.add('/ok')
                    kw = {'server_name': name} if name else {}
                    gd = self.gatherd(srv.url(), self.tls(**kw))
                    self.failed(gd, 'tls', r'TLS handshake with https://127\.0\.0\.1:\d+ failed: '
                                r'.*(mismatch)')
                    self.assertEqual(srv.stats()['requests'], 0)

    def test_expired_certificate(self):
        srv = self.server(cert='expired')
        srv.add('/ok')
        gd = self.gatherd(srv.url(), self.tls())
        self.failed(gd, 'tls', r'certificate has expired')

    def test_unknown_ca(self):
        srv = self.server()
        srv.add('/ok')
        gd = self.gatherd(srv.url())  # the system CA store, which does not know the test's CA
        self.failed(gd, 'tls', r'unable to get local issuer certificate')

    def test_protocol_version(self):
        srv = self.server(version='1.2')
        srv.add('/ok')
        gd = self.gatherd(srv.url(), self.tls(min_version='1.3'))
        self.failed(gd, 'tls', r'protocol version|unsupported protocol')

    def test_handshake_timeout(self):
        lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(lsock.close)
        lsock.bind((HOST, 0))
        lsock.listen(8)  # the kernel completes the TCP handshake; nobody speaks TLS
        gd = self.gatherd('https://%s:%d' % (HOST, lsock.getsockname()[1]), self.tls(),
                          connect_timeout_ms=300)
        t0 = time.monotonic()
        self.failed(gd, 'tls', r'TLS handshake with .* timed out')
        self.assertLess(time.monotonic() - t0, 2.5)

    def test_client_certificate(self):
        for version in ('1.3', '1.2'):
            with self.subTest(version=version):
                srv = self.server(version=version, client_ca=True)
                srv.add('/ok')
                gd = self.gatherd(srv.url(), self.tls())
                self.failed(gd, 'tls', r'certificate required|handshake failure|alert')
                gd = self.gatherd(srv.url(), self.tls(
                    client_cert_file=self.certs.path('client.pem'),
                    client_key_file=self.certs.path('client.key')))
                self.ok(gd)

    # -- keep-alive, resumption, idle records --------------------------------------------
    def test_keepalive_reuse_and_resumption(self):
        for version in ('1.2', '1.3'):
            with self.subTest(version=version):
                srv = self.server(version=version)
                srv.add('/ok', close_idle_after_s=0.3)
                gd = self.gatherd(srv.url(), self.tls(), keepalive_timeout_ms=10000)
                for _ in range(5):
                    self.ok(gd)
                st = srv.stats()
                self.assertEqual((st['handshakes'], st['connections'], st['requests']),
                                 (1, 1, 5), st)
                # The server closes the idle connection (close_notify): gatherd retires it, and
                # its next connection resumes the session instead of a full handshake.
                self.assertTrue(wait_until(lambda: srv.stats()['closed_idle'] == 1, 5))
                time.sleep(0.1)  # the close_notify reaches gatherd's idle read
                self.ok(gd)
                st = srv.stats()
                self.assertEqual((st['handshakes'], st['resumed']), (2, 1), st)

    def test_idle_connection_receives_session_ticket(self):
        srv = self.server(version='1.3')
        srv.add('/ok', ticket_after_s=0.2)
        gd = self.gatherd(srv.url(), self.tls(), keepalive_timeout_ms=10000)
        self.ok(gd)
        if not wait_until(lambda: srv.stats()['tickets_sent_idle'] == 1, 5):
            self.skipTest('cannot make this Python send a TLS 1.3 ticket on demand')
        time.sleep(0.1)  # the ticket reaches the idle connection
        self.ok(gd)
        self.ok(gd)
        st = srv.stats()
        self.assertEqual((st['handshakes'], st['connections'], st['requests']), (1, 1, 3), st)

    def test_body_until_close(self):
        srv = self.server()
        srv.add('/cn', body=b'{"ok":true}', mode='close_notify')
        srv.add('/trunc', body=b'{"ok":true}', mode='truncate')
        gd = self.gatherd(srv.url(), self.tls(), paths=('/cn', '/trunc'))
        self.ok(gd, '/e/cn')
        self.failed(gd, 'io', r'without close_notify', path='/e/trunc')
        self.ok(gd, '/e/cn')

    # -- gatherd -t ------------------------------------------------------------------------
    def check_config(self, tls, want_re):
        cfg = config([endpoint('/x', {'c': call('api', '/x')})],
                     {'api': upstream('https://127.0.0.1:1', tls=tls)})
        cfg['listen'] = ['127.0.0.1:1']
        self.nconfig = getattr(self, 'nconfig', 0) + 1
        path = os.path.join(self.certs.dir, 'cfg-%d.json' % self.nconfig)
        with open(path, 'w') as f:
            json.dump(cfg, f)
        self.addCleanup(os.unlink, path)
        r = run_gatherd(['-t', '-c', path])
        if want_re is None:
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(r.stdout, '%s: ok\n' % path)
            return
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertRegex(r.stderr, '^gatherd: ' + re.escape(path) + ': ' + want_re)

    def test_config_check(self):
        c = self.certs
        self.check_config(self.tls(client_cert_file=c.path('client.pem'),
                                   client_key_file=c.path('client.key')), None)
        self.check_config({'ca_file': c.path('missing.pem')},
                          r'upstreams\.api\.tls\.ca_file: cannot read .*missing\.pem: No such '
                          r'file or directory\n$')
        self.check_config({'ca_file': c.path('garbage.pem')},
                          r'upstreams\.api\.tls\.ca_file: cannot load CA certificates from '
                          r'.*garbage\.pem \(.+\)\n$')
        self.check_config({'ca_file': c.dir}, r'upstreams\.api\.tls\.ca_file: .* is not a file')
        self.check_config(self.tls(client_cert_file=c.path('client.pem'),
                                   client_key_file=c.path('other.key')),
                          r'upstreams\.api\.tls\.client_key_file: the key in .*other\.key does '
                          r'not match the certificate in .*client\.pem\n$')
        self.check_config(self.tls(client_cert_file=c.path('garbage.pem'),
                                   client_key_file=c.path('client.key')),
                          r'upstreams\.api\.tls\.client_cert_file: cannot load a certificate')
        # A key with a passphrase fails at once: nothing asks for it on a terminal.
        self.check_config(self.tls(client_cert_file=c.path('client.pem'),
                                   client_key_file=c.path('encrypted.key')),
                          r'upstreams\.api\.tls\.client_key_file: cannot load a private key')
        self.check_config(self.tls(client_cert_file=c.path('client.pem'),
                                   client_key_file=c.path('ca.pem')),
                          r'upstreams\.api\.tls\.client_key_file: cannot load a private key')


if __name__ == '__main__':
    main()
