"""A throwaway PostgreSQL server for the end-to-end tests.

`initdb` in a temporary directory (as the `postgres` user when we are root: initdb
refuses root), a free loopback port, the socket in that directory; stopped and removed
afterwards (by a watchdog if pytest is killed). Missing PostgreSQL server binaries fail
the tests (test.sh installs Debian's `postgresql`); they are never skipped.

Used by test_cluster.py (one server for its two nodes) and by conftest.py when
`BUUDIEN_E2E_STORE=postgres` puts every server of the run on PostgreSQL: then one
PostgreSQL serves the whole pytest session (`session_postgres()`), with a fresh
database for each `buudien serve` (`new_database()`).
"""

from __future__ import annotations

import glob
import itertools
import os
import shlex
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

# The environment variable that picks the store of every server the suite starts.
STORE_ENV = "BUUDIEN_E2E_STORE"
STORES = ("sqlite", "postgres")


def store_kind() -> str:
    """"sqlite" (the default) or "postgres", from $BUUDIEN_E2E_STORE."""
    kind = os.environ.get(STORE_ENV, "").strip().lower() or "sqlite"
    if kind not in STORES:
        raise pytest.UsageError(f"{STORE_ENV}={kind!r}: expected one of {', '.join(STORES)}")
    return kind


def on_postgres() -> bool:
    """Whether this run puts every server on PostgreSQL."""
    return store_kind() == "postgres"


def pg_bin_dir() -> Path:
    """The newest /usr/lib/postgresql/*/bin with initdb, else initdb's dir on PATH."""
    found = sorted(
        (int(Path(p).parts[-3]), Path(p).parent)
        for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")
        if Path(p).parts[-3].isdigit()
    )
    if found:
        return found[-1][1]
    initdb = shutil.which("initdb")
    if initdb and (Path(initdb).parent / "pg_ctl").exists():
        return Path(initdb).parent
    pytest.fail(
        "PostgreSQL server binaries (initdb, pg_ctl) not found in /usr/lib/postgresql/*/bin "
        "or on PATH: install Debian's `postgresql` package (test.sh does)"
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _has_user(name: str) -> bool:
    return subprocess.run(["id", "-u", name], capture_output=True).returncode == 0


class Postgres:
    """A PostgreSQL server in its own directory on a loopback port."""

    def __init__(self, db: str = "buudien", tls: bool = False):
        self.bin = pg_bin_dir()
        self.db = db
        # With `tls`: ssl = on with a self-signed certificate for 127.0.0.1 (`self.ca`,
        # which is also the CA a client must trust).
        self.tls = tls
        self.ca: Path | None = None
        self.user = None
        if os.geteuid() == 0:
            # initdb refuses to run as root.
            self.user = "postgres" if _has_user("postgres") else "nobody"
        self.root = Path(tempfile.mkdtemp(prefix="buudien-e2e-pg-"))
        if self.user:
            shutil.chown(self.root, user=self.user)
        self.data = self.root / "data"
        self.port = _free_port()
        self._names = itertools.count(1)

    def _cmd(self, program: str, *args: str) -> list[str]:
        prefix = ["runuser", "-u", self.user, "--"] if self.user else []
        return [*prefix, str(self.bin / program), *args]

    def _run(self, program: str, *args: str, as_owner: bool = True) -> None:
        cmd = self._cmd(program, *args) if as_owner else [str(self.bin / program), *args]
        r = subprocess.run(cmd, cwd=self.root, capture_output=True, timeout=120)
        assert r.returncode == 0, (
            f"{program} failed ({r.returncode}):\n{r.stdout.decode(errors='replace')}\n"
            f"{r.stderr.decode(errors='replace')}"
        )

    def start(self) -> None:
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres",
                  "-E", "UTF8", "--locale=C", "-N")
        # Every server of a run may be up at once, each with a pool (16 by default)
        # plus its LISTEN connection, and every CLI call opens one more.
        opts = (f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                "-c max_connections=400")
        if self.tls:
            opts += " " + self._make_cert()
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "log"), "-w",
                  "-o", opts, "start")
        self._watchdog()
        self.create_database(self.db)

    def _make_cert(self) -> str:
        """A CA (`self.ca`, what clients trust) and a server certificate for 127.0.0.1
        signed by it, in the server's directory; the key readable by its owner only
        (PostgreSQL insists). Returns the server options that use them."""
        ca_key, ca = self.root / "ca.key", self.root / "ca.crt"
        key, csr, cert = self.root / "server.key", self.root / "server.csr", \
            self.root / "server.crt"
        ext = self.root / "server.ext"
        ext.write_text("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        for cmd in (
            ["openssl", "req", "-x509", *ec, "-days", "2", "-keyout", str(ca_key),
             "-out", str(ca), "-subj", "/CN=buudien test CA"],
            ["openssl", "req", "-new", *ec, "-keyout", str(key), "-out", str(csr),
             "-subj", "/CN=127.0.0.1"],
            ["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey",
             str(ca_key), "-CAcreateserial", "-days", "2", "-extfile", str(ext),
             "-out", str(cert)],
        ):
            r = subprocess.run(cmd, capture_output=True, timeout=60)
            assert r.returncode == 0, r.stderr.decode(errors="replace")
        key.chmod(0o600)
        if self.user:
            shutil.chown(key, user=self.user)
            shutil.chown(cert, user=self.user)
        self.ca = ca
        return f"-c ssl=on -c ssl_cert_file={cert} -c ssl_key_file={key}"

    def create_database(self, name: str) -> None:
        """CREATE DATABASE `name` (a client over TCP: any OS user will do)."""
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                  name, as_owner=False)

    def new_database(self) -> str:
        """A fresh, empty database; its URL."""
        name = f"e2e_{next(self._names)}"
        self.create_database(name)
        return self.url(name)

    def _watchdog(self) -> None:
        """Stops the server and removes its directory once pytest is gone, however it
        ends (a fixture's teardown does not run after SIGKILL)."""
        stop = " ".join(shlex.quote(x) for x in self._cmd(
            "pg_ctl", "-D", str(self.data), "-m", "immediate", "stop"))
        script = (f"while kill -0 {os.getpid()} 2>/dev/null; do sleep 1; done; "
                  f"{stop} >/dev/null 2>&1; rm -rf {shlex.quote(str(self.root))}")
        subprocess.Popen(["setsid", "sh", "-c", script], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def url(self, db: str | None = None) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{db or self.db}"

    def stop(self) -> None:
        subprocess.run(self._cmd("pg_ctl", "-D", str(self.data), "-m", "fast", "stop"),
                       cwd=self.root, capture_output=True, timeout=60)
        if os.environ.get("BUUDIEN_E2E_KEEP") != "1":
            shutil.rmtree(self.root, ignore_errors=True)

    def log(self, tail: int = 6000) -> str:
        try:
            return (self.root / "log").read_text(errors="replace")[-tail:]
        except OSError:
            return ""


def started(tls: bool = False) -> Postgres:
    """A new, running PostgreSQL (with TLS when `tls`); its log is printed when it does
    not start."""
    server = Postgres(tls=tls)
    try:
        server.start()
    except BaseException:
        print(f"\n--- PostgreSQL log ---\n{server.log()}")
        server.stop()
        raise
    return server


# The one PostgreSQL of a `BUUDIEN_E2E_STORE=postgres` session: started by the first
# server that needs it, stopped by conftest's pytest_sessionfinish.
_session: Postgres | None = None


def session_postgres() -> Postgres:
    """The session's PostgreSQL, started on first use."""
    global _session
    if _session is None:
        _session = started()
    return _session


def stop_session_postgres() -> None:
    global _session
    if _session is not None:
        _session.stop()
        _session = None


def session_log(tail: int = 6000) -> str:
    """The tail of the session PostgreSQL's log ("" when none runs)."""
    return _session.log(tail) if _session is not None else ""
