"""A storage failure mid-write is a temporary failure with nothing half-written
(issue "hostile input and crashes").

The server runs with `BUUDIEN_FAULTS` (see crates/store-sqlite/src/faults.rs), which
makes the 1st blob write, the 1st blob fsync, the 1st rename into `blobs/`, the 1st
directory fsync and the 1st COMMIT of a message-storing transaction fail with EIO,
one after another: five attempts of the same operation fail, each at a later step,
and the sixth succeeds. For each way in (SMTP port 25 to a local user, authenticated
submission to a local and a remote recipient, IMAP APPEND, `buudien deliver`) every
failed attempt must get a temporary answer (4xx, `NO [UNAVAILABLE]`, exit 75), leave
nothing a client can see (IMAP STATUS, POP3 STAT, `buudien queue list`) and no file
without its row (or row without its file); the retry that succeeds stores the message
exactly once.
"""

from __future__ import annotations

import os
import re
import smtplib
import sqlite3
import subprocess
import uuid

import pytest

from conftest import DOMAIN, PASSWORD, TIMEOUT, Server, free_port

# BUUDIEN_FAULTS is buudien-store-sqlite's fault injection, and the checks read its
# database file and blob directory.
pytestmark = pytest.mark.sqlite_only(
    reason="BUUDIEN_FAULTS injects faults into buudien-store-sqlite's blob files and "
           "commits; checks read buudien.sqlite and blobs/")

POINTS = ["blob_write", "blob_fsync", "blob_rename", "dir_fsync", "commit"]
PLAN = ",".join(f"{p}:1" for p in POINTS)
# Every message in a file of its own, so that each of the five steps is taken (small
# messages are otherwise kept in the database, with no directory fsync;
# crates/store-sqlite/tests/faults.rs covers that path point by point).
FILES = "\n[store]\ninline_max = 0\n"
# Outbound mail goes to a smarthost that is not there: it stays queued (pending).
QUEUE = (f'\n[queue]\nsmarthost = "127.0.0.1:{free_port()}"\n'
         f'smarthost_tls = "none"\nretry = ["1h"]\nexpire = "5d"\n') + FILES


def letter(msgid: str, to: str, frm: str = "sender@example.org") -> bytes:
    return (
        f"From: {frm}\r\n"
        f"To: {to}\r\n"
        f"Subject: faults {msgid}\r\n"
        f"Message-ID: <{msgid}>\r\n"
        f"\r\n"
        f"Hello.\r\n"
    ).encode()


def status(srv: Server, user: str) -> tuple[int, int]:
    """(MESSAGES, UIDNEXT) of the user's INBOX over IMAP STATUS (RFC 9051 §6.3.11)."""
    m = srv.imap(user)
    try:
        typ, data = m.status("INBOX", "(MESSAGES UIDNEXT)")
        assert typ == "OK", data
        text = data[0].decode()
        messages = re.search(r"MESSAGES (\d+)", text)
        uidnext = re.search(r"UIDNEXT (\d+)", text)
        assert messages and uidnext, text
        return int(messages.group(1)), int(uidnext.group(1))
    finally:
        m.logout()


def msgid_count(srv: Server, user: str, msgid: str) -> int:
    """How many messages in the INBOX carry `msgid` (IMAP SEARCH HEADER)."""
    m = srv.imap(user)
    try:
        typ, data = m.select("INBOX", readonly=True)
        assert typ == "OK", data
        typ, data = m.search(None, "HEADER", "Message-ID", msgid)
        assert typ == "OK", data
        return len(data[0].split())
    finally:
        m.logout()


def queued(srv: Server) -> list[str]:
    """The message lines of `buudien queue list` (recipient lines are indented)."""
    out = srv.cli("queue", "list").stdout.decode()
    if out.strip() == "the queue is empty":
        return []
    return [line for line in out.splitlines() if line.strip() and not line[0].isspace()]


def strays(srv: Server) -> tuple[set[str], set[str], list[str]]:
    """(blob files without a live row, live rows without their file, files in tmp/)."""
    db = srv.data / "buudien.sqlite"
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        rows = {bytes(r[0]).hex() for r in
                con.execute("SELECT id FROM blobs WHERE refcount > 0 AND data IS NULL")}
    finally:
        con.close()
    files = {f.name for f in (srv.data / "blobs").glob("*/*/*") if f.is_file()}
    tmp = [f.name for f in (srv.data / "tmp").iterdir() if f.is_file()]
    return files - rows, rows - files, tmp


class Visible:
    """What clients see of some users (and the queue), to compare before and after."""

    def __init__(self, srv: Server, users: list[str]):
        self.srv = srv
        self.users = users

    def snapshot(self) -> dict:
        snap = {"queue": queued(self.srv)}
        for u in self.users:
            snap[u] = {"status": status(self.srv, u), "stat": self.srv.stat(u)}
        return snap

    def assert_unchanged(self, before: dict, what: str) -> None:
        after = self.snapshot()
        assert after == before, f"{what} left something visible: {before} -> {after}"
        orphans, missing, tmp = strays(self.srv)
        assert not orphans, f"{what}: blob files without a row: {orphans}"
        assert not missing, f"{what}: rows without their blob file: {missing}"
        assert not tmp, f"{what}: files left in tmp/: {tmp}"


def assert_stored_once(srv: Server, user: str, before: dict, msgid: str) -> None:
    messages, uidnext = status(srv, user)
    assert messages == before[user]["status"][0] + 1
    assert uidnext == before[user]["status"][1] + 1
    assert srv.stat(user)[0] == before[user]["stat"][0] + 1
    assert msgid_count(srv, user, msgid) == 1
    orphans, missing, tmp = strays(srv)
    assert not orphans and not missing and not tmp, (orphans, missing, tmp)


def test_smtp_delivery_fails_temporarily_then_succeeds(launcher):
    srv = launcher(sections=FILES, env={"BUUDIEN_FAULTS": PLAN}, name="faults-smtp")
    user, _ = srv.new_user("smtp")
    seen = Visible(srv, [user])
    before = seen.snapshot()
    msgid = f"{uuid.uuid4().hex}@example.org"
    replies = []
    # One session throughout: after a failed DATA the transaction is over (RFC 5321
    # §4.1.1.4) and the next MAIL starts a new one in the same session.
    with smtplib.SMTP("127.0.0.1", srv.smtp_port, local_hostname="client.test",
                      timeout=TIMEOUT) as s:
        s.ehlo()
        for attempt in range(len(POINTS) + 1):
            assert s.mail("sender@example.org")[0] == 250
            assert s.rcpt(user)[0] == 250
            code, text = s.data(letter(msgid, user))
            replies.append((code, text))
            if attempt < len(POINTS):
                # RFC 5321 §4.2.5: a 4yz after the data means "keep it and retry".
                assert 400 <= code < 500, f"{POINTS[attempt]}: {code} {text!r}"
                assert text.startswith(b"4.3."), f"{POINTS[attempt]}: {code} {text!r}"
                seen.assert_unchanged(before, f"SMTP with {POINTS[attempt]} failing")
    assert replies[-1][0] == 250, replies
    assert_stored_once(srv, user, before, msgid)


def test_submission_fails_temporarily_then_succeeds(launcher):
    srv = launcher(sections=QUEUE, env={"BUUDIEN_FAULTS": PLAN}, name="faults-sub")
    sender, _ = srv.new_user("sender")
    local, _ = srv.new_user("local")
    remote = "bob@remote.example"
    seen = Visible(srv, [sender, local])
    before = seen.snapshot()
    assert before["queue"] == []
    msgid = f"{uuid.uuid4().hex}@{DOMAIN}"
    for attempt in range(len(POINTS) + 1):
        # A retrying mail client: a new connection each time.
        with smtplib.SMTP("127.0.0.1", srv.submission_port, local_hostname="client.test",
                          timeout=TIMEOUT) as s:
            s.ehlo()
            s.starttls(context=srv.tls_context())
            s.ehlo()
            s.login(sender, PASSWORD)
            assert s.mail(sender)[0] == 250
            assert s.rcpt(local)[0] == 250
            assert s.rcpt(remote)[0] == 250
            code, text = s.data(letter(msgid, f"{local}, {remote}", frm=sender))
        if attempt < len(POINTS):
            assert 400 <= code < 500, f"{POINTS[attempt]}: {code} {text!r}"
            seen.assert_unchanged(before, f"submission with {POINTS[attempt]} failing")
        else:
            assert code == 250, (code, text)
    assert_stored_once(srv, local, before, msgid)
    assert status(srv, sender) == before[sender]["status"]
    lines = queued(srv)
    assert len(lines) == 1, lines
    out = srv.cli("queue", "list").stdout.decode()
    assert out.count(remote) == 1, out


def test_imap_append_fails_temporarily_then_succeeds(launcher):
    srv = launcher(sections=FILES, env={"BUUDIEN_FAULTS": PLAN}, name="faults-imap")
    user, _ = srv.new_user("imap")
    seen = Visible(srv, [user])
    before = seen.snapshot()
    msgid = f"{uuid.uuid4().hex}@example.org"
    msg = letter(msgid, user)
    m = srv.imap(user)
    try:
        for point in POINTS:
            typ, data = m.append("INBOX", None, None, msg)
            # RFC 9051 §7.1: UNAVAILABLE, "temporary failure because a subsystem is
            # down"; the client keeps the message.
            assert typ == "NO", f"{point}: {typ} {data!r}"
            assert data and data[0].startswith(b"[UNAVAILABLE]"), f"{point}: {data!r}"
            seen.assert_unchanged(before, f"APPEND with {point} failing")
        typ, data = m.append("INBOX", None, None, msg)
        assert typ == "OK", data
    finally:
        m.logout()
    assert_stored_once(srv, user, before, msgid)


def test_deliver_exits_75_then_succeeds(launcher):
    srv = launcher(sections=FILES, name="faults-deliver")
    user, _ = srv.new_user("lda")
    seen = Visible(srv, [user])
    before = seen.snapshot()
    msgid = f"{uuid.uuid4().hex}@example.org"
    msg = letter(msgid, user)
    cmd = [str(srv.bin), "--config", str(srv.config), "deliver", user]
    for point in POINTS:
        # Each `buudien deliver` is its own process: its plan counts from 1.
        env = dict(os.environ, BUUDIEN_FAULTS=f"{point}:1")
        r = subprocess.run(cmd, input=msg, capture_output=True, timeout=60, env=env)
        # sysexits(3) EX_TEMPFAIL: the MTA keeps the message and retries.
        assert r.returncode == 75, (point, r.returncode, r.stderr)
        seen.assert_unchanged(before, f"deliver with {point} failing")
    r = srv.deliver(user, msg, check=False)
    assert r.returncode == 0, (r.returncode, r.stderr)
    assert_stored_once(srv, user, before, msgid)
