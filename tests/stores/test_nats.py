"""What only the NATS JetStream store has: its URL, the server checks at open (each one clear
line), a bucket that is not plait's, payload limits, and a server that goes away mid-call.

The shared behaviour is in tests/contract, run on NATS like on the others.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.js.api import StreamConfig

import plait
from plait.core import actions
from plait.core.rows import RecordRow, RunStatus
from plait.stores import nats as nats_store
from plait.stores import nats_codec as codec
from plait.stores import open_store
from plait.stores.nats import NatsStore
from plait.stores.nats_setup import check_server, hide_secrets, parse_url
from plait.testing.contract.helpers import NOW, chain, claim_one, ok, start
from tests import nats_server


@pytest.fixture
def base() -> str:
    return nats_server.require_server_url()


@pytest.fixture
def url(base: str, tmp_path: Path) -> str:
    return f"{base}?namespace={nats_server.namespace_for(str(tmp_path))}"


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[nats_server.NatsServer]:
    """A server of this test's own, to kill and restart."""
    nats_server.require_server_url()
    (tmp_path / "server").mkdir()
    server = nats_server.NatsServer(tmp_path / "server")
    server.start()
    try:
        yield server
    finally:
        server.stop()


# -- the URL ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        ("nats://?namespace=x", "names no host"),
        ("nats://:4222?namespace=x", "names no host"),
        ("nats://host:port?namespace=x", "port 'port' is not a number"),
        ("nats://host:4222?nmespace=x", "unknown option 'nmespace' (known: namespace,"),
        ("nats://host:4222/db", "a path ('/db') means nothing here"),
        ("nats://host:4222?namespace=a.b", "namespace='a.b' cannot name a bucket or a subject"),
        ("nats://host:4222?namespace=a*", "namespace='a*' cannot name"),
        ("nats://host:4222?namespace=a%20b", "namespace='a b' cannot name"),
        ("nats://host:4222?namespace=>", "namespace='>' cannot name"),
        ("nats://host:4222?namespace=", "namespace='' cannot name"),
        ("nats://host:4222?connect_timeout=soon", "connect_timeout='soon' is not a number"),
        ("nats://host:4222?blob_threshold=lots", "blob_threshold='lots'"),
        ("nats://host:4222?replicas=7", "replicas='7' is not a number of replicas from 1 to 5"),
        (
            "nats://host:4222?batch_limit=1",
            "batch_limit='1' is not a number of messages from 2 to 1,000,000 (the server's "
            "limits.batch.max_msgs)",
        ),
        ("nats://host:4222?batch_limit=many", "batch_limit='many' is not a number of messages"),
        ("nats://host:4222?batch_limit=1000001", "batch_limit='1000001' is not a number"),
    ],
)
def test_a_bad_url_is_refused_naming_the_problem(bad: str, says: str) -> None:
    with pytest.raises(plait.StoreError) as caught:
        open_store(bad)
    assert says in str(caught.value)


def test_a_url_names_servers_namespace_and_credentials() -> None:
    parsed = parse_url("nats://alice:s3cret@h1:4223,h2?namespace=orders&blob_threshold=100")
    assert parsed.servers == ("nats://h1:4223", "nats://h2:4222")
    assert parsed.namespace == "orders"
    assert parsed.bucket == "plait_orders"
    assert parsed.blob_threshold == 100
    assert parsed.options == {"user": "alice", "password": "s3cret"}
    assert "s3cret" not in parsed.shown
    assert hide_secrets("nats://h:1?token=abc") == "nats://h:1?token=***"
    assert parse_url("nats://h").namespace == "default"


@pytest.mark.parametrize(
    "name", ["r1", "a.b", "run 42", "x*y>z", "émoji-🙂", "", "=", "fan/later", "a=2E"]
)
def test_names_become_kv_tokens_and_back(name: str) -> None:
    token = codec.token(name)
    assert re.fullmatch(r"[A-Za-z0-9_/=-]+", token), token  # no `.`, `*`, `>` or space
    assert codec.name_of(token) == name
    assert codec.split(codec.key("steps", name, "0")) == ["steps", name, "0"]


def test_an_unknown_scheme_lists_nats() -> None:
    with pytest.raises(plait.StoreError) as caught:
        open_store("natss://host")
    assert "nats://host:4222?namespace=NAME" in str(caught.value)


# -- the server, checked at open --------------------------------------------------------------


async def test_an_unreachable_server_is_one_clear_line() -> None:
    port = nats_server.free_port()
    store = open_store(f"nats://127.0.0.1:{port}?namespace=x")
    started = time.monotonic()
    with pytest.raises(plait.StoreError) as caught:
        await store.open()
    assert time.monotonic() - started < 5
    message = str(caught.value)
    assert f"cannot connect to NATS store nats://127.0.0.1:{port}" in message
    assert "is nats-server running" in message
    assert "\n" not in message


def test_a_server_older_than_2_12_is_refused_naming_the_version_and_the_feature() -> None:
    with pytest.raises(plait.StoreError) as caught:
        check_server(parse_url("nats://h"), (2, 9, 10), True)
    message = str(caught.value)
    assert "nats-server 2.9.10 is too old" in message
    assert "2.12 or newer for atomic batch publish" in message


async def test_the_debian_server_on_this_machine_is_refused_if_there_is_one() -> None:
    """Debian's nats-server 2.9 (4222 on the development machine): a real old server."""
    try:
        nc = await nats.connect(
            "nats://127.0.0.1:4222", connect_timeout=1, max_reconnect_attempts=0
        )
    except Exception:
        pytest.skip("no nats-server on 127.0.0.1:4222")
    version = nc.connected_server_version
    await nc.close()
    if (version.major, version.minor) >= (2, 12):
        pytest.skip(f"the server on 4222 is {version}, not an old one")
    store = open_store("nats://127.0.0.1:4222?namespace=plait_old_check")
    with pytest.raises(plait.StoreError) as caught:
        await store.open()
    assert f"nats-server {version.major}.{version.minor}" in str(caught.value)
    assert "too old" in str(caught.value)


async def test_a_server_without_jetstream_is_refused(tmp_path: Path) -> None:
    nats_server.require_server_url()
    (tmp_path / "plain").mkdir()
    server = nats_server.NatsServer(tmp_path / "plain", jetstream=False)
    server.start()
    try:
        store = open_store(f"{server.url}?namespace=x")
        with pytest.raises(plait.StoreError) as caught:
            await store.open()
        assert "JetStream is not enabled" in str(caught.value)
        assert "-js" in str(caught.value)
    finally:
        server.stop()


async def test_a_user_without_permission_is_told_so_at_open(tmp_path: Path) -> None:
    """The server answers a request the user may not publish with an error apart, and nats-py
    drops the connection: the open says why at once, not after a timeout."""
    nats_server.require_server_url()
    (tmp_path / "locked").mkdir()
    users = (
        'authorization { users = [ {user: "plain", password: "pw", '
        'permissions: {publish: {deny: ["$JS.API.>"]}}} ] }'
    )
    server = nats_server.NatsServer(tmp_path / "locked", extra=users)
    server.start()
    try:
        store = open_store(f"nats://plain:pw@127.0.0.1:{server.port}?namespace=locked")
        began = time.monotonic()
        with pytest.raises(plait.StoreError) as caught:
            await store.open()
        assert time.monotonic() - began < 8  # not a request timeout (10 s)
        assert str(caught.value).startswith(
            f"NATS store nats://plain:***@127.0.0.1:{server.port}?namespace=locked: this user "
            "may not use the store's subjects: Error: nats: permissions violation for publish "
            'to "$js.api.info". It needs to publish on $JS.API.>, $KV.plait_locked.> and '
            "$O.plait_locked_blobs.>, and subscribe on _INBOX.> (docs/nats.md)"
        )
    finally:
        server.stop()


def wide(n: int) -> plait.Workflow:
    """A root and n steps after it: starting a run writes 1 + n / 16 pages and more."""
    wf = plait.Workflow(f"wide{n}")

    @wf.step
    def root() -> int:
        return 1

    for i in range(n):
        wf.step(name=f"s{i}")(lambda root: root)
    return wf


async def test_a_transaction_over_the_batch_limit_is_refused_and_the_limit_can_be_raised(
    tmp_path: Path,
) -> None:
    """A run of 1,000 steps is a transaction of about 70 keys: over batch_limit=50 the store
    refuses it; over the server's max_msgs of 50 the server does, and the store says which
    setting is lower; with both at 200 it starts. Nothing is written by a refused one."""
    nats_server.require_server_url()
    (tmp_path / "small").mkdir()
    (tmp_path / "raised").mkdir()
    server = nats_server.NatsServer(
        tmp_path / "small", jetstream_extra="limits { batch { max_msgs: 50 } }"
    )
    server.start()
    wf = wide(1000)
    try:
        url = f"{server.url}?namespace=small&batch_limit=50"
        async with plait.Engine(url) as engine:
            with pytest.raises(plait.StoreError) as caught:
                await engine.start_async(wf, run_id="w")
            assert str(caught.value).startswith(f"NATS store {url}: this transaction writes ")
            assert str(caught.value).endswith(
                " keys, over the limit of 50 messages in one atomic batch; nothing was written "
                "(raise the server's jetstream { limits { batch { max_msgs } } } and the URL's "
                "batch_limit=N with it: docs/nats.md)"
            )
            assert (await engine.list_runs_async()).runs == []

        url = f"{server.url}?namespace=small&batch_limit=200"
        async with plait.Engine(url) as engine:
            with pytest.raises(plait.StoreError) as caught:
                await engine.start_async(wf, run_id="w")
            assert (
                " messages (atomic publish batch is too large: 50): its jetstream { limits { "
                "batch { max_msgs } } } is lower than this URL's batch_limit=200; nothing was "
                "written" in str(caught.value)
            )
            assert (await engine.list_runs_async()).runs == []
    finally:
        server.stop()

    raised = nats_server.NatsServer(
        tmp_path / "raised", jetstream_extra="limits { batch { max_msgs: 200 } }"
    )
    raised.start()
    try:
        async with plait.Engine(f"{raised.url}?namespace=small&batch_limit=200") as engine:
            await engine.start_async(wf, run_id="w")
            assert len(await engine.steps_async("w")) == 1001
    finally:
        raised.stop()


async def test_a_missing_store_is_refused_without_create(url: str) -> None:
    store = open_store(url, create=False)
    with pytest.raises(plait.StoreError) as caught:
        await store.open()
    assert "no plait store in namespace" in str(caught.value)


async def test_a_bucket_made_by_something_else_is_refused_and_left_untouched(
    base: str, url: str
) -> None:
    namespace = parse_url(url).namespace
    nc = await nats.connect(base)
    js = nc.jetstream()
    try:
        kv = await js.create_key_value(bucket=f"plait_{namespace}")
        await kv.put("theirs", b"precious")
        store = open_store(url)
        with pytest.raises(plait.StoreError) as caught:
            await store.open()
        message = str(caught.value)
        assert f"the stream KV_plait_{namespace} exists but was not made by plait" in message
        assert "left untouched" in message
        info = await js.stream_info(f"KV_plait_{namespace}")
        assert not info.config.allow_atomic
        assert "plait-store" not in (info.config.metadata or {})
        assert (await kv.get("theirs")).value == b"precious"
    finally:
        await js.delete_stream(f"KV_plait_{namespace}")
        await nc.close()


async def test_the_bucket_is_made_for_atomic_batches_and_marked_as_plaits(
    base: str, url: str
) -> None:
    store = open_store(url)
    await store.open()
    await store.close()
    nc = await nats.connect(base)
    try:
        info = await nc.jetstream().stream_info(f"KV_plait_{parse_url(url).namespace}")
        config: StreamConfig = info.config
        assert config.allow_atomic and (config.metadata or {})["plait-store"] == "1"
        assert config.max_msgs_per_subject == 1
    finally:
        await nc.close()


# -- payloads --------------------------------------------------------------------------------


async def test_a_payload_over_the_message_limit_is_a_clear_error_and_nothing_is_written(
    url: str,
) -> None:
    store = open_store(url)
    await store.open()
    try:
        doc = b'"' + b"x" * 2_000_000 + b'"'
        with pytest.raises(plait.StoreError) as caught:
            await store.put_record(RecordRow("c", "k", doc, 0, time.time()), None)
        message = str(caught.value)
        assert "over the server's max_payload of 1048576 bytes" in message
        assert "nothing was written" in message
        assert await store.get_record("c", "k") is None
    finally:
        await store.close()


async def test_a_big_step_output_goes_to_a_blob_whatever_the_threshold(url: str) -> None:
    """A row is one message: the store caps its threshold so a page of steps always fits."""
    store = open_store(f"{url}&blob_threshold=100000000")
    assert store.blob_threshold <= 16 * 1024


# -- a server that goes away ------------------------------------------------------------------


async def test_a_server_gone_mid_use_is_a_store_error_and_the_store_recovers(
    own_server: nats_server.NatsServer,
) -> None:
    store = open_store(f"{own_server.url}?namespace=gone")
    await store.open()
    try:
        plan = chain()
        await store.save_workflow(plan)
        await start(store, plan, "r1")
        own_server.kill()
        await asyncio.sleep(0.2)
        with pytest.raises(plait.StoreError) as caught:
            await store.get_run("r1")
        assert "the server went away" in str(caught.value)
        assert "workers retry" in str(caught.value)
        own_server.start()
        deadline = time.monotonic() + 15
        while True:
            try:
                run = await store.get_run("r1")
                break
            except plait.StoreError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)
        assert run is not None and run.id == "r1"
    finally:
        await store.close()


def test_the_store_reports_the_server_and_its_sync_setting(url: str) -> None:
    store = open_store(url)
    assert isinstance(store, NatsStore)
    asyncio.run(store.open())
    try:
        assert store.server_version.startswith("2.")
        assert store.sync_always is True  # the shared server: sync_interval always, VARZ readable
    finally:
        asyncio.run(store.close())


@pytest.mark.parametrize(
    ("sync", "varz", "safe", "says"),
    [
        ("always", True, True, "the server fsyncs every write before it acknowledges it"),
        (
            "2m",
            True,
            False,
            "the server does not fsync every write: acknowledged commits may be lost on a power "
            "failure; set `sync_interval: always` in its jetstream block",
        ),
        (
            "always",
            False,
            None,
            "the server's sync_interval is not known (this user may not read the server's "
            "VARZ): set `sync_interval: always` in its jetstream block to be sure",
        ),
    ],
)
async def test_doctor_reads_the_servers_sync_setting(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    sync: str,
    varz: bool,
    safe: bool | None,
    says: str,
) -> None:
    nats_server.require_server_url()
    server = nats_server.NatsServer(tmp_path, sync=sync, varz=varz)
    server.start()
    try:
        async with plait.Engine(f"{server.url}?namespace=doc") as engine:
            [durability] = [c for c in await engine.doctor_async() if c.name == "durability"]
        assert durability.says == says
        assert durability.status == ("ok" if safe else "warn")
        assert durability.settings == {
            "sync_interval": {True: "always", False: "periodic", None: "unknown"}[safe],
            "replicas": "1",
        }
        warned = "the server does not fsync every write" in caplog.text  # at open
        assert warned is (safe is False)
    finally:
        server.stop()


async def test_a_key_written_elsewhere_while_a_commit_goes_out_is_a_conflict_not_lost(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A commit expects the revisions its transaction was decided on. Another process cancels
    the run while this one's completion of a step is on its way out, and this replica catches
    up with the cancel before the batch is published: the batch must conflict (and the
    completion run again on what the replica now has), never write the run back as it was
    before the cancel (a lost update: the cancel gone)."""
    plan = chain("lost", 3)
    mine, other = NatsStore(url), NatsStore(url)
    await mine.open()
    await other.open()
    try:
        await mine.save_workflow(plan)
        await start(mine, plan, "r")
        s0 = await claim_one(mine, plan, "s0")
        real = nats_store.publish
        published: list[int] = []

        async def publish(*args: Any) -> int:
            if args[2] == mine._writer:
                published.append(1)
                if len(published) == 1:  # the cancel lands, and this replica sees it, first
                    await other.apply(
                        lambda txn: actions.cancel(txn, "r", reason="stop", by="tester"), NOW + 1
                    )
                    await mine._catch_up(await mine._last_seq())
            return int(await real(*args))

        monkeypatch.setattr(nats_store, "publish", publish)
        await mine.complete([ok(s0, "A")], NOW + 2)
        assert len(published) == 2  # the first batch conflicted; the completion ran again
        for store in (mine, other):
            run = await store.get_run("r")
            assert run is not None and run.status is RunStatus.CANCELLED
    finally:
        await mine.close()
        await other.close()
