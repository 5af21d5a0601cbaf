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
  the delivery once the claim's lease ends (at least once).
"""

from __future__ import annotations

import os
import shutil
import smtplib
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
