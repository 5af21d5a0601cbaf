"""Fixtures for the real-client tests: one `buudien serve` for the whole run.

The `server` fixture builds nothing. It takes the binary from $BUUDIEN_BIN (or
target/debug/buudien), makes a temporary directory with a self-signed certificate
(openssl CLI), picks free loopback ports, writes a config, creates the domain
`example.test` through the CLI, starts `buudien serve`, and waits until its ports
accept. At the end it sends SIGTERM and asserts exit code 0 within 15 s.

Each test makes its own accounts (`server.new_user()`), so the maildrop locks of one
test never get in the way of another. The server's stderr is attached to the report of
every failing test.

SMTP: `launch(..., smtp=True, sections=...)` adds the `smtp`, `submission` and
`submissions` listeners and extra config sections (`[smtp]`, `[queue]`, `[dns]`); the
`launcher` fixture starts such servers for one test and stops them after it. The real
peers (a throwaway Postfix, dnsmasq, a scripted SMTP server) are in peers.py; their
fixtures are imported here.

IMAP: every server also listens for `imap` (STARTTLS) and `imaps` (implicit TLS) on
loopback; `server.imap(user)` and `server.imap_ssl(user)` give logged-in imaplib
clients.

Store: SQLite in each server's data_dir, or, with `BUUDIEN_E2E_STORE=postgres`, every
server the suite starts on PostgreSQL: one throwaway PostgreSQL for the session
(pgutil.py), a fresh database per server (`[store]` added to its config). Tests marked
`sqlite_only(reason)` (or `own_postgres(reason)`) are deselected then, and the terminal
summary lists each with its reason.
"""

from __future__ import annotations

import imaplib
import itertools
import os
import poplib
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

import pgutil

REPO = Path(__file__).resolve().parents[2]
DOMAIN = "example.test"
PASSWORD = "correct horse battery staple"
TIMEOUT = 15  # seconds, for sockets and subprocesses


def normalize(raw: bytes) -> bytes:
    """What `buudien deliver` stores: bare LF -> CRLF and a final CRLF."""
    out = bytearray()
    prev = 0
    for b in raw:
        if b == 0x0A and prev != 0x0D:
            out += b"\r"
        out.append(b)
        prev = b
    if out and not out.endswith(b"\r\n"):
        out += b"\r\n"
    return bytes(out)


def message(subject: str, body: str = "Hello.\n", extra_headers: str = "") -> bytes:
    """A small RFC 5322 message with LF line endings (deliver normalises them)."""
    return (
        f"From: sender@example.org\n"
        f"To: someone@{DOMAIN}\n"
        f"Subject: {subject}\n"
        f"Message-ID: <{subject.replace(' ', '-')}@example.org>\n"
        f"{extra_headers}"
        f"\n"
        f"{body}"
    ).encode()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_ports(n: int) -> list[int]:
    """`n` distinct free loopback ports (all sockets held open while choosing)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def require_client(name: str) -> str:
    """The path of a client program; skips (or fails under test.sh) when missing."""
    path = shutil.which(name)
    if path is None:
        msg = f"{name} is not installed (test.sh installs it)"
        if os.environ.get("BUUDIEN_E2E_REQUIRE_CLIENTS") == "1":
            pytest.fail(msg)
        pytest.skip(msg)
    return path


class RawPop:
    """A bare POP3 connection, for looking at exact bytes on the wire."""

    def __init__(self, port: int, context: ssl.SSLContext | None = None):
        sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        if context is not None:
            sock = context.wrap_socket(sock, server_hostname="127.0.0.1")
        self.sock = sock
        self.file = sock.makefile("rb")
        self.greeting = self.line()

    def line(self) -> bytes:
        data = self.file.readline(1 << 20)
        if not data:
            raise EOFError("server closed the connection")
        return data

    def send(self, text: bytes | str) -> None:
        if isinstance(text, str):
            text = text.encode()
        self.sock.sendall(text + b"\r\n")

    def cmd(self, text: bytes | str) -> bytes:
        self.send(text)
        return self.line()

    def multiline(self) -> list[bytes]:
        """The raw lines (CRLF kept, dot-stuffing kept) up to and without `.`CRLF."""
        lines = []
        while True:
            data = self.line()
            if data == b".\r\n":
                return lines
            lines.append(data)

    def login(self, user: str, password: str) -> None:
        assert self.cmd(f"USER {user}").startswith(b"+OK")
        reply = self.cmd(f"PASS {password}")
        assert reply.startswith(b"+OK"), reply

    def close(self) -> None:
        try:
            self.file.close()
        finally:
            self.sock.close()


class Server:
    """A running `buudien serve` plus helpers to drive its CLI and its ports."""

    def __init__(self, binary: Path, root: Path, apop: bool = False, smtp: bool = False,
                 sections: str = "", env: dict[str, str] | None = None,
                 store_url: str | None = None, pool_size: int | None = None):
        self.bin = binary
        self.env = env or {}  # extra environment of `serve` (not of the CLI)
        self.apop = apop
        self.root = root
        self.config = root / "buudien.toml"
        self.cert = root / "cert.pem"
        self.key = root / "key.pem"
        self.data = root / "data"
        self.log_path = root / "serve.log"
        self.smtp = smtp
        self.sections = sections
        # The PostgreSQL database of this server (`[store] backend = "postgres"`):
        # given (test_cluster.py's nodes share one), or, when BUUDIEN_E2E_STORE=postgres,
        # a fresh one of the session's PostgreSQL, made when the config is first
        # written. None with SQLite.
        self.store_url = store_url
        self.pool_size = pool_size
        ports = free_ports(5 if smtp else 2)
        self.pop3_port, self.pop3s_port = ports[:2]
        # SMTP (25), submission (587, STARTTLS), submissions (465, implicit TLS).
        self.smtp_port, self.submission_port, self.submissions_port = (
            ports[2:] if smtp else (None, None, None)
        )
        # IMAP (143, STARTTLS) and IMAPS (993, implicit TLS), distinct from the above.
        imap_ports = [p for p in free_ports(len(ports) + 2) if p not in ports]
        self.imap_port, self.imaps_port = imap_ports[:2]
        self.proc: subprocess.Popen | None = None
        self.start_failed = False
        self._log = None
        self._names = itertools.count(1)

    # --- setup -----------------------------------------------------------------

    def make_cert(self) -> None:
        subprocess.run(
            [
                "openssl", "req", "-x509", "-nodes", "-days", "2",
                "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                "-keyout", str(self.key), "-out", str(self.cert),
                "-subj", "/CN=localhost",
                "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
            ],
            check=True, capture_output=True, timeout=TIMEOUT,
        )

    def config_text(self, extra: str = "") -> str:
        smtp_listen = ""
        if self.smtp:
            smtp_listen = (
                f'smtp = ["127.0.0.1:{self.smtp_port}"]\n'
                f'submission = ["127.0.0.1:{self.submission_port}"]\n'
                f'submissions = ["127.0.0.1:{self.submissions_port}"]\n'
            )
        return (
            f'hostname = "mail.{DOMAIN}"\n'
            f'data_dir = "{self.data}"\n'
            f"{extra}"
            f"\n[listen]\n"
            f'pop3 = ["127.0.0.1:{self.pop3_port}"]\n'
            f'pop3s = ["127.0.0.1:{self.pop3s_port}"]\n'
            f'imap = ["127.0.0.1:{self.imap_port}"]\n'
            f'imaps = ["127.0.0.1:{self.imaps_port}"]\n'
            f"{smtp_listen}"
            f"\n[tls]\n"
            f'cert = "{self.cert}"\n'
            f'key = "{self.key}"\n'
            f"\n[pop3]\n"
            f'idle_timeout = "10m"\n'
            f"apop = {'true' if self.apop else 'false'}\n"
            f"allow_plaintext_auth = false\n"
            f"lock_session = true\n"
            f"{self.sections}"
            f"{self.store_section()}"
        )

    def on_postgres(self) -> bool:
        """Whether this server's store is PostgreSQL (no SQLite file in data_dir)."""
        return self.store_url is not None or pgutil.on_postgres()

    def store_section(self) -> str:
        """`[store]` for PostgreSQL, "" for the default SQLite store in data_dir."""
        if self.store_url is None:
            if not pgutil.on_postgres():
                return ""
            self.store_url = pgutil.session_postgres().new_database()
        pool = f"pool_size = {self.pool_size}\n" if self.pool_size else ""
        return f'\n[store]\nbackend = "postgres"\nurl = "{self.store_url}"\n{pool}'

    def ports(self) -> list[int]:
        """Every port `serve` listens on."""
        return [p for _, p in self.listeners()]

    def listeners(self) -> list[tuple[str, int]]:
        """(service, port) for every listener in the config."""
        named = [("pop3", self.pop3_port), ("pop3s", self.pop3s_port),
                 ("smtp", self.smtp_port), ("submission", self.submission_port),
                 ("submissions", self.submissions_port),
                 ("imap", self.imap_port), ("imaps", self.imaps_port)]
        return [(n, p) for n, p in named if p]

    def start(self) -> None:
        # Appends: a restart (after kill -9) keeps the log of the earlier run.
        self._log = open(self.log_path, "ab")
        env = dict(os.environ, BUUDIEN_LOG=os.environ.get("BUUDIEN_LOG", "info"))
        env.update(self.env)
        self.proc = subprocess.Popen(
            [str(self.bin), "--config", str(self.config), "serve"],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            env=env, cwd=self.root,
        )
        deadline = time.monotonic() + 20
        for name, port in self.listeners():
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"buudien serve exited with {self.proc.returncode}:\n{self.log()}"
                    )
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(
                            f"buudien serve never accepted on its {name} port "
                            f"127.0.0.1:{port}:\n{self.log()}"
                        )
                    time.sleep(0.05)
            # `serve` binds every listener before it serves any: once one accepts,
            # the others get a short grace only, so a missing service fails fast.
            deadline = min(deadline, time.monotonic() + 3)

    def kill9(self) -> None:
        """SIGKILL `serve` (no shutdown code runs) and reap it; `start()` restarts."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=TIMEOUT)
        self.proc = None
        if self._log:
            self._log.close()
            self._log = None

    def stop(self) -> int:
        """SIGTERM, then the exit code (SIGKILL and -9 after 15 s)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                return -9
        if self._log:
            self._log.close()
        return self.proc.returncode

    def log(self, tail: int = 20000) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return text[-tail:]

    # --- CLI -------------------------------------------------------------------

    def cli(self, *args: str, input: bytes | None = None, check: bool = True,
            config: Path | None = None) -> subprocess.CompletedProcess:
        cmd = [str(self.bin), "--config", str(config or self.config), *args]
        r = subprocess.run(cmd, input=input, capture_output=True, timeout=60)
        if check and r.returncode != 0:
            raise AssertionError(
                f"{' '.join(args)} exited {r.returncode}: "
                f"{r.stderr.decode(errors='replace')}"
            )
        return r

    def new_user(self, prefix: str = "u", password: str = PASSWORD,
                 quota: str | None = None) -> tuple[str, str]:
        """Creates a fresh account and returns (address, password)."""
        addr = f"{prefix}{next(self._names)}@{DOMAIN}"
        args = ["user", "add", addr, "--password-stdin"]
        if quota:
            args += ["--quota", quota]
        self.cli(*args, input=password.encode() + b"\n")
        return addr, password

    def deliver(self, rcpt: str | list[str], msg: bytes, check: bool = True,
                sender: str | None = None) -> subprocess.CompletedProcess:
        rcpts = [rcpt] if isinstance(rcpt, str) else rcpt
        args = ["deliver"]
        if sender is not None:
            args += ["--from", sender]
        return self.cli(*args, *rcpts, input=msg, check=check)

    # --- POP3 clients ----------------------------------------------------------

    def tls_context(self) -> ssl.SSLContext:
        """Trusts exactly the generated certificate, with hostname checks on."""
        return ssl.create_default_context(cafile=str(self.cert))

    def pop(self, user: str | None = None, password: str = PASSWORD) -> poplib.POP3:
        p = poplib.POP3("127.0.0.1", self.pop3_port, timeout=TIMEOUT)
        if user is not None:
            p.user(user)
            p.pass_(password)
        return p

    def pop_ssl(self, user: str | None = None, password: str = PASSWORD) -> poplib.POP3_SSL:
        p = poplib.POP3_SSL("127.0.0.1", self.pop3s_port, timeout=TIMEOUT,
                            context=self.tls_context())
        if user is not None:
            p.user(user)
            p.pass_(password)
        return p

    # --- IMAP clients ----------------------------------------------------------

    def imap(self, user: str | None = None, password: str = PASSWORD) -> imaplib.IMAP4:
        """imaplib over plain loopback (LOGIN is allowed from loopback)."""
        m = imaplib.IMAP4("127.0.0.1", self.imap_port, timeout=TIMEOUT)
        # imaplib sends a literal and its closing CRLF in two writes: without
        # TCP_NODELAY, Nagle and delayed ACKs add ~40 ms to every APPEND.
        m.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if user is not None:
            m.login(user, password)
        return m

    def imap_ssl(self, user: str | None = None, password: str = PASSWORD) -> imaplib.IMAP4_SSL:
        """imaplib over implicit TLS, trusting exactly the generated certificate."""
        m = imaplib.IMAP4_SSL("127.0.0.1", self.imaps_port, timeout=TIMEOUT,
                              ssl_context=self.tls_context())
        m.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if user is not None:
            m.login(user, password)
        return m

    def raw(self, tls: bool = False) -> RawPop:
        if tls:
            return RawPop(self.pop3s_port, self.tls_context())
        return RawPop(self.pop3_port)

    def stat(self, user: str, password: str = PASSWORD) -> tuple[int, int]:
        """STAT in a fresh session, retrying briefly while the maildrop is locked."""
        deadline = time.monotonic() + 5
        while True:
            p = self.pop()
            try:
                p.user(user)
                p.pass_(password)
            except poplib.error_proto as e:
                p.close()
                if b"[IN-USE]" in e.args[0] and time.monotonic() < deadline:
                    time.sleep(0.1)
                    continue
                raise
            try:
                return p.stat()
            finally:
                p.quit()


def find_binary() -> Path:
    env = os.environ.get("BUUDIEN_BIN")
    target = os.environ.get("CARGO_TARGET_DIR")
    if env:
        path = Path(env)
    elif target:
        path = Path(target) / "debug" / "buudien"
    else:
        path = REPO / "target" / "debug" / "buudien"
    if not path.is_file() or not os.access(path, os.X_OK):
        pytest.exit(
            f"buudien binary not found at {path}: run `cargo build -p buudien` "
            "or set BUUDIEN_BIN (or CARGO_TARGET_DIR)", returncode=2,
        )
    return path.resolve()


@pytest.fixture(scope="session")
def buudien_bin() -> Path:
    return find_binary()


def launch(binary: Path, root: Path, apop: bool = False, smtp: bool = False,
           sections: str = "") -> Server:
    """A fresh server in `root`: certificate, config, domain, `buudien serve` running.

    `smtp` adds the three SMTP listeners; `sections` is appended to the config (whole
    TOML tables such as `[smtp]`, `[queue]`, `[dns]`)."""
    srv = Server(binary, root, apop=apop, smtp=smtp, sections=sections)
    srv.make_cert()
    srv.config.write_text(srv.config_text())
    srv.cli("domain", "add", DOMAIN)
    srv.start()
    return srv


def stop_and_clean(srv: Server) -> None:
    """Ends a module's server: SIGTERM must give exit 0; then its data dir goes, unless
    BUUDIEN_E2E_KEEP=1 (a failed stop keeps it for the report)."""
    code = srv.stop()
    assert code == 0, f"buudien serve exited {code} after SIGTERM:\n{srv.log()}"
    if os.environ.get("BUUDIEN_E2E_KEEP") != "1":
        shutil.rmtree(srv.root, ignore_errors=True)


@pytest.fixture(scope="session")
def server(buudien_bin: Path):
    keep = os.environ.get("BUUDIEN_E2E_KEEP") == "1"
    root = Path(tempfile.mkdtemp(prefix="buudien-e2e-"))
    srv = launch(buudien_bin, root)
    try:
        yield srv
    finally:
        start = time.monotonic()
        code = srv.stop()
        took = time.monotonic() - start
        if code != 0 or took > 11:
            print(f"\n--- buudien serve log ({srv.log_path}) ---\n{srv.log()}")
        if not keep and code == 0:
            shutil.rmtree(root, ignore_errors=True)
        assert code == 0, f"buudien serve exited {code} after SIGTERM"
        assert took <= 11, f"buudien serve took {took:.1f}s to stop after SIGTERM"


class Launcher:
    """Starts SMTP-enabled servers for one test (`launcher(sections=...)`, `env=` adds
    to the environment of `serve`); the fixture stops them afterwards and requires a
    clean exit (0 after SIGTERM)."""

    def __init__(self, binary: Path):
        self.bin = binary
        self.servers: list[Server] = []

    def __call__(self, sections: str = "", smtp: bool = True, name: str = "own",
                 env: dict[str, str] | None = None) -> Server:
        root = Path(tempfile.mkdtemp(prefix=f"buudien-e2e-{name}-"))
        srv = Server(self.bin, root, smtp=smtp, sections=sections, env=env)
        self.servers.append(srv)  # reported on failure even when it never started
        srv.make_cert()
        srv.config.write_text(srv.config_text())
        srv.cli("domain", "add", DOMAIN)
        try:
            srv.start()
        except BaseException:
            srv.start_failed = True  # the test fails with this; no second report
            raise
        return srv


@pytest.fixture
def launcher(buudien_bin: Path):
    keep = os.environ.get("BUUDIEN_E2E_KEEP") == "1"
    own = Launcher(buudien_bin)
    yield own
    failures = []
    for srv in own.servers:
        if srv.proc is None or srv.start_failed:
            # Never started (or killed with kill9() and not restarted): the test's own
            # report has the reason.
            if srv.proc is not None:
                srv.stop()
            if not keep:
                shutil.rmtree(srv.root, ignore_errors=True)
            continue
        code = srv.stop()
        if code != 0:
            failures.append(f"{srv.root}: buudien serve exited {code} after SIGTERM")
        elif not keep:
            shutil.rmtree(srv.root, ignore_errors=True)
    assert not failures, "; ".join(failures)


# The real peers (Postfix, dnsmasq, a scripted SMTP server): see peers.py.
from peers import dns_peer, fake_smtp, mx_address, postfix_peer  # noqa: E402,F401


def _report_sources(item) -> list[tuple[str, str]]:
    """(title, text) for every server and peer a test used."""
    out = []
    funcargs = getattr(item, "funcargs", {}) or {}
    for name, value in funcargs.items():
        if isinstance(value, Server):
            out.append((f"buudien serve log of `{name}` (tail)", value.log(8000)))
        elif isinstance(value, Launcher):
            for i, srv in enumerate(value.servers):
                out.append((f"buudien serve log of launched server {i} ({srv.root}) (tail)",
                            srv.log(8000)))
        elif hasattr(value, "report"):
            try:
                out.extend(value.report())
            except Exception as e:  # a report must never hide the real failure
                out.append((f"report of `{name}` failed", repr(e)))
    return out


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for title, text in _report_sources(item):
            report.sections.append((title, text))
        if pgutil.on_postgres():
            report.sections.append(("session PostgreSQL log (tail)", pgutil.session_log()))


# --- the store of the run: BUUDIEN_E2E_STORE ---------------------------------------------
#
# With BUUDIEN_E2E_STORE=postgres every server the suite starts runs on PostgreSQL (one
# throwaway PostgreSQL for the session, a fresh database per server; pgutil.py). Tests
# that cannot run so are deselected, never skipped silently: each names its reason in
# its marker, and the terminal summary lists every one of them.

# Marker -> what the summary says of the tests that carry it.
PG_RUN_MARKERS = {
    "sqlite_only": "SQLite store only",
    "own_postgres": "own PostgreSQL",
}
_left_out: list[tuple[str, str]] = []  # (node id, why), for the terminal summary


def pytest_configure(config):
    pgutil.store_kind()  # a bad BUUDIEN_E2E_STORE is a usage error before anything runs
    config.addinivalue_line(
        "markers", "sqlite_only(reason): about the SQLite store (its files, its fault "
        "injection, `buudien check`); deselected when BUUDIEN_E2E_STORE=postgres")
    config.addinivalue_line(
        "markers", "own_postgres(reason): starts its own PostgreSQL; deselected when "
        "BUUDIEN_E2E_STORE=postgres (the SQLite-store run covers it)")


def pytest_report_header(config):
    if pgutil.on_postgres():
        return [f"store: PostgreSQL ({pgutil.STORE_ENV}=postgres): one throwaway server "
                "for the session, a fresh database per buudien serve"]
    return [f"store: SQLite in each server's data_dir ({pgutil.STORE_ENV}=postgres "
            "runs the suite on PostgreSQL)"]


def _pg_run_reason(item) -> str | None:
    for name, what in PG_RUN_MARKERS.items():
        mark = item.get_closest_marker(name)
        if mark is not None:
            why = mark.kwargs.get("reason") or (mark.args[0] if mark.args else "")
            return f"{what}: {why}" if why else what
    return None


@pytest.hookimpl(trylast=True)  # after -k and -m: only what would have run is listed
def pytest_collection_modifyitems(config, items):
    if not pgutil.on_postgres():
        return
    keep, drop = [], []
    for item in items:
        why = _pg_run_reason(item)
        if why is None:
            keep.append(item)
        else:
            drop.append(item)
            _left_out.append((item.nodeid, why))
    if drop:
        items[:] = keep
        config.hook.pytest_deselected(items=drop)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not pgutil.on_postgres():
        return
    tr = terminalreporter
    tr.section(f"left out of the PostgreSQL run ({pgutil.STORE_ENV}=postgres)",
               yellow=True, bold=True)
    if not _left_out:
        tr.write_line("none: every collected test ran on PostgreSQL")
        return
    tr.write_line(f"{len(_left_out)} tests did NOT run on PostgreSQL (deselected by their "
                  "marker, never skipped silently):", yellow=True, bold=True)
    reasons: dict[str, list[str]] = {}
    for nodeid, why in _left_out:
        reasons.setdefault(why, []).append(nodeid)
    for why, nodeids in reasons.items():
        tr.write_line(f"- {why}:", yellow=True)
        for nodeid in nodeids:
            tr.write_line(f"    {nodeid}")


def pytest_sessionfinish(session, exitstatus):
    pgutil.stop_session_postgres()
