"""Python's poplib against buudien: download, delete, list again; STLS and POP3S."""

import poplib
import re
import ssl
import time

import pytest

from conftest import launch, message, normalize

UIDL_RE = re.compile(rb"^[0-9a-f]{16}$")


def deliver_three(server, user):
    msgs = [message(f"poplib {i}", f"Body of message {i}.\n") for i in (1, 2, 3)]
    for m in msgs:
        server.deliver(user, m)
    return [normalize(m) for m in msgs]


def uidl_map(p):
    """{msg number: uid} from a multi-line UIDL."""
    _, lines, _ = p.uidl()
    out = {}
    for line in lines:
        num, uid = line.split()
        assert UIDL_RE.match(uid), f"UIDL {uid!r} is not 16 lowercase hex digits"
        out[int(num)] = uid
    return out


def test_download_delete_list_again(server):
    user, pw = server.new_user("pl")
    stored = deliver_three(server, user)

    p = server.pop(user, pw)
    count, size = p.stat()
    assert count == 3
    assert size == sum(len(m) for m in stored)

    _, listing, _ = p.list()
    sizes = {int(n): int(s) for n, s in (line.split() for line in listing)}
    assert sizes == {i + 1: len(m) for i, m in enumerate(stored)}
    assert p.list(2).split() == [b"+OK", b"2", str(len(stored[1])).encode()]

    uids = uidl_map(p)
    assert len(set(uids.values())) == 3
    assert p.uidl(3).split()[2] == uids[3]

    for i, m in enumerate(stored, start=1):
        _, lines, octets = p.retr(i)
        assert b"\r\n".join(lines) + b"\r\n" == m
        # poplib counts the un-stuffed lines plus CRLF: equal here (no leading dots).
        assert octets == len(m)

    _, top, _ = p.top(2, 0)
    assert b"Subject: poplib 2" in top
    assert top[-1] == b"", "TOP n 0 ends with the empty line after the header"
    assert not any(b"Body of message" in line for line in top)
    _, top1, _ = p.top(2, 1)
    assert top1[-1] == b"Body of message 2."

    assert p.dele(1).startswith(b"+OK")
    with pytest.raises(poplib.error_proto, match=r"-ERR"):
        p.retr(1)  # deleted messages are gone for this session
    assert p.stat() == (2, len(stored[1]) + len(stored[2]))
    assert p.quit().startswith(b"+OK")

    p = server.pop(user, pw)
    assert p.stat() == (2, len(stored[1]) + len(stored[2]))
    _, listing, _ = p.list()
    assert [int(line.split()[1]) for line in listing] == [len(stored[1]), len(stored[2])]
    after = uidl_map(p)
    assert after == {1: uids[2], 2: uids[3]}, "UIDLs of the remaining messages changed"
    _, lines, _ = p.retr(1)
    assert b"Subject: poplib 2" in lines
    p.quit()


def test_rset_undeletes(server):
    user, pw = server.new_user("rs")
    server.deliver(user, message("rset"))
    p = server.pop(user, pw)
    p.dele(1)
    assert p.stat()[0] == 0
    p.rset()
    assert p.stat()[0] == 1
    p.quit()
    assert server.stat(user, pw)[0] == 1


def test_capa_plain_port(server):
    p = server.pop()
    caps = p.capa()
    for cap in ("TOP", "UIDL", "USER", "SASL", "RESP-CODES", "AUTH-RESP-CODE",
                "PIPELINING", "STLS", "EXPIRE", "UTF8", "IMPLEMENTATION"):
        assert cap in caps, f"CAPA lacks {cap}: {caps}"
    assert "PLAIN" in caps["SASL"] and "LOGIN" in caps["SASL"], caps["SASL"]
    assert caps["EXPIRE"] == ["NEVER"], caps["EXPIRE"]
    p.quit()


def test_stls(server):
    user, pw = server.new_user("st")
    stored = deliver_three(server, user)
    p = server.pop()
    resp = p.stls(context=server.tls_context())
    assert resp.startswith(b"+OK")
    assert isinstance(p.sock, ssl.SSLSocket)
    assert p.sock.version() in ("TLSv1.2", "TLSv1.3")
    caps = p.capa()
    assert "STLS" not in caps, "STLS still offered after TLS is up"
    assert "USER" in caps
    p.user(user)
    p.pass_(pw)
    assert p.stat() == (3, sum(len(m) for m in stored))
    _, lines, _ = p.retr(3)
    assert b"\r\n".join(lines) + b"\r\n" == stored[2]
    p.dele(3)
    p.quit()
    assert server.stat(user, pw)[0] == 2


def test_stls_twice_refused(server):
    p = server.pop()
    p.stls(context=server.tls_context())
    with pytest.raises(poplib.error_proto, match=r"-ERR"):
        p._shortcmd("STLS")  # poplib has no public way to send a raw command
    p.quit()


def test_pop3s(server):
    user, pw = server.new_user("ps")
    stored = deliver_three(server, user)
    p = server.pop_ssl()
    assert p.getwelcome().startswith(b"+OK")
    caps = p.capa()
    assert "STLS" not in caps, "STLS offered on the implicit-TLS port"
    p.user(user)
    p.pass_(pw)
    assert p.stat()[0] == 3
    _, lines, _ = p.retr(1)
    assert b"\r\n".join(lines) + b"\r\n" == stored[0]
    p.dele(1)
    p.quit()
    p = server.pop_ssl(user, pw)
    assert p.stat()[0] == 2
    p.quit()


def test_wrong_password_auth_code(server):
    user, _ = server.new_user("wp")
    p = server.pop()
    p.user(user)
    start = time.monotonic()
    with pytest.raises(poplib.error_proto) as info:
        p.pass_("not the password")
    elapsed = time.monotonic() - start
    assert b"-ERR [AUTH]" in info.value.args[0], info.value.args
    assert elapsed >= 0.9, f"failed login answered after {elapsed:.2f}s, expected a delay"
    p.close()


def test_apop(server, tmp_path):
    """APOP (RFC 1939 §7) with the separate secret set by `user passwd --apop`, on a
    server with `apop = true`; the plain port's greeting then carries a timestamp."""
    own = launch(server.bin, tmp_path, apop=True)
    try:
        user, pw = own.new_user("ap")
        own.cli("user", "passwd", user, "--apop", "--password-stdin",
                input=b"apop shared secret\n")
        own.deliver(user, message("apop"))
        p = own.pop()
        assert re.search(rb"<[^<>@]+@[^<>]+>", p.getwelcome()), p.getwelcome()
        assert p.apop(user, "apop shared secret").startswith(b"+OK")
        assert p.stat()[0] == 1
        p.quit()
        # The login password still works with USER/PASS.
        p = own.pop(user, pw)
        assert p.stat()[0] == 1
        p.quit()
    finally:
        assert own.stop() == 0, own.log()
