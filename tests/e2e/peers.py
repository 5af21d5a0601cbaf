"""Real SMTP peers on loopback for the SMTP tests: a throwaway Postfix, dnsmasq, and a
scripted SMTP server.

- `postfix_peer` (session): Debian's Postfix run from its own config_directory,
  queue_directory and data_directory in a temporary directory (`postfix -c DIR start`,
  no postmulti, nothing in /etc/postfix touched). It listens on `MX_ADDRESS:25` (the MX
  path: dnsmasq says remote.test's MX is that address) and on `MX_ADDRESS:relay_port`
  (the smarthost path). It is the final destination for `remote.test` and
  `implicit.test` (virtual maildirs for the users in `POSTFIX_USERS`, `+` sub-addresses
  included), refuses `reject@remote.test` with `550 5.1.1` and unknown users with
  `550 5.1.1`, relays for nobody, offers STARTTLS with a self-signed certificate
  (`smtpd_tls_security_level = may`, TLS details in its Received header), and relays
  `example.test` to a buudien chosen with `route()`. Mail is injected either over SMTP
  or with Postfix's own `sendmail -C DIR`. It is stopped with `postfix -c DIR stop`.
- `dns_peer` (session): dnsmasq on 127.0.0.1:<free port>, answering
  remote.test MX 10 mx.remote.test, mx.remote.test A MX_ADDRESS, implicit.test A
  MX_ADDRESS (no MX: the A record is the implicit MX), nullmx.test MX 0 "." (RFC 7505),
  NXDOMAIN for the rest of .test. Checked with a real query before use.
- `fake_smtp` (function): a factory of scripted SMTP servers in threads that answer 4xx
  for the first N transactions, 5xx for chosen recipients, optionally stall before the
  final reply, and record everything they received.

Missing programs or missing privileges fail the tests that need them, with the reason:
nothing is skipped (test.sh installs postfix, dnsmasq-base, swaks and dig).
"""

from __future__ import annotations

import ipaddress
import os
import pwd
import random
import re
import select
import shutil
import signal
import socket
import socketserver
import struct
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

TIMEOUT = 15
POSTFIX_DOMAINS = ("remote.test", "implicit.test")
POSTFIX_USERS = ("bob", "alice", "carol", "dave", "erin", "frank", "grace", "heidi",
                 "ivan", "judy")
REJECTED = "reject@remote.test"  # refused with 550 5.1.1 at RCPT by the Postfix peer
POSTFIX = "/usr/sbin/postfix"
SENDMAIL = "/usr/sbin/sendmail"
DNSMASQ = "/usr/sbin/dnsmasq"


def keep() -> bool:
    return os.environ.get("BUUDIEN_E2E_KEEP") == "1"


def need_program(path: str, package: str) -> str:
    found = path if os.access(path, os.X_OK) else shutil.which(os.path.basename(path))
    if not found:
        pytest.fail(f"{path} not found: install the Debian package {package} "
                    "(test.sh installs it)", pytrace=False)
    return found


def need_root(what: str) -> None:
    if os.geteuid() != 0:
        pytest.fail(f"{what} needs root (uid {os.geteuid()}): run the tests as root, "
                    "as CI and test.sh do", pytrace=False)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_until(predicate, what: str, timeout: float = 20.0, interval: float = 0.1):
    """Polls `predicate` until it returns something truthy; returns that."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def run_with_tty(args: list[str], timeout: float = 60, input: bytes | None = None,
                 env: dict | None = None) -> tuple[int, str]:
    """Runs a Postfix command with stdout/stderr on a pseudo-terminal: Postfix prints
    its errors on stderr only when stderr is a terminal (else they go to syslog,
    which a container does not have). Returns (exit code, output)."""
    master, slave = os.openpty()
    try:
        proc = subprocess.Popen(args, stdin=subprocess.PIPE if input is not None
                                else subprocess.DEVNULL,
                                stdout=slave, stderr=slave, env=env)
    finally:
        os.close(slave)
    if input is not None:
        assert proc.stdin is not None
        proc.stdin.write(input)
        proc.stdin.close()
    out = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while True:
            r, _, _ = select.select([master], [], [], 0.1)
            if r:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: every writer is gone
                    chunk = b""
                if not chunk:
                    if proc.poll() is not None:
                        break
                    time.sleep(0.02)  # EIO while the command still runs
                out += chunk
            elif proc.poll() is not None:
                break
            if time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                raise AssertionError(f"{' '.join(args)} took over {timeout}s:\n"
                                     f"{out.decode(errors='replace')}")
        proc.wait(timeout=TIMEOUT)
    finally:
        os.close(master)
    return proc.returncode, out.decode(errors="replace").replace("\r\n", "\n")


# --- the MX address -------------------------------------------------------------------


def pick_mx_address() -> str:
    """A loopback address whose port 25 is free: 127.0.0.2 if possible (Linux routes
    all of 127/8 to lo), else a random one, so two runs on one host do not collide."""
    candidates = ["127.0.0.2"] + [
        f"127.{random.randint(1, 254)}.{random.randint(0, 255)}.{random.randint(2, 254)}"
        for _ in range(20)
    ]
    errors = []
    for addr in candidates:
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind((addr, 25))
            return addr
        except OSError as e:
            errors.append(f"{addr}:25: {e}")
    pytest.fail("no loopback address with a free port 25 for the Postfix peer: "
                + "; ".join(errors[:3]), pytrace=False)


@pytest.fixture(scope="session")
def mx_address() -> str:
    """The loopback address of the remote MX (the Postfix peer listens on port 25)."""
    need_root("binding port 25 for the Postfix peer")
    return pick_mx_address()


# --- Postfix --------------------------------------------------------------------------


MASTER_CF = """\
# service type  private unpriv  chroot  wakeup  maxproc command
{smtp_listen}     inet  n       -       n       -       -       smtpd
{relay_listen}    inet  n       -       n       -       -       smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


class PostfixPeer:
    """A throwaway Postfix instance (see the module docstring)."""

    HOSTNAME = "mx.remote.test"

    def __init__(self, root: Path, address: str):
        self.root = root
        self.address = address
        self.port = 25  # the MX path
        self.relay_port = free_port(address)  # the smarthost path
        self.etc = root / "etc"
        self.spool = root / "spool"
        self.data = root / "data"
        self.mail = root / "mail"
        self.logdir = root / "log"
        self.maillog = self.logdir / "maillog"
        self.transport = self.etc / "transport"
        self.routes: dict[str, str] = {}
        self.started = False

    # --- setup ------------------------------------------------------------------

    def write_config(self) -> None:
        postfix_user = pwd.getpwnam("postfix")
        nobody = pwd.getpwnam("nobody")
        for d in (self.etc, self.spool, self.data, self.mail, self.logdir):
            d.mkdir(parents=True, exist_ok=True)
        # Postfix daemons (user postfix) and the virtual delivery agent (nobody) must
        # reach into the tree; mkdtemp makes it 0700.
        self.root.chmod(0o755)
        os.chown(self.data, postfix_user.pw_uid, postfix_user.pw_gid)
        os.chown(self.mail, nobody.pw_uid, nobody.pw_gid)
        subprocess.run(
            ["openssl", "req", "-x509", "-nodes", "-days", "2",
             "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-keyout", str(self.etc / "key.pem"), "-out", str(self.etc / "cert.pem"),
             "-subj", f"/CN={self.HOSTNAME}",
             "-addext", f"subjectAltName=DNS:{self.HOSTNAME},IP:{self.address}"],
            check=True, capture_output=True, timeout=TIMEOUT,
        )
        vmailbox = "".join(
            f"{user}@{domain}\t{domain}/{user}/\n"
            for domain in POSTFIX_DOMAINS for user in POSTFIX_USERS
        )
        (self.etc / "vmailbox").write_text(vmailbox)
        (self.etc / "recipient_access").write_text(
            f"{REJECTED}\t550 5.1.1 the test peer refuses this recipient\n"
        )
        self.transport.write_text("")
        main = f"""\
# A throwaway Postfix for buudien's tests; see tests/e2e/peers.py.
compatibility_level = 3.6
queue_directory = {self.spool}
data_directory = {self.data}
meta_directory = /etc/postfix
mail_owner = postfix
setgid_group = postdrop
maillog_file = {self.maillog}
maillog_file_prefixes = {self.logdir}
myhostname = {self.HOSTNAME}
mydomain = remote.test
myorigin = remote.test
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
# 127.0.0.2 and friends are routed to lo but are no interface address: the listeners
# in master.cf name their address themselves.
inet_interfaces = loopback-only
inet_protocols = ipv4
# No relaying for anyone (buudien connects from 127.0.0.1): mail is accepted only for
# the virtual domains below and for example.test, which goes on to buudien.
mynetworks = {self.address}/32
relay_domains = example.test
transport_maps = texthash:{self.transport}
smtpd_relay_restrictions = reject_unauth_destination
smtpd_recipient_restrictions = check_recipient_access texthash:{self.etc}/recipient_access
smtpd_reject_unlisted_recipient = yes
smtpd_error_sleep_time = 0
smtpd_soft_error_limit = 1000
smtpd_hard_error_limit = 1000
virtual_mailbox_domains = {", ".join(POSTFIX_DOMAINS)}
virtual_mailbox_base = {self.mail}
virtual_mailbox_maps = texthash:{self.etc}/vmailbox
virtual_uid_maps = static:{nobody.pw_uid}
virtual_gid_maps = static:{nobody.pw_gid}
virtual_minimum_uid = 100
virtual_mailbox_limit = 0
recipient_delimiter = +
message_size_limit = 60000000
smtpd_tls_security_level = may
smtpd_tls_cert_file = {self.etc}/cert.pem
smtpd_tls_key_file = {self.etc}/key.pem
smtpd_tls_received_header = yes
smtpd_tls_loglevel = 1
smtp_tls_security_level = may
smtp_tls_loglevel = 1
smtp_dns_support_level = disabled
smtp_connection_cache_on_demand = no
smtpd_banner = $myhostname ESMTP Postfix (buudien test peer)
biff = no
notify_classes =
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
maximal_queue_lifetime = 1h
bounce_queue_lifetime = 1h
in_flow_delay = 0
"""
        (self.etc / "main.cf").write_text(main)
        (self.etc / "master.cf").write_text(MASTER_CF.format(
            smtp_listen=f"{self.address}:{self.port}",
            relay_listen=f"{self.address}:{self.relay_port}",
        ))

    def postfix(self, *args: str, check: bool = True) -> tuple[int, str]:
        code, out = run_with_tty([POSTFIX, "-c", str(self.etc), *args])
        if check and code != 0:
            raise AssertionError(
                f"postfix -c {self.etc} {' '.join(args)} exited {code}:\n{out}\n"
                f"--- maillog ---\n{self.log()}"
            )
        return code, out

    def start(self) -> None:
        self.write_config()
        self.postfix("check")
        self.postfix("start")
        self.started = True
        for port in (self.port, self.relay_port):
            wait_until(lambda p=port: self._accepts(p),
                       f"the Postfix peer on {self.address}:{port}\n{self.log()}",
                       timeout=20)
        # It answers like an SMTP server, not just a bound socket.
        with socket.create_connection((self.address, self.port), timeout=TIMEOUT) as s:
            greeting = s.makefile("rb").readline()
            s.sendall(b"QUIT\r\n")
        if not greeting.startswith(b"220 "):
            raise AssertionError(f"Postfix peer greeting: {greeting!r}\n{self.log()}")

    def _accepts(self, port: int) -> bool:
        try:
            socket.create_connection((self.address, port), timeout=1).close()
            return True
        except OSError:
            return False

    def master_pid(self) -> int | None:
        try:
            return int((self.spool / "pid" / "master.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def stop(self) -> None:
        """`postfix stop` (it waits for master to exit); any master left is killed."""
        if not self.started:
            return
        pid = self.master_pid()
        self.postfix("stop", check=False)
        self.started = False
        if pid is not None:
            try:
                wait_until(lambda: not _alive(pid), "postfix master to exit", timeout=10)
            except AssertionError:
                os.kill(pid, signal.SIGKILL)
                raise AssertionError(f"postfix master {pid} did not stop; killed it")

    # --- routing and injection --------------------------------------------------

    def route(self, domain: str, host: str, port: int) -> None:
        """Relays `domain` (one of relay_domains: example.test) to host:port, then
        reloads Postfix and retries deferred mail."""
        self.routes[domain] = f"smtp:[{host}]:{port}"
        self.transport.write_text(
            "".join(f"{d}\t{t}\n" for d, t in sorted(self.routes.items()))
        )
        self.postfix("reload")
        self.postfix("flush", check=False)

    def sendmail(self, sender: str, recipients: list[str], message: bytes) -> None:
        """Injects a message with Postfix's own sendmail(1) (`sendmail -C DIR`)."""
        code, out = run_with_tty(
            [SENDMAIL, "-C", str(self.etc), "-f", sender, "-i", "--", *recipients],
            input=message,
        )
        if code != 0:
            raise AssertionError(f"postfix sendmail exited {code}:\n{out}\n{self.log()}")

    def queue_files(self) -> list[Path]:
        """Messages Postfix still holds (not yet delivered or bounced)."""
        out = []
        for sub in ("maildrop", "incoming", "active", "deferred", "hold"):
            d = self.spool / sub
            if d.is_dir():
                out += [p for p in d.rglob("*") if p.is_file()]
        return out

    # --- delivered mail ---------------------------------------------------------

    def maildir(self, address: str) -> Path:
        local, domain = address.split("@", 1)
        local = local.split("+", 1)[0]
        return self.mail / domain / local

    def messages(self, address: str) -> list[bytes]:
        """The messages delivered to `address` (its maildir's new/ and cur/), oldest
        first, with CRLF line ends as on the wire (Postfix stores LF)."""
        d = self.maildir(address)
        files = []
        for sub in ("new", "cur"):
            if (d / sub).is_dir():
                files += [p for p in (d / sub).iterdir() if p.is_file()]
        files.sort(key=lambda p: p.stat().st_mtime_ns)
        return [p.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
                for p in files]

    def find(self, address: str, needle: bytes) -> list[bytes]:
        return [m for m in self.messages(address) if needle in m]

    def wait_for(self, address: str, needle: bytes, timeout: float = 30) -> bytes:
        """The one message for `address` containing `needle`, waiting for it."""
        found = wait_until(
            lambda: self.find(address, needle),
            f"a message with {needle!r} in {self.maildir(address)}; Postfix log:\n"
            f"{self.log(4000)}",
            timeout=timeout,
        )
        return found[0]

    def log(self, tail: int = 8000) -> str:
        try:
            return self.maillog.read_text(errors="replace")[-tail:]
        except OSError:
            return "(no maillog)"

    def report(self) -> list[tuple[str, str]]:
        return [(f"Postfix peer maillog ({self.maillog}) (tail)", self.log(6000))]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child is dead for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture(scope="session")
def postfix_peer(mx_address: str):
    need_program(POSTFIX, "postfix")
    need_program(SENDMAIL, "postfix")
    need_root("the Postfix peer (`postfix start` runs master as root, port 25)")
    try:
        pwd.getpwnam("postfix")
    except KeyError:
        pytest.fail("no `postfix` user: the postfix package is not installed properly",
                    pytrace=False)
    root = Path(tempfile.mkdtemp(prefix="buudien-e2e-postfix-"))
    peer = PostfixPeer(root, mx_address)
    try:
        peer.start()
    except BaseException:
        peer.stop()
        raise
    try:
        yield peer
    finally:
        peer.stop()
        if not keep():
            shutil.rmtree(root, ignore_errors=True)


# --- dnsmasq --------------------------------------------------------------------------


def dns_query(server: tuple[str, int], name: str, qtype: int, timeout: float = 3.0):
    """A minimal DNS client: (rcode, [(type, rdata bytes, message)]) for one query."""
    qid = random.randint(0, 0xFFFF)
    header = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    qname = b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split(".")) + b"\0"
    packet = header + qname + struct.pack(">HH", qtype, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(packet, server)
        data, _ = s.recvfrom(4096)
    rid, flags, qd, an, _, _ = struct.unpack(">HHHHHH", data[:12])
    assert rid == qid, "DNS reply id mismatch"
    pos = 12
    for _ in range(qd):
        pos = _skip_name(data, pos) + 4
    answers = []
    for _ in range(an):
        pos = _skip_name(data, pos)
        rtype, _, _, rdlen = struct.unpack(">HHIH", data[pos:pos + 10])
        pos += 10
        answers.append((rtype, data[pos:pos + rdlen], data))
        pos += rdlen
    return flags & 0xF, answers


def _skip_name(data: bytes, pos: int) -> int:
    while True:
        n = data[pos]
        if n == 0:
            return pos + 1
        if n & 0xC0 == 0xC0:
            return pos + 2
        pos += 1 + n


def _read_name(data: bytes, pos: int) -> str:
    labels = []
    while True:
        n = data[pos]
        if n == 0:
            break
        if n & 0xC0 == 0xC0:
            pos = ((n & 0x3F) << 8) | data[pos + 1]
            continue
        labels.append(data[pos + 1:pos + 1 + n].decode())
        pos += 1 + n
    return ".".join(labels) + "."


def mx_records(server: tuple[str, int], name: str) -> tuple[int, list[tuple[int, str]]]:
    """(rcode, [(preference, exchange)]) for an MX query."""
    rcode, answers = dns_query(server, name, 15)
    out = []
    for rtype, rdata, msg in answers:
        if rtype == 15:
            pref = struct.unpack(">H", rdata[:2])[0]
            # The exchange may be compressed: find rdata's offset in the message.
            off = msg.index(rdata)
            out.append((pref, _read_name(msg, off + 2)))
    return rcode, out


def a_records(server: tuple[str, int], name: str) -> tuple[int, list[str]]:
    rcode, answers = dns_query(server, name, 1)
    return rcode, [str(ipaddress.IPv4Address(r)) for t, r, _ in answers if t == 1]


class DnsPeer:
    """dnsmasq answering for the test domains (see the module docstring)."""

    def __init__(self, root: Path, mx_address: str):
        self.root = root
        self.host = "127.0.0.1"
        self.port = free_port()  # TCP and UDP: dnsmasq binds both
        self.mx_address = mx_address
        self.logfile = root / "dnsmasq.log"
        self.proc: subprocess.Popen | None = None
        self._out = None

    @property
    def server(self) -> tuple[str, int]:
        return (self.host, self.port)

    def args(self) -> list[str]:
        return [
            DNSMASQ, "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv",
            "--no-hosts", "--no-poll", f"--port={self.port}",
            f"--listen-address={self.host}", "--bind-interfaces", "--pid-file=",
            "--user=nobody", "--group=nogroup",
            "--local=/test/",  # authoritative-ish: NXDOMAIN for unknown .test names
            "--mx-host=remote.test,mx.remote.test,10",
            f"--host-record=mx.remote.test,{self.mx_address}",
            f"--host-record=implicit.test,{self.mx_address}",  # no MX: implicit MX
            "--dns-rr=nullmx.test,15,000000",  # MX 0 "." (RFC 7505 null MX)
            "--local-ttl=1", "--log-queries", f"--log-facility={self.logfile}",
        ]

    def start(self) -> None:
        self._out = open(self.root / "dnsmasq.out", "wb")
        self.proc = subprocess.Popen(self.args(), stdin=subprocess.DEVNULL,
                                     stdout=self._out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"dnsmasq exited {self.proc.returncode}: "
                                     f"{(self.root / 'dnsmasq.out').read_text()}")
            try:
                rcode, mx = mx_records(self.server, "remote.test")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"dnsmasq never answered:\n{self.log()}")
                time.sleep(0.05)
        # Before use: the answers the tests rely on are really served.
        assert (rcode, mx) == (0, [(10, "mx.remote.test.")]), (rcode, mx)
        assert a_records(self.server, "mx.remote.test") == (0, [self.mx_address])
        assert mx_records(self.server, "nullmx.test") == (0, [(0, ".")])
        assert mx_records(self.server, "implicit.test") == (0, [])
        assert a_records(self.server, "implicit.test") == (0, [self.mx_address])
        assert mx_records(self.server, "nowhere.test")[0] == 3  # NXDOMAIN

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._out:
            self._out.close()

    def log(self, tail: int = 4000) -> str:
        try:
            return self.logfile.read_text(errors="replace")[-tail:]
        except OSError:
            return "(no dnsmasq log)"

    def report(self) -> list[tuple[str, str]]:
        return [("dnsmasq query log (tail)", self.log())]


@pytest.fixture(scope="session")
def dns_peer(mx_address: str):
    need_program(DNSMASQ, "dnsmasq-base")
    root = Path(tempfile.mkdtemp(prefix="buudien-e2e-dns-"))
    peer = DnsPeer(root, mx_address)
    try:
        peer.start()
        yield peer
    finally:
        peer.stop()
        if not keep():
            shutil.rmtree(root, ignore_errors=True)


# --- the scripted SMTP server ---------------------------------------------------------


@dataclass
class Transaction:
    """One MAIL transaction as the fake server saw it."""
    sender: str
    mail_params: str
    recipients: list[str] = field(default_factory=list)  # accepted ones
    rcpt_params: dict[str, str] = field(default_factory=dict)  # address -> parameters
    refused: list[str] = field(default_factory=list)
    data: bytes | None = None  # dot-unstuffed, CRLF kept; None when no DATA
    deferred: bool = False  # every RCPT of this transaction gets the 4xx
    reply: str = ""  # the reply to the end of data (or the refusal)


class FakeSmtp:
    """A scripted SMTP server on 127.0.0.1:<port> (threads, one per connection).

    - `defer_first`: the first N transactions get `defer_reply` at RCPT (4xx);
      `defer_all=True` defers every transaction until changed.
    - `reject`: {address: reply}, refused at RCPT (5xx); `reject_data`: a 5xx reply to
      the end of data for every transaction.
    - `data_delay`: seconds to wait before answering the end of data (a slow peer).
    - `extensions`: the EHLO keywords (leave out 8BITMIME, SMTPUTF8 or DSN to play a
      next hop without them; STARTTLS is never offered).
    Everything is recorded: `transactions` (all), `delivered()` (250 at end of data),
    `transcript` (every command line), `connections`.
    """

    def __init__(self, defer_first: int = 0, defer_all: bool = False,
                 defer_reply: str = "451 4.3.0 fake: try again later",
                 reject: dict[str, str] | None = None, reject_data: str | None = None,
                 data_delay: float = 0.0, hostname: str = "fake.remote.test",
                 extensions: tuple[str, ...] = ("PIPELINING", "8BITMIME", "SMTPUTF8",
                                                "ENHANCEDSTATUSCODES", "SIZE 100000000")):
        self.defer_first = defer_first
        self.defer_all = defer_all
        self.defer_reply = defer_reply
        self.reject = {k.lower(): v for k, v in (reject or {}).items()}
        self.reject_data = reject_data
        self.data_delay = data_delay
        self.hostname = hostname
        self.extensions = extensions
        self.lock = threading.Lock()
        self.transactions: list[Transaction] = []
        self.transcript: list[str] = []
        self.connections = 0
        fake = self

        class Handler(socketserver.StreamRequestHandler):
            timeout = 60

            def handle(self):
                fake._session(self.rfile, self.wfile)

        class Srv(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.server = Srv(("127.0.0.1", 0), Handler)
        self.host, self.port = self.server.server_address
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.1}, daemon=True)
        self.thread.start()

    # --- state ------------------------------------------------------------------

    def delivered(self) -> list[Transaction]:
        with self.lock:
            return [t for t in self.transactions if t.reply.startswith("250")]

    def attempts(self) -> int:
        with self.lock:
            return len(self.transactions)

    def wait_delivered(self, n: int = 1, timeout: float = 30) -> list[Transaction]:
        return wait_until(lambda: len(self.delivered()) >= n and self.delivered(),
                          f"{n} message(s) delivered to the fake SMTP server "
                          f"(transcript: {self.transcript[-30:]})", timeout=timeout)

    def wait_attempts(self, n: int, timeout: float = 30) -> int:
        return wait_until(lambda: self.attempts() >= n and self.attempts(),
                          f"{n} transaction(s) at the fake SMTP server "
                          f"(transcript: {self.transcript[-30:]})", timeout=timeout)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def report(self) -> list[tuple[str, str]]:
        with self.lock:
            return [(f"fake SMTP server 127.0.0.1:{self.port} transcript",
                     "\n".join(self.transcript[-200:]))]

    # --- the protocol -----------------------------------------------------------

    def _log(self, line: str) -> None:
        with self.lock:
            self.transcript.append(line)

    def _session(self, rfile, wfile) -> None:
        def reply(text: str) -> None:
            self._log(f"S: {text.splitlines()[-1] if text else ''}")
            wfile.write(text.encode() + b"\r\n")
            wfile.flush()

        with self.lock:
            self.connections += 1
        reply(f"220 {self.hostname} ESMTP fake")
        tx: Transaction | None = None
        while True:
            line = rfile.readline(100000)
            if not line:
                return
            cmd = line.rstrip(b"\r\n").decode("utf-8", errors="replace")
            self._log(f"C: {cmd}")
            verb = cmd.split(" ", 1)[0].upper()
            arg = cmd[len(verb):].strip()
            if verb == "EHLO":
                lines = [self.hostname, *self.extensions]
                reply("\r\n".join(
                    f"250{'-' if i < len(lines) - 1 else ' '}{x}" for i, x in enumerate(lines)
                ))
                tx = None
            elif verb == "HELO":
                reply(f"250 {self.hostname}")
                tx = None
            elif verb == "MAIL":
                m = re.match(r"(?i)FROM:\s*<([^>]*)>\s*(.*)$", arg)
                if not m:
                    reply("501 5.5.4 syntax: MAIL FROM:<address>")
                    continue
                tx = Transaction(sender=m.group(1), mail_params=m.group(2))
                with self.lock:
                    self.transactions.append(tx)
                    number = len(self.transactions)
                reply("250 2.1.0 sender ok")
                tx.deferred = self.defer_all or number <= self.defer_first
            elif verb == "RCPT":
                m = re.match(r"(?i)TO:\s*<([^>]*)>\s*(.*)$", arg)
                if tx is None or not m:
                    reply("503 5.5.1 MAIL first" if tx is None else "501 5.5.4 syntax")
                    continue
                rcpt = m.group(1)
                tx.rcpt_params[rcpt] = m.group(2)
                if rcpt.lower() in self.reject:
                    tx.refused.append(rcpt)
                    tx.reply = self.reject[rcpt.lower()]
                    reply(self.reject[rcpt.lower()])
                elif tx.deferred:
                    tx.refused.append(rcpt)
                    tx.reply = self.defer_reply
                    reply(self.defer_reply)
                else:
                    tx.recipients.append(rcpt)
                    reply("250 2.1.5 recipient ok")
            elif verb == "DATA":
                if tx is None or not tx.recipients:
                    reply("554 5.5.1 no valid recipients")
                    continue
                reply("354 end with <CRLF>.<CRLF>")
                data = bytearray()
                while True:
                    dl = rfile.readline(1 << 24)
                    if not dl:
                        return
                    if dl == b".\r\n":
                        break
                    if dl.startswith(b"."):
                        dl = dl[1:]
                    data += dl
                tx.data = bytes(data)
                if self.data_delay:
                    time.sleep(self.data_delay)
                tx.reply = self.reject_data or f"250 2.0.0 queued as {id(tx):x}"
                try:
                    reply(tx.reply)
                except OSError:
                    self._log("(the client was gone before the reply)")
                    return
                tx = None
            elif verb == "RSET":
                tx = None
                reply("250 2.0.0 ok")
            elif verb == "NOOP":
                reply("250 2.0.0 ok")
            elif verb == "QUIT":
                reply("221 2.0.0 bye")
                return
            else:
                reply("502 5.5.1 not implemented")


@pytest.fixture
def fake_smtp():
    """A factory: `fake_smtp(defer_first=2, ...)` starts a FakeSmtp; all are closed
    after the test."""
    made: list[FakeSmtp] = []

    class Factory:
        def __call__(self, **kwargs) -> FakeSmtp:
            f = FakeSmtp(**kwargs)
            made.append(f)
            return f

        def report(self) -> list[tuple[str, str]]:
            out = []
            for f in made:
                out += f.report()
            return out

    yield Factory()
    for f in made:
        f.close()
