"""Python's imaplib against buudien's IMAP listeners: LOGIN over loopback, STARTTLS
(RFC 9051 §6.2.1), implicit TLS (RFC 8314), LOGINDISABLED off loopback (§6.2.3),
CAPABILITY, ENABLE, NAMESPACE, SELECT/EXAMINE, LIST, STATUS and mailbox management."""

import base64
import hashlib
import hmac
import imaplib
import os
import re
import signal
import socket
import ssl
import subprocess
import time

import pytest

from conftest import DOMAIN, TIMEOUT, Server, launch, message
from imaputil import appended_uid, imap_server, mail, ok, pop_untagged  # noqa: F401


def caps(m: imaplib.IMAP4) -> set[str]:
    typ, data = m.capability()
    assert typ == "OK", data
    return set(data[0].decode().upper().split())


def test_login_over_loopback_plain(imap_server):
    user, pw = imap_server.new_user("il")
    m = imap_server.imap()
    assert re.match(rb"\[CAPABILITY [^]]*IMAP4rev2", m.welcome[5:]), m.welcome
    before = caps(m)
    assert {"IMAP4REV2", "IMAP4REV1", "STARTTLS", "AUTH=PLAIN"} <= before, before
    assert "LOGINDISABLED" not in before, "loopback may log in without TLS"
    typ, data = m.login(user, pw)
    assert typ == "OK", data
    after = caps(m)
    assert "STARTTLS" not in after and not any(c.startswith("AUTH=") for c in after), after
    assert any(c.startswith("APPENDLIMIT=") for c in after), after
    assert m.logout()[0] == "BYE"


def test_wrong_password_is_no(imap_server):
    user, _ = imap_server.new_user("iw")
    m = imap_server.imap()
    with pytest.raises(imaplib.IMAP4.error) as e:
        m.login(user, "not the password")
    assert b"AUTHENTICATIONFAILED" in str(e.value).encode() or "failed" in str(e.value).lower()
    m.logout()


def test_starttls_then_login(imap_server):
    user, pw = imap_server.new_user("is")
    m = imap_server.imap()
    typ, _ = m.starttls(ssl_context=imap_server.tls_context())
    assert typ == "OK"
    assert m.sock.version() in ("TLSv1.2", "TLSv1.3")
    c = caps(m)
    assert "STARTTLS" not in c, "STARTTLS is not offered twice"
    assert "AUTH=PLAIN" in c
    ok(m.login(user, pw), "LOGIN after STARTTLS")
    assert ok(m.select("INBOX")) == [b"0"]
    m.logout()


def test_starttls_injection_is_discarded(imap_server):
    """Bytes pipelined after STARTTLS, before the handshake, are dropped (RFC 9051
    §6.2.1; the CVE-2011-0411 class)."""
    with socket.create_connection(("127.0.0.1", imap_server.imap_port), timeout=TIMEOUT) as raw:
        f = raw.makefile("rb")
        assert f.readline().startswith(b"* OK")
        raw.sendall(b"a STARTTLS\r\nb CAPABILITY\r\n")
        assert f.readline().startswith(b"a OK")
        tls = imap_server.tls_context().wrap_socket(raw, server_hostname="localhost")
        tls.sendall(b"c NOOP\r\n")
        tf = tls.makefile("rb")
        first = tf.readline()
        assert first.startswith(b"c OK"), f"pipelined command was run: {first!r}"
        tls.sendall(b"d LOGOUT\r\n")
        tls.close()


def test_imaps_implicit_tls(imap_server):
    user, pw = imap_server.new_user("ix")
    m = imap_server.imap_ssl()
    cert = m.sock.getpeercert()
    assert cert, "the certificate was verified against the test's own CA file"
    c = caps(m)
    assert "STARTTLS" not in c and "LOGINDISABLED" not in c, c
    ok(m.login(user, pw))
    ok(m.select("INBOX"))
    m.logout()


def test_imaps_untrusted_certificate_is_refused(imap_server):
    """A client with the system trust store refuses the self-signed certificate: the
    handshake fails on the client side, proving imaps really speaks TLS first."""
    ctx = ssl.create_default_context()
    with pytest.raises(ssl.SSLCertVerificationError):
        imaplib.IMAP4_SSL("127.0.0.1", imap_server.imaps_port, timeout=TIMEOUT,
                          ssl_context=ctx)


def non_loopback_address() -> str | None:
    """This machine's address on its default route, if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))
            addr = s.getsockname()[0]
        except OSError:
            return None
    return None if addr.startswith("127.") else addr


def test_logindisabled_off_loopback(buudien_bin, tmp_path):
    """From an address that is not loopback and without TLS: LOGINDISABLED, LOGIN
    refused; after STARTTLS login works (RFC 9051 §6.2.3)."""
    addr = non_loopback_address()
    if addr is None:
        pytest.skip("this machine has no non-loopback IPv4 address to test from")
    srv = Server(buudien_bin, tmp_path)
    srv.make_cert()
    text = srv.config_text().replace(
        f'imap = ["127.0.0.1:{srv.imap_port}"]', f'imap = ["{addr}:{srv.imap_port}"]'
    )
    assert addr in text
    srv.config.write_text(text)
    srv.cli("domain", "add", DOMAIN)
    user, pw = srv.new_user("nl")
    # start() waits on 127.0.0.1 for every listener: wait for the others, then ours.
    srv.imap_port_saved, srv.imap_port = srv.imap_port, None
    srv.start()
    port = srv.imap_port_saved
    try:
        m = imaplib.IMAP4(addr, port, timeout=TIMEOUT)
        c = caps(m)
        assert "LOGINDISABLED" in c and "AUTH=PLAIN" not in c, c
        with pytest.raises(imaplib.IMAP4.error):
            m.login(user, pw)
        ctx = ssl.create_default_context(cafile=str(srv.cert))
        ctx.check_hostname = False  # the certificate names localhost and 127.0.0.1
        ok(m.starttls(ssl_context=ctx))
        c = caps(m)
        assert "LOGINDISABLED" not in c and "AUTH=PLAIN" in c, c
        ok(m.login(user, pw))
        m.logout()
    finally:
        assert srv.stop() == 0, srv.log()


def test_enable_imap4rev2(imap_server):
    user, pw = imap_server.new_user("ie")
    m = imap_server.imap(user, pw)
    typ, data = m.enable("IMAP4rev2")
    assert typ == "OK", data
    enabled = b" ".join(d for d in pop_untagged(m, "ENABLED") if d)
    assert b"IMAP4REV2" in enabled.upper(), enabled
    m.logout()


def test_namespace(imap_server):
    """NAMESPACE (RFC 9051 §6.3.10): one personal namespace, with its delimiter."""
    user, pw = imap_server.new_user("ns")
    m = imap_server.imap(user, pw)
    typ, data = m.namespace()
    assert typ == "OK", f"NAMESPACE: {typ} {data!r}"
    assert re.match(rb'\(\("[^"]*" "[^"]*"\)\) (NIL|\(.*\)) (NIL|\(.*\))', data[0]), data
    m.logout()


def test_select_examine_and_status(imap_server):
    user, pw = imap_server.new_user("ss")
    for i in range(3):
        imap_server.deliver(user, message(f"status {i}"))
    m = imap_server.imap(user, pw)
    typ, data = m.select("INBOX")
    assert (typ, data) == ("OK", [b"3"]), data
    validity = pop_untagged(m, "UIDVALIDITY")
    assert validity and int(validity[-1]) > 0, validity
    assert pop_untagged(m, "UIDNEXT"), "SELECT reports UIDNEXT (RFC 9051 §6.3.2)"
    flags = pop_untagged(m, "FLAGS")
    assert flags and b"\\Seen" in flags[-1], flags
    assert "READ-WRITE" in m.untagged_responses, m.untagged_responses
    m.close()

    typ, data = m.select("INBOX", readonly=True)  # EXAMINE
    assert (typ, data) == ("OK", [b"3"]), data
    assert "READ-ONLY" in m.untagged_responses, m.untagged_responses
    m.unselect() if hasattr(m, "unselect") else m.close()

    typ, data = m.status("INBOX", "(MESSAGES UIDNEXT UIDVALIDITY UNSEEN SIZE)")
    assert typ == "OK", data
    line = data[0]
    assert re.search(rb"MESSAGES 3\b", line), line
    assert re.search(rb"UNSEEN 3\b", line), line
    assert re.search(rb"UIDNEXT \d+", line) and re.search(rb"UIDVALIDITY \d+", line), line
    assert re.search(rb"SIZE \d+", line), line
    m.logout()


def test_list_create_rename_delete(imap_server):
    user, pw = imap_server.new_user("lc")
    m = imap_server.imap(user, pw)

    def names() -> dict[str, bytes]:
        typ, data = m.list()
        assert typ == "OK", data
        out = {}
        for line in data:
            mo = re.match(rb'\(([^)]*)\) (?:"(.)"|NIL) (.*)$', line)
            assert mo, line
            name = mo.group(3)
            if name.startswith(b'"'):
                name = name[1:-1]
            out[name.decode()] = mo.group(1)
        return out

    before = names()
    assert "INBOX" in before, before
    ok(m.create("Projects"))
    ok(m.create("Projects/2026"))
    listed = names()
    assert {"Projects", "Projects/2026"} <= set(listed), listed
    # A message in the child survives renaming the parent.
    uid = appended_uid(m, "Projects/2026", mail("kept across rename"))
    ok(m.rename("Projects", "Attic"))
    listed = names()
    assert "Projects" not in listed and "Projects/2026" not in listed, listed
    assert {"Attic", "Attic/2026"} <= set(listed), listed
    assert ok(m.select("Attic/2026")) == [b"1"]
    d = ok(m.uid("FETCH", str(uid), "(UID)"))
    assert d and str(uid).encode() in d[0], d
    m.close()
    # Creating an existing mailbox, or deleting INBOX, is NO.
    assert m.create("Attic")[0] == "NO"
    assert m.delete("INBOX")[0] == "NO"
    ok(m.delete("Attic/2026"))
    ok(m.delete("Attic"))
    assert set(names()) == set(before)
    # LIST with a pattern; special-use mailboxes (RFC 6154) if any carry their flags.
    typ, data = m.list('""', "IN%")
    assert typ == "OK" and any(b"INBOX" in line for line in data), data
    m.logout()


def test_idle_timeout_is_configurable(buudien_bin, tmp_path):
    """[imap] idle_timeout ends a silent session with BYE; the keys of [imap] parse."""
    srv = Server(buudien_bin, tmp_path, sections=(
        '\n[imap]\nidle_timeout = "2s"\nmax_append = "1K"\n'
        "allow_plaintext_auth = false\nliteral_plus = false\n"
    ))
    srv.make_cert()
    srv.config.write_text(srv.config_text())
    srv.cli("domain", "add", DOMAIN)
    user, pw = srv.new_user("to")
    srv.start()
    try:
        m = srv.imap(user, pw)
        c = caps(m)
        assert "APPENDLIMIT=1024" in c, c
        typ, data = m.append("INBOX", None, None, b"Subject: big\r\n\r\n" + b"x" * 2000 + b"\r\n")
        assert typ == "NO" and b"TOOBIG" in data[0], (typ, data)
        with socket.create_connection(("127.0.0.1", srv.imap_port), timeout=TIMEOUT) as raw:
            f = raw.makefile("rb")
            assert f.readline().startswith(b"* OK")
            assert f.readline().startswith(b"* BYE"), "no BYE after the idle timeout"
        m.logout()
    finally:
        assert srv.stop() == 0, srv.log()


def test_bad_imap_config_is_one_line(buudien_bin, tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(f'hostname = "h"\ndata_dir = "{tmp_path}"\n[imap]\nmax_append = "lots"\n')
    r = subprocess.run([str(buudien_bin), "--config", str(cfg), "serve"],
                       capture_output=True, timeout=TIMEOUT)
    assert r.returncode != 0
    err = r.stderr.decode().strip()
    assert "line 4" in err and "\n" not in err, err


def test_sigterm_says_bye_to_imap_sessions(buudien_bin, tmp_path):
    """SIGTERM stops the IMAP server too: a logged-in session waiting for its next
    command, and one in IDLE, get an untagged BYE, and `serve` exits 0 well within its
    drain time."""
    srv = launch(buudien_bin, tmp_path)
    user, pw = srv.new_user("bye")
    m = srv.imap(user, pw)
    ok(m.select("INBOX"))
    tls = srv.imap_ssl(user, pw)
    idling = srv.imap(user, pw)
    ok(idling.select("INBOX"))
    idling.send(b"i1 IDLE\r\n")
    assert idling.readline().startswith(b"+"), "IDLE not accepted"
    start = time.monotonic()
    srv.proc.send_signal(signal.SIGTERM)
    for client in (m, tls, idling):
        line = client.readline()
        assert line.startswith(b"* BYE"), line
    code = srv.stop()
    took = time.monotonic() - start
    assert code == 0, srv.log()
    assert took < 10, f"serve took {took:.1f} s to stop with IMAP sessions open"


def test_authenticate_plain(imap_server):
    """AUTHENTICATE PLAIN (RFC 4616) as imaplib sends it: empty challenge, then the
    response, over implicit TLS."""
    user, pw = imap_server.new_user("ap")
    m = imap_server.imap_ssl()
    assert "AUTH=PLAIN" in caps(m)
    typ, data = m.authenticate("PLAIN", lambda _: f"\0{user}\0{pw}".encode())
    assert typ == "OK", data
    assert ok(m.select("INBOX")) == [b"0"]
    m.logout()
    m = imap_server.imap_ssl()
    with pytest.raises(imaplib.IMAP4.error):
        m.authenticate("PLAIN", lambda _: f"\0{user}\0wrong".encode())
    m.logout()


def scram_client(user: str, password: str, nonce: str | None = None):
    """A SCRAM-SHA-256 client (RFC 5802, RFC 7677) as an imaplib authobject. Returns
    (authobject, state); state["final"] is the server's final message."""
    nonce = nonce or base64.b64encode(os.urandom(18)).decode()
    name = user.replace("=", "=3D").replace(",", "=2C")
    first_bare = f"n={name},r={nonce}"
    state: dict = {"step": 0}

    def step(challenge: bytes) -> bytes:
        state["step"] += 1
        if state["step"] == 1:
            return ("n,," + first_bare).encode()
        if state["step"] == 2:
            server_first = challenge.decode()
            attrs = dict(kv.split("=", 1) for kv in server_first.split(","))
            assert attrs["r"].startswith(nonce), server_first
            salted = hashlib.pbkdf2_hmac("sha256", password.encode(),
                                         base64.b64decode(attrs["s"]), int(attrs["i"]))
            client_key = hmac.new(salted, b"Client Key", "sha256").digest()
            without_proof = f"c=biws,r={attrs['r']}"
            auth_msg = f"{first_bare},{server_first},{without_proof}".encode()
            sig = hmac.new(hashlib.sha256(client_key).digest(), auth_msg, "sha256").digest()
            proof = bytes(a ^ b for a, b in zip(client_key, sig))
            server_key = hmac.new(salted, b"Server Key", "sha256").digest()
            state["expected"] = b"v=" + base64.b64encode(
                hmac.new(server_key, auth_msg, "sha256").digest())
            return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()
        state["final"] = challenge
        return b""

    return step, state


def test_scram_client_matches_rfc7677_example():
    """The test's SCRAM client against the example exchange of RFC 7677 §3."""
    step, state = scram_client("user", "pencil", nonce="rOprNGfwEbeRWgbNEkqO")
    assert step(b"") == b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
    final = step(b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                 b"s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")
    assert final == (b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                     b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
    assert state["expected"] == b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="


def test_authenticate_scram_sha_256(imap_server):
    """SCRAM-SHA-256 (RFC 7677) over TLS: the server proves it knows the password too
    (its final message verifies)."""
    user, pw = imap_server.new_user("sc")
    m = imap_server.imap_ssl()
    c = caps(m)
    assert "AUTH=SCRAM-SHA-256" in c, f"SCRAM-SHA-256 not offered: {sorted(c)}"
    step, state = scram_client(user, pw)
    typ, data = m.authenticate("SCRAM-SHA-256", step)
    assert typ == "OK", data
    assert state.get("final") == state["expected"], "server signature does not verify"
    ok(m.select("INBOX"))
    m.logout()
    m = imap_server.imap_ssl()
    step, _ = scram_client(user, "not the password")
    with pytest.raises(imaplib.IMAP4.error):
        m.authenticate("SCRAM-SHA-256", step)
    m.logout()


def test_literal_minus_by_default(imap_server):
    """LITERAL- by default (RFC 7888 §5): a non-synchronizing literal up to 4096
    octets is taken without a continuation request."""
    user, pw = imap_server.new_user("lm")
    m = imap_server.imap(user, pw)
    c = caps(m)
    assert "LITERAL-" in c and "LITERAL+" not in c, c
    msg = b"Subject: nonsync\r\n\r\nsmall\r\n"
    tag = m._new_tag()
    m.send(tag + b" APPEND INBOX {%d+}\r\n" % len(msg) + msg + b"\r\n")
    line = m.readline()
    assert line.startswith(tag + b" OK"), line
    m.logout()


def test_literal_plus_when_configured(buudien_bin, tmp_path):
    """[imap] literal_plus = true: LITERAL+ instead of LITERAL-, and a
    non-synchronizing literal above 4096 octets is accepted (RFC 7888 §4)."""
    srv = Server(buudien_bin, tmp_path, sections="\n[imap]\nliteral_plus = true\n")
    srv.make_cert()
    srv.config.write_text(srv.config_text())
    srv.cli("domain", "add", DOMAIN)
    user, pw = srv.new_user("lp")
    srv.start()
    try:
        m = srv.imap(user, pw)
        c = caps(m)
        assert "LITERAL+" in c and "LITERAL-" not in c, c
        msg = b"Subject: big nonsync\r\n\r\n" + b"x" * 10000 + b"\r\n"
        tag = m._new_tag()
        m.send(tag + b" APPEND INBOX {%d+}\r\n" % len(msg) + msg + b"\r\n")
        line = m.readline()
        assert line.startswith(tag + b" OK"), line
        m.logout()
    finally:
        assert srv.stop() == 0, srv.log()


def test_imaps_without_certificate_is_a_config_error(buudien_bin, tmp_path):
    """`[listen] imaps` without `[tls]`: serve refuses to start, in one line."""
    cfg = tmp_path / "buudien.toml"
    cfg.write_text(f'hostname = "h"\ndata_dir = "{tmp_path / "data"}"\n'
                   f'[listen]\nimaps = ["127.0.0.1:0"]\n')
    r = subprocess.run([str(buudien_bin), "--config", str(cfg), "serve"],
                       capture_output=True, timeout=TIMEOUT)
    err = r.stderr.decode()
    assert r.returncode != 0, err
    assert "imaps needs a certificate" in err, err


def test_imap_without_tls_serves_loopback(buudien_bin, tmp_path):
    """`[listen] imap` without `[tls]`: no STARTTLS offered, LOGIN from loopback."""
    srv = Server(buudien_bin, tmp_path)
    text = srv.config_text()
    text = text[: text.index("\n[tls]")] + text[text.index("\n[pop3]"):]
    text = re.sub(r"(?m)^(pop3s|imaps) = .*\n", "", text)
    srv.config.write_text(text)
    srv.pop3s_port = srv.imaps_port = None
    srv.cli("domain", "add", DOMAIN)
    user, pw = srv.new_user("nt")
    srv.start()
    try:
        m = srv.imap()
        c = caps(m)
        assert "STARTTLS" not in c and "AUTH=PLAIN" in c, c
        ok(m.login(user, pw))
        m.logout()
    finally:
        assert srv.stop() == 0, srv.log()


def test_international_mailbox_names(imap_server):
    """A mailbox with a non-ASCII name: created in modified UTF-7 by an IMAP4rev1
    client (RFC 3501 §5.1.3), listed in UTF-8 to a client that enabled UTF8=ACCEPT
    (RFC 9051 §5.1, RFC 6855), and the same mailbox either way."""
    user, pw = imap_server.new_user("u8")
    m = imap_server.imap(user, pw)
    ok(m.create("Entw&APw-rfe"))
    typ, data = m.list('""', "Entw*")
    assert typ == "OK" and any(line.endswith(b"Entw&APw-rfe") or
                               line.endswith(b'"Entw&APw-rfe"') for line in data), data
    appended_uid(m, "Entw&APw-rfe", mail("draft"))
    m.logout()

    m = imap_server.imap(user, pw)
    typ, data = m.enable("UTF8=ACCEPT")
    assert typ == "OK", data
    typ, data = m.list('""', "Entw*")
    assert typ == "OK", data
    assert any("Entwürfe".encode() in line for line in data), data
    typ, data = m.select('"Entwürfe"', readonly=True)
    assert (typ, data) == ("OK", [b"1"]), (typ, data)
    m.logout()
