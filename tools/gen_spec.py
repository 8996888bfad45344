#!/usr/bin/env python3
"""Generate trimq/amqp/spec.py from the machine-readable AMQP 0-9-1 spec (RabbitMQ's codegen JSON).

Tables named `arguments` (declare, bind, consume) keep each value's type letter, as
{name: TypedValue(letter, value)} (trimq.amqp.codec.TypedTable), because RabbitMQ's equivalence
checks and error texts depend on them.
Each method becomes a class with straight-line encode/decode code (consecutive numeric fields
packed by one precompiled struct, bits folded into octets), because per-field runtime loops cost
several times more on the publish/deliver path.

    tools/gen_spec.py [--spec PATH] [--out PATH]    write spec.py
    tools/gen_spec.py --check [--skip-missing]      exit 1 if the committed spec.py is stale
                                                    (--skip-missing: exit 0 without the JSON)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SPEC = ROOT.parent / "shared" / "spec" / "amqp-rabbitmq-0.9.1.json"
DEFAULT_OUT = ROOT / "trimq" / "amqp" / "spec.py"

STRUCT_CODES = {"octet": "B", "short": "H", "long": "I", "longlong": "Q", "timestamp": "Q"}
PY_TYPES = {
    "octet": "int",
    "short": "int",
    "long": "int",
    "longlong": "int",
    "timestamp": "int",
    "bit": "bool",
    "shortstr": "str",
    "longstr": "bytes",
    "table": "dict[str, Any]",
}
RENAMES = {"global": "global_qos"}


def py_type(field: str, kind: str) -> str:
    """A field's annotation: `arguments` tables are decoded typed (codec.TypedTable)."""
    if kind == "table" and field == "arguments":
        return "TypedTable"
    return PY_TYPES[kind]


def ident(name: str) -> str:
    name = RENAMES.get(name, name)
    return name.replace("-", "_")


def camel(*parts: str) -> str:
    return "".join(word.capitalize() for part in parts for word in part.split("-"))


class Generator:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.domains = {name: kind for name, kind in spec["domains"]}
        self.structs: dict[str, str] = {}
        self.lines: list[str] = []

    def kind(self, arg: dict[str, Any]) -> str:
        kind: str = arg.get("type") or arg["domain"]
        while kind in self.domains and self.domains[kind] != kind:
            kind = self.domains[kind]
        return kind

    def struct_name(self, fmt: str) -> str:
        if fmt not in self.structs:
            self.structs[fmt] = f"_S_{fmt[1:]}"
        return self.structs[fmt]

    def emit(self, line: str = "") -> None:
        self.lines.append(line)

    # -- fields ---------------------------------------------------------------------------

    def runs(self, fields: list[tuple[str, str]]) -> list[tuple[str, list[str]]]:
        """Group fields into runs: ('fixed', names), ('bits', names) or a single string/table."""
        runs: list[tuple[str, list[str]]] = []
        for name, kind in fields:
            group = "fixed" if kind in STRUCT_CODES else "bits" if kind == "bit" else kind
            if runs and runs[-1][0] == group and group in ("fixed", "bits"):
                runs[-1][1].append(name)
            else:
                runs.append((group, [name]))
        return runs

    def encode_body(self, fields: list[tuple[str, str]], prefix: str) -> list[str]:
        kinds = dict(fields)
        body: list[str] = []
        parts: list[str] = [prefix] if prefix else []
        for group, names in self.runs(fields):
            if group == "fixed":
                fmt = ">" + "".join(STRUCT_CODES[kinds[n]] for n in names)
                args = ", ".join(f"self.{n}" for n in names)
                parts.append(f"{self.struct_name(fmt)}.pack({args})")
            elif group == "bits":
                for start in range(0, len(names), 8):
                    chunk = names[start : start + 8]
                    expr = " | ".join(f"({1 << i} if self.{n} else 0)" for i, n in enumerate(chunk))
                    parts.append(f"_B.pack({expr})")
            elif group == "shortstr":
                parts.append(f"_shortstr(self.{names[0]})")
            elif group == "longstr":
                parts.append(f"_longstr(self.{names[0]})")
            elif group == "table" and names[0] == "arguments":
                parts.append(f"encode_typed_table(self.{names[0]})")
            elif group == "table":
                parts.append(f"encode_table(self.{names[0]})")
            else:
                raise ValueError(f"unknown field kind {group}")
        if not parts:
            body.append('return b""')
        elif len(parts) == 1:
            body.append(f"return {parts[0]}")
        else:
            body.append('return b"".join((')
            for part in parts:
                body.append(f"    {part},")
            body.append("))")
        return body

    def decode_body(self, fields: list[tuple[str, str]]) -> list[str]:
        kinds = dict(fields)
        body: list[str] = []
        for group, names in self.runs(fields):
            if group == "fixed":
                fmt = ">" + "".join(STRUCT_CODES[kinds[n]] for n in names)
                size = sum({"B": 1, "H": 2, "I": 4, "Q": 8}[c] for c in fmt[1:])
                targets = ", ".join(names) + ("," if len(names) == 1 else "")
                body.append(f"{targets} = {self.struct_name(fmt)}.unpack_from(buf, pos)")
                body.append(f"pos += {size}")
            elif group == "bits":
                for start in range(0, len(names), 8):
                    chunk = names[start : start + 8]
                    body.append("bits = buf[pos]")
                    body.append("pos += 1")
                    for i, n in enumerate(chunk):
                        body.append(f"{n} = bool(bits & {1 << i})")
            elif group == "shortstr":
                n = names[0]
                body.append("length = buf[pos]")
                body.append(f"{n} = buf[pos + 1 : pos + 1 + length].decode(_ENC, _ERR)")
                body.append("pos += 1 + length")
            elif group == "longstr":
                n = names[0]
                body.append("(length,) = _I.unpack_from(buf, pos)")
                body.append(f"{n} = bytes(buf[pos + 4 : pos + 4 + length])")
                body.append("pos += 4 + length")
            elif group == "table" and names[0] == "arguments":
                body.append(f"{names[0]}, pos = decode_table_typed(buf, pos)")
            elif group == "table":
                body.append(f"{names[0]}, pos = decode_table(buf, pos)")
        return body

    # -- classes --------------------------------------------------------------------------

    def method_class(self, cls: dict[str, Any], method: dict[str, Any]) -> str:
        name = camel(cls["name"], method["name"])
        fields = [(ident(a["name"]), self.kind(a)) for a in method["arguments"]]
        defaults = {ident(a["name"]): a.get("default-value") for a in method["arguments"]}
        index = (cls["id"] << 16) | method["id"]
        e = self.emit
        e()
        e()
        e(f"class {name}(Method):")
        e(f'    """{cls["name"]}.{method["name"]} ({cls["id"]}, {method["id"]})."""')
        e()
        e(f"    __slots__ = ({''.join(repr(f) + ', ' for f, _ in fields)})")
        e(f"    CLASS_ID = {cls['id']}")
        e(f"    METHOD_ID = {method['id']}")
        e(f"    INDEX = 0x{index:08X}")
        e(f'    NAME = "{cls["name"]}.{method["name"]}"')
        e(f"    SYNCHRONOUS = {bool(method.get('synchronous'))}")
        e(f"    HAS_CONTENT = {bool(method.get('content'))}")
        if fields:
            e()
            params = ", ".join(
                f"{f}: {py_type(f, k)}{' | None' if k == 'table' else ''} = "
                f"{self.default_literal(k, defaults[f])}"
                for f, k in fields
            )
            e(f"    def __init__(self, {params}) -> None:")
            for f, k in fields:
                if k == "table":
                    e(f"        self.{f} = {f} if {f} is not None else {{}}")
                else:
                    e(f"        self.{f} = {f}")
        e()
        e("    def encode(self) -> bytes:")
        prefix = f"_PREFIX_{name}"
        self.prefixes.append((prefix, cls["id"], method["id"]))
        for line in self.encode_body(fields, prefix):
            e(f"        {line}")
        e()
        e("    @staticmethod")
        e(f"    def decode(buf: Buffer, pos: int) -> tuple[{name}, int]:")
        for line in self.decode_body(fields):
            e(f"        {line}")
        e("        if pos > len(buf):")
        e(f'            raise SyntaxFrameError("truncated {cls["name"]}.{method["name"]}")')
        e(f"        return {name}({', '.join(f for f, _ in fields)}), pos")
        return name

    @staticmethod
    def default_literal(kind: str, value: object) -> str:
        if kind == "table":
            return "None"
        if value is None:
            return {"bit": "False", "shortstr": '""', "longstr": 'b""'}.get(kind, "0")
        if kind == "longstr":
            return repr(str(value).encode())
        if kind == "bit":
            return repr(bool(value))
        return repr(value)

    def properties_class(self, cls: dict[str, Any]) -> None:
        props = [(ident(p["name"]), self.kind(p)) for p in cls["properties"]]
        e = self.emit
        e()
        e()
        e("class BasicProperties:")
        e('    """The content header properties of the basic class; None means absent."""')
        e()
        e(f"    __slots__ = ({''.join(repr(f) + ', ' for f, _ in props)})")
        e()
        params = ", ".join(f"{f}: {PY_TYPES[k]} | None = None" for f, k in props)
        e(f"    def __init__(self, {params}) -> None:")
        for f, _ in props:
            e(f"        self.{f} = {f}")
        e()
        e("    def encode(self) -> bytes:")
        e('        """Property flags and list, as they follow body-size in a content header."""')
        e("        flags = 0")
        e("        parts: list[bytes] = []")
        for i, (f, k) in enumerate(props):
            bit = 1 << (15 - i)
            e(f"        if self.{f} is not None:")
            e(f"            flags |= {bit}")
            if k in STRUCT_CODES:
                packer = self.struct_name(">" + STRUCT_CODES[k])
                e(f"            parts.append({packer}.pack(self.{f}))")
            elif k == "shortstr":
                e(f"            parts.append(_shortstr(self.{f}))")
            elif k == "table":
                e(f"            parts.append(encode_table(self.{f}))")
            else:
                raise ValueError(k)
        e('        return _H.pack(flags) + b"".join(parts)')
        e()
        e("    @staticmethod")
        e("    def decode(buf: Buffer, pos: int) -> tuple[BasicProperties, int]:")
        e("        (flags,) = _H.unpack_from(buf, pos)")
        e("        pos += 2")
        e("        while buf[pos - 1] & 1:  # continuation flag words carry no known property")
        e("            pos += 2")
        e("        props = BasicProperties()")
        for i, (f, k) in enumerate(props):
            bit = 1 << (15 - i)
            e(f"        if flags & {bit}:")
            if k in STRUCT_CODES:
                code = STRUCT_CODES[k]
                size = {"B": 1, "H": 2, "I": 4, "Q": 8}[code]
                unpacker = self.struct_name(">" + code)
                e(f"            (props.{f},) = {unpacker}.unpack_from(buf, pos)")
                e(f"            pos += {size}")
            elif k == "shortstr":
                e("            length = buf[pos]")
                e(f"            props.{f} = buf[pos + 1 : pos + 1 + length].decode(_ENC, _ERR)")
                e("            pos += 1 + length")
            elif k == "table":
                e(f"            props.{f}, pos = decode_table(buf, pos)")
        e("        if pos > len(buf):")
        e('            raise SyntaxFrameError("truncated content header")')
        e("        return props, pos")
        e()
        e("    def copy(self) -> BasicProperties:")
        e('        """A shallow copy, to change a property of a message on its way."""')
        e("        clone = BasicProperties.__new__(BasicProperties)")
        e("        for name in self.__slots__:")
        e("            setattr(clone, name, getattr(self, name))")
        e("        return clone")
        e()
        e("    def __eq__(self, other: object) -> bool:")
        e("        if not isinstance(other, BasicProperties):")
        e("            return NotImplemented")
        e("        return all(getattr(self, f) == getattr(other, f) for f in self.__slots__)")
        e()
        e("    __hash__ = None  # type: ignore[assignment]")
        e()
        e("    def __repr__(self) -> str:")
        e("        fields = (f'{f}={getattr(self, f)!r}' for f in self.__slots__)")
        e("        shown = ', '.join(f for f in fields if not f.endswith('=None'))")
        e("        return f'BasicProperties({shown})'")

    def generate(self) -> str:
        spec = self.spec
        self.prefixes: list[tuple[str, int, int]] = []
        body_start = len(self.lines)
        names: list[str] = []
        for cls in spec["classes"]:
            for method in cls["methods"]:
                names.append(self.method_class(cls, method))
        for cls in spec["classes"]:
            if cls["name"] == "basic":
                self.properties_class(cls)
        body = self.lines[body_start:]
        self.lines = []
        e = self.emit
        e("# Generated by tools/gen_spec.py from amqp-rabbitmq-0.9.1.json. Do not edit by hand.")
        e("# The spec's copyright notice (MIT-style) travels with the JSON file it was made from.")
        e('"""AMQP 0-9-1 methods and basic properties with RabbitMQ\'s extensions."""')
        e()
        e("from __future__ import annotations")
        e()
        e("import struct")
        e("from typing import Any, ClassVar")
        e()
        e("from trimq.amqp.codec import (")
        e("    TypedTable,")
        e("    decode_table,")
        e("    decode_table_typed,")
        e("    encode_table,")
        e("    encode_typed_table,")
        e(")")
        e("from trimq.errors import SyntaxFrameError")
        e()
        e("Buffer = bytes")
        e('_ENC = "utf-8"')
        e('_ERR = "surrogateescape"')
        e(
            f'PROTOCOL_HEADER = b"AMQP\\x00\\x{spec["major-version"]:02x}'
            f'\\x{spec["minor-version"]:02x}\\x{spec["revision"]:02x}"'
        )
        e(f"PORT = {spec['port']}")
        e()
        for const in spec["constants"]:
            e(f"{const['name'].replace('-', '_')} = {const['value']}")
        e()
        e("_B = struct.Struct('>B')")
        e("_H = struct.Struct('>H')")
        e("_I = struct.Struct('>I')")
        for fmt, var in sorted(self.structs.items()):
            e(f"{var} = struct.Struct({fmt!r})")
        for prefix, class_id, method_id in self.prefixes:
            e(f"{prefix} = struct.pack('>HH', {class_id}, {method_id})")
        e()
        e()
        e("def _shortstr(value: str) -> bytes:")
        e("    raw = value.encode(_ENC, _ERR)")
        e("    if len(raw) > 255:")
        e('        raise ValueError("shortstr longer than 255 bytes")')
        e("    return _B.pack(len(raw)) + raw")
        e()
        e()
        e("def _longstr(value: bytes | str) -> bytes:")
        e("    raw = value.encode(_ENC, _ERR) if isinstance(value, str) else value")
        e("    return _I.pack(len(raw)) + raw")
        e()
        e()
        e("class Method:")
        e('    """Base of the generated method classes; `encode()` gives the frame payload."""')
        e()
        e("    __slots__: tuple[str, ...] = ()")
        e("    CLASS_ID: ClassVar[int]")
        e("    METHOD_ID: ClassVar[int]")
        e("    INDEX: ClassVar[int]")
        e("    NAME: ClassVar[str]")
        e("    SYNCHRONOUS: ClassVar[bool]")
        e("    HAS_CONTENT: ClassVar[bool]")
        e()
        e("    def encode(self) -> bytes:")
        e("        raise NotImplementedError")
        e()
        e("    @staticmethod")
        e("    def decode(buf: Buffer, pos: int) -> tuple[Method, int]:")
        e('        """The method whose arguments start at `pos`, and the offset after them."""')
        e("        raise NotImplementedError")
        e()
        e("    def __eq__(self, other: object) -> bool:")
        e("        if type(other) is not type(self):")
        e("            return NotImplemented")
        e("        return all(getattr(self, f) == getattr(other, f) for f in self.__slots__)")
        e()
        e("    __hash__ = None  # type: ignore[assignment]")
        e()
        e("    def __repr__(self) -> str:")
        e("        fields = ', '.join(f'{f}={getattr(self, f)!r}' for f in self.__slots__)")
        e("        return f'{type(self).__name__}({fields})'")
        self.lines.extend(body)
        e()
        e()
        e("METHODS: dict[int, type[Method]] = {")
        for n in names:
            e(f"    {n}.INDEX: {n},")
        e("}")
        e()
        e("CLASS_NAMES = {")
        for cls in spec["classes"]:
            e(f"    {cls['id']}: {cls['name']!r},")
        e("}")
        return "\n".join(self.lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", type=Path, default=DEFAULT_SPEC)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--check", action="store_true", help="fail if --out is not current")
    parser.add_argument(
        "--skip-missing",
        action="store_true",
        help="succeed with a note when the spec JSON is absent (a clone without ../shared)",
    )
    args = parser.parse_args(argv)
    if not args.spec.exists() and args.skip_missing:
        print(f"{args.spec} not found: spec check skipped")
        return 0
    if not args.spec.exists():
        print(f"error: spec file {args.spec} not found", file=sys.stderr)
        return 2
    source = Generator(json.loads(args.spec.read_text())).generate()
    if args.check:
        current = args.out.read_text() if args.out.exists() else ""
        if current != source:
            print(f"{args.out} is stale: run tools/gen_spec.py", file=sys.stderr)
            return 1
        print(f"{args.out} is current")
        return 0
    args.out.write_text(source)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
