"""RabbitMQ's regular expressions in Python's `re`.

RabbitMQ matches permission and policy patterns with Erlang's `re` (PCRE, no UTF mode) against
the name's bytes. Python's `re` reads most of PCRE the same way, possessive quantifiers and
atomic groups included. What PCRE spells differently is translated here: named groups and their
references, `\\Q..\\E`, POSIX classes, `\\z` and `\\Z`, `\\x{..}`, `\\h \\v \\R \\N \\e \\cX`,
letters escaped for no reason, options set in the middle of a pattern, a `{` that is no
quantifier. What Python has no equivalent for (recursion, branch reset, Unicode properties,
backtracking verbs...) is refused with the reason. Patterns are compiled as bytes and names
matched as their UTF-8 bytes, so `.`, `\\w` and `\\d` mean what they mean to RabbitMQ (one byte;
ASCII letters and digits).
"""

from __future__ import annotations

import re

# POSIX classes as PCRE's default (C locale) tables define them, for a bytes pattern.
POSIX_CLASSES = {
    "alpha": "a-zA-Z",
    "digit": "0-9",
    "alnum": "a-zA-Z0-9",
    "upper": "A-Z",
    "lower": "a-z",
    "space": "\\t\\n\\x0b\\f\\r ",
    "blank": "\\t ",
    "xdigit": "0-9A-Fa-f",
    "word": "\\w",
    "punct": "\\x21-\\x2f\\x3a-\\x40\\x5b-\\x60\\x7b-\\x7e",
    "cntrl": "\\x00-\\x1f\\x7f",
    "print": "\\x20-\\x7e",
    "graph": "\\x21-\\x7e",
    "ascii": "\\x00-\\x7f",
}
HSPACE = "\\t \\xa0"  # PCRE's \h without UTF
VSPACE = "\\n\\x0b\\f\\r\\x85"  # PCRE's \v without UTF
SIMPLE_ESCAPES = {"e": "\\x1b", "a": "\\x07", "f": "\\f", "n": "\\n", "r": "\\r", "t": "\\t"}
UNSUPPORTED_ESCAPES = {
    "p": "\\p (Unicode properties)",
    "P": "\\P (Unicode properties)",
    "X": "\\X (extended grapheme clusters)",
    "C": "\\C (single code units)",
    "K": "\\K (match start reset)",
    "G": "\\G (first matching position)",
    "L": "\\L",
    "l": "\\l",
    "U": "\\U",
    "u": "\\u",
}
QUANTIFIER = re.compile(r"\{\d+(,\d*)?\}")
HEX = re.compile(r"[0-9a-fA-F]{0,2}")
SUPPORTED_OPTIONS = set("ims")


class PatternError(ValueError):
    """A pattern that cannot be used: PCRE would refuse it as well, or Python's `re` has no
    equivalent. `position` is where in the pattern (0 when unknown)."""

    def __init__(self, message: str, position: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.position = position


def compile_pattern(pattern: str) -> re.Pattern[bytes]:
    """`pattern` (PCRE, as RabbitMQ reads it) compiled for `name_bytes(name)`, or PatternError."""
    translated = translate(pattern)
    try:
        return re.compile(translated.encode("utf-8", "surrogateescape"))
    except UnicodeEncodeError:
        raise PatternError("the pattern is not valid UTF-8 text") from None
    except re.error as exc:
        raise PatternError(exc.msg, exc.pos or 0) from None
    except (OverflowError, RecursionError):  # absurd repeat counts, absurd nesting
        raise PatternError("the pattern is too large") from None


def name_bytes(name: str) -> bytes:
    """A resource name as the bytes RabbitMQ matches (names arrive surrogate-escaped)."""
    try:
        return name.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return name.encode("utf-8", "surrogatepass")


class _Group:
    """An open group of the pattern, with the option settings `(?i)` made inside it, which
    last until the group closes and carry into its later alternatives."""

    __slots__ = ("options",)

    def __init__(self) -> None:
        self.options: list[str] = []


class _Translator:
    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self.pos = 0
        self.out: list[str] = []
        self.groups = [_Group()]
        self.captures = 0

    def refuse(self, what: str, position: int | None = None) -> PatternError:
        return PatternError(
            f"{what} has no equivalent in Python's re", self.pos if position is None else position
        )

    def run(self) -> str:
        pattern = self.pattern
        while self.pos < len(pattern):
            char = pattern[self.pos]
            if char == "\\":
                self.out.append(self.escape())
            elif char == "[":
                self.out.append(self.char_class())
            elif char == "(":
                self.open_group()
            elif char == ")":
                self.close_group()
            elif char == "|":
                options = self.groups[-1].options
                self.out.append(")" * len(options) + "|" + "".join(f"(?{o}:" for o in options))
                self.pos += 1
            elif char == "{":
                match = QUANTIFIER.match(pattern, self.pos)
                text = match.group() if match else "\\{"  # PCRE: no quantifier, a literal
                self.out.append(text)
                self.pos += len(match.group()) if match else 1
            else:
                self.out.append(char)
                self.pos += 1
        for group in self.groups:
            self.out.append(")" * len(group.options))
        return "".join(self.out)

    # -- groups -----------------------------------------------------------------------

    def open_group(self) -> None:
        pattern, start = self.pattern, self.pos
        rest = pattern[start + 1 :]
        if rest.startswith("*"):
            raise self.refuse("a backtracking control verb (*...)")
        if not rest.startswith("?"):
            self.captures += 1
            self.push("(", 1)
            return
        after = rest[1:2]
        if rest.startswith("?#"):
            end = pattern.find(")", start)
            if end < 0:
                raise PatternError("missing ) after comment", start)
            self.pos = end + 1
            return
        for opener in ("?:", "?=", "?!", "?<=", "?<!", "?>"):
            if rest.startswith(opener):
                self.push("(" + opener, 1 + len(opener))
                return
        if after in ("<", "'") or rest.startswith("?P<"):
            skip = 3 if rest.startswith("?P<") else 2
            close = "'" if after == "'" else ">"
            name, length = self.read_name(start + 1 + skip, close)
            self.captures += 1
            self.push(f"(?P<{name}>", 1 + skip + length)
            return
        if rest.startswith("?P="):
            end = pattern.find(")", start)
            if end < 0:
                raise PatternError("missing ) after (?P=name", start)
            self.out.append(pattern[start : end + 1])
            self.pos = end + 1
            return
        if rest.startswith("?("):
            self.condition(start)
            return
        if after == "|":
            raise self.refuse("a branch reset group (?|...)")
        if (
            after in "R&+-0123456789" and after and not re.match(r"\?-[a-zA-Z]", rest)
        ) or rest.startswith("?P>"):
            raise self.refuse("recursion or a subroutine call (?R), (?1), (?&name)")
        if rest.startswith("?C"):
            raise self.refuse("a callout (?C)")
        self.options(start)

    def push(self, text: str, length: int) -> None:
        self.out.append(text)
        self.pos += length
        self.groups.append(_Group())

    def close_group(self) -> None:
        group = self.groups.pop() if len(self.groups) > 1 else None
        if group is not None:
            self.out.append(")" * len(group.options))
        self.out.append(")")  # an unmatched one: Python's re refuses it, as PCRE does
        self.pos += 1

    def read_name(self, at: int, close: str) -> tuple[str, int]:
        """The group name starting at `at` and ended by `close`: the name, and how many
        characters from `at` to just after `close`."""
        end = self.pattern.find(close, at)
        if end < 0:
            raise PatternError(f"syntax error in subpattern name (missing terminator {close})", at)
        name = self.pattern[at:end]
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise PatternError(f"bad group name {name!r}", at)
        return name, end + 1 - at

    def condition(self, start: int) -> None:
        """`(?(1)yes|no)`, `(?(<name>)...)`, `(?('name')...)`, `(?(name)...)`."""
        pattern = self.pattern
        at = start + 3
        if pattern[at : at + 1] == "?":
            raise self.refuse("a condition that is an assertion (?(?=...)")
        end = pattern.find(")", at)
        if end < 0:
            raise PatternError("malformed number or name after (?(", at)
        condition = pattern[at:end]
        if condition[:1] in ("<", "'") and condition[-1:] in (">", "'"):
            condition = condition[1:-1]
        if re.fullmatch(r"R(\d*|&.*)", condition):
            raise self.refuse("a recursion condition (?(R)")
        if condition == "DEFINE":
            raise self.refuse("(?(DEFINE)")
        self.push(f"(?({condition})", end + 1 - start)

    def options(self, start: int) -> None:
        """Option settings: `(?i)` for the rest of the group, `(?i:...)` for a group."""
        match = re.compile(r"\?([a-zA-Z]*)(?:-([a-zA-Z]*))?([:)])").match(self.pattern, start + 1)
        if match is None:
            raise PatternError("unrecognized character after (? or (?-", start + 1)
        on, off, end = match.group(1), match.group(2) or "", match.group(3)
        for letter in on + off:
            if letter == "x":
                raise self.refuse("the extended option (?x)", start)
            if letter not in SUPPORTED_OPTIONS:
                raise self.refuse(f"the option (?{letter})", start)
        spec = on + (f"-{off}" if off else "")
        self.pos = match.end()
        if end == ":":
            self.out.append(f"(?{spec}:" if spec else "(?:")
            self.groups.append(_Group())
        elif spec:
            self.out.append(f"(?{spec}:")
            self.groups[-1].options.append(spec)

    # -- escapes ------------------------------------------------------------------------

    def escape(self, in_class: bool = False) -> str:
        """The escape at self.pos ("\\" and what follows) as Python text; advances past it."""
        pattern, start = self.pattern, self.pos
        if start + 1 >= len(pattern):
            raise PatternError("\\ at end of pattern", start)
        char = pattern[start + 1]
        self.pos = start + 2
        if char == "Q":
            end = pattern.find("\\E", self.pos)
            literal = pattern[self.pos :] if end < 0 else pattern[self.pos : end]
            self.pos = len(pattern) if end < 0 else end + 2
            return "".join(_literal(c) for c in literal)
        if char == "E":
            return ""  # an \E without \Q is ignored
        if char in SIMPLE_ESCAPES:
            return SIMPLE_ESCAPES[char]
        if char in "dDsSwW":
            return "\\" + char
        if char == "x":
            return self.hex_escape()
        if char == "o":
            return self.braced_number(8, "\\o{")
        if char == "c":
            if self.pos >= len(pattern) or not pattern[self.pos].isascii():
                raise PatternError("\\c at end of pattern", start)
            value = ord(pattern[self.pos].upper()) ^ 0x40
            self.pos += 1
            return f"\\x{value:02x}"
        if char.isdigit():
            return self.number_escape(char, in_class)
        if char in UNSUPPORTED_ESCAPES:
            raise self.refuse(UNSUPPORTED_ESCAPES[char], start)
        if in_class:
            return self.class_escape(char, start)
        return self.plain_escape(char, start)

    def plain_escape(self, char: str, start: int) -> str:
        """Escapes outside a character class that are not the same in both."""
        if char in "bBA":
            return "\\" + char
        if char == "z":
            return "\\Z"
        if char == "Z":
            return "(?=\\n?\\Z)"
        if char == "h":
            return f"[{HSPACE}]"
        if char == "H":
            return f"[^{HSPACE}]"
        if char == "v":
            return f"[{VSPACE}]"
        if char == "V":
            return f"[^{VSPACE}]"
        if char == "R":
            return f"(?:\\r\\n|[{VSPACE}])"
        if char == "N":
            if self.pattern[self.pos : self.pos + 1] == "{":
                raise self.refuse("\\N{...}", start)
            return "[^\\n]"
        if char == "k":
            return self.named_reference(start)
        if char == "g":
            return self.g_reference(start)
        if char.isascii() and char.isalpha():
            return char  # PCRE: an unknown escaped letter is that letter
        return _literal(char)

    def class_escape(self, char: str, start: int) -> str:
        """Escapes inside a character class."""
        if char == "b":
            return "\\x08"
        if char == "h":
            return HSPACE
        if char == "v":
            return VSPACE
        if char in "HVRNkg":
            raise self.refuse(f"\\{char} in a character class", start)
        if char.isascii() and char.isalpha():
            return char
        return _literal(char)

    def hex_escape(self) -> str:
        pattern = self.pattern
        if pattern[self.pos : self.pos + 1] == "{":
            return self.braced_number(16, "\\x{")
        digits = HEX.match(pattern, self.pos)
        assert digits is not None
        self.pos = digits.end()
        return f"\\x{int(digits.group() or '0', 16):02x}"

    def braced_number(self, base: int, what: str) -> str:
        pattern = self.pattern
        end = pattern.find("}", self.pos)
        try:
            value = int(pattern[self.pos + 1 : end], base) if end > self.pos + 1 else -1
        except ValueError:
            value = -1
        if value < 0:
            raise PatternError(f"malformed {what}...}}", self.pos)
        if value > 0xFF:
            raise PatternError(f"character value in {what}...}} is too large", self.pos)
        self.pos = end + 1
        return f"\\x{value:02x}"

    def number_escape(self, first: str, in_class: bool) -> str:
        """A back reference, or an octal character (PCRE's rules)."""
        pattern = self.pattern
        digits = re.compile(r"\d*").match(pattern, self.pos)
        assert digits is not None
        number = first + digits.group()
        if first == "0" or in_class:
            octal = re.compile(r"[0-7]{1,3}").match(pattern, self.pos - 1)
            if octal is None:  # \8 or \9 in a class: the digit itself
                return first
            self.pos = octal.end()
            return f"\\x{int(octal.group(), 8) & 0xFF:02x}"
        if int(number) < 10 or int(number) <= self.captures:
            self.pos = digits.end()
            return f"(?:\\{int(number)})"
        raise PatternError(
            f"\\{number}: no such group (PCRE would read it as an octal "
            "character, which is not supported)",
            self.pos - 2,
        )

    def named_reference(self, start: int) -> str:
        """\\k<name>, \\k'name', \\k{name}."""
        opener = self.pattern[self.pos : self.pos + 1]
        closer = {"<": ">", "'": "'", "{": "}"}.get(opener)
        if closer is None:
            raise PatternError(
                "\\k is not followed by a braced, angle-bracketed, or quoted name", start
            )
        name, length = self.read_name(self.pos + 1, closer)
        self.pos += 1 + length
        return f"(?P={name})"

    def g_reference(self, start: int) -> str:
        """\\g{n}, \\gn, \\g{-n}, \\g-n, \\g{name}; \\g<...> (a subroutine call) is refused."""
        pattern = self.pattern
        if pattern[self.pos : self.pos + 1] in ("<", "'"):
            raise self.refuse("a subroutine call \\g<...>", start)
        braced = pattern[self.pos : self.pos + 1] == "{"
        match = re.compile(r"\{(-?\d+|[A-Za-z_]\w*)\}" if braced else r"-?\d+").match(
            pattern, self.pos
        )
        if match is None:
            raise PatternError("a numbered reference must not be zero", start)
        reference = match.group(1) if braced else match.group()
        self.pos = match.end()
        if not reference.lstrip("-").isdigit():
            return f"(?P={reference})"
        number = int(reference)
        if number < 0:
            number = self.captures + 1 + number
        if number <= 0:
            raise PatternError("reference to non-existent subpattern", start)
        return f"(?:\\{number})"

    # -- character classes --------------------------------------------------------------

    def char_class(self) -> str:
        pattern, start = self.pattern, self.pos
        self.pos += 1
        negated = pattern[self.pos : self.pos + 1] == "^"
        if negated:
            self.pos += 1
        items: list[str] = []
        negated_posix: list[str] = []
        first = True
        while True:
            if self.pos >= len(pattern):
                raise PatternError("missing terminating ] for character class", start)
            char = pattern[self.pos]
            if char == "]" and not first:
                self.pos += 1
                break
            first = False
            if char == "[" and pattern[self.pos + 1 : self.pos + 2] in (":", ".", "="):
                posix = re.compile(r"\[:(\^?)([a-z]+):\]").match(pattern, self.pos)
                if posix is None:
                    raise PatternError("POSIX collating elements are not supported", self.pos)
                name = posix.group(2)
                if name not in POSIX_CLASSES:
                    raise PatternError("unknown POSIX class name", self.pos)
                (negated_posix if posix.group(1) else items).append(POSIX_CLASSES[name])
                self.pos = posix.end()
            elif char == "\\":
                items.append(self.escape(in_class=True))
            else:
                items.append(_literal(char) if char in "[]&~|" else char)
                self.pos += 1
        members = "".join(items)
        if not negated_posix:
            return f"[{'^' if negated else ''}{members}]"
        # [x[:^digit:]] is "x, or not a digit"; [^x[:^digit:]] is "a digit, and not x".
        if not negated:
            return (
                "(?:"
                + "|".join(([f"[{members}]"] if items else []) + [f"[^{p}]" for p in negated_posix])
                + ")"
            )
        return (
            "(?:"
            + (f"(?![{members}])" if items else "")
            + "".join(f"(?=[{p}])" for p in negated_posix[:-1])
            + f"[{negated_posix[-1]}])"
        )


def _literal(char: str) -> str:
    """One character matched literally."""
    if char.isascii() and not char.isalnum() and char != "_":
        return "\\" + char if char != "\n" else "\\n"
    return char


def translate(pattern: str) -> str:
    """The Python `re` text for the PCRE pattern, or PatternError."""
    if not isinstance(pattern, str):
        raise PatternError("the pattern must be a string")
    return _Translator(pattern).run()
