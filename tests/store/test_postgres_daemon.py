"""smsbridge on PostgreSQL end to end: the config's `store.url`, the real daemon, `migrate`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bridge.config import ConfigError, load_config_text
from bridge.config.models import Config
from bridge.store import Connection, Dialect, migrations
from bridge.testing import DaemonFactory, post_json
from tests.paging.test_e2e import until
from tests.pg_cluster import Cluster

SMSBRIDGE = str(Path(sys.executable).parent / "smsbridge")
ALICE = "15102110086"
TOKEN = "hook-token-0123456789"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


# Tests take `pg_url` before `smsbridge_daemon`: the daemons stop before their database goes.


def config(url: str) -> str:
    return f"""
store:
  url: "{url}"
contacts:
  alice: "{ALICE}"
inputs:
  hook:
    type: webhook
    auth: {{token: {TOKEN}}}
rules:
  - name: page
    match: {{kind: alert}}
    sms: {{to: [alice], template: "[{{{{ status }}}}] {{{{ labels.alertname }}}}"}}
"""


async def test_an_alert_reaches_the_gateway_through_postgresql(
    pg_url: str, smsbridge_daemon: DaemonFactory
) -> None:
    daemon = await smsbridge_daemon(config(pg_url))
    assert daemon.store.dialect is Dialect.POSTGRESQL
    status, _ = await post_json(daemon, "/hooks/hook", {"labels": {"alertname": "Disk"}}, BEARER)
    assert status == 200
    assert daemon.simulator is not None
    await daemon.simulator.state.wait_for(lambda s: len(s.messages) == 1)
    assert daemon.simulator.state.messages[0].content == "[firing] Disk"
    assert daemon.simulator.state.messages[0].mobile == ALICE

    def sent(conn: Connection) -> list[tuple[object, ...]]:
        return [tuple(r) for r in conn.execute("SELECT recipient, state, ref FROM jobs")]

    async def settled() -> bool:
        return bool((await daemon.store.read(sent))[0][1] == "sent")

    await until(settled)  # the outcome is recorded just after the gateway's answer
    rows = await daemon.store.read(sent)
    assert [(r[0], r[1]) for r in rows] == [(ALICE, "sent")]
    assert rows[0][2]  # the gateway's msgid is kept


async def test_a_second_daemon_on_the_database_sends_nothing_twice(
    pg_url: str, smsbridge_daemon: DaemonFactory
) -> None:
    first = await smsbridge_daemon(config(pg_url))
    assert (await post_json(first, "/hooks/hook", {"labels": {"alertname": "A"}}, BEARER))[0] == 200
    assert first.simulator is not None
    await first.simulator.state.wait_for(lambda s: len(s.messages) == 1)
    await first.stop()
    second = await smsbridge_daemon(config(pg_url))
    assert (await post_json(second, "/hooks/hook", {"labels": {"alertname": "B"}}, BEARER))[
        0
    ] == 200
    assert second.simulator is not None
    await second.simulator.state.wait_for(lambda s: len(s.messages) == 1)
    await second.processor.drain()
    assert [m.content for m in second.simulator.state.messages] == ["[firing] B"]
    jobs = await second.store.read(lambda c: c.execute("SELECT count(*) FROM jobs").fetchone()[0])
    assert jobs == 2


def run_migrate(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SMSBRIDGE, "migrate", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_migrate_brings_an_empty_database_up_to_date(pg_cluster: Cluster, tmp_path: Path) -> None:
    with pg_cluster.database(template="template0") as url:
        path = tmp_path / "config.yaml"
        path.write_text(f'store:\n  url: "{url}"\n')
        first = run_migrate(path)
        assert first.returncode == 0, first.stderr
        where = url  # the URL has no password to drop
        assert f"{where}: schema version 0 -> {migrations.latest()}" in first.stdout
        assert "  4: durable timers; incidents and their pages" in first.stdout
        second = run_migrate(path)
        assert second.returncode == 0, second.stderr
        assert f"{where}: schema version {migrations.latest()}, up to date" in second.stdout


def test_migrate_says_why_it_cannot_reach_the_database(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text('store:\n  url: "postgresql://app:hunter2@127.0.0.1:1/pager"\n')
    result = run_migrate(path)
    assert result.returncode != 0
    assert "postgresql://app@127.0.0.1:1/pager" in result.stderr
    assert "hunter2" not in result.stderr + result.stdout


def load(text: str, base: Path = Path()) -> Config:
    return load_config_text(text, "smsbridge.yaml", Config, base)


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(text)
    return [issue.render() for issue in info.value.issues]


def test_store_url_or_path_not_both() -> None:
    found = problems('store:\n  path: x.sqlite3\n  url: "postgresql://db/pager"\n')
    assert len(found) == 1
    assert found[0].startswith("smsbridge.yaml:1:1: store: ")
    assert "set one of path (SQLite) or url (PostgreSQL), not both" in found[0]


def test_store_url_must_be_postgresql_and_is_never_repeated() -> None:
    (found,) = problems('store:\n  url: "mysql://root:hunter2@db/pager"\n')
    assert found.startswith("smsbridge.yaml:2")
    assert "expected a postgresql:// URL" in found
    assert "hunter2" not in found


def test_store_url_from_the_environment_and_the_password_from_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "db-password"
    secret.write_text("s3cret pass\n")
    loaded = load_config_text(
        f'store:\n  url: "${{DATABASE_URL}}"\n  password_file: {secret}\n',
        "smsbridge.yaml",
        Config,
        tmp_path,
        environ={"DATABASE_URL": "postgresql://app@db.example/pager"},
    )
    conninfo = loaded.store.conninfo()
    assert conninfo is not None
    assert "password='s3cret pass'" in conninfo
    assert "host=db.example" in conninfo
    assert "s3cret" not in repr(loaded.store)
    assert load("").store.conninfo() is None


def test_a_password_file_needs_a_url(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("x")
    with pytest.raises(ConfigError, match="password_file is for a PostgreSQL store"):
        load(f"store:\n  password_file: {secret}\n", tmp_path)
