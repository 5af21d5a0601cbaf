"""Never lose a message (issue 5): kill -9 under load, and a full disk.

kill -9: 8 client threads run at once against one server, which is killed with
SIGKILL at a random moment (3 rounds, kill points spread over 0.2..2.5 s; the seed is
printed, BUUDIEN_DURABILITY_SEED repeats it) and restarted on the same data directory:
- SMTP on the MX port, authenticated submission with a remote recipient more (which
  must then be queued exactly once), and IMAP APPEND: every message answered `250` or
  `OK` is in its mailbox exactly once (counted by Message-ID over IMAP, cross-checked
  over POP3); one that got no answer is there at most once (senders never resend);
- POP3 sessions deleting (DELE, QUIT) beside SMTP senders: UPDATE is all or nothing;
- `buudien deliver` processes themselves killed: exit 0 means stored exactly once.
Each time the store opens without repair, passes SQLite's integrity_check, has every
referenced blob file, `buudien queue list` works, and after the restart neither
temporary files nor blob files without a row are left.

Full disk (root only, skipped loudly otherwise): the data directory is an 8 MiB tmpfs.
Filled over SMTP, delivery fails with a temporary reply (`452 4.3.1`, or `451 4.3.0`:
RFC 3463), `buudien deliver` exits 75 (EX_TEMPFAIL), IMAP APPEND gets
`NO [UNAVAILABLE]` (RFC 9051 §7.1), POP3 QUIT that cannot commit says
`-ERR [SYS/TEMP]` and removes nothing, and every `250` stays readable, across a
kill -9 on the full disk too. At the edge (a few KiB left, so SQLite's own "disk is
full" shows) the same holds. Once space is freed, service resumes without a restart.
"""

from __future__ import annotations

import imaplib
import os
import poplib
import random
import re
import shutil
import smtplib
import sqlite3
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest

from conftest import DOMAIN, PASSWORD, TIMEOUT, Server, free_port

SENDERS = 8
ROUNDS = 3
BIG_LOAD = 256 * 1024  # octets of the occasional big message under load
MSGID = re.compile(rb"(?im)^Message-ID:\s*<([^>\s]+)>")


def kill_points(seed: int, n: int) -> list[float]:
    """`n` different kill delays (seconds after the load starts), spread over
    0.2..2.5 s."""
    rng = random.Random(seed)
    return [round(0.2 + (2.3 * (i + rng.random()) / n), 2) for i in range(n)]


def letter(msgid: str, rcpts: list[str], size: int = 0,
           frm: str = "load@example.org") -> bytes:
    body = ("x" * 72 + "\r\n") * (size // 74) if size else "Hello.\r\n"
    return (
        f"From: {frm}\r\n"
        f"To: {', '.join(rcpts)}\r\n"
        f"Subject: durability {msgid}\r\n"
        f"Message-ID: <{msgid}>\r\n"
        f"\r\n"
        f"{body}"
        f"end of {msgid}\r\n"
    ).encode()


def message_ids(srv: Server, user: str, password: str = PASSWORD) -> list[str]:
    """The Message-IDs of every message in the user's INBOX over IMAP (one per
    message, duplicates kept), checking each full message is readable (its blob is
    there and ends where it should)."""
    m = srv.imap(user, password)
    try:
        typ, data = m.select("INBOX", readonly=True)
        assert typ == "OK", data
        count = int(data[0])
        if count == 0:
            return []
        typ, data = m.fetch("1:*", "(BODY.PEEK[])")
        assert typ == "OK", data
        ids = []
        for item in data:
            if not isinstance(item, tuple):
                continue
            raw = item[1]
            found = MSGID.findall(raw)
            assert len(found) == 1, raw[:500]
            mid = found[0]
            assert raw.endswith(b"end of " + mid + b"\r\n"), raw[-200:]
            ids.append(mid.decode())
        assert len(ids) == count, (len(ids), count)
        return ids
    finally:
        m.logout()


def leftovers(srv: Server) -> tuple[int, int, int]:
    """(blob files with no row, rows whose file is missing, files in tmp/): what
    crashes leave behind. Rows without files (or their bytes, for small messages kept
    in the database) would be lost mail. On PostgreSQL the blobs are rows of the
    database (one transaction with their email): only tmp/ is in data_dir."""
    tmp = sum(1 for f in (srv.data / "tmp").iterdir() if f.is_file())
    if srv.on_postgres():
        return 0, 0, tmp
    db = srv.data / "buudien.sqlite"
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        rows = {bytes(r[0]).hex() for r in
                con.execute("SELECT id FROM blobs WHERE refcount > 0 AND data IS NULL")}
        all_rows = {bytes(r[0]).hex() for r in con.execute("SELECT id FROM blobs")}
    finally:
        con.close()
    files = {f.name for f in (srv.data / "blobs").glob("*/*/*") if f.is_file()}
    return len(files - all_rows), len(rows - files), tmp


def check_store(srv: Server) -> None:
    """The store opened (the server is up), passes integrity_check (SQLite; PostgreSQL
    recovers by its WAL), and `queue list` works."""
    if not srv.on_postgres():
        db = srv.data / "buudien.sqlite"
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
        try:
            (result,) = con.execute("PRAGMA integrity_check").fetchone()
        finally:
            con.close()
        assert result == "ok", f"integrity_check: {result}"
    missing = leftovers(srv)[1]
    assert missing == 0, f"{missing} referenced blob files are missing"
    r = srv.cli("queue", "list", check=False)
    assert r.returncode == 0, (r.returncode, r.stderr)


def mount(path: Path, size: str) -> None:
    if os.geteuid() != 0:
        pytest.skip(f"FULL-DISK TEST NOT RUN: needs root to mount a tmpfs (euid "
                    f"{os.geteuid()})")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700",
                        "tmpfs", str(path)], capture_output=True, timeout=TIMEOUT)
    if r.returncode != 0:
        pytest.skip(f"FULL-DISK TEST NOT RUN: mount -t tmpfs failed: "
                    f"{r.stderr.decode(errors='replace')}")


@pytest.fixture
def servers(buudien_bin):
    """Servers of one test, stopped (exit 0 after SIGTERM required) and, for a tmpfs
    data directory, unmounted afterwards."""
    made: list[Server] = []

    def make(name: str, tmpfs: str | None = None, sections: str = "") -> Server:
        root = Path(tempfile.mkdtemp(prefix=f"buudien-e2e-{name}-"))
        srv = Server(buudien_bin, root, smtp=True, sections=sections)
        made.append(srv)
        srv.data.mkdir()
        if tmpfs:
            mount(srv.data, tmpfs)
            srv.mounted = True
        srv.make_cert()
        srv.config.write_text(srv.config_text())
        srv.cli("domain", "add", DOMAIN)
        srv.start()
        return srv

    yield make
    failures = []
    for srv in made:
        code = srv.stop() if srv.proc is not None else 0
        if getattr(srv, "mounted", False):
            subprocess.run(["umount", "-l", str(srv.data)], capture_output=True,
                           timeout=TIMEOUT)
        if code != 0:
            failures.append(f"{srv.root}: exit {code} after SIGTERM\n{srv.log(4000)}")
        elif os.environ.get("BUUDIEN_E2E_KEEP") != "1":
            shutil.rmtree(srv.root, ignore_errors=True)
    assert not failures, failures


# --- kill -9 under load ----------------------------------------------------------------


class Load:
    """`SENDERS` client threads, each on its own connection, sending until the
    connection breaks. `acked` maps a Message-ID to its recipients once the server
    said yes; `tried` holds every Message-ID whose data was sent."""

    def __init__(self, srv: Server, users: list[str], tag: str, seed: int):
        self.srv = srv
        self.users = users
        self.tag = tag
        self.rng = random.Random(seed)
        self.acked: dict[str, list[str]] = {}
        self.tried: dict[str, list[str]] = {}
        self.errors: list[str] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        # Workers log in first; the kill delay counts from when all are ready.
        self.ready = threading.Barrier(SENDERS + 1, timeout=60)

    def next_message(self, worker: int, n: int) -> tuple[str, list[str], int]:
        """A fresh Message-ID, its recipients, and its size: one in eight is big
        (spooled to a file by IMAP, a longer blob write)."""
        with self.lock:
            rcpts = self.rng.sample(self.users, self.rng.choice([1, 1, 2]))
            mid = f"{self.tag}.{worker}.{n}.{uuid.uuid4().hex[:8]}@load.test"
            size = BIG_LOAD if self.rng.random() < 0.125 else 0
            self.tried[mid] = rcpts
        return mid, rcpts, size

    def smtp_worker(self, worker: int, submitter: str | None = None) -> None:
        """MX port; or, with `submitter`, authenticated submission (STARTTLS) with one
        unique remote recipient more per message, which goes to the queue."""
        n = 0
        try:
            if submitter is None:
                s = smtplib.SMTP("127.0.0.1", self.srv.smtp_port,
                                 local_hostname="load.test", timeout=TIMEOUT)
                s.ehlo()
            else:
                s = smtplib.SMTP("127.0.0.1", self.srv.submission_port,
                                 local_hostname="load.test", timeout=TIMEOUT)
                s.ehlo()
                s.starttls(context=self.srv.tls_context())
                s.ehlo()
                s.login(submitter, PASSWORD)
        except (OSError, smtplib.SMTPException) as e:
            self.errors.append(f"worker {worker} could not connect: {e!r}")
            self.ready.abort()
            return
        try:
            self.ready.wait()
            while not self.stop.is_set():
                n += 1
                mid, rcpts, size = self.next_message(worker, n)
                frm = submitter or "load@example.org"
                if submitter is not None:
                    rcpts = [*rcpts, f"r-{mid.split('@')[0]}@remote.test"]
                    with self.lock:
                        self.tried[mid] = rcpts
                # Never resent: one attempt, then the worker stops at the first
                # failure of any kind.
                s.sendmail(frm, rcpts, letter(mid, rcpts, size, frm))
                with self.lock:
                    self.acked[mid] = rcpts
        except (smtplib.SMTPException, OSError):
            pass
        finally:
            try:
                s.close()
            except OSError:
                pass

    def append_worker(self, worker: int, passwords: dict[str, str]) -> None:
        conns: dict[str, imaplib.IMAP4] = {}
        n = 0
        try:
            for u in self.users:
                conns[u] = self.srv.imap(u, passwords[u])
            self.ready.wait()
            while not self.stop.is_set():
                n += 1
                mid, rcpts, size = self.next_message(worker, n)
                rcpts = rcpts[:1]
                with self.lock:
                    self.tried[mid] = rcpts
                typ, data = conns[rcpts[0]].append("INBOX", None, None,
                                                   letter(mid, rcpts, size))
                if typ != "OK":
                    return
                with self.lock:
                    self.acked[mid] = rcpts
        except (imaplib.IMAP4.error, imaplib.IMAP4.abort, OSError):
            self.ready.abort()
        finally:
            for c in conns.values():
                try:
                    c.shutdown()
                except OSError:
                    pass

    def run(self, target, delay: float, *args) -> None:
        threads = [threading.Thread(target=target, args=(i, *args), daemon=True)
                   for i in range(SENDERS)]
        for t in threads:
            t.start()
        self.ready.wait()
        time.sleep(delay)
        self.srv.kill9()
        self.stop.set()
        for t in threads:
            t.join(timeout=TIMEOUT + 5)
            assert not t.is_alive(), "a client thread hangs after kill -9"
        assert not self.errors, self.errors


def verify(srv: Server, users: list[str], passwords: dict[str, str],
           load: Load, seen_before: dict[str, list[str]]) -> dict[str, list[str]]:
    """Every acked message exactly once per recipient; any other at most once."""
    now: dict[str, list[str]] = {}
    for u in users:
        now[u] = message_ids(srv, u, passwords[u])
    problems = []
    for u in users:
        ids = now[u]
        counts: dict[str, int] = {}
        for mid in ids:
            counts[mid] = counts.get(mid, 0) + 1
        for mid, c in counts.items():
            if c > 1:
                problems.append(f"{u}: {mid} stored {c} times")
        for mid, rcpts in load.acked.items():
            if u in rcpts and counts.get(mid, 0) != 1:
                problems.append(f"{u}: acked {mid} found {counts.get(mid, 0)} times")
        # What was there before this round is still there.
        for mid in seen_before.get(u, []):
            if mid not in counts:
                problems.append(f"{u}: {mid} of an earlier round is gone")
        for mid in counts:
            if mid not in load.tried and mid not in seen_before.get(u, []):
                problems.append(f"{u}: {mid} was never sent")
    assert not problems, problems[:20]
    # POP3 sees the same maildrops.
    for u in users:
        assert srv.stat(u, passwords[u])[0] == len(now[u]), u
    return now


def queued_recipients(srv: Server) -> dict[str, int]:
    """How often each address is a pending recipient in `queue list`."""
    r = srv.cli("queue", "list", check=False)
    assert r.returncode == 0, (r.returncode, r.stderr)
    counts: dict[str, int] = {}
    for line in r.stdout.decode().splitlines():
        fields = line.split()
        if line[:1].isspace() and len(fields) >= 2 and fields[1] == "pending":
            counts[fields[0]] = counts.get(fields[0], 0) + 1
    return counts


def check_queue(srv: Server, load: Load) -> None:
    """Every acked remote recipient is queued exactly once; an unacked one at most
    once."""
    queued = queued_recipients(srv)
    problems = []
    for mid, rcpts in load.tried.items():
        for r in rcpts:
            if not r.endswith("@remote.test"):
                continue
            n = queued.get(r, 0)
            if mid in load.acked and n != 1:
                problems.append(f"acked {mid}: {r} queued {n} times")
            elif n > 1:
                problems.append(f"unacked {mid}: {r} queued {n} times")
    assert not problems, problems[:20]


@pytest.mark.parametrize("kind", ["smtp", "submission", "append"])
def test_kill9_under_load_loses_nothing(servers, kind):
    seed = int(os.environ.get("BUUDIEN_DURABILITY_SEED", str(random.randrange(1 << 30))))
    # Outbound mail goes to a smarthost that is not there: it stays queued (pending).
    sections = ""
    if kind == "submission":
        sections = (f'\n[queue]\nsmarthost = "127.0.0.1:{free_port()}"\n'
                    f'smarthost_tls = "none"\nretry = ["1h"]\nexpire = "5d"\n')
    srv = servers(f"kill9-{kind}", sections=sections)
    users, passwords = [], {}
    for _ in range(4):
        u, pw = srv.new_user("load")
        users.append(u)
        passwords[u] = pw
    submitter, _ = srv.new_user("submitter")
    seen: dict[str, list[str]] = {}
    figures = []
    for rnd, delay in enumerate(kill_points(seed, ROUNDS)):
        load = Load(srv, users, f"r{rnd}", seed + rnd)
        if kind == "smtp":
            load.run(load.smtp_worker, delay)
        elif kind == "submission":
            load.run(load.smtp_worker, delay, submitter)
        else:
            load.run(load.append_worker, delay, passwords)
        # The store opens without repair: the same data directory, a plain start.
        srv.start()
        check_store(srv)
        seen = verify(srv, users, passwords, load, seen)
        if kind == "submission":
            check_queue(srv, load)
        unacked_present = sum(
            1 for mid, rcpts in load.tried.items()
            if mid not in load.acked and any(mid in seen.get(u, []) for u in rcpts))
        orphans, missing, tmp = leftovers(srv)
        assert missing == 0, f"{missing} referenced blob files are missing"
        # The restart removed the temporary files of the killed server.
        assert tmp == 0, f"{tmp} temporary files of the killed server left in tmp/"
        # The first garbage collection after the restart removes the blob files the
        # killed writers placed without committing.
        deadline = time.monotonic() + 10
        while (left := leftovers(srv)[0]) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert left == 0, f"{left} blob files without a row remain after the restart"
        figures.append(f"round {rnd}: kill at {delay}s, {len(load.tried)} sent, "
                       f"{len(load.acked)} acked, {unacked_present} unacked but stored; "
                       f"{orphans} blob files without a row")
        assert load.acked, f"nothing was acked before the kill at {delay}s: " \
                           f"the load never ran\n{srv.log(3000)}"
    swept = sum(int(n) for n in re.findall(r"removed (\d+) unreferenced message files",
                                           srv.log(1 << 24)))
    print(f"\n{kind} kill -9 (seed {seed}):\n  " + "\n  ".join(figures)
          + f"\n  garbage collection after the restarts removed {swept} files")


def test_kill9_of_deliver_processes_loses_nothing(servers):
    """`buudien deliver` (the LDA) killed with SIGKILL mid-delivery, several at once,
    beside a running server: every delivery that exited 0 is there exactly once, the
    others at most once, and the store stays sound."""
    seed = int(os.environ.get("BUUDIEN_DURABILITY_SEED", str(random.randrange(1 << 30))))
    srv = servers("kill9-lda")
    users, passwords = [], {}
    for _ in range(3):
        u, pw = srv.new_user("lda")
        users.append(u)
        passwords[u] = pw
    seen: dict[str, list[str]] = {}
    figures = []
    for rnd, delay in enumerate(kill_points(seed, ROUNDS)):
        load = Load(srv, users, f"d{rnd}", seed + rnd)
        running: list[subprocess.Popen] = []
        killed = [0]

        def worker(i: int) -> None:
            n = 0
            while not load.stop.is_set():
                n += 1
                mid, rcpts, size = load.next_message(i, n)
                p = subprocess.Popen(
                    [str(srv.bin), "--config", str(srv.config), "deliver", *rcpts],
                    stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE)
                with load.lock:
                    running.append(p)
                try:
                    _, err = p.communicate(letter(mid, rcpts, size), timeout=60)
                except (BrokenPipeError, subprocess.TimeoutExpired):
                    p.kill()
                    p.wait()
                    err = b""
                if p.returncode == 0:
                    with load.lock:
                        load.acked[mid] = rcpts
                elif p.returncode == -9:
                    return
                else:
                    load.errors.append(f"deliver exited {p.returncode}: {err!r}")
                    return

        threads = [threading.Thread(target=worker, args=(i,), daemon=True)
                   for i in range(4)]
        for t in threads:
            t.start()
        time.sleep(delay)
        load.stop.set()
        with load.lock:
            for p in running:
                if p.poll() is None:
                    p.kill()
                    killed[0] += 1
        for t in threads:
            t.join(timeout=70)
            assert not t.is_alive()
        assert not load.errors, load.errors
        check_store(srv)
        seen = verify(srv, users, passwords, load, seen)
        figures.append(f"round {rnd}: SIGKILL at {delay}s, {len(load.tried)} started, "
                       f"{len(load.acked)} exited 0, {killed[0]} SIGKILLs sent")
        assert load.acked, "no delivery finished before the kill"
    print("\ndeliver kill -9 (seed {}):\n  {}".format(seed, "\n  ".join(figures)))


# --- full disk -------------------------------------------------------------------------

TMPFS = "8m"
# Why the full-disk tests run on the SQLite store only.
FULL_DISK_SQLITE = ("the full disk is a tmpfs mounted as data_dir; on PostgreSQL the mail "
                    "is in the database's directory, which the test does not fill")
NO_RESERVE = "[limits]\nmin_free_space = 0\n"
FILLER_MB = 5
BIG = 96 * 1024  # octets of one filling message


def smtp_send(srv: Server, msgid: str, rcpt: str, size: int) -> tuple[int, bytes]:
    """One message over the MX port; (code, text) of the final reply."""
    s = smtplib.SMTP("127.0.0.1", srv.smtp_port, local_hostname="fill.test",
                     timeout=TIMEOUT)
    try:
        s.ehlo()
        code, text = s.mail("fill@example.org")
        assert code == 250, (code, text)
        code, text = s.rcpt(rcpt)
        if code != 250:
            return code, text
        return s.data(letter(msgid, [rcpt], size))
    finally:
        try:
            s.quit()
        except (smtplib.SMTPException, OSError):
            s.close()


def fill_rest(path: Path) -> None:
    """Writes a file until the filesystem is full."""
    chunk = b"\0" * 4096
    try:
        with open(path, "wb") as f:
            while True:
                f.write(chunk)
                f.flush()
    except OSError:
        pass


@pytest.mark.sqlite_only(reason=FULL_DISK_SQLITE)
def test_full_disk_is_a_temporary_failure(servers):
    # No reserve: this test is about the disk really running out (another program
    # filled it); test_reserve_keeps_room_for_deletions covers the reserve.
    srv = servers("fulldisk", tmpfs=TMPFS, sections=NO_RESERVE)
    user, pw = srv.new_user("full")
    filler = srv.data / "filler"
    with open(filler, "wb") as f:
        f.write(b"\0" * (FILLER_MB << 20))
    acked = []
    failure = None
    for i in range(200):
        mid = f"fill.{i}.{uuid.uuid4().hex[:8]}@fill.test"
        code, text = smtp_send(srv, mid, user, BIG)
        if code == 250:
            acked.append(mid)
            continue
        failure = (code, text)
        break
    assert failure is not None, "the tmpfs never filled up"
    assert acked, f"the first message already failed: {failure}"
    code, text = failure
    assert (code, text[:5]) in {(452, b"4.3.1"), (451, b"4.3.0")}, \
        f"full disk answered {code} {text!r} (want 452 4.3.1 or 451 4.3.0)"
    # Top off whatever space is left, so every write below hits ENOSPC.
    rest = srv.data / "filler2"
    fill_rest(rest)

    replies = [failure]
    appends = []
    m = srv.imap(user, pw)
    try:
        # Big (spooled) and small (in memory) messages, each way in. A small one may
        # still be taken: it is kept in the database, whose log and free pages may
        # have room the file system no longer has. Taken means kept (checked below).
        for size in (BIG, 2000):
            may_fit = size < 64 * 1024
            mid = f"more.{uuid.uuid4().hex[:8]}@fill.test"
            code, text = smtp_send(srv, mid, user, size)
            replies.append((code, text))
            if code == 250 and may_fit:
                acked.append(mid)
            else:
                assert (code, text[:5]) in {(452, b"4.3.1"), (451, b"4.3.0")}, (code, text)

            mid = f"lda.{uuid.uuid4().hex[:8]}@fill.test"
            r = srv.deliver(user, letter(mid, [user], size), check=False)
            if r.returncode == 0 and may_fit:
                acked.append(mid)
            else:
                assert r.returncode == 75, (r.returncode, r.stderr)

            mid = f"app.{uuid.uuid4().hex[:8]}@fill.test"
            typ, data = m.append("INBOX", None, None, letter(mid, [user], size))
            appends.append((typ, data))
            if typ == "OK" and may_fit:
                acked.append(mid)
            else:
                assert typ == "NO", (typ, data)
                assert re.search(rb"\[(UNAVAILABLE|OVERQUOTA|LIMIT)\]", data[0]), data
            # The session survives the failure.
            assert m.noop()[0] == "OK"
    finally:
        m.logout()
    print(f"\nfull disk: {len(acked)} messages of {BIG} octets took; SMTP {replies}; "
          f"APPEND {appends}")
    # Reading needs no space: POP3 sees every message.
    assert srv.stat(user, pw)[0] == len(acked)

    # A crash while the disk is full: the store opens again on the full disk, keeps
    # every message, and still answers with a temporary error.
    srv.kill9()
    srv.start()
    assert sorted(message_ids(srv, user, pw)) == sorted(acked)
    mid = f"crash.{uuid.uuid4().hex[:8]}@fill.test"
    code, text = smtp_send(srv, mid, user, 2000)
    if code == 250:
        acked.append(mid)
    else:
        assert (code, text[:5]) in {(452, b"4.3.1"), (451, b"4.3.0")}, (code, text)

    # Every 250 is readable, even now.
    ids = message_ids(srv, user, pw)
    assert sorted(ids) == sorted(acked), (len(ids), len(acked))

    # Space comes back: service resumes without a restart.
    filler.unlink()
    rest.unlink()
    mid = f"after.{uuid.uuid4().hex[:8]}@fill.test"
    code, text = smtp_send(srv, mid, user, BIG)
    assert code == 250, (code, text)
    m = srv.imap(user, pw)
    try:
        typ, data = m.append("INBOX", None, None,
                             letter(f"app2.{uuid.uuid4().hex[:8]}@fill.test", [user], 1000))
        assert typ == "OK", data
    finally:
        m.logout()
    r = srv.deliver(user, letter(f"lda2.{uuid.uuid4().hex[:8]}@fill.test", [user], 1000),
                    check=False)
    assert r.returncode == 0, (r.returncode, r.stderr)
    ids = message_ids(srv, user, pw)
    assert mid in ids and all(a in ids for a in acked) and len(ids) == len(acked) + 3
    check_store(srv)


@pytest.mark.sqlite_only(reason=FULL_DISK_SQLITE)
@pytest.mark.parametrize("reserve_kib", [8, 28, 40, 80, 120])
def test_nearly_full_disk_acks_only_what_it_keeps(servers, reserve_kib):
    """At the edge of a full disk (a few KiB left, so some writes fit and then the
    SQLite log or a blob file runs out of room): small SMTP messages, IMAP APPENDs of
    one same message (its blob exists, so only rows are written) and `deliver` runs,
    until everything fails. Each `250`/`OK`/exit 0 is readable, every failure is
    temporary, the store passes its integrity check, after kill -9 too, and once
    space is freed service resumes."""
    srv = servers("edge", tmpfs=TMPFS, sections=NO_RESERVE)
    user, pw = srv.new_user("edge")
    same = letter("same@edge.test", [user], 1500)
    m = srv.imap(user, pw)
    assert m.append("INBOX", None, None, same)[0] == "OK"
    m.logout()
    expected = ["same@edge.test"]
    filler = srv.data / "filler"
    fill_rest(filler)
    # Give back a little room.
    os.truncate(filler, max(0, filler.stat().st_size - reserve_kib * 1024))
    outcomes = {"smtp": [], "append": [], "deliver": []}
    m = srv.imap(user, pw)
    try:
        for i in range(60):
            mid = f"edge.{i}.{uuid.uuid4().hex[:8]}@edge.test"
            code, text = smtp_send(srv, mid, user, 300)
            outcomes["smtp"].append(code)
            if code == 250:
                expected.append(mid)
            else:
                assert (code, text[:5]) in {(452, b"4.3.1"), (451, b"4.3.0")}, (code, text)
            typ, data = m.append("INBOX", None, None, same)
            outcomes["append"].append(typ)
            if typ == "OK":
                expected.append("same@edge.test")
            else:
                assert typ == "NO" and re.search(rb"\[(UNAVAILABLE|OVERQUOTA|LIMIT)\]",
                                                 data[0]), data
            mid = f"lda.{i}.{uuid.uuid4().hex[:8]}@edge.test"
            r = srv.deliver(user, letter(mid, [user], 300), check=False)
            outcomes["deliver"].append(r.returncode)
            if r.returncode == 0:
                expected.append(mid)
            else:
                assert r.returncode == 75, (r.returncode, r.stderr)
        assert m.noop()[0] == "OK"
    finally:
        m.logout()
    summary = {k: {x: v.count(x) for x in set(v)} for k, v in outcomes.items()}
    # The disk did fill for each kind of write. Not "the last one failed": a WAL
    # checkpoint that shrinks the log gives back room, and a later small message may
    # then fit (and is then kept, as the check below proves).
    for k, v in outcomes.items():
        assert any(x not in (250, "OK", 0) for x in v), f"{k} never failed on a full disk: {v}"
    assert sorted(message_ids(srv, user, pw)) == sorted(expected)
    check_store(srv)

    # POP3 UPDATE on the full disk: `+OK` means the message is gone, `-ERR [SYS/TEMP]`
    # (RFC 3206 §4) that nothing was removed.
    p = srv.pop(user, pw)
    count, _ = p.stat()
    assert count == len(expected)
    first = MSGID.findall(b"\r\n".join(p.top(1, 0)[1]))[0].decode()
    assert p.dele(1).startswith(b"+OK")
    try:
        quit_reply = p.quit()
        assert quit_reply.startswith(b"+OK"), quit_reply
        expected.remove(first)
    except poplib.error_proto as e:
        quit_reply = e.args[0]
        assert quit_reply.startswith(b"-ERR [SYS/TEMP]"), quit_reply
        p.close()
    print(f"\nedge of a full disk ({reserve_kib} KiB left): {summary}, "
          f"POP3 QUIT {quit_reply[:40]!r}")
    assert sorted(message_ids(srv, user, pw)) == sorted(expected)
    check_store(srv)

    srv.kill9()
    srv.start()
    assert sorted(message_ids(srv, user, pw)) == sorted(expected)
    check_store(srv)

    filler.unlink()
    mid = f"after.{uuid.uuid4().hex[:8]}@edge.test"
    code, text = smtp_send(srv, mid, user, 300)
    assert code == 250, (code, text)
    expected.append(mid)
    m = srv.imap(user, pw)
    try:
        assert m.append("INBOX", None, None, same)[0] == "OK"
        expected.append("same@edge.test")
    finally:
        m.logout()
    assert sorted(message_ids(srv, user, pw)) == sorted(expected)
    check_store(srv)


@pytest.mark.sqlite_only(reason=FULL_DISK_SQLITE + "; [limits] min_free_space is the "
                         "SQLite store's reserve on data_dir's filesystem")
def test_reserve_keeps_room_for_deletions(servers):
    """With a free-space reserve ([limits] min_free_space), deliveries stop with a
    temporary failure while the reserve is still free, so a user can still delete
    (IMAP EXPUNGE, POP3 DELE+QUIT); once that freed space, mail flows again, with no
    restart. Every 250 is kept."""
    srv = servers("reserve", tmpfs=TMPFS, sections="[limits]\nmin_free_space = \"3M\"\n")
    user, pw = srv.new_user("res")
    acked = []
    failure = None
    for i in range(200):
        mid = f"res.{i}.{uuid.uuid4().hex[:8]}@fill.test"
        code, text = smtp_send(srv, mid, user, BIG)
        if code == 250:
            acked.append(mid)
            continue
        failure = (code, text)
        break
    assert failure is not None and acked, (failure, len(acked))
    assert failure[0] == 452 and failure[1].startswith(b"4.3.1"), failure
    st = os.statvfs(srv.data)
    free = st.f_bavail * st.f_frsize
    assert free >= (3 << 20) - BIG, f"only {free} octets free: the reserve was used"
    r = srv.deliver(user, letter(f"lda.{uuid.uuid4().hex[:8]}@fill.test", [user], BIG),
                    check=False)
    assert r.returncode == 75, (r.returncode, r.stderr)
    # The user deletes: IMAP expunges half, POP3 deletes one more.
    m = srv.imap(user, pw)
    try:
        typ, data = m.append("INBOX", None, None,
                             letter(f"app.{uuid.uuid4().hex[:8]}@fill.test", [user], BIG))
        assert typ == "NO" and b"[UNAVAILABLE]" in data[0], (typ, data)
        assert m.select("INBOX")[0] == "OK"
        half = len(acked) // 2
        assert m.store(f"1:{half}", "+FLAGS", "(\\Deleted)")[0] == "OK"
        typ, data = m.expunge()
        assert typ == "OK", data
    finally:
        m.logout()
    kept = acked[half:]
    p = srv.pop(user, pw)
    assert p.dele(1).startswith(b"+OK")
    assert p.quit().startswith(b"+OK")
    kept = kept[1:]
    assert sorted(message_ids(srv, user, pw)) == sorted(kept)
    # A refused delivery collects the expunged messages' blobs first, so the space
    # the user freed counts at once (retried briefly: the POP3 session's UPDATE
    # may still hold its blobs for a moment).
    deadline = time.monotonic() + 30
    while True:
        mid = f"after.{uuid.uuid4().hex[:8]}@fill.test"
        code, text = smtp_send(srv, mid, user, BIG)
        if code == 250:
            kept.append(mid)
            break
        assert (code, text[:5]) == (452, b"4.3.1"), (code, text)
        assert time.monotonic() < deadline, f"no room came back after deleting: {text!r}"
        time.sleep(1)
    assert sorted(message_ids(srv, user, pw)) == sorted(kept)
    check_store(srv)


def test_kill9_during_pop3_updates_is_all_or_nothing(servers):
    """POP3 sessions delete messages (DELE, then QUIT: RFC 1939 §6 UPDATE) while SMTP
    senders deliver more, and the server is killed at a random moment. After the
    restart: what a `+OK` QUIT removed is gone, what a session without an answer
    marked is either all gone or all there, every other acked message is there once."""
    seed = int(os.environ.get("BUUDIEN_DURABILITY_SEED", str(random.randrange(1 << 30))))
    rng = random.Random(seed)
    srv = servers("kill9-pop3")
    users, passwords = [], {}
    for _ in range(3):
        u, pw = srv.new_user("pop")
        users.append(u)
        passwords[u] = pw
    present: dict[str, set[str]] = {u: set() for u in users}
    for u in users:
        for i in range(20):
            mid = f"pre.{i}.{uuid.uuid4().hex[:8]}@pop.test"
            code, text = smtp_send(srv, mid, u, 0)
            assert code == 250, (code, text)
            present[u].add(mid)
    figures = []
    for rnd, delay in enumerate(kill_points(seed, ROUNDS)):
        load = Load(srv, users, f"p{rnd}", seed + rnd)
        confirmed: dict[str, set[str]] = {u: set() for u in users}
        uncertain: dict[str, list[set[str]]] = {u: [] for u in users}

        def popper(user: str, stop: threading.Event) -> None:
            while not stop.is_set():
                try:
                    p = poplib.POP3("127.0.0.1", srv.pop3_port, timeout=TIMEOUT)
                except (OSError, poplib.error_proto, EOFError):
                    return  # killed before the greeting
                marked: set[str] = set()
                try:
                    p.user(user)
                    try:
                        p.pass_(passwords[user])
                    except poplib.error_proto as e:
                        if isinstance(e.args[0], bytes) and b"[IN-USE]" in e.args[0]:
                            p.close()
                            continue
                        raise
                    count, _ = p.stat()
                    with load.lock:
                        picks = rng.sample(range(1, count + 1), min(count, 3))
                    for n in picks:
                        head = b"\r\n".join(p.top(n, 0)[1])
                        mid = MSGID.findall(head)[0].decode()
                        assert p.dele(n).startswith(b"+OK")
                        marked.add(mid)
                    p.quit()
                    with load.lock:
                        confirmed[user] |= marked
                except (poplib.error_proto, OSError, EOFError):
                    with load.lock:
                        if marked:
                            uncertain[user].append(marked)
                    return

        def guarded(user: str, stop: threading.Event) -> None:
            try:
                popper(user, stop)
            except Exception as e:  # reported by the test, not lost in a thread
                load.errors.append(f"POP3 client of {user}: {e!r}")

        stop = threading.Event()
        poppers = [threading.Thread(target=guarded, args=(u, stop), daemon=True)
                   for u in users]
        for t in poppers:
            t.start()
        load.run(load.smtp_worker, delay)
        stop.set()
        for t in poppers:
            t.join(timeout=TIMEOUT + 5)
            assert not t.is_alive(), "a POP3 client hangs after kill -9"
        assert not load.errors, load.errors
        srv.start()
        check_store(srv)
        problems = []
        for u in users:
            ids = message_ids(srv, u, passwords[u])
            now = set(ids)
            if len(ids) != len(now):
                problems.append(f"{u}: duplicates")
            want = (present[u] | {m for m, r in load.acked.items() if u in r}) \
                - confirmed[u]
            for group in uncertain[u]:
                gone = group - now
                if gone and gone != group:
                    problems.append(f"{u}: half an UPDATE: {sorted(gone)} of {sorted(group)}")
                want -= gone
            if want - now:
                problems.append(f"{u}: lost {sorted(want - now)[:5]}")
            if now & confirmed[u]:
                problems.append(f"{u}: deleted but back: {sorted(now & confirmed[u])[:5]}")
            extra = now - want - {m for m, r in load.tried.items() if u in r}
            if extra:
                problems.append(f"{u}: never sent: {sorted(extra)[:5]}")
            present[u] = now
        assert not problems, problems
        figures.append(
            f"round {rnd}: kill at {delay}s, {len(load.acked)} acked, "
            f"{sum(len(c) for c in confirmed.values())} deletions confirmed, "
            f"{sum(len(g) for v in uncertain.values() for g in v)} in unanswered QUITs")
    print(f"\npop3 kill -9 (seed {seed}):\n  " + "\n  ".join(figures))
