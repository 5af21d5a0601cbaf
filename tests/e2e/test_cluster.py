"""Two buudien nodes on one PostgreSQL (`[store] backend = "postgres"`).

One throwaway PostgreSQL for the module (pgutil.py: `initdb` in a temporary directory,
a free loopback port, a watchdog). Missing PostgreSQL server binaries fail the tests
(test.sh installs Debian's `postgresql`); they are never skipped.

Two `buudien serve` processes, each with its own config file and data dir (TLS keys,
IMAP's spool), share the database. The tests check what a cluster promises:
- a message taken by SMTP on node A wakes an IMAP IDLE on node B (latency printed,
  asserted under 2 s);
- a POP3 session on A holds the maildrop: a login on B gets `-ERR [IN-USE]` until A
  quits;
- APPENDs racing from both nodes into one mailbox get distinct UIDs, ascending in a
  third session;
- a node killed with -9 while its queue sits on a slow remote: the other node finishes
  the delivery once the claim's lease ends (at least once);
- failed logins count across the nodes: guesses split over A and B are refused once
  their sum reaches the limit;
- a third session (CONDSTORE) polling while both nodes APPEND and STORE never learns
  of a UID or MODSEQ lower than one it has already seen.
"""

from __future__ import annotations

import os
import shutil
import smtplib
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from conftest import DOMAIN, PASSWORD, TIMEOUT, RawPop, Server
from imaputil import Idle, appended_uid, mail, ok
from peers import wait_until
from pgutil import Postgres, started

# Its nodes share a PostgreSQL of their own: with BUUDIEN_E2E_STORE=postgres the
# module would only repeat itself (conftest deselects it then, and says so).
pytestmark = pytest.mark.own_postgres(
    reason="its two nodes share a throwaway PostgreSQL of the module's own; it runs in "
           "the SQLite-store run")


# --- the throwaway PostgreSQL (pgutil.py) -----------------------------------------------


@pytest.fixture(scope="module")
def pg():
    server = started()
    yield server
    server.stop()


# --- two nodes --------------------------------------------------------------------------


class Node(Server):
    """A `buudien serve` on the shared database, with its own hostname (seen in the
    queue's EHLO), config, data dir and ports."""

    def __init__(self, binary: Path, root: Path, name: str, url: str, sections: str):
        super().__init__(binary, root, smtp=True, sections=sections, store_url=url,
                         pool_size=8)
        self.name = name

    def config_text(self, extra: str = "") -> str:
        text = super().config_text(extra)
        return text.replace(f'hostname = "mail.{DOMAIN}"',
                            f'hostname = "{self.name}.{DOMAIN}"')


QUEUE = """
[queue]
smarthost = "127.0.0.1:{port}"
smarthost_tls = "none"
retry = ["1s"]
lease = "6s"
poll_interval = "1s"

[limits]
login_failure_delay = "0s"
login_refuse_after = 6
"""


class Cluster:
    """Nodes A and B and their remote; unpacks as `a, b, remote`. Its `report()` puts
    both serve logs and PostgreSQL's into a failing test's report (conftest)."""

    def __init__(self, a: Node, b: Node, remote, pg: Postgres):
        self.a, self.b, self.remote, self.pg = a, b, remote, pg

    def __iter__(self):
        return iter((self.a, self.b, self.remote))

    def report(self) -> list[tuple[str, str]]:
        return [
            (f"buudien serve log of node {n.name} (tail)", n.log(8000)) for n in (self.a, self.b)
        ] + [("PostgreSQL log (tail)", self.pg.log())] + self.remote.report()


@pytest.fixture(scope="module")
def cluster(buudien_bin, pg):
    """Nodes A and B, with a scripted remote SMTP server as their smarthost."""
    # Imported here: peers.FakeSmtp is a plain class (the fake_smtp fixture is
    # function-scoped).
    from peers import FakeSmtp

    remote = FakeSmtp()
    nodes = []
    try:
        for name in ("a", "b"):
            root = Path(tempfile.mkdtemp(prefix=f"buudien-e2e-node-{name}-"))
            node = Node(buudien_bin, root, name, pg.url(), QUEUE.format(port=remote.port))
            nodes.append(node)
            node.make_cert()
            node.config.write_text(node.config_text())
        a, b = nodes
        r = a.cli("migrate")
        assert b"up to date" in r.stdout, r.stdout
        # The schema is there already: a second node's migrate finds nothing to do.
        b.cli("migrate")
        a.cli("domain", "add", DOMAIN)
        # One database: node B sees the domain node A added.
        assert DOMAIN in b.cli("domain", "list").stdout.decode()
        for node in nodes:
            node.start()
        yield Cluster(a, b, remote, pg)
    finally:
        failures = []
        for node in nodes:
            if node.proc is None:
                continue
            code = node.stop()
            if code != 0:
                failures.append(f"node {node.name} exited {code} after SIGTERM:\n{node.log()}")
            elif os.environ.get("BUUDIEN_E2E_KEEP") != "1":
                shutil.rmtree(node.root, ignore_errors=True)
        remote.close()
        assert not failures, "\n".join(failures)


# --- the tests --------------------------------------------------------------------------


def test_check_is_for_the_embedded_store(cluster):
    a, b, _ = cluster
    for node in (a, b):
        assert "store: PostgreSQL (schema version" in node.log(), node.log()
    r = a.cli("check", check=False)
    err = r.stderr.decode()
    assert r.returncode != 0 and "SQLite" in err and len(err.strip().splitlines()) == 1, err


def test_smtp_on_a_wakes_idle_on_b(cluster):
    a, b, _ = cluster
    user, pw = a.new_user("cx")
    m = b.imap(user, pw)
    assert ok(m.select("INBOX")) == [b"0"]
    with Idle(m) as idle:
        start = time.monotonic()
        with smtplib.SMTP("127.0.0.1", a.smtp_port, local_hostname="client.test",
                          timeout=TIMEOUT) as s:
            assert s.sendmail("someone@elsewhere.test", [user],
                              mail("across nodes", sender="someone@elsewhere.test",
                                   to=user)) == {}
        accepted = time.monotonic() - start
        idle.wait_for(rb"^\* 1 EXISTS\r\n$", timeout=5.0)
        latency = time.monotonic() - start
    print(f"\ncluster IDLE: EXISTS on node B {latency:.3f} s after the SMTP transaction "
          f"on node A started ({latency - accepted:.3f} s after its 250 to the end of data)")
    assert latency < 2.0, f"EXISTS on node B took {latency:.3f} s"
    d = m.fetch("1", "(BODY.PEEK[])")
    assert d[0] == "OK" and b"Subject: across nodes" in d[1][0][1], d
    m.logout()


def test_pop3_maildrop_lock_spans_nodes(cluster):
    a, b, _ = cluster
    user, pw = a.new_user("px")
    b.deliver(user, b"Subject: locked\n\nx\n")
    holder = a.pop(user, pw)
    assert holder.stat()[0] == 1
    other = RawPop(b.pop3_port)
    assert other.cmd(f"USER {user}").startswith(b"+OK")
    reply = other.cmd(f"PASS {pw}")
    assert reply.startswith(b"-ERR [IN-USE]"), reply
    other.close()
    holder.quit()
    # After A's QUIT the lock is gone at once (not after its lease).
    start = time.monotonic()
    p = b.pop(user, pw)
    assert p.stat()[0] == 1
    p.quit()
    assert time.monotonic() - start < 5


def test_concurrent_appends_from_both_nodes(cluster):
    a, b, _ = cluster
    user, pw = a.new_user("ax")
    setup = a.imap(user, pw)
    ok(setup.create("Shared"))
    setup.logout()
    uids: list[int] = []
    errors: list[str] = []
    lock = threading.Lock()
    gate = threading.Barrier(8)

    def one(node: Server, i: int) -> None:
        try:
            m = node.imap(user, pw)
            gate.wait(timeout=TIMEOUT)
            uid = appended_uid(m, "Shared", mail(f"race {node.name} {i}"))
            m.logout()
            with lock:
                uids.append(uid)
        except BaseException as e:  # reported below
            with lock:
                errors.append(f"{node.name}/{i}: {e!r}")

    threads = [threading.Thread(target=one, args=(node, i))
               for node in (a, b) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert len(uids) == 8 and len(set(uids)) == 8, sorted(uids)
    third = b.imap(user, pw)
    assert ok(third.select("Shared")) == [b"8"]
    typ, data = third.fetch("1:*", "(UID)")
    assert typ == "OK", data
    seen = [int(x.split(b"UID ")[1].rstrip(b")")) for x in data]
    assert seen == sorted(uids), (seen, sorted(uids))
    assert seen == sorted(seen) and len(set(seen)) == 8
    third.logout()


def test_kill9_node_during_slow_delivery_other_node_finishes(cluster):
    """The node whose queue sits on the slow remote's end of data is killed with -9; the
    other node claims the message once the lease (6 s) ends and delivers it: at least
    once, at most twice (the remote may have taken the first copy)."""
    a, b, remote = cluster
    user, _ = a.new_user("kx")
    rcpt = f"kill-node-{os.getpid()}@remote.test"
    remote.data_delay = 60.0
    start_tx = remote.attempts()
    submit_on(a, user, rcpt, mail("survives a node", sender=user, to=rcpt))
    wait_until(lambda: any(t.data is not None for t in remote.transactions[start_tx:]),
               "the message data at the slow remote", timeout=20, interval=0.05)
    # Which node is delivering: its EHLO is the last one the remote saw.
    ehlo = [x for x in remote.transcript if x.startswith("C: EHLO ")][-1]
    busy, other = (a, b) if ehlo == f"C: EHLO a.{DOMAIN}" else (b, a)
    assert ehlo == f"C: EHLO {busy.name}.{DOMAIN}", ehlo
    killed_at = time.monotonic()
    busy.kill9()
    remote.data_delay = 0.0
    after = remote.attempts()
    wait_until(lambda: any(t.reply.startswith("250") and rcpt in t.recipients
                           for t in remote.transactions[after:]),
               f"node {other.name} delivering after node {busy.name} died",
               timeout=40, interval=0.2)
    took = time.monotonic() - killed_at
    print(f"\ncluster queue: node {other.name} delivered {took:.1f} s after node "
          f"{busy.name} was killed (lease 6 s)")
    wait_until(lambda: rcpt not in other.cli("queue", "list").stdout.decode(),
               "the message to leave the queue", timeout=15, interval=0.3)
    copies = [t for t in remote.transactions[start_tx:]
              if t.data is not None and rcpt in t.recipients]
    assert 2 <= len(copies) <= 3, remote.transcript[-40:]
    assert all(b"Subject: survives a node\r\n" in t.data for t in copies)
    # Bring the killed node back, so the fixture stops both cleanly.
    busy.start()


def submit_on(node: Server, user: str, rcpt: str, msg: bytes) -> None:
    """Submission on `node` (STARTTLS, AUTH PLAIN) as a mail client does it."""
    with smtplib.SMTP("127.0.0.1", node.submission_port, local_hostname="client.test",
                      timeout=TIMEOUT) as s:
        s.ehlo()
        s.starttls(context=node.tls_context())
        s.ehlo()
        s.login(user, PASSWORD)
        assert s.sendmail(user, [rcpt], msg) == {}


def test_failed_logins_count_across_nodes(cluster):
    """Three wrong passwords on node A and three on node B from one address (127.0.0.7,
    under `login_refuse_after = 6` on each node alone): once both nodes have shared
    their failures through the database, each refuses that address without checking
    the password, while other addresses still log in."""
    a, b, _ = cluster
    user, pw = a.new_user("tx")
    source = "127.0.0.7"

    def pass_reply(node: Server, password: str) -> bytes:
        import socket
        with socket.create_connection(("127.0.0.1", node.pop3_port), timeout=TIMEOUT,
                                      source_address=(source, 0)) as s:
            f = s.makefile("rb")
            assert f.readline().startswith(b"+OK")
            s.sendall(f"USER {user}\r\n".encode())
            assert f.readline().startswith(b"+OK")
            s.sendall(f"PASS {password}\r\n".encode())
            return f.readline()

    for node in (a, b):
        for _ in range(3):
            reply = pass_reply(node, "wrong password")
            assert reply.startswith(b"-ERR [AUTH]"), reply
    # Both nodes have published their three; give each two rounds (1 s) to read them.
    wait_until(lambda: psql(cluster.pg, "SELECT count(*) FROM auth_events "
                                        "WHERE ip = '127.0.0.7' AND failed") == "6",
               "six failures in auth_events", timeout=10, interval=0.2)
    time.sleep(2.5)
    for node in (a, b):
        reply = pass_reply(node, pw)
        assert reply.startswith(b"-ERR [SYS/TEMP]"), (node.name, reply)
    # Another address is not affected, on either node.
    for node in (a, b):
        p = node.pop(user, pw)
        assert p.stat()[0] == 0
        p.quit()


def test_watcher_never_sees_uids_or_modseqs_go_back(cluster):
    """Two writers on each node APPEND and change flags in one mailbox while a third
    session on node B polls with NOOP (CONDSTORE enabled). Each poll's flag changes
    must carry MODSEQs above all the earlier polls', and its new messages UIDs above
    all earlier ones; at the end the watcher's view (kept up to date only by those
    polls) must equal a fresh session's. A change that became visible after a higher
    MODSEQ or UID would be missed by the polls and show up as a difference."""
    import re
    a, b, _ = cluster
    user, pw = a.new_user("wx")
    setup = a.imap(user, pw)
    ok(setup.create("Watch"))
    setup.logout()
    watcher = b.imap(user, pw)
    ok(watcher.enable("CONDSTORE"))
    ok(watcher.select("Watch"))
    errors: list[str] = []

    def writer(node: Server, n: int) -> None:
        try:
            m = node.imap(user, pw)
            mine: list[int] = []
            for i in range(12):
                mine.append(appended_uid(m, "Watch", mail(f"watch {node.name}{n} {i}")))
                ok(m.select("Watch"))
                for uid in mine[-3:]:
                    ok(m.uid("STORE", str(uid), "FLAGS", f"(k{node.name}{n}x{i})"))
                ok(m.close())
            m.logout()
        except BaseException as e:  # reported below
            errors.append(f"{node.name}{n}: {e!r}")

    threads = [threading.Thread(target=writer, args=(node, n))
               for node in (a, b) for n in range(2)]
    for t in threads:
        t.start()
    max_uid = max_modseq = 0
    polls = news = 0

    def texts(items) -> list[bytes]:
        return [x for x in items if isinstance(x, bytes)]

    def poll() -> None:
        nonlocal max_uid, max_modseq, polls, news
        ok(watcher.noop())
        modseqs = [int(x) for line in texts(watcher.untagged_responses.pop("FETCH", []))
                   for x in re.findall(rb"MODSEQ \((\d+)\)", line)]
        if modseqs:
            assert min(modseqs) > max_modseq, (sorted(modseqs), max_modseq)
            max_modseq = max(modseqs)
            news += 1
        watcher.untagged_responses.pop("EXISTS", None)
        typ, data = watcher.uid("FETCH", f"{max_uid + 1}:*", "(UID)")
        assert typ == "OK", data
        uids = [int(u) for line in texts(data) for u in re.findall(rb"UID (\d+)", line)]
        # (Unsolicited FETCHes of flag changes may come first, in any order.)
        new = sorted({u for u in uids if u > max_uid})
        if new:
            max_uid = max(new)
        polls += 1

    deadline = time.monotonic() + 120
    while any(t.is_alive() for t in threads):
        assert time.monotonic() < deadline, "writers did not finish"
        poll()
        time.sleep(0.02)
    for t in threads:
        t.join()
    poll()
    assert not errors, errors
    assert max_uid == 48, max_uid
    assert news >= 5, f"only {news} of {polls} polls saw changes: the race was not watched"

    def view(m) -> list[bytes]:
        """Every message's UID, flags and MODSEQ (\\Recent is the session's own)."""
        typ, data = m.fetch("1:*", "(UID FLAGS MODSEQ)")
        assert typ == "OK", data
        return sorted(re.sub(rb"\\Recent ?", b"", x) for x in texts(data))

    fresh = a.imap(user, pw)
    ok(fresh.select("Watch"))
    seen, truth = view(watcher), view(fresh)
    assert seen == truth, [(x, y) for x, y in zip(seen, truth) if x != y]
    fresh.logout()
    watcher.logout()
    print(f"\ncluster watch: {polls} polls, {news} with flag changes, last MODSEQ {max_modseq}")


def psql(pg: Postgres, sql: str) -> str:
    r = subprocess.run([str(pg.bin / "psql"), "-h", "127.0.0.1", "-p", str(pg.port), "-U",
                        "postgres", "-d", pg.db, "-Atc", sql],
                       capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout.decode().strip()
