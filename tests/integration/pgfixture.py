"""
A throwaway PostgreSQL cluster for gatherd's integration tests (Python 3 standard library only).

    with PgCluster() as pg:                  # initdb into a fresh temp dir, start on a free port
        pg.psql('CREATE TABLE t (x int)')    # setup and checks through the psql client
        pg.conninfo()                        # 'host=127.0.0.1 port=N dbname=gatherd user=gatherd'
        pg.stop(); pg.start(); pg.restart()  # same dir, same port
    # the server is stopped and its dir removed here

The cluster is made and run by scripts/pg-cluster.sh (database and role "gatherd", trust auth,
a unix socket in DIR/sock, 127.0.0.1:PORT only; started as root, the server runs as the OS
user "postgres"). Whatever is started is always stopped: close() (context manager), an
optional unittest cleanup (PgCluster.for_test / for_class), and atexit for what a crashed test
left behind. Stopping uses the cluster script (pg_ctl on DIR's postmaster.pid), never a name.
"""

import atexit
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time

from harness import free_port

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, '..', '..'))
SCRIPT = os.path.join(REPO, 'scripts', 'pg-cluster.sh')
HOST = '127.0.0.1'


class PgError(AssertionError):
    pass


def server_binaries_present():
    import glob
    return any(os.access(os.path.join(d, 'initdb'), os.X_OK)
               for d in glob.glob('/usr/lib/postgresql/*/bin'))


_live = set()
_live_lock = threading.Lock()


@atexit.register
def _stop_all_clusters():
    with _live_lock:
        clusters = list(_live)
    for c in clusters:
        try:
            c.close()
        except Exception:
            pass


_sigterm_installed = False


def _install_sigterm_cleanup():
    """atexit does not run when the test process is killed by SIGTERM (meson's timeout): on
    SIGTERM, run the exit handlers (clusters here, gatherd and stubs in harness), then die of
    the signal as before. Only when SIGTERM still has its default action."""
    global _sigterm_installed
    if _sigterm_installed or threading.current_thread() is not threading.main_thread():
        return
    _sigterm_installed = True
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return

    def on_sigterm(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        try:
            atexit._run_exitfuncs()
        finally:
            os.kill(os.getpid(), signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_sigterm)


class PgCluster:
    """One PostgreSQL cluster in its own temp dir on a free 127.0.0.1 port.

    @sql_files run once, right after the database is created (by the cluster script).
    @start: start at once (initdb on the first start). The port is chosen once and kept, so
    stop()/start()/restart() bring the same server back on the same address.
    """

    def __init__(self, sql_files=(), start=True, port=None, start_timeout=90.0):
        if not os.path.exists(SCRIPT):
            raise PgError('cluster script not found: %s' % SCRIPT)
        if not server_binaries_present():
            raise PgError('PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin '
                          '(install postgresql-15: bash scripts/setup.sh)')
        self.sql_files = [os.path.abspath(f) for f in sql_files]
        self.start_timeout = start_timeout
        self._fixed_port = port
        self.port = port or free_port()
        self.parent = tempfile.mkdtemp(prefix='gatherd-pg-')
        self.dir = os.path.join(self.parent, 'cluster')
        self._closed = False
        self._initialised = False
        with _live_lock:
            _live.add(self)
        _install_sigterm_cleanup()
        if start:
            try:
                self.start()
            except BaseException:
                self.close()
                raise

    # -- paths ------------------------------------------------------------------------------
    @property
    def sock_dir(self):
        return os.path.join(self.dir, 'sock')

    @property
    def server_log_path(self):
        return os.path.join(self.dir, 'server.log')

    def server_log(self):
        try:
            with open(self.server_log_path, 'rb') as f:
                return f.read().decode('utf-8', 'replace')
        except OSError:
            return ''

    def conninfo(self, **extra):
        """A libpq keyword/value connection string for this server over TCP on 127.0.0.1.
        @extra adds or overrides keywords (values must not need quoting)."""
        kv = {'host': HOST, 'port': str(self.port), 'dbname': 'gatherd', 'user': 'gatherd'}
        kv.update({k: str(v) for k, v in extra.items()})
        return ' '.join('%s=%s' % (k, v) for k, v in kv.items())

    def uri(self):
        return 'postgresql://gatherd@%s:%d/gatherd' % (HOST, self.port)

    # -- lifecycle --------------------------------------------------------------------------
    def _script(self, *args, timeout=None):
        return subprocess.run(['bash', SCRIPT] + [str(a) for a in args], capture_output=True,
                              text=True, errors='replace', stdin=subprocess.DEVNULL,
                              timeout=timeout or self.start_timeout)

    def start(self):
        """Starts the server (initdb into the dir on the first start). Waits until it accepts
        connections. A first start that lost a port race is retried on another port."""
        if self._closed:
            raise PgError('cluster already closed')
        for attempt in range(4):
            r = self._script('start', self.dir, self.port, *self.sql_files)
            if r.returncode == 0:
                self._initialised = True
                self.wait_ready()
                return self
            log = self.server_log()
            lost_race = ('could not bind' in log or 'Address already in use' in log)
            if lost_race and not self._initialised and not self._fixed_port and attempt < 3:
                # the port went to someone else between free_port() and the start: a fresh
                # cluster on another port (postgresql.conf holds the port)
                self._script('stop', self.dir, '--rm')
                self.port = free_port()
                continue
            raise PgError('pg-cluster.sh start failed (rc=%d):\n%s\n%s\n--- server.log ---\n%s'
                          % (r.returncode, r.stdout, r.stderr, log[-4000:]))
        raise PgError('could not start the cluster')

    def stop(self):
        """Fast shutdown (pg_ctl -m fast: clients get admin_shutdown); the dir is kept."""
        if os.path.isdir(self.dir):
            r = self._script('stop', self.dir)
            if r.returncode != 0:
                raise PgError('pg-cluster.sh stop failed: %s %s' % (r.stdout, r.stderr))
        return self

    def restart(self):
        self.stop()
        return self.start()

    def is_running(self):
        try:
            return self.psql('SELECT 1', timeout=5) == '1'
        except (PgError, subprocess.TimeoutExpired):
            return False

    def wait_ready(self, timeout=30.0):
        deadline = time.monotonic() + timeout
        while True:
            if self.is_running():
                return True
            if time.monotonic() > deadline:
                raise PgError('server did not accept connections within %.0f s; server.log:\n%s'
                              % (timeout, self.server_log()[-4000:]))
            time.sleep(0.05)

    def close(self):
        """Stops the server and removes its dir. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            if os.path.isdir(self.dir):
                self._script('stop', self.dir, '--rm')
        finally:
            shutil.rmtree(self.parent, ignore_errors=True)
            with _live_lock:
                _live.discard(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- unittest helpers -------------------------------------------------------------------
    @classmethod
    def for_test(cls, testcase, **kw):
        """A cluster stopped and removed by @testcase's cleanup."""
        c = cls(**kw)
        testcase.addCleanup(c.close)
        return c

    @classmethod
    def for_class(cls, testclass, **kw):
        """A cluster stopped and removed by @testclass's class cleanup (call in setUpClass)."""
        c = cls(**kw)
        testclass.addClassCleanup(c.close)
        return c

    # -- psql -------------------------------------------------------------------------------
    def psql(self, sql, dbname='gatherd', timeout=30):
        """Runs @sql (any number of statements) with the psql client over the unix socket;
        returns the output of unaligned tuples-only mode ('|' between columns, one row a line),
        stripped. Raises PgError on any SQL error."""
        cmd = ['psql', '-X', '-q', '-A', '-t', '-F', '|', '-v', 'ON_ERROR_STOP=1',
               '-h', self.sock_dir, '-p', str(self.port), '-U', 'gatherd', '-d', dbname, '-f', '-']
        env = dict(os.environ)
        for k in ('PGOPTIONS', 'PGSERVICE', 'PGSSLMODE', 'PGPASSWORD'):
            env.pop(k, None)
        r = subprocess.run(cmd, input=sql, capture_output=True, text=True, errors='replace',
                           timeout=timeout, env=env)
        if r.returncode != 0:
            raise PgError('psql failed (rc=%d) for %r:\n%s' % (r.returncode, sql, r.stderr))
        return r.stdout.strip()

    def rows(self, sql):
        """The rows of one query as lists of strings."""
        out = self.psql(sql)
        return [line.split('|') for line in out.splitlines()] if out else []

    def scalar(self, sql):
        return self.psql(sql)

    # -- pg_stat_activity -------------------------------------------------------------------
    def backends(self, where='true'):
        """(pid, application_name, state, query) of other sessions matching @where."""
        return self.rows("SELECT pid, application_name, coalesce(state, ''), "
                         "replace(replace(coalesce(query, ''), E'\\n', ' '), '|', '/') "
                         "FROM pg_stat_activity WHERE backend_type = 'client backend' "
                         "AND pid <> pg_backend_pid() AND (%s) ORDER BY pid" % where)

    def gatherd_backends(self):
        """Sessions whose application_name starts with 'gatherd'."""
        return self.backends("application_name LIKE 'gatherd%'")

    def active_queries_like(self, pattern):
        """Other sessions currently running a query whose text contains @pattern."""
        return self.backends("state = 'active' AND position(%s in query) > 0"
                             % quote_literal(pattern))

    def terminate_gatherd_backends(self):
        """pg_terminate_backend() on every gatherd session; returns how many."""
        out = self.psql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                        "WHERE application_name LIKE 'gatherd%' AND pid <> pg_backend_pid()")
        return int(out or 0)


def quote_literal(s):
    return "'" + s.replace("'", "''") + "'"


if __name__ == '__main__':
    # A self-check of the fixture: start, psql, restart, stop/start, close.
    with PgCluster() as pg:
        print('started', pg.dir, pg.port, pg.conninfo())
        pg.psql('CREATE TABLE t (x int); INSERT INTO t VALUES (1), (2)')
        assert pg.rows('SELECT x, x * 2 FROM t ORDER BY x') == [['1', '2'], ['2', '4']]
        pg.restart()
        assert pg.scalar('SELECT count(*) FROM t') == '2'
        pg.stop()
        assert not pg.is_running()
        pg.start()
        assert pg.is_running()
        d = pg.parent
    assert not os.path.exists(d)
    print('fixture ok')
