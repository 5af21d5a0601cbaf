"""Connection limits ([limits]): one client address cannot take the slots real users
need. An address over its limit is told so in its protocol's words (IMAP BYE, POP3
-ERR [SYS/TEMP], SMTP 421 4.7.0) and the slot comes back when a connection ends."""

import socket
import time

from conftest import TIMEOUT


def dial(port: int, source: str = "127.0.0.1") -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT,
                                 source_address=(source, 0))
    return s


def first_line(s: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\r\n"):
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def admitted(port: int, source: str = "127.0.0.1") -> socket.socket:
    """A connection that got the greeting: retried for a few seconds, since the
    server frees a slot when the session behind a closed connection has ended (the
    start-up probes' sessions, or one the test just closed)."""
    deadline = time.monotonic() + 5
    while True:
        s = dial(port, source)
        line = first_line(s)
        if line.startswith(b"* OK"):
            return s
        s.close()
        assert time.monotonic() < deadline, line
        time.sleep(0.05)


def test_per_address_limit_refuses_in_each_protocol(launcher):
    srv = launcher(sections="[limits]\nmax_connections_per_ip = 3\n")
    held = [admitted(srv.imap_port) for _ in range(3)]
    over = dial(srv.imap_port)
    assert first_line(over).startswith(b"* BYE [UNAVAILABLE] too many connections")
    assert over.recv(10) == b"", "closed after the refusal"
    over.close()
    line = first_line(dial(srv.smtp_port))
    assert line.startswith(b"421 4.7.0 "), line
    line = first_line(dial(srv.pop3_port))
    assert line.startswith(b"-ERR [SYS/TEMP] too many connections"), line
    # Another client address is not affected.
    other = dial(srv.imap_port, source="127.0.0.2")
    assert first_line(other).startswith(b"* OK")
    other.close()
    # A slot comes back when a connection ends.
    held.pop().close()
    held.append(admitted(srv.imap_port))
    for s in held:
        s.close()


def test_many_idle_connections_from_one_host_do_not_lock_out_a_user(launcher):
    """400 silent connections (slowloris) from one address: the default per-address
    limit (50) holds them off, and a real user from another address logs in."""
    srv = launcher()
    user, pw = srv.new_user("sl")
    attackers = []
    refused = 0
    for _ in range(400):
        s = dial(srv.imap_port, source="127.0.0.2")
        attackers.append(s)
    for s in attackers:
        line = first_line(s)
        if line.startswith(b"* BYE"):
            refused += 1
        else:
            assert line.startswith(b"* OK"), line
    assert refused == 350, f"{refused} refused of 400"
    m = srv.imap(user, pw)
    typ, data = m.select("INBOX")
    assert typ == "OK", data
    m.logout()
    for s in attackers:
        s.close()


def closed_within(s: socket.socket, seconds: float) -> tuple[bool, bytes]:
    """Reads until the server closes `s` or `seconds` pass: (closed, what it said)."""
    said = b""
    deadline = time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False, said
        s.settimeout(left)
        try:
            chunk = s.recv(4096)
        except socket.timeout:
            return False, said
        except OSError:
            return True, said
        if not chunk:
            return True, said
        said += chunk


def test_preauth_waits_shrink_under_load(launcher):
    """Near max_connections (from 75% of it) a client that has not logged in waits
    only `stressed_timeout` for each command, in every protocol (port 25 too), as
    Postfix's stress mode; a logged-in session keeps its idle timeout, and once the
    load is gone new clients get the usual pre-login wait (3 minutes) again."""
    srv = launcher(smtp=True, sections=(
        "[limits]\nmax_connections = 20\nmax_connections_per_ip = 20\n"
        'stressed_timeout = "1s"\n'))
    user, pw = srv.new_user("st")
    # 14 silent clients: under the threshold of 15, they wait the normal 3 minutes.
    held = [admitted(srv.imap_port) for _ in range(14)]
    # A real user logs in: 15 connections, the server is now under load.
    m = srv.imap(user, pw)
    for port, greeting, bye in [(srv.imap_port, b"* OK", b"* BYE"),
                                (srv.pop3_port, b"+OK", b"-ERR"),
                                (srv.submission_port, b"220", b"421"),
                                (srv.smtp_port, b"220", b"421")]:
        s = dial(port)
        start = time.monotonic()
        closed, said = closed_within(s, 30)
        s.close()
        assert closed, f"port {port}: still open after 30 s under load: {said!r}"
        assert said.startswith(greeting), said
        assert bye in said, said
        print(f"port {port}: closed after {time.monotonic() - start:.1f} s under load")
    # The logged-in user was not cut off by the short wait.
    time.sleep(2)
    typ, data = m.noop()
    assert typ == "OK", data
    m.logout()
    # Load gone (13 held, and the new one makes 14): a new client is not closed after
    # the short wait.
    held.pop().close()
    deadline = time.monotonic() + 10
    while True:
        s = dial(srv.imap_port)
        assert first_line(s).startswith(b"* OK")
        closed, said = closed_within(s, 3)
        s.close()
        if not closed:
            break
        # The logged-out session may not have released its slot yet; try again.
        assert time.monotonic() < deadline, f"still closed quickly without load: {said!r}"
    for s in held:
        s.close()
