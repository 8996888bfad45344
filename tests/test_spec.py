"""The generated AMQP classes (trimq.amqp.spec): round trips of every method and of the basic
properties, byte-for-byte agreement with pika's own encoder, and the generator's --check."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pika.frame
import pika.spec
import pytest
from codec_strategies import (
    KINDS,
    METHOD_CLASSES,
    PROPERTY_KINDS,
    method_values,
    methods,
    pika_encode,
    strategy,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trimq.amqp import frames, spec
from trimq.amqp.codec import decode_table_typed
from trimq.errors import FRAME_ERROR, SYNTAX_ERROR, ConnectionError

ROOT = Path(__file__).resolve().parent.parent
SPEC_JSON = ROOT.parent / "shared" / "spec" / "amqp-rabbitmq-0.9.1.json"

FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def decode_arguments(cls: type, payload: bytes) -> Any:
    """cls.decode(payload, 4), checking the end offset where decode reports one."""
    result = cls.decode(payload, 4)
    if isinstance(result, tuple):  # decode() -> (method, end)
        method, end = result
        assert end == len(payload)
        return method
    return result


# --------------------------------------------------------------------------- round trips


def test_every_method_class_is_indexed_by_its_ids() -> None:
    assert len(METHOD_CLASSES) >= 60
    for cls in METHOD_CLASSES:
        assert spec.METHODS[cls.INDEX] is cls
        assert cls.INDEX == (cls.CLASS_ID << 16) | cls.METHOD_ID
        assert spec.CLASS_NAMES[cls.CLASS_ID] == cls.NAME.split(".")[0]


@pytest.mark.parametrize("cls", METHOD_CLASSES, ids=lambda cls: cls.NAME)
def test_method_with_default_arguments_round_trips(cls: type) -> None:
    method = cls()
    payload = method.encode()
    assert payload[:4] == struct.pack(">HH", cls.CLASS_ID, cls.METHOD_ID)
    assert decode_arguments(cls, payload) == method
    assert frames.decode_method(payload) == method


@pytest.mark.parametrize("cls", METHOD_CLASSES, ids=lambda cls: cls.NAME)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_method_round_trips_with_random_arguments(cls: type, data: Any) -> None:
    values = data.draw(method_values(cls))
    method = cls(**values)
    payload = method.encode()
    decoded = decode_arguments(cls, payload)
    assert type(decoded) is cls
    for name, value in values.items():
        assert getattr(decoded, name) == value, name
    assert decoded.encode() == payload
    assert frames.decode_method(payload) == method


def test_arguments_tables_keep_type_letters() -> None:
    table = {"x-max-length": ("b", 5), "x-message-ttl": ("l", 1000), "k": ("S", "v")}
    method = spec.QueueDeclare(queue="q", arguments=table)
    decoded = frames.decode_method(method.encode())
    assert decoded.arguments == table
    # a plain table field (not `arguments`) decodes to plain values
    start_ok = spec.ConnectionStartOk(client_properties={"product": "x", "n": 1})
    assert frames.decode_method(start_ok.encode()).client_properties == {"product": "x", "n": 1}


@FAST
@given(methods())
def test_every_truncation_of_a_method_is_a_connection_error(method: spec.Method) -> None:
    payload = method.encode()
    for cut in range(4, len(payload)):
        with pytest.raises(ConnectionError) as info:
            frames.decode_method(payload[:cut])
        assert info.value.code in (FRAME_ERROR, SYNTAX_ERROR)
        assert (info.value.class_id, info.value.method_id) == (method.CLASS_ID, method.METHOD_ID)


def test_bits_are_packed_lsb_first_in_one_octet() -> None:
    payload = spec.QueueDeclare(ticket=0, queue="", passive=True, auto_delete=True).encode()
    assert payload[4:] == b"\x00\x00" + b"\x00" + bytes([0b01001]) + b"\x00\x00\x00\x00"
    payload = spec.BasicNack(delivery_tag=7, multiple=False, requeue=True).encode()
    assert payload[4:] == struct.pack(">Q", 7) + b"\x02"


# --------------------------------------------------------------------------- basic properties

property_values = st.fixed_dictionaries({name: strategy(kind) for name, kind in PROPERTY_KINDS})


def test_basic_properties_have_the_fourteen_fields() -> None:
    assert [name for name, _ in PROPERTY_KINDS] == [
        "content_type",
        "content_encoding",
        "headers",
        "delivery_mode",
        "priority",
        "correlation_id",
        "reply_to",
        "expiration",
        "message_id",
        "timestamp",
        "type",
        "user_id",
        "app_id",
        "cluster_id",
    ]
    assert dict(PROPERTY_KINDS)["timestamp"] == "int64"
    assert dict(PROPERTY_KINDS)["delivery_mode"] == dict(PROPERTY_KINDS)["priority"] == "int8"


@FAST
@given(property_values, st.binary(max_size=6))
def test_basic_properties_round_trip_with_all_fields(values: dict[str, Any], prefix: bytes) -> None:
    props = spec.BasicProperties(**values)
    data = props.encode()
    assert struct.unpack_from(">H", data)[0] == 0xFFFC  # 14 flag bits, no continuation
    decoded, end = spec.BasicProperties.decode(prefix + data, len(prefix))
    assert end == len(prefix) + len(data)
    assert decoded == props
    for name, value in values.items():
        assert getattr(decoded, name) == value


@FAST
@given(st.fixed_dictionaries({}, optional={name: strategy(kind) for name, kind in PROPERTY_KINDS}))
def test_basic_properties_round_trip_with_some_fields(values: dict[str, Any]) -> None:
    props = spec.BasicProperties(**values)
    data = props.encode()
    decoded, end = spec.BasicProperties.decode(data, 0)
    assert end == len(data)
    assert decoded == props
    assert all(getattr(decoded, name) is None for name, _ in PROPERTY_KINDS if name not in values)


def test_basic_properties_skip_a_continuation_flag_word() -> None:
    data = struct.pack(">HH", 0x8001, 0) + b"\x0atext/plain"
    props, end = spec.BasicProperties.decode(data, 0)
    assert end == len(data)
    assert props == spec.BasicProperties(content_type="text/plain")


# --------------------------------------------------------------------------- pika agreement


def to_pika(method: spec.Method, values: dict[str, Any]) -> Any:
    pika_cls = pika.spec.methods[method.INDEX]
    instance = pika_cls.__new__(pika_cls)
    for name, value in values.items():
        setattr(instance, name, value)
    return instance


@FAST
@given(st.data(), st.integers(0, 65535))
def test_method_frames_match_pika_marshal(data: Any, channel: int) -> None:
    cls = data.draw(st.sampled_from(METHOD_CLASSES))
    values = data.draw(method_values(cls, pika_compatible=True))
    ours_values = dict(values)
    for name, kind in KINDS[cls]:
        if kind == "typed-table":  # as trimq holds it: the letters pika's encoder chose
            ours_values[name] = decode_table_typed(pika_encode(values[name]), 0)[0]
    method = cls(**ours_values)
    expected = pika.frame.Method(channel, to_pika(method, values)).marshal()
    assert frames.method_frame(channel, method) == expected
    # and what pika sends, trimq reads back as the same method
    assert frames.decode_method(expected[7:-1]) == method


@pytest.mark.parametrize(
    "method",
    [
        spec.BasicPublish(exchange="amq.topic", routing_key="a.b", mandatory=True),
        spec.BasicDeliver("ctag", 2**64 - 1, True, "ex", "rk"),
        spec.ConnectionTune(2047, 131072, 60),
        spec.ChannelClose(406, "PRECONDITION_FAILED - x", 50, 10),
        spec.ExchangeUnbindOk(),
        spec.BasicQos(prefetch_count=10, global_qos=True),
    ],
    ids=lambda m: m.NAME,
)
def test_sample_methods_match_pika(method: spec.Method) -> None:
    values = {name: getattr(method, name) for name in method.__slots__}
    assert frames.method_frame(1, method) == pika.frame.Method(1, to_pika(method, values)).marshal()


@FAST
@given(
    st.fixed_dictionaries(
        {}, optional={name: strategy(kind, pika_compatible=True) for name, kind in PROPERTY_KINDS}
    ),
    st.integers(0, 2**40),
    st.integers(1, 65535),
)
def test_content_header_matches_pika(values: dict[str, Any], body_size: int, channel: int) -> None:
    props = spec.BasicProperties(**values)
    pika_props = pika.spec.BasicProperties(**values)
    assert props.encode() == b"".join(pika_props.encode())
    ours = frames.CONTENT_HEADER.pack(60, 0, body_size) + props.encode()
    theirs = pika.frame.Header(channel, body_size, pika_props).marshal()
    assert theirs == struct.pack(">BHI", 2, channel, len(ours)) + ours + b"\xce"
    header = frames.decode_content_header(ours)
    assert (header.class_id, header.body_size, header.properties) == (60, body_size, props)


# --------------------------------------------------------------------------- the generator


def _have_spec_json() -> bool:
    return SPEC_JSON.exists()


NO_SPEC = pytest.mark.skipif(
    not _have_spec_json(),
    reason=f"{SPEC_JSON} not found: the AMQP spec JSON lives beside the project (../shared), "
    "which a fresh clone does not have",
)


@NO_SPEC
def test_gen_spec_check_passes() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "gen_spec.py"), "--check"],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


JSON_KINDS = {
    "octet": "int8",
    "short": "int16",
    "long": "int32",
    "longlong": "int64",
    "timestamp": "int64",
    "bit": "bit",
    "shortstr": "shortstr",
    "longstr": "longstr",
    "table": "table",
}


@NO_SPEC
def test_generated_classes_follow_the_spec_json() -> None:
    """The kinds the tests above derive from annotations agree with the spec's domains."""
    doc = json.loads(SPEC_JSON.read_text())
    domains = dict(doc["domains"])

    def kind(arg: dict[str, Any]) -> str:
        name = arg.get("type") or arg["domain"]
        while name in domains and domains[name] != name:
            name = domains[name]
        return JSON_KINDS[name]

    seen = set()
    for amqp_class in doc["classes"]:
        for m in amqp_class["methods"]:
            cls = spec.METHODS[(amqp_class["id"] << 16) | m["id"]]
            seen.add(cls)
            assert f"{amqp_class['name']}.{m['name']}" == cls.NAME
            assert bool(m.get("content")) == cls.HAS_CONTENT
            expected = [
                ({"global": "global_qos"}.get(a["name"], a["name"]).replace("-", "_"), kind(a))
                for a in m["arguments"]
            ]
            ours = [(n, "table" if k == "typed-table" else k) for n, k in KINDS[cls]]
            assert ours == expected, cls.NAME
        if amqp_class["name"] == "basic":
            expected = [(p["name"].replace("-", "_"), kind(p)) for p in amqp_class["properties"]]
            assert expected == PROPERTY_KINDS
    assert seen == set(METHOD_CLASSES)
