"""Session rules seen from outside: the lock, UPDATE only on QUIT, dot-stuffing, big
messages, deliveries during a session, and bad input."""

import hashlib
import poplib
import time

import pytest

from conftest import launch, message, normalize


def test_lock_second_session_in_use(server):
    user, pw = server.new_user("lk")
    server.deliver(user, message("lock"))
    first = server.pop(user, pw)
    assert first.stat()[0] == 1

    second = server.pop()
    second.user(user)
    with pytest.raises(poplib.error_proto) as info:
        second.pass_(pw)
    assert info.value.args[0].startswith(b"-ERR [IN-USE]"), info.value.args
    second.close()

    # The first session is unaffected.
    assert first.stat()[0] == 1
    first.quit()

    third = server.pop(user, pw)  # the lock is gone once QUIT has been answered
    assert third.stat()[0] == 1
    third.quit()


def test_dropped_connection_keeps_messages(server):
    user, pw = server.new_user("dr")
    for i in range(2):
        server.deliver(user, message(f"dropped {i}"))
    p = server.pop(user, pw)
    assert p.dele(1).startswith(b"+OK")
    assert p.dele(2).startswith(b"+OK")
    assert p.stat()[0] == 0
    p.file.close()
    p.sock.close()  # no QUIT: no UPDATE state (RFC 1939 §6)

    # server.stat() retries while the server notices the closed socket and unlocks.
    assert server.stat(user, pw)[0] == 2


def test_dot_stuffing(server):
    user, pw = server.new_user("ds")
    body_lines = [b"first line", b".", b"..x", b".hidden", b"last ."]
    raw = b"From: a@example.org\nSubject: dots\n\n" + b"\n".join(body_lines) + b"\n"
    server.deliver(user, raw)
    expected = normalize(raw)

    p = server.pop(user, pw)
    assert p.list(1).split()[2] == str(len(expected)).encode()
    _, lines, _ = p.retr(1)
    assert b"\r\n".join(lines) + b"\r\n" == expected
    assert lines[-len(body_lines):] == body_lines
    _, top, _ = p.top(1, 3)
    assert top[-3:] == body_lines[:3]
    p.quit()

    r = server.raw()
    r.login(user, pw)
    assert r.cmd("RETR 1").startswith(b"+OK")
    wire = r.multiline()
    assert wire[-len(body_lines):] == [
        b"first line\r\n", b"..\r\n", b"...x\r\n", b"..hidden\r\n", b"last .\r\n",
    ]
    assert r.cmd("QUIT").startswith(b"+OK")
    r.close()


def test_ten_megabyte_message(server):
    user, pw = server.new_user("big")
    line = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-=+/.0123456"
    count = (10 * 1024 * 1024) // (len(line) + 1) + 1
    body = b"\n".join(line if i % 97 else b"." + line for i in range(count)) + b"\n"
    raw = b"From: a@example.org\nSubject: big\n\n" + body
    assert len(raw) > 10 * 1024 * 1024
    server.deliver(user, raw)
    expected = normalize(raw)

    p = server.pop(user, pw)
    _, listing, _ = p.list()
    assert listing == [b"1 " + str(len(expected)).encode()]
    start = time.monotonic()
    _, lines, _ = p.retr(1)
    elapsed = time.monotonic() - start
    got = b"\r\n".join(lines) + b"\r\n"
    assert len(got) == len(expected)
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(expected).hexdigest()
    assert elapsed < 30, f"RETR of 10 MB took {elapsed:.1f}s"
    p.quit()


def test_delivery_during_session(server):
    user, pw = server.new_user("dd")
    server.deliver(user, message("before"))
    p = server.pop(user, pw)
    before = p.stat()
    assert before[0] == 1
    uids = p.uidl()[1]

    server.deliver(user, message("during"))  # must not wait for the session's lock
    assert p.stat() == before, "the maildrop changed under an open session"
    assert p.noop().startswith(b"+OK")
    assert p.uidl()[1] == uids
    p.quit()

    p = server.pop(user, pw)
    count, _ = p.stat()
    assert count == 2
    _, lines, _ = p.retr(2)
    assert b"Subject: during" in lines
    p.quit()


def test_overlong_line_then_session_continues(server):
    user, pw = server.new_user("ln")
    server.deliver(user, message("long line"))
    r = server.raw()
    assert r.greeting.startswith(b"+OK")
    assert r.cmd(b"X" * 300).startswith(b"-ERR")
    assert r.cmd("CAPA").startswith(b"+OK")
    r.multiline()
    r.login(user, pw)
    assert r.cmd(b"LIST " + b"1" * 298).startswith(b"-ERR")
    assert r.cmd("STAT").startswith(b"+OK 1 ")
    assert r.cmd("FROB").startswith(b"-ERR")
    assert r.cmd("RETR 0").startswith(b"-ERR")
    assert r.cmd("RETR 99").startswith(b"-ERR")
    assert r.cmd("NOOP").startswith(b"+OK")
    assert r.cmd("QUIT").startswith(b"+OK")
    r.close()


def test_pipelining(server):
    user, pw = server.new_user("pp")
    server.deliver(user, message("pipe"))
    r = server.raw()
    r.sock.sendall(f"USER {user}\r\nPASS {pw}\r\nSTAT\r\nUIDL 1\r\nNOOP\r\n".encode())
    replies = [r.line() for _ in range(5)]
    assert all(x.startswith(b"+OK") for x in replies), replies
    assert replies[2].startswith(b"+OK 1 ")
    assert r.cmd("QUIT").startswith(b"+OK")
    r.close()


def test_commands_before_login_refused(server):
    r = server.raw()
    assert r.cmd("STAT").startswith(b"-ERR")
    assert r.cmd("RETR 1").startswith(b"-ERR")
    assert r.cmd("QUIT").startswith(b"+OK")
    r.close()


def test_sigterm_with_open_session(server, tmp_path):
    """SIGTERM while a client is in TRANSACTION state with a DELE pending: the waiting
    session is told `-ERR [SYS/TEMP] server shutting down` and closed, the server exits 0
    (within its 10 s drain time), and the message is still there afterwards (no UPDATE)."""
    own = launch(server.bin, tmp_path)
    try:
        user, pw = own.new_user("term")
        own.deliver(user, message("survives shutdown"))
        p = own.pop(user, pw)
        assert p.dele(1).startswith(b"+OK")
        start = time.monotonic()
        code = own.stop()
        took = time.monotonic() - start
        farewell = p.file.readline()
        p.close()
    finally:
        if own.proc and own.proc.poll() is None:
            own.proc.kill()
    assert code == 0, own.log()
    assert took <= 11, f"stopped after {took:.1f}s (the contract is ~10 s)"
    assert farewell.startswith(b"-ERR [SYS/TEMP]"), farewell

    own.start()
    try:
        assert own.stat(user, pw)[0] == 1
    finally:
        assert own.stop() == 0, own.log()
