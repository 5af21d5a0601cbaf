"""The command line: account management, `deliver` exit codes, config errors, aliases,
quickstart."""

import imaplib
import os
import poplib
import re
import ssl
import subprocess

from conftest import DOMAIN, TIMEOUT, Server, message


def stderr(r) -> str:
    return r.stderr.decode(errors="replace")


def test_user_add_needs_local_domain(server):
    r = server.cli("user", "add", "nobody@not-local.test", "--password-stdin",
                   input=b"pw-pw-pw-pw\n", check=False)
    assert r.returncode != 0
    assert "domain add" in stderr(r), stderr(r)


def test_user_list_and_remove(server):
    user, _ = server.new_user("ul")
    assert user in server.cli("user", "list").stdout.decode()
    r = server.cli("user", "add", user, "--password-stdin", input=b"again-again\n",
                   check=False)
    assert r.returncode != 0, "adding an existing account must fail"
    server.cli("user", "remove", user)
    assert user not in server.cli("user", "list").stdout.decode()
    r = server.deliver(user, message("after remove"), check=False)
    assert r.returncode == 67, stderr(r)


def test_domain_list(server):
    assert DOMAIN in server.cli("domain", "list").stdout.decode().split()


def test_deliver_exit_codes(server):
    user, pw = server.new_user("dx")

    r = server.deliver(f"nosuch@{DOMAIN}", message("unknown"), check=False)
    assert r.returncode == 67, stderr(r)
    assert len(stderr(r).strip().splitlines()) == 1, stderr(r)

    r = server.deliver("someone@elsewhere.test", message("foreign"), check=False)
    assert r.returncode == 67, stderr(r)

    r = server.deliver(user, b"", check=False)
    assert r.returncode == 65, stderr(r)
    r = server.deliver(user, b"this is not a message\n", check=False)
    assert r.returncode == 65, stderr(r)

    r = server.deliver(user, message("fine"), check=False)
    assert r.returncode == 0, stderr(r)
    assert r.stderr == b""

    # One unknown recipient fails the whole delivery: nothing is stored for the others.
    r = server.deliver([user, f"nosuch@{DOMAIN}"], message("partial"), check=False)
    assert r.returncode == 67, stderr(r)
    assert server.stat(user, pw)[0] == 1


def test_deliver_over_quota(server):
    user, pw = server.new_user("q", quota="1K")
    r = server.deliver(user, message("too big", "x" * 2048 + "\n"), check=False)
    assert r.returncode == 75, stderr(r)
    assert "quota" in stderr(r).lower(), stderr(r)
    r = server.deliver(user, message("small"), check=False)
    assert r.returncode == 0, stderr(r)
    assert server.stat(user, pw)[0] == 1


def test_deliver_return_path(server):
    user, pw = server.new_user("rp")
    server.deliver(user, message("with sender"), sender="Bounce@Example.org")
    p = server.pop(user, pw)
    _, lines, _ = p.retr(1)
    p.quit()
    assert lines[0].lower() == b"return-path: <bounce@example.org>", lines[0]


def test_unknown_config_key(server, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(server.config_text().replace(
        "[pop3]\n", "[pop3]\nno_such_setting = true\n"))
    r = server.cli("domain", "list", config=bad, check=False)
    assert r.returncode != 0
    assert "no_such_setting" in stderr(r), stderr(r)

    bad.write_text("frobnicate = 1\n" + server.config_text())
    r = server.cli("user", "list", config=bad, check=False)
    assert r.returncode != 0
    assert "frobnicate" in stderr(r), stderr(r)


def test_missing_config_mentions_quickstart(server, tmp_path):
    r = server.cli("user", "list", config=tmp_path / "absent.toml", check=False)
    assert r.returncode != 0
    assert "quickstart" in stderr(r), stderr(r)


def test_alias_delivers_to_target(server):
    target, pw = server.new_user("at")
    other, pw2 = server.new_user("ao")
    alias = f"alias-{target.split('@')[0]}@{DOMAIN}"
    server.cli("alias", "add", alias, target, other)
    assert alias in server.cli("alias", "list").stdout.decode()

    server.deliver(alias, message("via alias"))
    for who, secret in ((target, pw), (other, pw2)):
        p = server.pop(who, secret)
        assert p.stat()[0] == 1
        _, lines, _ = p.retr(1)
        assert b"Subject: via alias" in lines
        p.quit()

    server.cli("alias", "remove", alias)
    r = server.deliver(alias, message("after alias removed"), check=False)
    assert r.returncode == 67, stderr(r)


def test_passwd_changes_login(server):
    user, _ = server.new_user("pw")
    server.cli("user", "passwd", user, "--password-stdin", input=b"a new password\n")
    p = server.pop(user, "a new password")
    assert p.stat() == (0, 0)
    p.quit()


def test_quickstart_no_serve(server, tmp_path):
    """The README's first steps as a new user takes them: quickstart, the printed
    deliver command, then a POP3 client logs in with the printed password."""
    env = {k: v for k, v in os.environ.items() if k != "BUUDIEN_CONFIG"}
    r = subprocess.run([str(server.bin), "quickstart", "admin@quick.test", "--no-serve"],
                       cwd=tmp_path, env=env, capture_output=True, timeout=60,
                       stdin=subprocess.DEVNULL)
    out = r.stdout.decode(errors="replace") + stderr(r)
    assert r.returncode == 0, out
    config = tmp_path / "buudien.toml"
    assert config.is_file()
    m = re.search(r"(?im)^\s*password:\s*(\S+)\s*$", out)
    assert m, f"no password in the quickstart output:\n{out}"
    password = m.group(1)
    # The client settings name both IMAP ports.
    assert re.search(r"(?m)^\s*IMAP:\s+port \d+, SSL/TLS$", out), out
    assert re.search(r"(?m)^\s*IMAP:\s+port \d+, STARTTLS$", out), out

    r = subprocess.run([str(server.bin), "user", "list"], cwd=tmp_path, env=env,
                       capture_output=True, timeout=TIMEOUT)
    assert r.returncode == 0, stderr(r)
    assert "admin@quick.test" in r.stdout.decode()
    r = subprocess.run([str(server.bin), "domain", "list"], cwd=tmp_path, env=env,
                       capture_output=True, timeout=TIMEOUT)
    assert "quick.test" in r.stdout.decode()

    # The printed "put a test message in" command, as printed.
    m = re.search(r"(?m)^\s*(printf .*\| .*deliver admin@quick\.test)\s*$", out)
    assert m, f"no deliver example in the quickstart output:\n{out}"
    shell = m.group(1)
    # It names the executable that ran, so it works without buudien on PATH.
    assert os.path.realpath(server.bin) in shell or str(server.bin) in shell, shell
    r = subprocess.run(["bash", "-c", shell], cwd=tmp_path, env=env,
                       capture_output=True, timeout=TIMEOUT)
    assert r.returncode == 0, stderr(r)

    # Serve the quickstart config on free loopback ports instead of 110/995.
    qs = Server(server.bin, tmp_path)
    text = config.read_text()
    text = re.sub(r"(?m)^pop3 = .*$", f'pop3 = ["127.0.0.1:{qs.pop3_port}"]', text)
    text = re.sub(r"(?m)^pop3s = .*$", f'pop3s = ["127.0.0.1:{qs.pop3s_port}"]', text)
    text = re.sub(r"(?m)^imap = .*$", f'imap = ["127.0.0.1:{qs.imap_port}"]', text)
    text = re.sub(r"(?m)^imaps = .*$", f'imaps = ["127.0.0.1:{qs.imaps_port}"]', text)
    config.write_text(text)
    qs.start()
    try:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # self-signed for mail.quick.test
        p = poplib.POP3_SSL("127.0.0.1", qs.pop3s_port, timeout=TIMEOUT, context=ctx)
        p.user("admin@quick.test")
        p.pass_(password)
        assert p.stat()[0] == 1
        _, lines, _ = p.retr(1)
        assert lines[:3] == [b"Subject: hello", b"", b"first mail"], lines
        p.quit()
        # The same account over IMAPS, as the printed client settings say.
        m = imaplib.IMAP4_SSL("127.0.0.1", qs.imaps_port, timeout=TIMEOUT, ssl_context=ctx)
        m.login("admin@quick.test", password)
        typ, data = m.select("INBOX", readonly=True)
        assert (typ, data) == ("OK", [b"1"]), (typ, data)
        m.logout()
    finally:
        code = qs.stop()
    assert code == 0, f"quickstart server exited {code}:\n{qs.log()}"
