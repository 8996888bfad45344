"""RabbitMQ's permission and policy patterns (PCRE) read through trimq/broker/pcre.py.

The expected answers were observed on RabbitMQ 3.10.8: the pattern was set as a user's configure
permission with rabbitmqctl, and that user declared each queue name with pika (allowed, or 403).
"""

from __future__ import annotations

import pytest

from trimq.broker.pcre import PatternError, compile_pattern, name_bytes, translate

# pattern -> {queue name: allowed by RabbitMQ 3.10.8}
OBSERVED = {
    r"^\Qa.b\E$": {"a.b": True, "axb": False},
    r"^\Qa.b": {"a.b": True, "a.bc": True, "axb": False},
    r"^[\Q]\E]$": {"]": True, "a": False},
    r"^(?<p>fo+)-\k<p>$": {"foo-foo": True, "foo-fo": False},
    r"^(?'n'x)\k{n}$": {"xx": True, "xy": False},
    r"^(a)\g{-1}$": {"aa": True, "ab": False},
    r"^(a)\g1$": {"aa": True},
    r"^a++b$": {"aab": True, "b": False},
    r"^(?>a+)a$": {"aaa": False},
    r"^[[:alpha:]]+$": {"abc": True, "ab1": False},
    r"^[[:^digit:]]+$": {"ab": True, "a1": False},
    r"^[a[:^digit:]]$": {"b": True, "1": False},
    r"^a\z": {"a": True, "ab": False},
    r"^a\Z": {"a": True, "ab": False},
    r"^\x{41}$": {"A": True, "B": False},
    r"^\h$": {" ": True, "a": False},
    r"^\i$": {"i": True},
    r"(?i)^abc$": {"ABC": True},
    r"^a(?i)b$": {"aB": True, "AB": False},
    r"^(a(?i)b|c)$": {"aB": True, "C": True, "AB": False},
    r"^a{,2}$": {"a{,2}": True, "aa": False},
    r"^a{ 1}$": {"a{ 1}": True, "a": False},
    r"^a{2,}$": {"aa": True, "a": False},
    # PCRE without UTF matches bytes: one "." is one byte, \w and \d are ASCII
    r"^\w+$": {"café": False, "cafe": True},
    r"^\d+$": {"١٢": False, "12": True},
    r"^.$": {"é": False, "e": True},
}

# Accepted by RabbitMQ 3.10.8 (the names above were tested against them too), no equivalent in
# Python's re: refused with the reason.
UNSUPPORTED = {
    r"^\p{Lu}$": r"\p (Unicode properties)",
    r"^(?|(a)|(b))\1$": "a branch reset group",
    r"^(a|b(?1))$": "recursion or a subroutine call",
    r"^(?x) a b $": "the extended option (?x)",
    r"^(?U)a+": "the option (?U)",
}

# Refused by RabbitMQ 3.10.8 as well ({:invalid_regexp, ...}).
INVALID = ["(", "[a", r"^(?<a>x)|(?<a>y)$"]


@pytest.mark.parametrize("pattern", sorted(OBSERVED))
def test_matches_as_rabbitmq(pattern: str) -> None:
    compiled = compile_pattern(pattern)
    got = {name: compiled.search(name_bytes(name)) is not None for name in OBSERVED[pattern]}
    assert got == OBSERVED[pattern], translate(pattern)


@pytest.mark.parametrize("pattern", sorted(UNSUPPORTED))
def test_refuses_what_python_cannot_do(pattern: str) -> None:
    with pytest.raises(PatternError) as info:
        compile_pattern(pattern)
    assert info.value.message.startswith(UNSUPPORTED[pattern])
    assert info.value.message.endswith("has no equivalent in Python's re")


@pytest.mark.parametrize("pattern", INVALID)
def test_refuses_what_pcre_refuses(pattern: str) -> None:
    with pytest.raises(PatternError):
        compile_pattern(pattern)


@pytest.mark.parametrize(
    ("pattern", "python"),
    [
        (r"^\Qa.b*\E$", r"^a\.b\*$"),
        (r"(?<n>x)\k<n>", r"(?P<n>x)(?P=n)"),
        (r"a(?i)b|c", r"a(?i:b)|(?i:c)"),
        (r"\x{7f}\x4\x", r"\x7f\x04\x00"),
        (r"\z\Z", r"\Z(?=\n?\Z)"),
        (r"[\h]\v", "[\\t \\xa0][\\n\\x0b\\f\\r\\x85]"),
        (r"\cA\e\012", r"\x01\x1b\x0a"),
        (r"a{1}b{x}c{1,}d{,1}", r"a{1}b\{x}c{1,}d\{,1}"),
    ],
)
def test_translations(pattern: str, python: str) -> None:
    assert translate(pattern) == python


def test_names_that_are_not_utf8_match_as_their_bytes() -> None:
    raw = b"q\xff".decode("utf-8", "surrogateescape")  # how names arrive off the wire
    assert compile_pattern(r"^q\xff$").search(name_bytes(raw))
    assert compile_pattern("^q.$").search(name_bytes(raw))
