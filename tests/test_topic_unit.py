"""Topic matching (trimq.broker.exchange) against a plain recursive reference of RabbitMQ's
semantics: words are separated by '.', the empty key has zero words (but 'a..b' has an empty
middle word), '*' matches exactly one word and '#' zero or more. No sockets."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trimq.broker.exchange import Binding, TopicExchange, topic_match, topic_words

FAST = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def ref_words(key: str) -> list[str]:
    return [] if key == "" else key.split(".")


def ref_match(pattern: list[str], words: list[str]) -> bool:
    if not pattern:
        return not words
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return ref_match(rest, words) or (bool(words) and ref_match(pattern, words[1:]))
    if not words:
        return False
    return (head == "*" or head == words[0]) and ref_match(rest, words[1:])


def ref_topic(pattern: str, key: str) -> bool:
    return ref_match(ref_words(pattern), ref_words(key))


def trimq_topic(pattern: str, key: str) -> bool:
    return topic_match(topic_words(pattern), topic_words(key))


# Keys and patterns built from a tiny alphabet so that matches and near-misses are frequent.
patterns = st.lists(st.sampled_from(["a", "b", "*", "#", ""]), max_size=7).map(".".join)
keys = st.lists(st.sampled_from(["a", "b", ""]), max_size=7).map(".".join)
# Routing keys may contain '*' and '#' too: there they are ordinary words.
literal_keys = st.lists(st.sampled_from(["a", "b", "*", "#", ""]), max_size=7).map(".".join)


@FAST
@given(patterns, keys)
def test_topic_match_agrees_with_reference(pattern: str, key: str) -> None:
    assert trimq_topic(pattern, key) == ref_topic(pattern, key), (pattern, key)


@FAST
@given(patterns, literal_keys)
def test_wildcards_in_routing_keys_are_literal_words(pattern: str, key: str) -> None:
    assert trimq_topic(pattern, key) == ref_topic(pattern, key), (pattern, key)


@FAST
@given(st.lists(st.sampled_from(["a", "b", ""]), max_size=8).map(".".join))
def test_words_split_like_rabbitmq(key: str) -> None:
    assert topic_words(key) == ref_words(key)
    assert trimq_topic(key, key)  # a key without wildcards matches itself
    assert trimq_topic("#", key)


@pytest.mark.parametrize(
    ("pattern", "key", "expected"),
    [
        ("#", "", True),
        ("*", "", False),
        ("", "", True),
        ("", "a", False),
        ("*", "a", True),
        ("*", "a.b", False),
        ("a.#", "a", True),
        ("#.a", "a", True),
        ("#.#", "", True),
        ("*.#", "", False),
        ("#.*", "a.b.c", True),
        ("a.*.c", "a.b.c", True),
        ("a.*.c", "a.c", False),
        ("a.#.c", "a.c", True),
        ("a.#.c", "a.b.b.c", True),
        ("a..b", "a..b", True),
        ("a.*.b", "a..b", True),  # the empty middle word is a word
        ("a.b", "a..b", False),
        ("*", ".", False),  # '.' is two empty words
        ("*.*", ".", True),
        ("#", ".", True),
        ("a.#.#.b", "a.b", True),
        ("#.b.#.b", "b.b", True),
        ("#.b.#.b", "b.a", False),
        ("*", "#", True),
        ("a", "*", False),
    ],
)
def test_documented_cases(pattern: str, key: str, expected: bool) -> None:
    assert ref_topic(pattern, key) is expected  # the reference itself is right
    assert trimq_topic(pattern, key) is expected


def test_many_hashes_against_a_long_non_matching_key_is_fast() -> None:
    pattern = ".".join(["#"] * 20 + ["b"])
    key = ".".join(["a"] * 60)
    assert trimq_topic(pattern, key) is False
    assert trimq_topic(pattern, key + ".b") is True


class Dest:
    def __init__(self, name: str) -> None:
        self.name = name
        self.bound_by: dict = {}  # as queues and exchanges index the bindings to them

    def __repr__(self) -> str:
        return f"<{self.name}>"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(patterns, min_size=1, max_size=6),
    st.lists(literal_keys, min_size=1, max_size=6),
    st.data(),
)
def test_topic_exchange_routes_like_the_reference(
    binding_patterns: list[str], routing_keys: list[str], data: Any
) -> None:
    exchange = TopicExchange("t", "/")
    dests = [Dest(f"q{i}") for i in range(3)]
    bound: list[tuple[str, Dest]] = []
    for pattern in binding_patterns:
        dest = data.draw(st.sampled_from(dests))
        exchange.add_binding(Binding("t", dest, pattern, {}))
        bound.append((pattern, dest))

    def expected(key: str) -> set[int]:
        return {id(d) for p, d in bound if ref_topic(p, key)}

    for key in routing_keys:
        routed = list(exchange.route(key, None))
        assert len(routed) == len({id(d) for d in routed})  # each destination at most once
        assert {id(d) for d in routed} == expected(key)
        assert {id(d) for d in exchange.route(key, None)} == expected(key)  # cached answer
    # bindings change: the cache must not serve stale answers
    pattern, dest = bound[0]
    exchange.remove_binding(Binding("t", dest, pattern, {}))
    bound = [(p, d) for p, d in bound if (p, d) != (pattern, dest)]
    extra = Dest("extra")
    exchange.add_binding(Binding("t", extra, "#", {}))
    bound.append(("#", extra))
    for key in routing_keys:
        assert {id(d) for d in exchange.route(key, None)} == expected(key)
