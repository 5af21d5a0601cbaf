"""Self-tests of the real peers (peers.py), without buudien: the Postfix peer delivers,
refuses and relays as the SMTP tests expect, dnsmasq serves the MX records, and the
scripted SMTP server follows its script. When these fail, the SMTP tests cannot mean
anything."""

import shutil
import smtplib
import ssl
import subprocess

import pytest

from peers import REJECTED


def unverified() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the peer's certificate is self-signed
    return ctx


def test_postfix_peer_delivers_over_starttls(postfix_peer):
    for port in (postfix_peer.port, postfix_peer.relay_port):
        with smtplib.SMTP(postfix_peer.address, port, local_hostname="client.test",
                          timeout=15) as s:
            s.ehlo()
            assert s.has_extn("starttls"), s.esmtp_features
            s.starttls(context=unverified())
            s.ehlo()
            subject = f"peer self-test {port}"
            refused = s.sendmail(
                "someone@example.test",
                ["bob@remote.test", "alice+tag@implicit.test"],
                f"Subject: {subject}\r\nMessage-ID: <{port}@client.test>\r\n\r\nhi\r\n",
            )
            assert refused == {}
        for rcpt in ("bob@remote.test", "alice@implicit.test"):
            msg = postfix_peer.wait_for(rcpt, subject.encode())
            # smtpd_tls_received_header: the TLS session shows in the Received header.
            assert b"(using TLS" in msg, msg[:800]
            assert b"Delivered-To: " in msg


def test_postfix_peer_refuses(postfix_peer):
    with smtplib.SMTP(postfix_peer.address, 25, local_hostname="client.test",
                      timeout=15) as s:
        s.ehlo()
        s.mail("someone@example.test")
        code, text = s.rcpt(REJECTED)
        assert (code, text[:5]) == (550, b"5.1.1"), (code, text)
        s.rset()
        s.mail("someone@example.test")
        code, text = s.rcpt("nosuch@remote.test")
        assert (code, text[:5]) == (550, b"5.1.1"), (code, text)
        s.rset()
        s.mail("someone@example.test")
        code, text = s.rcpt("victim@elsewhere.test")  # no open relay
        assert code == 554 and b"Relay access denied" in text, (code, text)


def test_postfix_peer_relays_example_test(postfix_peer, fake_smtp):
    """The reverse path's plumbing: transport_maps sends example.test on, and mail is
    injected with Postfix's own sendmail (-C DIR)."""
    target = fake_smtp()
    postfix_peer.route("example.test", "127.0.0.1", target.port)
    postfix_peer.sendmail("bob@remote.test", ["someone@example.test"],
                          b"Subject: relayed by postfix\nFrom: bob@remote.test\n\nhello\n")
    (tx,) = target.wait_delivered(1)
    assert tx.sender == "bob@remote.test"
    assert tx.recipients == ["someone@example.test"]
    assert b"Subject: relayed by postfix\r\n" in tx.data
    assert b"by mx.remote.test (Postfix" in tx.data


def test_dns_peer_answers(dns_peer, mx_address):
    dig = shutil.which("dig")
    if dig is None:
        pytest.fail("dig is not installed (test.sh installs bind9-dnsutils)")

    def ask(name, qtype):
        r = subprocess.run([dig, "@127.0.0.1", "-p", str(dns_peer.port), "+short",
                            "+time=2", "+tries=1", name, qtype],
                           capture_output=True, text=True, timeout=15)
        assert r.returncode == 0, r.stderr
        return r.stdout.split("\n")[0].strip()

    assert ask("remote.test", "MX") == "10 mx.remote.test."
    assert ask("mx.remote.test", "A") == mx_address
    assert ask("nullmx.test", "MX") == "0 ."
    assert ask("implicit.test", "MX") == ""
    assert ask("implicit.test", "A") == mx_address


def test_fake_smtp_follows_its_script(fake_smtp):
    fake = fake_smtp(defer_first=1, reject={"bad@remote.test": "550 5.1.1 no such user"})
    msg = b"Subject: fake\r\n\r\nbody\r\n.leading dot\r\n"
    with smtplib.SMTP("127.0.0.1", fake.port, timeout=15) as s:
        with pytest.raises(smtplib.SMTPRecipientsRefused) as e:
            s.sendmail("a@example.test", ["ok@remote.test"], msg)
        assert e.value.recipients["ok@remote.test"][0] == 451
        s.rset()
        refused = s.sendmail("a@example.test", ["ok@remote.test", "bad@remote.test"], msg)
        assert refused == {"bad@remote.test": (550, b"5.1.1 no such user")}
    (tx,) = fake.delivered()
    assert tx.recipients == ["ok@remote.test"]
    assert tx.data == msg
    assert fake.attempts() == 2
