"""Publisher confirms and transactions.

Every expectation here was checked against RabbitMQ 3.10.8. RabbitMQ may coalesce confirms
(`multiple=True`) and confirms unroutable messages before routed ones, so the tests check which
sequence numbers are confirmed, exactly once each, not the order or the grouping of the acks.
"""

from __future__ import annotations

import pika
import pytest
from amqp_raw import RawClient
from pika import spec
from pika.exceptions import ChannelClosedByBroker, UnroutableError
from pika_helpers import get_all, message_count

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def queue(broker, channel, unique):
    channel.queue_declare(unique)
    yield unique
    conn = broker.connect()
    try:
        conn.channel().queue_delete(unique)
    finally:
        conn.close()


@pytest.fixture
def raw(broker):
    client = RawClient(broker.host, broker.port)
    yield client
    client.close()


def read_confirms(raw: RawClient, channel: int, tags: set[int]) -> list[spec.Basic.Return]:
    """Read until every tag in `tags` is confirmed; check each is acked exactly once.

    Returns the Basic.Return commands seen, after checking each came before the ack of its
    message (for a confirm-mode channel, RabbitMQ sends Return, then Ack).
    """
    confirmed: set[int] = set()
    returns = []
    while confirmed != tags:
        cmd = raw.read_command()
        assert cmd.channel == channel
        if isinstance(cmd.method, spec.Basic.Return):
            returns.append(cmd)
            continue
        assert isinstance(cmd.method, spec.Basic.Ack), cmd.method
        tag = cmd.method.delivery_tag
        newly = {t for t in tags if t <= tag} - confirmed if cmd.method.multiple else {tag}
        assert newly and not newly & confirmed, f"tag(s) {newly} confirmed twice"
        assert newly <= tags, f"unexpected confirm {cmd.method}"
        confirmed |= newly
    return returns


# --- confirms ---------------------------------------------------------------------------------


def test_confirm_select_with_pika(channel, queue):
    channel.confirm_delivery()
    for i in range(20):
        channel.basic_publish("", queue, b"%d" % i)  # returns only once acked
    assert message_count(channel, queue) == 20


def test_confirms_cover_every_sequence_number(raw, queue, unique):
    raw.open_channel(1)
    ok = raw.rpc(1, spec.Confirm.Select(), spec.Confirm.SelectOk)
    assert isinstance(ok, spec.Confirm.SelectOk)
    for i in range(5):
        raw.publish(1, "", queue, b"m%d" % i)  # 1..5 routable
    raw.publish(1, "", unique + ".nowhere", b"u")  # 6 unroutable, not mandatory
    raw.publish(1, "amq.direct", "nobody", b"u")  # 7 unroutable
    raw.publish(1, "", queue, b"m5")  # 8
    returns = read_confirms(raw, 1, set(range(1, 9)))
    assert returns == []


def test_confirm_mandatory_unroutable_gets_return_then_ack(raw, unique):
    raw.open_channel(1)
    raw.rpc(1, spec.Confirm.Select(), spec.Confirm.SelectOk)
    raw.publish(
        1, "", unique + ".nowhere", b"back", spec.BasicProperties(message_id="x"), mandatory=True
    )
    ret = raw.read_command()
    assert isinstance(ret.method, spec.Basic.Return)
    assert (
        ret.method.reply_code,
        ret.method.reply_text,
        ret.method.exchange,
        ret.method.routing_key,
    ) == (312, "NO_ROUTE", "", unique + ".nowhere")
    assert ret.body == b"back" and ret.properties.message_id == "x"
    ack = raw.read_command()
    assert isinstance(ack.method, spec.Basic.Ack)
    assert (ack.method.delivery_tag, ack.method.multiple) == (1, False)


def test_confirm_mixed_mandatory(raw, queue, unique):
    raw.open_channel(1)
    raw.rpc(1, spec.Confirm.Select(), spec.Confirm.SelectOk)
    raw.publish(1, "", queue, b"a", mandatory=True)  # 1
    raw.publish(1, "", unique + ".nowhere", b"b", mandatory=True)  # 2, returned
    raw.publish(1, "", queue, b"c", mandatory=True)  # 3
    returns = read_confirms(raw, 1, {1, 2, 3})
    assert [(r.method.routing_key, r.body) for r in returns] == [(unique + ".nowhere", b"b")]


def test_confirm_sequence_is_per_channel(raw, queue):
    raw.open_channel(1)
    raw.open_channel(2)
    raw.rpc(1, spec.Confirm.Select(), spec.Confirm.SelectOk)
    raw.rpc(2, spec.Confirm.Select(), spec.Confirm.SelectOk)
    raw.publish(1, "", queue, b"a")
    raw.publish(1, "", queue, b"b")
    read_confirms(raw, 1, {1, 2})
    raw.publish(2, "", queue, b"c")
    read_confirms(raw, 2, {1})


def test_confirm_select_nowait_and_twice(raw, queue):
    raw.open_channel(1)
    raw.send_method(1, spec.Confirm.Select(nowait=True))
    raw.publish(1, "", queue, b"a")
    read_confirms(raw, 1, {1})
    raw.rpc(1, spec.Confirm.Select(), spec.Confirm.SelectOk)  # again: fine, numbering goes on
    raw.publish(1, "", queue, b"b")
    read_confirms(raw, 1, {2})


def test_publishes_before_confirm_select_are_not_counted(raw, queue):
    raw.open_channel(1)
    raw.publish(1, "", queue, b"before")
    raw.rpc(1, spec.Confirm.Select(), spec.Confirm.SelectOk)
    raw.publish(1, "", queue, b"after")
    read_confirms(raw, 1, {1})


def test_pika_confirm_mandatory_unroutable_raises(channel, queue, unique):
    channel.confirm_delivery()
    channel.basic_publish("", queue, b"ok", mandatory=True)
    with pytest.raises(UnroutableError) as exc:
        channel.basic_publish("", unique + ".nowhere", b"back", mandatory=True)
    assert [(m.method.reply_code, m.body) for m in exc.value.messages] == [(312, b"back")]
    channel.basic_publish("", queue, b"ok2")
    assert [body for _, _, body in get_all(channel, queue)] == [b"ok", b"ok2"]


# --- mode switching and errors ----------------------------------------------------------------


def test_confirm_then_tx_refused(channel):
    channel.confirm_delivery()
    with pytest.raises(ChannelClosedByBroker) as exc:
        channel.tx_select()
    assert (exc.value.reply_code, exc.value.reply_text) == (
        406,
        "PRECONDITION_FAILED - cannot switch from confirm to tx mode",
    )


def test_tx_then_confirm_refused(channel):
    channel.tx_select()
    with pytest.raises(ChannelClosedByBroker) as exc:
        channel.confirm_delivery()
    assert (exc.value.reply_code, exc.value.reply_text) == (
        406,
        "PRECONDITION_FAILED - cannot switch from tx to confirm mode",
    )


@pytest.mark.parametrize("op", ["commit", "rollback"])
def test_tx_without_select(connection, channel, op):
    with pytest.raises(ChannelClosedByBroker) as exc:
        getattr(channel, f"tx_{op}")()
    assert (exc.value.reply_code, exc.value.reply_text) == (
        406,
        "PRECONDITION_FAILED - channel is not transactional",
    )
    assert connection.is_open


def test_mode_switch_close_frames(raw):
    raw.open_channel(1)
    raw.rpc(1, spec.Tx.Select(), spec.Tx.SelectOk)
    raw.rpc(1, spec.Tx.Select(), spec.Tx.SelectOk)  # selecting twice is fine
    raw.send_method(1, spec.Confirm.Select())
    close = raw.expect(1, spec.Channel.Close)
    assert (close.reply_code, close.reply_text, close.class_id, close.method_id) == (
        406,
        "PRECONDITION_FAILED - cannot switch from tx to confirm mode",
        85,
        10,
    )
    raw.send_method(1, spec.Channel.CloseOk())
    raw.open_channel(2)
    raw.send_method(2, spec.Tx.Commit())
    close = raw.expect(2, spec.Channel.Close)
    assert (close.reply_code, close.reply_text, close.class_id, close.method_id) == (
        406,
        "PRECONDITION_FAILED - channel is not transactional",
        90,
        20,
    )
    raw.send_method(2, spec.Channel.CloseOk())


# --- transactions -----------------------------------------------------------------------------


def test_tx_publish_visible_only_after_commit(connection, channel, queue):
    tx = connection.channel()
    tx.tx_select()
    tx.basic_publish("", queue, b"a")
    tx.basic_publish("", queue, b"b", pika.BasicProperties(message_id="b"))
    assert message_count(channel, queue) == 0
    tx.tx_commit()
    assert message_count(channel, queue) == 2
    tx.basic_publish("", queue, b"c")
    tx.tx_rollback()
    tx.tx_commit()  # nothing pending: the rollback discarded c
    got = get_all(channel, queue)
    assert [(b, p.message_id) for _, p, b in got] == [(b"a", None), (b"b", "b")]


def test_tx_acks_applied_only_at_commit(connection, channel, queue):
    for body in (b"a", b"b", b"c"):
        channel.basic_publish("", queue, body)
    tx = connection.channel()
    tx.tx_select()
    assert [tx.basic_get(queue)[0].delivery_tag for _ in range(3)] == [1, 2, 3]
    tx.basic_ack(2, multiple=True)
    tx.close()  # never committed: all three come back
    got = get_all(channel, queue)
    assert [(b, m.redelivered) for m, _, b in got] == [(b"a", True), (b"b", True), (b"c", True)]


def test_tx_double_ack_fails_at_once(raw, queue):
    """In a transaction the tag is checked when the ack arrives, not at commit."""
    raw.open_channel(1)
    raw.publish(1, "", queue, b"a")
    raw.rpc(1, spec.Tx.Select(), spec.Tx.SelectOk)
    raw.send_method(1, spec.Basic.Get(queue=queue))
    assert raw.read_command().method.delivery_tag == 1
    raw.send_method(1, spec.Basic.Ack(delivery_tag=1))
    raw.send_method(1, spec.Basic.Ack(delivery_tag=1))
    raw.send_method(1, spec.Basic.Qos(prefetch_count=0))
    close = raw.expect(1, spec.Channel.Close)
    assert (close.reply_code, close.reply_text, close.class_id, close.method_id) == (
        406,
        "PRECONDITION_FAILED - unknown delivery tag 1",
        60,
        80,
    )
    raw.send_method(1, spec.Channel.CloseOk())


def test_tx_ack_commit_and_rollback(connection, channel, queue):
    for body in (b"a", b"b", b"c"):
        channel.basic_publish("", queue, body)
    tx = connection.channel()
    tx.tx_select()
    for _ in range(3):
        tx.basic_get(queue)
    tx.basic_ack(1)
    assert message_count(channel, queue) == 0
    tx.tx_rollback()  # the ack is dropped, the message stays unacked on this channel
    tx.basic_ack(2, multiple=True)
    tx.tx_commit()
    tx.close()  # only c (tag 3) was still unacked
    got = get_all(channel, queue)
    assert [(b, m.redelivered) for m, _, b in got] == [(b"c", True)]


def test_tx_reject_requeue_applied_at_commit(connection, channel, queue):
    channel.basic_publish("", queue, b"a")
    tx = connection.channel()
    tx.tx_select()
    method, _, _ = tx.basic_get(queue)
    tx.basic_reject(method.delivery_tag, requeue=True)
    assert message_count(channel, queue) == 0
    tx.tx_commit()
    assert message_count(channel, queue) == 1
    method, _, body = tx.basic_get(queue, auto_ack=True)
    assert (body, method.redelivered, method.delivery_tag) == (b"a", True, 2)


def test_tx_mandatory_unroutable_returned_at_commit(raw, queue, unique):
    raw.open_channel(1)
    raw.rpc(1, spec.Tx.Select(), spec.Tx.SelectOk)
    raw.publish(1, "", unique + ".nowhere", b"back", mandatory=True)
    raw.publish(1, "", queue, b"ok")
    raw.send_method(1, spec.Tx.Commit())
    ret = raw.read_command()
    assert isinstance(ret.method, spec.Basic.Return)
    assert (ret.method.reply_code, ret.method.reply_text, ret.body) == (312, "NO_ROUTE", b"back")
    raw.expect(1, spec.Tx.CommitOk)


def test_tx_uncommitted_publishes_lost_on_close(broker, channel, queue):
    conn = broker.connect()
    tx = conn.channel()
    tx.tx_select()
    tx.basic_publish("", queue, b"never")
    conn.close()
    assert message_count(channel, queue) == 0
