"""
A throwaway PgBouncer in front of a test's PgCluster (Python 3 standard library only).

    with PgBouncer(pg, pool_size=2) as pgb:   # transaction pooling on a free 127.0.0.1 port
        pgb.conninfo()                        # 'host=127.0.0.1 port=N dbname=gatherd user=gatherd'
        pgb.restart()                         # SIGTERM (PgBouncer's immediate shutdown), same port
        pgb.clients()                         # SHOW CLIENTS on its admin console, as dicts
    # stopped by PID here; its temp dir removed

Its config, auth file (auth_type trust over a userlist we write) and log live in a temp dir of
its own. PgBouncer refuses to run as root, so when the tests are root it runs as the OS user
"postgres" (the cluster's owner), set by Popen itself: the PID we hold is PgBouncer's, and it
is what stop() signals. Whatever is started is stopped by close(), a unittest cleanup
(for_test) or atexit.
"""

import atexit
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

from harness import free_port

HOST = '127.0.0.1'
BINARY = shutil.which('pgbouncer') or '/usr/sbin/pgbouncer'

_live = set()
_live_lock = threading.Lock()


@atexit.register
def _stop_all():
    with _live_lock:
        left = list(_live)
    for b in left:
        try:
            b.close()
        except Exception:
            pass


def available():
    return os.access(BINARY, os.X_OK)


class PgBouncer:
    """PgBouncer in transaction pooling mode, @pool_size server connections to @pg's database
    "gatherd" (default_pool_size), on a free port of 127.0.0.1. @extra: more [pgbouncer]
    settings, a dict."""

    def __init__(self, pg, pool_size=2, extra=None, start=True):
        self.pg = pg
        self.pool_size = pool_size
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix='gatherd-pgbouncer-')
        self.proc = None
        self._closed = False
        self._user = None
        if os.geteuid() == 0:
            self._user = 'postgres'
            pw = pwd.getpwnam(self._user)
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        with open(os.path.join(self.dir, 'userlist.txt'), 'w') as f:
            f.write('"gatherd" ""\n')
        settings = {
            'listen_addr': HOST,
            'listen_port': str(self.port),
            'unix_socket_dir': '',
            'auth_type': 'trust',
            'auth_file': os.path.join(self.dir, 'userlist.txt'),
            'admin_users': 'gatherd',
            'pool_mode': 'transaction',
            'default_pool_size': str(pool_size),
            'min_pool_size': '0',
            'reserve_pool_size': '0',
            'max_client_conn': '500',
            'logfile': os.path.join(self.dir, 'pgbouncer.log'),
            'pidfile': os.path.join(self.dir, 'pgbouncer.pid'),
            'server_login_retry': '1',
        }
        settings.update(extra or {})
        with open(os.path.join(self.dir, 'pgbouncer.ini'), 'w') as f:
            f.write('[databases]\ngatherd = host=%s port=%d dbname=gatherd user=gatherd\n\n'
                    '[pgbouncer]\n' % (HOST, pg.port))
            for k, v in settings.items():
                f.write('%s = %s\n' % (k, v))
        with _live_lock:
            _live.add(self)
        if start:
            try:
                self.start()
            except BaseException:
                self.close()
                raise

    @classmethod
    def for_test(cls, testcase, pg, **kw):
        b = cls(pg, **kw)
        testcase.addCleanup(b.close)
        return b

    def conninfo(self, **extra):
        kv = {'host': HOST, 'port': str(self.port), 'dbname': 'gatherd', 'user': 'gatherd'}
        kv.update({k: str(v) for k, v in extra.items()})
        return ' '.join('%s=%s' % (k, v) for k, v in kv.items())

    def log(self):
        try:
            with open(os.path.join(self.dir, 'pgbouncer.log'), 'rb') as f:
                return f.read().decode('utf-8', 'replace')
        except OSError:
            return ''

    def start(self, timeout=15.0):
        assert self.proc is None or self.proc.poll() is not None
        kw = {}
        if self._user is not None:
            kw = {'user': self._user, 'group': self._user, 'extra_groups': []}
        self.proc = subprocess.Popen([BINARY, os.path.join(self.dir, 'pgbouncer.ini')],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, cwd=self.dir, **kw)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError('pgbouncer exited with %s; log:\n%s'
                                     % (self.proc.returncode, self.log()[-3000:]))
            try:
                socket.create_connection((HOST, self.port), timeout=0.5).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError('pgbouncer did not listen within %.0f s; log:\n%s'
                                         % (timeout, self.log()[-3000:]))
                time.sleep(0.05)

    def stop(self, timeout=10.0):
        """SIGTERM: PgBouncer's immediate shutdown (every client and server connection closed
        at once), then waits for it to exit."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def restart(self):
        self.stop()
        self.start()

    def admin(self, command):
        """Rows of an admin console command (SHOW ...), as dicts."""
        r = subprocess.run(['psql', '-X', '-A', '-F', '\t', '-P', 'footer=off', '-h', HOST, '-p',
                            str(self.port), '-U', 'gatherd', '-d', 'pgbouncer', '-c', command],
                           capture_output=True, text=True, timeout=15, stdin=subprocess.DEVNULL)
        if r.returncode != 0:
            raise AssertionError('psql %r: %s' % (command, r.stderr))
        lines = r.stdout.strip('\n').split('\n')
        head = lines[0].split('\t')
        return [dict(zip(head, line.split('\t'))) for line in lines[1:]]

    def clients(self):
        """gatherd's client connections (database gatherd; the console's own is not one)."""
        return [c for c in self.admin('SHOW CLIENTS') if c.get('database') == 'gatherd']

    def close(self):
        if self._closed:
            return
        self._closed = True
        try:
            self.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
            with _live_lock:
                _live.discard(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
