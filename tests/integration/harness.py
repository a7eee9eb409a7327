"""
Integration test harness for gatherd (Python 3 standard library only).

- free_port(): a kernel-chosen free TCP port on 127.0.0.1.
- StubUpstream: a real HTTP/1.1 server (keep-alive, one thread per connection) whose answer per
  path the test steers, and which records every request and connection it saw.
- Gatherd: runs the built daemon with a generated config, waits until it accepts connections,
  and sends it requests; always stopped by PID (context manager, unittest cleanup and atexit).
- config()/upstream()/endpoint()/call(): builders that keep test configs short.
- GatherdTestCase: a unittest.TestCase with start_stub()/start_gatherd() that register cleanups.

Everything listens and connects on 127.0.0.1 only.
"""

import atexit
import http.client
import json as jsonlib
import os
import re
import select
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import tempfile
import threading
import time
import unittest

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..'))
HOST = '127.0.0.1'


# conf/demo.json sends its demo API key from the environment, as scripts/demo.sh sets it: the
# tests that check every file in conf/ need it set too.
os.environ.setdefault('GATHERD_DEMO_API_KEY', 'demo-key-of-the-tests')
os.environ.setdefault('GATHERD_DEMO_CLIENT_KEYS', 'demo-client-key-of-the-tests')


def gatherd_bin():
    return os.environ.get('GATHERD_BIN') or os.path.join(REPO, 'build', 'gatherd')


def free_port():
    """A TCP port that was free on 127.0.0.1 a moment ago (bind to 0, read, close)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind((HOST, 0))
        return s.getsockname()[1]
    finally:
        s.close()


def now():
    return time.monotonic()


def wait_until(predicate, timeout=5.0, interval=0.01):
    """Polls @predicate every @interval s until it is true; returns its last value."""
    deadline = now() + timeout
    while True:
        v = predicate()
        if v or now() >= deadline:
            return v
        time.sleep(interval)


def loads_ordered(body):
    """Parses JSON keeping object key order (objects become lists of (key, value) pairs
    wrapped in OrderedPairs so that order can be asserted)."""
    return jsonlib.loads(body, object_pairs_hook=OrderedPairs)


class OrderedPairs(dict):
    """A dict that also remembers its keys' order as parsed (duplicates visible in .pairs)."""

    def __init__(self, pairs):
        super().__init__(pairs)
        self.pairs = list(pairs)

    def keys_in_order(self):
        return [k for k, _ in self.pairs]


# ---------------------------------------------------------------------------------------------
# Registry of everything started, so that atexit can stop what a crashed test left behind.
_live = set()
_live_lock = threading.Lock()


def _register(obj):
    with _live_lock:
        _live.add(obj)


def _unregister(obj):
    with _live_lock:
        _live.discard(obj)


@atexit.register
def _stop_everything():
    with _live_lock:
        objs = list(_live)
    for o in objs:
        try:
            o.close()
            if isinstance(o, Gatherd):
                shutil.rmtree(o.tmpdir, ignore_errors=True)
        except Exception:
            pass


# ---------------------------------------------------------------------------------------------
# Stub upstream

_REASONS = {200: 'OK', 201: 'Created', 204: 'No Content', 301: 'Moved Permanently',
            400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found',
            409: 'Conflict', 429: 'Too Many Requests', 500: 'Internal Server Error',
            502: 'Bad Gateway', 503: 'Service Unavailable', 504: 'Gateway Timeout'}

MODES = (None, 'reset', 'hang', 'close', 'garbage', 'huge', 'slow_body', 'close_reused')


class Route:
    def __init__(self, status=200, body=None, json=None, delay_ms=0, headers=None, chunked=False,
                 mode=None, size=0, chunk_size=16, interval_ms=10, reset_after_ms=20,
                 partial_bytes=None, garbage=b'SSH-2.0-OpenSSH_9.2\r\nthis is not HTTP\r\n\r\n',
                 close_after=False):
        if mode not in MODES:
            raise ValueError('unknown mode %r' % (mode,))
        if json is not None and body is not None:
            raise ValueError('give body or json, not both')
        if json is not None:
            body = jsonlib.dumps(json).encode()
        if body is None:
            body = b'{}'
        if isinstance(body, str):
            body = body.encode()
        if mode == 'huge':
            # a JSON string of exactly @size bytes, so that it is valid JSON when it fits
            if size < 2:
                raise ValueError('huge needs size >= 2')
            body = b'"' + b'a' * (size - 2) + b'"'
        self.status = status
        self.body = body
        self.delay = delay_ms / 1000.0
        self.headers = dict(headers or {})
        self.chunked = chunked
        self.mode = mode
        self.chunk_size = max(1, chunk_size)
        self.interval = interval_ms / 1000.0
        self.reset_after = reset_after_ms / 1000.0
        self.partial_bytes = partial_bytes
        self.garbage = garbage
        self.close_after = close_after  # close the connection after answering (no header says so)


class ConnRecord:
    """What happened to one accepted connection."""

    def __init__(self, cid):
        self.id = cid
        self.accepted_at = now()
        self.closed_at = None
        self.closed_by = None  # 'peer' (EOF/error from gatherd's side) or 'stub'
        self.requests = 0
        self.paths = []  # the path of each request on this connection

    def __repr__(self):
        return '<conn %d paths=%s closed_by=%s>' % (self.id, self.paths, self.closed_by)


def _peer_eof(sock):
    """True when the peer has closed @sock (an EOF or an error is pending), without reading."""
    if isinstance(sock, ssl.SSLSocket):  # its recv() takes no flags: peek at the TCP socket
        try:
            raw = socket.socket(fileno=os.dup(sock.fileno()))
        except OSError:
            return True
        try:
            return _peer_eof(raw)
        finally:
            raw.close()
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b''
    except BlockingIOError:
        return False
    except OSError:
        return True


class StubUpstream:
    """A real HTTP/1.1 server on 127.0.0.1 that the test steers per path (HTTPS when given an
    ssl.SSLContext: StubUpstream(ssl_context=ctx)).

    add(path, status=200, body=b'...', json=obj, delay_ms=0, headers={}, chunked=False, mode=None,
        size=N (huge), chunk_size/interval_ms (slow_body, chunked), reset_after_ms (reset),
        close_after=True (answer, then close the connection without a Connection: close))
    Modes: 'reset' (part of the answer, then RST via SO_LINGER 0), 'hang' (read the request, never
    answer, wait for the peer to close), 'close' (close without answering), 'garbage' (non-HTTP
    bytes, then close), 'close_reused' (answer the first request of a connection, close a later
    one without answering: a stale keep-alive connection), 'huge' (a JSON string body of exactly size bytes), 'slow_body' (headers,
    then the body trickled chunk_size bytes every interval_ms).
    Paths are matched without the query string (exactly, not decoded); add('*', ...) sets the
    answer for every other path; without it unknown paths get 404 {"error":"no stub route"}.

    Recorded: requests [(method, raw target, headers dict with lower-case names)], request_times
    (monotonic arrival times), connections (ConnRecord list), connections_accepted,
    max_concurrent_connections (open connections counted at each accept, those with a pending
    EOF from gatherd excluded), max_concurrent_requests.
    """

    def __init__(self, ssl_context=None):
        self._ssl_context = ssl_context  # serves HTTPS: the handshake is made at accept
        self.handshakes_failed = 0
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._routes = {}
        self._stopping = threading.Event()
        self.requests = []
        self.bodies = []  # the request body of each entry of requests (bytes)
        self.request_times = []
        self.connections = []
        self.current_connections = 0
        self.max_concurrent_connections = 0
        self.current_requests = 0
        self.max_concurrent_requests = 0
        self._socks = set()
        self._threads = set()
        self._lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._lsock.bind((HOST, 0))
        self._lsock.listen(1024)
        self._lsock.settimeout(0.2)  # safety net; stop() also shuts the socket down
        self.port = self._lsock.getsockname()[1]
        self.url = '%s://%s:%d' % ('https' if ssl_context else 'http', HOST, self.port)
        self._accept_thread = threading.Thread(target=self._accept_loop, daemon=True,
                                               name='stub-accept-%d' % self.port)
        _register(self)
        self._accept_thread.start()

    # -- steering -------------------------------------------------------------------------
    def add(self, path, status=200, body=None, json=None, delay_ms=0, headers=None,
            chunked=False, mode=None, **kw):
        route = Route(status=status, body=body, json=json, delay_ms=delay_ms, headers=headers,
                      chunked=chunked, mode=mode, **kw)
        with self._lock:
            self._routes[path] = route
        return route

    # -- observation ----------------------------------------------------------------------
    @property
    def connections_accepted(self):
        with self._lock:
            return len(self.connections)

    def targets(self):
        with self._lock:
            return [t for _, t, _ in self.requests]

    def requests_for(self, path):
        with self._lock:
            return [r for r in self.requests if r[1].split('?', 1)[0] == path]

    def wait_requests(self, n, timeout=5.0):
        """Waits until at least @n requests arrived; returns the count."""
        deadline = now() + timeout
        with self._cond:
            while len(self.requests) < n:
                left = deadline - now()
                if left <= 0:
                    break
                self._cond.wait(left)
            return len(self.requests)

    def reset_stats(self):
        with self._lock:
            self.requests = []
            self.bodies = []
            self.request_times = []
            self.max_concurrent_connections = self.current_connections
            self.max_concurrent_requests = self.current_requests

    # -- lifecycle ------------------------------------------------------------------------
    def stop(self):
        if self._stopping.is_set():
            return
        self._stopping.set()
        try:
            self._lsock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._lsock.close()
        with self._lock:
            socks = list(self._socks)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._accept_thread.join(5)
        with self._lock:
            threads = list(self._threads)
        for t in threads:
            t.join(5)
        _unregister(self)

    close = stop

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    # -- server ---------------------------------------------------------------------------
    def _accept_loop(self):
        while not self._stopping.is_set():
            try:
                conn, _ = self._lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                break
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._ssl_context is not None:
                conn.settimeout(5)
                try:
                    conn = self._ssl_context.wrap_socket(conn, server_side=True)
                except (OSError, ValueError):
                    conn.close()
                    with self._lock:
                        self.handshakes_failed += 1
                    continue
            conn.settimeout(None)
            with self._lock:
                if self._stopping.is_set():
                    conn.close()
                    break
                rec = ConnRecord(len(self.connections))
                self.connections.append(rec)
                # connections gatherd already closed but whose EOF a serving thread has not
                # read yet do not count as open
                live = 1 + sum(1 for s in self._socks if not _peer_eof(s))
                self._socks.add(conn)
                self.current_connections += 1
                self.max_concurrent_connections = max(self.max_concurrent_connections, live)
                t = threading.Thread(target=self._serve, args=(conn, rec), daemon=True)
                self._threads.add(t)
            t.start()

    def _serve(self, conn, rec):
        buf = b''
        closed_by = 'stub'
        try:
            while not self._stopping.is_set():
                req, buf = self._read_request(conn, buf)
                if req is None:
                    closed_by = 'peer'
                    break
                method, target, headers, body = req
                path = target.split('?', 1)[0]
                with self._cond:
                    self.requests.append((method, target, headers))
                    self.bodies.append(body)
                    self.request_times.append(now())
                    rec.requests += 1
                    rec.paths.append(path)
                    self.current_requests += 1
                    self.max_concurrent_requests = max(self.max_concurrent_requests,
                                                       self.current_requests)
                    route = self._routes.get(path, self._routes.get('*'))
                    self._cond.notify_all()
                try:
                    if route is None:
                        route = Route(status=404, body=b'{"error":"no stub route"}')
                    if route.mode == 'close_reused' and rec.requests > 1:
                        break  # a stale keep-alive connection: closed without an answer
                    keep, peer_closed = self._respond(conn, route, method, headers)
                finally:
                    with self._lock:
                        self.current_requests -= 1
                if peer_closed:
                    closed_by = 'peer'
                if not keep:
                    break
        except OSError:
            closed_by = 'peer'
        finally:
            try:
                conn.close()
            except OSError:
                pass
            with self._lock:
                rec.closed_at = now()
                rec.closed_by = closed_by
                self._socks.discard(conn)
                self.current_connections -= 1
                self._threads.discard(threading.current_thread())

    def _read_request(self, conn, buf):
        """Returns ((method, target, headers), rest) or (None, b'') on EOF."""
        while b'\r\n\r\n' not in buf:
            data = conn.recv(65536)
            if not data:
                return None, b''
            buf += data
            if len(buf) > 1 << 20:
                return None, b''
        head, rest = buf.split(b'\r\n\r\n', 1)
        lines = head.decode('latin-1').split('\r\n')
        method, target, _version = lines[0].split(' ', 2)
        headers = {}
        for line in lines[1:]:
            if ':' in line:
                k, v = line.split(':', 1)
                headers[k.strip().lower()] = v.strip()
        n = int(headers.get('content-length', '0') or 0)
        while len(rest) < n:
            data = conn.recv(65536)
            if not data:
                return None, b''
            rest += data
        return (method, target, headers, rest[:n]), rest[n:]

    def _wait(self, seconds):
        """Sleeps unless the stub is stopping; returns False when stopping."""
        return not self._stopping.wait(seconds) if seconds > 0 else not self._stopping.is_set()

    def _wait_peer_close(self, conn):
        """Reads and discards until gatherd closes the connection (True) or stop() (False)."""
        while not self._stopping.is_set():
            try:
                if not conn.recv(65536):
                    break
            except OSError:
                break
        return not self._stopping.is_set()

    def _delay(self, conn, seconds):
        """Waits @seconds while watching the connection, so that a close by gatherd (e.g. a
        cancelled call) is noticed and recorded at once. Returns 'ok', 'peer_closed' or
        'stopping'."""
        deadline = now() + seconds
        while True:
            if self._stopping.is_set():
                return 'stopping'
            left = deadline - now()
            if left <= 0:
                return 'ok'
            r, _, _ = select.select([conn], [], [], min(left, 0.05))
            if r:
                try:
                    data = conn.recv(1, socket.MSG_PEEK)
                except OSError:
                    return 'peer_closed'
                if not data:
                    return 'peer_closed'
                # pipelined bytes: cannot watch for a close any more; just wait
                return 'ok' if self._wait(deadline - now()) else 'stopping'

    def _head(self, route, body_len, chunked):
        status = route.status
        lines = ['HTTP/1.1 %d %s' % (status, _REASONS.get(status, 'Status'))]
        hdrs = {'Content-Type': 'application/json'}
        hdrs.update(route.headers)
        names = {k.lower() for k in hdrs}
        if chunked:
            if 'transfer-encoding' not in names:
                hdrs['Transfer-Encoding'] = 'chunked'
        elif 'content-length' not in names:
            hdrs['Content-Length'] = str(body_len)
        for k, v in hdrs.items():
            lines.append('%s: %s' % (k, v))
        return ('\r\n'.join(lines) + '\r\n\r\n').encode('latin-1')

    def _respond(self, conn, route, method, req_headers):
        """Answers one request. Returns (keep_alive, peer_closed)."""
        d = self._delay(conn, route.delay)
        if d != 'ok':
            return False, d == 'peer_closed'
        mode = route.mode
        if mode == 'hang':
            return False, self._wait_peer_close(conn)
        if mode == 'close':
            return False, False
        if mode == 'garbage':
            conn.sendall(route.garbage)
            return False, False
        body = route.body if method != 'HEAD' else b''
        if mode == 'reset':
            # announce the whole body, send part of it, then abort with RST (SO_LINGER 0)
            part = route.partial_bytes if route.partial_bytes is not None else len(body) // 2
            head = self._head(route, max(len(body), part + 1000), False)
            conn.sendall(head + body[:part])
            self._wait(route.reset_after)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
            return False, False
        if mode == 'slow_body':
            conn.sendall(self._head(route, len(body), route.chunked))
            for i in range(0, len(body), route.chunk_size):
                piece = body[i:i + route.chunk_size]
                if route.chunked:
                    piece = b'%x\r\n%s\r\n' % (len(piece), piece)
                conn.sendall(piece)
                if not self._wait(route.interval):
                    return False, False
            if route.chunked:
                conn.sendall(b'0\r\n\r\n')
        elif route.chunked:
            conn.sendall(self._head(route, len(body), True))
            step = 65536 if mode == 'huge' else route.chunk_size
            for i in range(0, len(body), step):
                piece = body[i:i + step]
                conn.sendall(b'%x\r\n%s\r\n' % (len(piece), piece))
            conn.sendall(b'0\r\n\r\n')
        else:
            conn.sendall(self._head(route, len(body), False) + body)
        if route.close_after:
            return False, False
        keep = req_headers.get('connection', '').lower() != 'close' and \
            route.headers.get('Connection', route.headers.get('connection', '')).lower() != 'close'
        return keep, False


# ---------------------------------------------------------------------------------------------
# Config builders

def upstream(target, **kw):
    """An upstreams.NAME entry; @target is a StubUpstream or a URL."""
    url = target.url if isinstance(target, StubUpstream) else target
    d = {'url': url}
    d.update(kw)
    return d


def call(upstream_name, path, **kw):
    d = {'upstream': upstream_name, 'path': path}
    d.update(kw)
    return d


def endpoint(path, calls, method='GET', **kw):
    """An endpoints[i] entry; @calls is a dict (its order is the answer's key order) or a list
    of (name, call) pairs."""
    d = {'method': method, 'path': path}
    d.update(kw)
    d['calls'] = dict(calls)
    return d


def config(endpoints, upstreams, threads=1, **top):
    """A whole config. "listen" is filled in by Gatherd when absent. @upstreams maps a name to
    a StubUpstream, a URL or an upstreams.NAME dict."""
    ups = {}
    for name, u in upstreams.items():
        ups[name] = u if isinstance(u, dict) else upstream(u)
    d = {}
    d['threads'] = threads
    # Each daemon gets an admin listener of its own: the default port would collide between
    # the daemons a test runs side by side.
    d['admin_listen'] = '127.0.0.1:%d' % free_port()
    d.update(top)
    d['upstreams'] = ups
    d['endpoints'] = list(endpoints)
    return d


# ---------------------------------------------------------------------------------------------
# gatherd process

SANITIZER_MARKERS = ('ERROR: AddressSanitizer', 'ERROR: LeakSanitizer', 'runtime error:',
                     'WARNING: ThreadSanitizer', 'SUMMARY: UndefinedBehaviorSanitizer')


class GatherdError(AssertionError):
    pass


class Gatherd:
    """Runs the built gatherd with @cfg (a dict, written to a temp file) as `gatherd -c FILE`.

    Waits until the listen port accepts TCP connections (polls every 10 ms, up to 10 s); raises
    GatherdError with the log when the process exits first. Stopped by PID only.
    """

    def __init__(self, cfg, binary=None, args=(), start_timeout=10.0, env=None):
        self.binary = binary or gatherd_bin()
        self.env = dict(env or {})
        if not os.access(self.binary, os.X_OK):
            raise unittest.SkipTest('gatherd binary not found at %s (set GATHERD_BIN or build it)'
                                    % self.binary)
        self.tmpdir = tempfile.mkdtemp(prefix='gatherd-it-')
        self.cfg = jsonlib.loads(jsonlib.dumps(cfg))  # a private copy
        self.proc = None
        self.args = list(args)
        self._logf = None
        self._we_killed = False
        self._closed = False
        _register(self)
        try:
            self._start(start_timeout)
        except BaseException:
            self.close()  # the error carries the log
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            raise

    # -- start ----------------------------------------------------------------------------
    def _start(self, start_timeout):
        own_port = 'listen' not in self.cfg
        for attempt in range(5):
            if own_port:
                self.port = free_port()
                self.cfg['listen'] = ['%s:%d' % (HOST, self.port)]
            else:
                self.port = int(self.cfg['listen'][0].rsplit(':', 1)[1])
            self.config_path = os.path.join(self.tmpdir, 'gatherd.json')
            with open(self.config_path, 'w') as f:
                jsonlib.dump(self.cfg, f, indent=2)
            self.log_path = os.path.join(self.tmpdir, 'stderr-%d.log' % attempt)
            self._logf = open(self.log_path, 'wb')
            env = dict(os.environ, **self.env)
            if 'LD_PRELOAD' in self.env:
                # the ASan build checks that its runtime comes first; a test shim goes before it
                env['ASAN_OPTIONS'] = ':'.join(
                    filter(None, [env.get('ASAN_OPTIONS'), 'verify_asan_link_order=0']))
            self.proc = subprocess.Popen([self.binary, '-c', self.config_path] + self.args,
                                         stdin=subprocess.DEVNULL, stdout=self._logf,
                                         stderr=self._logf, close_fds=True, env=env)
            self.started_at = now()
            deadline = now() + start_timeout
            while True:
                rc = self.proc.poll()
                if rc is not None:
                    log = self.log()
                    if own_port and attempt < 4 and 'in use' in log.lower():
                        break  # lost a port race: try another port
                    raise GatherdError('gatherd exited with %s during start-up; log:\n%s'
                                       % (rc, log))
                if self._can_connect() and self._admin_accepts():
                    return
                if now() > deadline:
                    raise GatherdError('gatherd did not accept connections on port %d within '
                                       '%.0f s; log:\n%s' % (self.port, start_timeout, self.log()))
                time.sleep(0.01)

    def _admin_accepts(self):
        """Whether the admin listener, when the config has one, accepts connections: it opens
        just after the main listeners, and tests that probe it right away must find it."""
        admin = self.cfg.get('admin_listen')  # config() always sets one of its own
        if admin is None:
            return True
        host, port = admin.rsplit(':', 1)
        s = socket.socket(socket.AF_INET6 if host.startswith('[') else socket.AF_INET,
                          socket.SOCK_STREAM)
        s.settimeout(0.5)
        try:
            s.connect((host.strip('[]'), int(port)))
            return True
        except OSError:
            return False
        finally:
            s.close()

    def _can_connect(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(0.5)
        try:
            s.connect((HOST, self.port))
            return True
        except OSError:
            return False
        finally:
            s.close()

    def accepts_connections(self):
        return self._can_connect()

    # -- requests -------------------------------------------------------------------------
    def connection(self, timeout=10.0):
        return http.client.HTTPConnection(HOST, self.port, timeout=timeout)

    def request(self, method, path, headers=None, timeout=10.0, conn=None, body=None):
        """One request on a new connection (or on @conn), with @body if given. Returns (status,
        headers, body, elapsed_s); headers is an http.client.HTTPMessage (case-insensitive)."""
        own = conn is None
        c = conn or self.connection(timeout)
        try:
            t0 = now()
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            body = r.read()
            elapsed = now() - t0
            return r.status, r.headers, body, elapsed
        finally:
            if own:
                c.close()

    def get(self, path, headers=None, timeout=10.0):
        return self.request('GET', path, headers, timeout)

    def raw(self, data, timeout=5.0, until_close=False):
        """Sends raw bytes on a new connection; returns what was read until one whole response
        arrived (or, with @until_close, until the server closes), or @timeout passed."""
        s = socket.create_connection((HOST, self.port), timeout=timeout)
        try:
            s.sendall(data)
            out = b''
            deadline = now() + timeout
            while now() < deadline:
                try:
                    d = s.recv(65536)
                except socket.timeout:
                    break
                except ConnectionResetError:
                    break
                if not d:
                    break
                out += d
                if not until_close and _complete_http_response(out):
                    break
            return out
        finally:
            s.close()

    def url(self, path):
        return 'http://%s:%d%s' % (HOST, self.port, path)

    # -- process --------------------------------------------------------------------------
    @property
    def pid(self):
        return self.proc.pid

    @property
    def returncode(self):
        return self.proc.poll()

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig=signal.SIGTERM):
        if self.alive():
            os.kill(self.proc.pid, sig)

    def wait(self, timeout=15.0):
        """Waits for the exit; returns the exit code or None on timeout."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def terminate(self, timeout=15.0):
        """SIGTERM and wait; SIGKILL after @timeout s. Returns the exit code."""
        if self.alive():
            os.kill(self.proc.pid, signal.SIGTERM)
        rc = self.wait(timeout)
        if rc is None:
            self.kill()
            rc = self.proc.returncode
        return rc

    def kill(self):
        if self.alive():
            self._we_killed = True
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def log(self):
        try:
            with open(self.log_path, 'rb') as f:
                return f.read().decode('utf-8', 'replace')
        except (OSError, AttributeError):
            return ''

    def check_clean_log(self):
        """Raises when the log shows a sanitizer report or a crash."""
        log = self.log()
        for m in SANITIZER_MARKERS:
            if m in log:
                raise GatherdError('sanitizer report in gatherd log:\n%s' % log[-8000:])
        rc = self.proc.poll() if self.proc else None
        if rc is not None and rc < 0 and not self._we_killed and rc not in (-signal.SIGKILL,):
            raise GatherdError('gatherd died from signal %d; log:\n%s' % (-rc, log[-8000:]))

    def close(self):
        """Stops the process (SIGTERM, then SIGKILL) and removes its files. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            if self.proc is not None and self.proc.poll() is None:
                try:
                    os.kill(self.proc.pid, signal.SIGTERM)
                    self.proc.wait(5)  # test_shutdown checks the exit itself
                except subprocess.TimeoutExpired:
                    self.kill()
                except ProcessLookupError:
                    pass
        finally:
            if self._logf:
                self._logf.close()
            _unregister(self)

    def cleanup(self):
        """close(), then check the log (the error carries it) and remove the temp files; for
        unittest.addCleanup."""
        self.close()
        try:
            self.check_clean_log()
        finally:
            shutil.rmtree(self.tmpdir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cleanup()


def _complete_http_response(data):
    """True when @data holds one whole HTTP/1.x response with a Content-Length (or headers and
    a zero-length body)."""
    if b'\r\n\r\n' not in data:
        return False
    head, body = data.split(b'\r\n\r\n', 1)
    m = re.search(rb'(?im)^content-length:\s*(\d+)\s*$', head)
    if m:
        return len(body) >= int(m.group(1))
    return False


def recv_until_close(sock):
    """Everything @sock receives until the peer closes it (or its timeout passes)."""
    data = b''
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


def parse_raw_response(data):
    """(status, headers dict lower-case, body) of a raw HTTP/1.x response with Content-Length."""
    head, body = data.split(b'\r\n\r\n', 1)
    lines = head.decode('latin-1').split('\r\n')
    status = int(lines[0].split(' ')[1])
    headers = {}
    for line in lines[1:]:
        k, v = line.split(':', 1)
        headers[k.strip().lower()] = v.strip()
    return status, headers, body


def run_curl(args, timeout=15.0):
    """Runs curl (only ever against 127.0.0.1); returns CompletedProcess with bytes output."""
    if shutil.which('curl') is None:
        raise unittest.SkipTest('curl not installed')
    return subprocess.run(['curl', '-sS', '--noproxy', '*'] + list(args), capture_output=True,
                          timeout=timeout)


def run_gatherd(args, timeout=15.0):
    """Runs the binary with @args to completion; returns CompletedProcess (text output)."""
    b = gatherd_bin()
    if not os.access(b, os.X_OK):
        raise unittest.SkipTest('gatherd binary not found at %s' % b)
    return subprocess.run([b] + list(args), capture_output=True, timeout=timeout, text=True,
                          errors='replace', stdin=subprocess.DEVNULL)


# ---------------------------------------------------------------------------------------------
# unittest base

class GatherdTestCase(unittest.TestCase):
    """Registers a cleanup for everything a test starts."""

    def start_stub(self):
        s = StubUpstream()
        self.addCleanup(s.stop)
        return s

    def start_gatherd(self, cfg, **kw):
        g = Gatherd(cfg, **kw)
        self.addCleanup(g.cleanup)
        return g

    # -- assertions -----------------------------------------------------------------------
    def assertJsonError(self, status, headers, body, expected_status, error=None):
        """An error of gatherd itself: @expected_status, application/json, an object with string
        "error" and non-empty string "message"."""
        self.assertEqual(status, expected_status, body)
        self.assertEqual(media_type(headers), 'application/json', body)
        try:
            doc = jsonlib.loads(body)
        except ValueError:
            self.fail('error body is not JSON: %r' % body)
        self.assertIsInstance(doc, dict, body)
        self.assertIsInstance(doc.get('error'), str, body)
        self.assertIsInstance(doc.get('message'), str, body)
        self.assertTrue(doc['message'], body)
        if error is not None:
            self.assertEqual(doc['error'], error, body)
        return doc

    def assertAlive(self, gd, path=None):
        """gatherd still runs and (with @path) answers 200 there."""
        self.assertTrue(gd.alive(), 'gatherd died (rc=%s); log:\n%s' % (gd.returncode, gd.log()))
        if path is not None:
            st, _, body, _ = gd.get(path)
            self.assertEqual(st, 200, body)

    def assertErrorObject(self, err, kind, status=None):
        """One errors.<call> object: keys kind, message, [status,] elapsed_ms in this order."""
        self.assertIsInstance(err, dict, err)
        keys = err.keys_in_order() if isinstance(err, OrderedPairs) else list(err)
        expected = ['kind', 'message'] + (['status'] if kind == 'status' else []) + ['elapsed_ms']
        self.assertEqual(keys, expected, err)
        self.assertEqual(err['kind'], kind, err)
        self.assertIsInstance(err['message'], str)
        self.assertTrue(err['message'])
        self.assertIsInstance(err['elapsed_ms'], int, err)
        self.assertNotIsInstance(err['elapsed_ms'], bool)
        self.assertGreaterEqual(err['elapsed_ms'], 0)
        if kind == 'status':
            self.assertEqual(err['status'], status, err)


def media_type(headers):
    ct = headers.get('Content-Type') if headers is not None else None
    return ct.split(';')[0].strip().lower() if ct else None


def main():
    """unittest.main() that exits non-zero on failure."""
    unittest.main(verbosity=2)
