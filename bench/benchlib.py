"""The servers and helpers of bench/run: buudien, Dovecot and Postfix from
throwaway configs in a temporary directory, message generation, process memory.
See bench/run for what the benchmark measures."""

from __future__ import annotations

import math
import os
import pwd
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

DOMAIN = "example.test"
PASSWORD = "bench-password-1"
MAIL_USER = "nobody"  # owner of the reference servers' maildirs (Dovecot and Postfix)
TIMEOUT = 60


def log(*args) -> None:
    print("bench:", *args, file=sys.stderr, flush=True)


class BenchError(Exception):
    """A failure of the harness or a server; the run stops with exit code 1."""


def free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def wait_port(port: int, what: str, proc: subprocess.Popen | None = None,
              timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise BenchError(f"{what} exited with {proc.returncode} before listening")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise BenchError(f"{what} never listened on 127.0.0.1:{port}")
            time.sleep(0.05)


def run(cmd: list[str], input: bytes | None = None, timeout: float = 600,
        check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, input=input, capture_output=True, timeout=timeout, env=env)
    if check and r.returncode != 0:
        raise BenchError(f"{' '.join(map(str, cmd))} exited {r.returncode}: "
                         f"{r.stderr.decode(errors='replace')[-2000:]}")
    return r


# --- messages ---------------------------------------------------------------------


def make_message(seq: int, size: int, needle: bool = False) -> bytes:
    """A deterministic RFC 5322 message of about `size` bytes (CRLF lines)."""
    rnd = random.Random(seq)
    head = (f"From: Sender {seq % 97} <sender{seq % 97}@example.org>\r\n"
            f"To: <someone@{DOMAIN}>\r\n"
            f"Subject: bench message {seq} {rnd.choice(['report', 'hello', 'invoice', 'meeting'])}\r\n"
            f"Date: Thu, 26 Nov 2026 12:{seq % 60:02d}:00 +0000\r\n"
            f"Message-ID: <{seq}.bench@example.org>\r\n"
            f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n")
    out = [head.encode()]
    length = len(out[0])
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel",
             "india", "juliet", "kilo", "lima", "mike", "november", "oscar", "papa"]
    line_no = 0
    while length < size:
        line = " ".join(rnd.choice(words) for _ in range(11))
        if needle and line_no == 3:
            line = "the loadgen-needle is here " + line
        b = (line[:76] + "\r\n").encode()
        out.append(b)
        length += len(b)
        line_no += 1
    return b"".join(out)


def mixed_sizes(n: int, lo: int, hi: int, seed: int) -> list[int]:
    """`n` sizes log-uniform in lo..hi (many small, some large, like real mail)."""
    rnd = random.Random(seed)
    return [int(math.exp(rnd.uniform(math.log(lo), math.log(hi)))) for _ in range(n)]


# --- the servers ------------------------------------------------------------------


class Buudien:
    """buudien serve with SMTP, POP3 and IMAP on loopback, data in the temp dir."""

    name = "buudien"

    def __init__(self, root: Path, binary: Path, sessions: int, store: str = ""):
        self.root = root
        self.bin = binary
        self.store = store  # a `[store]` section (PostgreSQL), else the embedded SQLite
        self.data = root / "data"
        self.config = root / "buudien.toml"
        self.smtp_port, self.pop3_port, self.imap_port, self.imaps_port, self.pop3s_port = \
            free_ports(5)
        self.proc: subprocess.Popen | None = None
        self.sessions = sessions
        self.status_sessions: dict = {}  # user -> a logged-in imaplib session (count)

    def setup(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        cert, key = self.root / "cert.pem", self.root / "key.pem"
        run(["openssl", "req", "-x509", "-nodes", "-days", "2", "-newkey", "ec",
             "-pkeyopt", "ec_paramgen_curve:prime256v1", "-keyout", str(key),
             "-out", str(cert), "-subj", "/CN=localhost"])
        limit = max(4 * self.sessions, 10_000) + 1000
        self.config.write_text(
            f'hostname = "mail.{DOMAIN}"\n'
            f'data_dir = "{self.data}"\n\n'
            f"[listen]\n"
            f'smtp = ["127.0.0.1:{self.smtp_port}"]\n'
            f'pop3 = ["127.0.0.1:{self.pop3_port}"]\n'
            f'pop3s = ["127.0.0.1:{self.pop3s_port}"]\n'
            f'imap = ["127.0.0.1:{self.imap_port}"]\n'
            f'imaps = ["127.0.0.1:{self.imaps_port}"]\n\n'
            f'[tls]\ncert = "{cert}"\nkey = "{key}"\n\n'
            f"[limits]\nmax_connections = {limit}\nmax_connections_per_ip = {limit}\n"
            f"{self.store}")

    def add_domain(self) -> None:
        self.cli("domain", "add", DOMAIN)

    def cli(self, *args: str, input: bytes | None = None) -> None:
        run([str(self.bin), "--config", str(self.config), *args], input=input)

    def add_users(self, names: list[str]) -> None:
        for n in names:
            self.cli("user", "add", f"{n}@{DOMAIN}", "--password-stdin",
                     input=PASSWORD.encode() + b"\n")

    def start(self) -> None:
        logf = open(self.root / "serve.log", "ab")
        self.proc = subprocess.Popen(
            [str(self.bin), "--config", str(self.config), "serve"],
            stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
            env=dict(os.environ, BUUDIEN_LOG="warn"), cwd=self.root)
        logf.close()
        for p in (self.smtp_port, self.pop3_port, self.imap_port):
            wait_port(p, "buudien serve", self.proc)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def pids(self) -> list[int]:
        return [self.proc.pid] if self.proc and self.proc.poll() is None else []

    def fill(self, user: str, messages: list[bytes]) -> None:
        imap_append(self.imap_port, f"{user}@{DOMAIN}", messages)

    def count(self, user: str) -> int:
        """How many messages `user`'s INBOX holds: IMAP STATUS, on one session per user
        kept open (a login costs a password hash; this is polled)."""
        import imaplib
        m = self.status_sessions.get(user)
        if m is None:
            m = imaplib.IMAP4("127.0.0.1", self.imap_port, timeout=TIMEOUT)
            m.login(f"{user}@{DOMAIN}", PASSWORD)
            self.status_sessions[user] = m
        return status_messages(m)


class Dovecot:
    """Debian's Dovecot (POP3 and IMAP) from its own config in the temp dir."""

    name = "dovecot"

    def __init__(self, root: Path, mail: Path, sessions: int):
        self.root = root
        self.mail = mail  # shared with Postfix: mail/example.test/user/
        self.conf = root / "dovecot.conf"
        self.pop3_port, self.imap_port = free_ports(2)
        self.proc: subprocess.Popen | None = None
        self.sessions = sessions
        self.users: list[str] = []

    def write_config(self) -> None:
        for d in (self.root / "run", self.root / "state"):
            d.mkdir(parents=True, exist_ok=True)
        n = max(self.sessions, 1000) + 200
        self.conf.write_text(f"""\
# A throwaway Dovecot for buudien's benchmark (bench/run).
base_dir = {self.root}/run
state_dir = {self.root}/state
instance_name = bench-dovecot-{os.getpid()}
log_path = {self.root}/dovecot.log
protocols = imap pop3
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:{self.mail}/%d/%n
mail_fsync = optimized
first_valid_uid = 1
mail_max_userip_connections = {n}
default_process_limit = {n}
default_client_limit = {4 * n}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {self.root}/passwd
}}
userdb {{
  driver = static
  args = uid={pwd.getpwnam(MAIL_USER).pw_uid} gid={pwd.getpwnam(MAIL_USER).pw_gid} home={self.mail}/%d/%n
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
  process_limit = 1000
}}
service pop3-login {{
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {self.pop3_port}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
service imap {{
  process_limit = {n}
}}
service anvil {{
  client_limit = {4 * n}
}}
protocol imap {{
  mail_max_userip_connections = {n}
}}
protocol pop3 {{
  mail_max_userip_connections = {n}
}}
""")

    def add_users(self, names: list[str]) -> None:
        self.users += names
        (self.root / "passwd").write_text(
            "".join(f"{u}@{DOMAIN}:{{PLAIN}}{PASSWORD}\n" for u in self.users))

    def setup(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.write_config()
        self.add_users([])

    def start(self) -> None:
        logf = open(self.root / "stderr.log", "ab")
        self.proc = subprocess.Popen(["/usr/sbin/dovecot", "-F", "-c", str(self.conf)],
                                     stdin=subprocess.DEVNULL, stdout=logf,
                                     stderr=subprocess.STDOUT)
        logf.close()
        for p in (self.pop3_port, self.imap_port):
            try:
                wait_port(p, "dovecot", self.proc)
            except BenchError as e:
                raise BenchError(f"{e}\n{self.log()}")

    def log(self) -> str:
        out = ""
        for f in ("stderr.log", "dovecot.log"):
            try:
                out += (self.root / f).read_text(errors="replace")[-3000:]
            except OSError:
                pass
        return out

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            for pid in self.pids():
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            self.proc.wait()

    def pids(self) -> list[int]:
        """The master and every process below it."""
        if self.proc is None or self.proc.poll() is not None:
            return []
        return process_tree(self.proc.pid)

    def fill(self, user: str, messages: list[bytes]) -> None:
        """Writes the messages as maildir files (LF line ends, as an MDA stores them)."""
        box = self.mail / DOMAIN / user
        for sub in ("new", "cur", "tmp"):
            (box / sub).mkdir(parents=True, exist_ok=True)
        base = int(time.time()) - len(messages)
        for i, m in enumerate(messages):
            data = m.replace(b"\r\n", b"\n")
            (box / "new" / f"{base + i}.M{i}P{os.getpid()}.bench,S={len(data)}").write_bytes(data)
        chown_tree(box.parent, MAIL_USER)

    def count(self, user: str) -> int:
        """How many messages `user`'s maildir holds (its files in new/ and cur/)."""
        box = self.mail / DOMAIN / user
        return sum(1 for sub in ("new", "cur") if (box / sub).is_dir()
                   for _ in os.scandir(box / sub))


class Postfix:
    """Debian's Postfix receiving for example.test and delivering with its virtual
    agent to the maildirs Dovecot reads (as `postfix -c DIR`)."""

    name = "postfix"

    def __init__(self, root: Path, mail: Path):
        self.root = root
        self.mail = mail
        self.etc, self.spool, self.data = root / "etc", root / "spool", root / "data"
        (self.smtp_port,) = free_ports(1)
        self.users: list[str] = []
        self.started = False

    def setup(self) -> None:
        for d in (self.etc, self.spool, self.data, self.mail):
            d.mkdir(parents=True, exist_ok=True)
        os.chown(self.data, pwd.getpwnam("postfix").pw_uid, pwd.getpwnam("postfix").pw_gid)
        chown_tree(self.mail, MAIL_USER)
        nobody = pwd.getpwnam(MAIL_USER)
        (self.etc / "main.cf").write_text(f"""\
# A throwaway Postfix for buudien's benchmark (bench/run); defaults otherwise.
compatibility_level = 3.6
queue_directory = {self.spool}
data_directory = {self.data}
meta_directory = /etc/postfix
mail_owner = postfix
setgid_group = postdrop
maillog_file = {self.root}/maillog
maillog_file_prefixes = {self.root}
myhostname = mx.{DOMAIN}
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
virtual_mailbox_domains = {DOMAIN}
virtual_mailbox_base = {self.mail}
virtual_mailbox_maps = texthash:{self.etc}/vmailbox
virtual_uid_maps = static:{nobody.pw_uid}
virtual_gid_maps = static:{nobody.pw_gid}
virtual_minimum_uid = 1
virtual_mailbox_limit = 0
message_size_limit = 60000000
smtpd_banner = $myhostname ESMTP
biff = no
""")
        (self.etc / "master.cf").write_text(f"""\
127.0.0.1:{self.smtp_port} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
""")
        self.add_users([])

    def add_users(self, names: list[str]) -> None:
        self.users += names
        (self.etc / "vmailbox").write_text(
            "".join(f"{u}@{DOMAIN}\t{DOMAIN}/{u}/\n" for u in self.users))
        if self.started:
            self.postfix("reload")

    def postfix(self, *args: str) -> None:
        r = run_tty(["/usr/sbin/postfix", "-c", str(self.etc), *args])
        if r[0] != 0:
            raise BenchError(f"postfix {' '.join(args)} exited {r[0]}: {r[1]}")

    def start(self) -> None:
        self.postfix("start")
        self.started = True
        wait_port(self.smtp_port, "postfix")

    def master_pid(self) -> int | None:
        try:
            return int((self.spool / "pid" / "master.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def stop(self) -> None:
        if not self.started:
            return
        pid = self.master_pid()
        try:
            self.postfix("stop")
        except BenchError as e:
            log(e)
        self.started = False
        deadline = time.monotonic() + 15
        while pid is not None and alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if pid is not None and alive(pid):
            os.kill(pid, signal.SIGKILL)

    def pids(self) -> list[int]:
        pid = self.master_pid()
        return process_tree(pid) if pid is not None and alive(pid) else []

    def delivered(self) -> int:
        """Messages in the maildirs' new/ directories."""
        total = 0
        for u in self.users:
            try:
                total += len(os.listdir(self.mail / DOMAIN / u / "new"))
            except OSError:
                pass
        return total


def run_tty(args: list[str], timeout: float = 60) -> tuple[int, str]:
    """Postfix prints its errors on stderr only when it is a terminal."""
    import pty
    import select
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave)
    finally:
        os.close(slave)
    out = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while True:
            r, _, _ = select.select([master], [], [], 0.1)
            if r:
                try:
                    chunk = os.read(master, 65536)
                except OSError:
                    chunk = b""
                out += chunk
                if not chunk and proc.poll() is not None:
                    break
            elif proc.poll() is not None:
                break
            if time.monotonic() > deadline:
                proc.kill()
                break
        proc.wait(timeout=10)
    finally:
        os.close(master)
    return proc.returncode, out.decode(errors="replace")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


def chown_tree(path: Path, user: str) -> None:
    pw = pwd.getpwnam(user)
    for dirpath, dirnames, filenames in os.walk(path):
        os.chown(dirpath, pw.pw_uid, pw.pw_gid)
        for f in filenames:
            os.chown(os.path.join(dirpath, f), pw.pw_uid, pw.pw_gid)


def process_tree(root_pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root_pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def memory_kib(pids: list[int]) -> tuple[int, int]:
    """(RSS, PSS) summed over `pids`, in KiB (PSS shares shared pages fairly)."""
    rss = pss = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Rss:"):
                        rss += int(line.split()[1])
                    elif line.startswith("Pss:"):
                        pss += int(line.split()[1])
        except OSError:
            pass
    return rss, pss


def status_messages(m) -> int:
    """The MESSAGES count of INBOX on a logged-in imaplib session (IMAP STATUS, RFC 9051
    §6.3.11)."""
    typ, data = m.status("INBOX", "(MESSAGES)")
    if typ != "OK" or not data or not isinstance(data[0], bytes):
        raise BenchError(f"STATUS INBOX: {typ} {data}")
    found = re.search(rb"MESSAGES (\d+)", data[0])
    if not found:
        raise BenchError(f"STATUS INBOX without MESSAGES: {data[0]!r}")
    return int(found.group(1))


def imap_append(port: int, login: str, messages: list[bytes], conns: int = 4) -> None:
    """APPENDs `messages` over `conns` parallel IMAP sessions (order not kept)."""
    import imaplib
    errors: list[str] = []

    def worker(part: list[bytes]) -> None:
        try:
            m = imaplib.IMAP4("127.0.0.1", port, timeout=TIMEOUT)
            m.login(login, PASSWORD)
            for msg in part:
                typ, data = m.append("INBOX", None, None, msg)
                if typ != "OK":
                    raise BenchError(f"APPEND: {data}")
            m.logout()
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(f"{login}: {e}")

    parts = [messages[i::conns] for i in range(conns)]
    threads = [threading.Thread(target=worker, args=(p,)) for p in parts if p]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise BenchError("; ".join(errors[:3]))


# --- PostgreSQL for the cluster benchmark ------------------------------------------


class Postgres:
    """A throwaway PostgreSQL (initdb in `root`, a loopback port) with Debian's
    defaults for durability: fsync on, synchronous_commit on, full_page_writes on."""

    name = "postgres"

    def __init__(self, root: Path):
        import glob
        found = sorted((int(Path(p).parts[-3]), Path(p).parent)
                       for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")
                       if Path(p).parts[-3].isdigit())
        if not found:
            raise BenchError("PostgreSQL server binaries not found in "
                             "/usr/lib/postgresql/*/bin: install Debian's `postgresql`")
        self.bin = found[-1][1]
        self.root = root
        self.data = root / "data"
        self.port = free_ports(1)[0]
        self.user = None
        if os.geteuid() == 0:  # initdb refuses root
            self.user = "postgres" if _has_user("postgres") else "nobody"

    def _cmd(self, program: str, *args: str) -> list[str]:
        prefix = ["runuser", "-u", self.user, "--"] if self.user else []
        return [*prefix, str(self.bin / program), *args]

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if self.user:
            pw = pwd.getpwnam(self.user)
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        run(self._cmd("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres",
                      "-E", "UTF8", "--locale=C"))
        opts = (f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} "
                "-c max_connections=300")
        run(self._cmd("pg_ctl", "-D", str(self.data), "-l", str(self.root / "log"), "-w",
                      "-o", opts, "start"))
        run(self._cmd("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U",
                      "postgres", "buudien"))

    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/buudien"

    def stop(self) -> None:
        subprocess.run(self._cmd("pg_ctl", "-D", str(self.data), "-m", "fast", "stop"),
                       capture_output=True, timeout=120)

    def pids(self) -> list[int]:
        try:
            first = (self.data / "postmaster.pid").read_text().split()[0]
            return process_tree(int(first))
        except (OSError, ValueError, IndexError):
            return []


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def find_bins(args, root: Path) -> None:
    """Sets args.buudien_bin and args.loadgen_bin (target/release, or target/debug with
    --debug; BUUDIEN_BIN and LOADGEN_BIN override)."""
    target = Path(os.environ.get("CARGO_TARGET_DIR", root / "target"))
    profile = "debug" if args.debug else "release"
    args.buudien_bin = os.environ.get("BUUDIEN_BIN") or str(target / profile / "buudien")
    args.loadgen_bin = os.environ.get("LOADGEN_BIN") or str(target / profile / "loadgen")
    # Built every time unless both are given: a binary from before the last change
    # would be measured (or lack an option this script passes) without a word.
    given = os.environ.get("BUUDIEN_BIN") and os.environ.get("LOADGEN_BIN")
    if not given or not (os.access(args.buudien_bin, os.X_OK)
                         and os.access(args.loadgen_bin, os.X_OK)):
        cmd = ["cargo", "build", "-p", "buudien", "-p", "loadgen"]
        if not args.debug:
            cmd.insert(2, "--release")
        log(" ".join(cmd))
        subprocess.run(cmd, cwd=root, check=True)
