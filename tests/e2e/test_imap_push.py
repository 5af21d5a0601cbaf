"""Changes made elsewhere reach an IMAP session: IDLE (RFC 9051 §6.3.13) woken by
`buudien deliver` and by an SMTP delivery, and a POP3 deletion seen as EXPUNGE.

Latencies are printed (`pytest -s`), never asserted beyond a generous bound: the
EXISTS must arrive within 5 s."""

import smtplib
import time

from conftest import PASSWORD, TIMEOUT, message
from imaputil import Idle, imap_server, mail, ok, pop_untagged  # noqa: F401


def test_idle_woken_by_deliver(imap_server):
    user, pw = imap_server.new_user("id")
    imap_server.deliver(user, message("before idle"))
    m = imap_server.imap(user, pw)
    assert ok(m.select("INBOX")) == [b"1"]
    with Idle(m) as idle:
        start = time.monotonic()
        imap_server.deliver(user, message("wakes idle"))
        delivered = time.monotonic() - start
        line, waited = idle.wait_for(rb"^\* 2 EXISTS\r\n$", timeout=5.0)
    print(f"\nIDLE: EXISTS {waited:.3f} s after `buudien deliver` started "
          f"(deliver itself took {delivered:.3f} s)")
    typ, data = m.fetch("2", "(BODY.PEEK[])")
    assert typ == "OK" and b"Subject: wakes idle" in data[0][1], data
    m.logout()


def test_idle_woken_by_smtp(imap_server):
    user, pw = imap_server.new_user("is")
    m = imap_server.imap(user, pw)
    assert ok(m.select("INBOX")) == [b"0"]
    with Idle(m) as idle:
        start = time.monotonic()
        with smtplib.SMTP("127.0.0.1", imap_server.smtp_port, local_hostname="client.test",
                          timeout=TIMEOUT) as s:
            assert s.sendmail("someone@elsewhere.test", [user],
                              mail("over smtp", sender="someone@elsewhere.test",
                                   to=user)) == {}
        line, waited = idle.wait_for(rb"^\* 1 EXISTS\r\n$", timeout=5.0)
    print(f"\nIDLE: EXISTS {waited:.3f} s after the SMTP transaction started")
    d = m.fetch("1", "(BODY.PEEK[])")
    assert d[0] == "OK" and b"Subject: over smtp" in d[1][0][1], d
    m.logout()


def test_idle_sees_flags_and_expunge_from_other_session(imap_server):
    user, pw = imap_server.new_user("io")
    for i in range(2):
        imap_server.deliver(user, message(f"idle other {i}"))
    m = imap_server.imap(user, pw)
    other = imap_server.imap(user, pw)
    ok(m.select("INBOX"))
    ok(other.select("INBOX"))
    with Idle(m) as idle:
        ok(other.store("1", "+FLAGS", "(\\Deleted)"))
        idle.wait_for(rb"^\* 1 FETCH \(.*\\Deleted", timeout=5.0)
        ok(other.expunge())
        idle.wait_for(rb"^\* 1 EXPUNGE\r\n$", timeout=5.0)
    other.logout()
    m.logout()


def test_pop3_dele_seen_as_expunge(imap_server):
    user, pw = imap_server.new_user("pe")
    for i in range(3):
        imap_server.deliver(user, message(f"pop then imap {i}"))
    m = imap_server.imap(user, pw)
    assert ok(m.select("INBOX")) == [b"3"]
    p = imap_server.pop(user, pw)
    assert p.stat()[0] == 3
    p.dele(2)
    p.quit()  # UPDATE state: the deletion happens now (RFC 1939 §6)
    pop_untagged(m, "EXPUNGE")
    ok(m.noop())
    assert pop_untagged(m, "EXPUNGE") == [b"2"], m.untagged_responses
    typ, data = m.fetch("1:*", "(BODY.PEEK[])")
    subjects = [x[1] for x in data if isinstance(x, tuple)]
    assert len(subjects) == 2 and not any(b"imap 1" in s for s in subjects), subjects
    m.logout()


def test_pop3_sees_imap_expunge(imap_server):
    user, pw = imap_server.new_user("ip")
    for i in range(2):
        imap_server.deliver(user, message(f"imap then pop {i}"))
    m = imap_server.imap(user, pw)
    ok(m.select("INBOX"))
    ok(m.store("1", "+FLAGS", "(\\Deleted)"))
    ok(m.expunge())
    m.logout()
    assert imap_server.stat(user, PASSWORD)[0] == 1


def test_noop_sees_delivery(imap_server):
    """Without IDLE, the next NOOP reports the new message (RFC 9051 §6.1.2)."""
    user, pw = imap_server.new_user("nd")
    m = imap_server.imap(user, pw)
    assert ok(m.select("INBOX")) == [b"0"]
    imap_server.deliver(user, message("seen at noop"))
    pop_untagged(m, "EXISTS")
    ok(m.noop())
    assert pop_untagged(m, "EXISTS") == [b"1"], m.untagged_responses
    m.logout()
