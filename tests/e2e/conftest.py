"""Fixtures for the real-client tests: one `buudien serve` for the whole run.

The `server` fixture builds nothing. It takes the binary from $BUUDIEN_BIN (or
target/debug/buudien), makes a temporary directory with a self-signed certificate
(openssl CLI), picks free loopback ports, writes a config, creates the domain
`example.test` through the CLI, starts `buudien serve`, and waits until its ports
accept. At the end it sends SIGTERM and asserts exit code 0 within 15 s.

Each test makes its own accounts (`server.new_user()`), so the maildrop locks of one
test never get in the way of another. The server's stderr is attached to the report of
every failing test.
"""

from __future__ import annotations

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

    def __init__(self, binary: Path, root: Path, apop: bool = False):
        self.bin = binary
        self.apop = apop
        self.root = root
        self.config = root / "buudien.toml"
        self.cert = root / "cert.pem"
        self.key = root / "key.pem"
        self.data = root / "data"
        self.log_path = root / "serve.log"
        self.pop3_port = free_port()
        self.pop3s_port = free_port()
        while self.pop3s_port == self.pop3_port:
            self.pop3s_port = free_port()
        self.proc: subprocess.Popen | None = None
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
        return (
            f'hostname = "mail.{DOMAIN}"\n'
            f'data_dir = "{self.data}"\n'
            f"{extra}"
            f"\n[listen]\n"
            f'pop3 = ["127.0.0.1:{self.pop3_port}"]\n'
            f'pop3s = ["127.0.0.1:{self.pop3s_port}"]\n'
            f"\n[tls]\n"
            f'cert = "{self.cert}"\n'
            f'key = "{self.key}"\n'
            f"\n[pop3]\n"
            f'idle_timeout = "10m"\n'
            f"apop = {'true' if self.apop else 'false'}\n"
            f"allow_plaintext_auth = false\n"
            f"lock_session = true\n"
        )

    def start(self) -> None:
        self._log = open(self.log_path, "wb")
        env = dict(os.environ, BUUDIEN_LOG=os.environ.get("BUUDIEN_LOG", "info"))
        self.proc = subprocess.Popen(
            [str(self.bin), "--config", str(self.config), "serve"],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            env=env, cwd=self.root,
        )
        deadline = time.monotonic() + 20
        for port in (self.pop3_port, self.pop3s_port):
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
                        raise RuntimeError(f"port {port} never accepted:\n{self.log()}")
                    time.sleep(0.05)

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
    path = Path(env) if env else REPO / "target" / "debug" / "buudien"
    if not path.is_file() or not os.access(path, os.X_OK):
        pytest.exit(
            f"buudien binary not found at {path}: run `cargo build -p buudien` "
            "or set BUUDIEN_BIN", returncode=2,
        )
    return path.resolve()


@pytest.fixture(scope="session")
def buudien_bin() -> Path:
    return find_binary()


def launch(binary: Path, root: Path, apop: bool = False) -> Server:
    """A fresh server in `root`: certificate, config, domain, `buudien serve` running."""
    srv = Server(binary, root, apop=apop)
    srv.make_cert()
    srv.config.write_text(srv.config_text())
    srv.cli("domain", "add", DOMAIN)
    srv.start()
    return srv


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


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        srv = item.funcargs.get("server") if hasattr(item, "funcargs") else None
        if isinstance(srv, Server):
            report.sections.append(("buudien serve log (tail)", srv.log(8000)))
