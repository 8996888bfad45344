"""Rendering for trimqctl, as rabbitmqctl (3.10) renders things.

- Table output: a header row of column names joined by tabs (unless silenced), then one
  tab-joined row per item. Values are rendered like rabbitmqctl's `format_info_item`: booleans
  and atoms bare (`true`, `running`), lists of strings as `[administrator, monitoring]`, AMQP
  tables the way Erlang's `~p` prints them (`[{"x-message-ttl",60000}]`), empty strings empty.
- JSON output (`--formatter json`): `[`, then the first row, then `,{...}` per further row, then
  `]`, each on its own line, encoded compactly as rabbitmqctl's JSON library does (tables as
  `[key, type, value]` triples, Erlang-style floats).

The banner each command prints before its result is declared with the command
(trimq/cli/commands/).

Control-protocol values are plain JSON: AMQP tables arrive as lists of `[key, value]` pairs
(a `[key, type, value]` triple is taken as explicitly typed).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

# Info items whose values are AMQP field tables.
TABLE_ITEMS = frozenset({"arguments", "client_properties"})

_BRIGHT = "\x1b[1m"
_RESET = "\x1b[0m"


def bright(text: str, enabled: bool) -> str:
    """rabbitmqctl's bold section titles; plain text unless writing to a terminal."""
    return f"{_BRIGHT}{text}{_RESET}" if enabled else text


# -- Erlang term printing (io_lib ~p) ---------------------------------------------------------


class Atom(str):
    """A string printed as an Erlang atom (quoted only when it has to be)."""


_ATOM_RE = re.compile(r"[a-z\xdf-\xf6\xf8-\xff][A-Za-z0-9_@\xc0-\xd6\xd8-\xf6\xf8-\xff]*\Z")
_RESERVED = frozenset(
    [
        "after",
        "and",
        "andalso",
        "band",
        "begin",
        "bnot",
        "bor",
        "bsl",
        "bsr",
        "bxor",
        "case",
        "catch",
        "cond",
        "div",
        "end",
        "fun",
        "if",
        "let",
        "not",
        "of",
        "or",
        "orelse",
        "receive",
        "rem",
        "try",
        "when",
        "xor",
        "maybe",
        "else",
    ]
)
_STRING_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
    "\b": "\\b",
    "\f": "\\f",
    "\x1b": "\\e",
}


def erl_atom(name: str) -> str:
    if _ATOM_RE.match(name) and name not in _RESERVED:
        return name
    escaped = name.replace("\\", "\\\\").replace("'", "\\'")
    return f"'{escaped}'"


def _printable_latin1(codes: Sequence[int]) -> bool:
    """io_lib:printable_list/1 under the default (latin1) printable range."""
    return all(32 <= c <= 126 or 160 <= c <= 255 or chr(c) in "\n\r\t\v\b\f\x1b" for c in codes)


def erl_string(text: str) -> str:
    """A charlist as ~p prints it: a quoted string if printable, else a list of integers;
    the empty string is []."""
    if not text:
        return "[]"
    codes = [ord(c) for c in text]
    if _printable_latin1(codes):
        return '"' + "".join(_STRING_ESCAPES.get(c, c) for c in text) + '"'
    return "[" + ",".join(str(c) for c in codes) + "]"


def erlang_float(value: float) -> str:
    """A float as Erlang/OTP 25 prints it (~p, float_to_list(F, [short]), Elixir's
    Float.to_string): shortest round-trip digits, `1.0e-5`, `100.0`, `1.0e16`."""
    if math.isnan(value) or math.isinf(value):
        return repr(value)
    if value == 0:
        return "-0.0" if str(value).startswith("-") else "0.0"
    sign = "-" if value < 0 else ""
    _, digit_tuple, exponent = Decimal(repr(abs(value))).as_tuple()
    digits = "".join(map(str, digit_tuple)).lstrip("0")
    assert isinstance(exponent, int)
    stripped = digits.rstrip("0")
    exponent += len(digits) - len(stripped)
    digits = stripped
    length = len(digits)
    place = exponent + length  # value = 0.DIGITS * 10**place

    def scientific() -> str:
        exp_text = str(place - 1)
        return f"{digits[0]}.{digits[1:] or '0'}e{exp_text}"

    if place == 0:
        text = "0." + digits
    elif place < 0 or place >= length:
        exp_text = str(place - 1)
        exp_cost = len(exp_text) + 1 + (2 if length == 1 else 1)
        if place < 0:
            text = ("0." + "0" * -place + digits) if 2 - place <= exp_cost else scientific()
        elif place - length + 2 <= exp_cost and abs(value) < float(1 << 53):
            text = digits + "0" * (place - length) + ".0"
        else:
            text = scientific()
    else:
        text = digits[:place] + "." + digits[place:]
    return sign + text


def erl_term(value: Any) -> str:
    """A Python value as io_lib ~p would print the Erlang term it stands for: strings are
    charlists, None is `undefined`, tuples are tuples, lists are lists."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "undefined"
    if isinstance(value, Atom):
        return erl_atom(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return erlang_float(value)
    if isinstance(value, str):
        return erl_string(value)
    if isinstance(value, tuple):
        return "{" + ",".join(erl_term(v) for v in value) + "}"
    if isinstance(value, Mapping):
        return "#{" + ",".join(f"{erl_term(k)} => {erl_term(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        if not value:
            return "[]"
        if (
            all(isinstance(v, int) and not isinstance(v, bool) for v in value)
            and all(0 <= v <= 0x10FFFF for v in value)
            and _printable_latin1(value)
        ):
            return erl_string("".join(chr(v) for v in value))
        return "[" + ",".join(erl_term(v) for v in value) + "]"
    return erl_string(str(value))


# -- AMQP tables ------------------------------------------------------------------------------

_TYPE_NAMES = frozenset(
    {
        "longstr",
        "shortstr",
        "signedint",
        "unsignedint",
        "long",
        "unsignedlong",
        "short",
        "unsignedshort",
        "byte",
        "unsignedbyte",
        "bool",
        "float",
        "double",
        "decimal",
        "timestamp",
        "table",
        "array",
        "void",
        "binary",
    }
)


def _is_pair_list(value: Any) -> bool:
    """A non-empty list of [str key, value] (or typed [key, type, value]) entries."""
    return (
        isinstance(value, list) and bool(value) and all(_table_entry(e) is not None for e in value)
    )


def _table_entry(entry: Any) -> tuple[str, str | None, Any] | None:
    if isinstance(entry, (list, tuple)) and entry and isinstance(entry[0], str):
        if len(entry) == 2:
            return entry[0], None, entry[1]
        if len(entry) == 3 and isinstance(entry[1], str) and entry[1] in _TYPE_NAMES:
            return entry[0], entry[1], entry[2]
    return None


def table_entries(table: Any) -> list[tuple[str, str | None, Any]]:
    """The entries of a table given as a dict, as [key, value] pairs or typed triples."""
    if isinstance(table, Mapping):
        return [(str(k), None, v) for k, v in table.items()]
    entries = []
    for entry in table or []:
        parsed = _table_entry(entry)
        if parsed is not None:
            entries.append(parsed)
    return entries


def infer_type(value: Any) -> str:
    """The AMQP field type a client library (pika) would have sent a plain value with."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "signedint" if -(2**31) <= value < 2**31 else "long"
    if isinstance(value, float):
        return "double"
    if value is None:
        return "void"
    if isinstance(value, Mapping) or _is_pair_list(value):
        return "table"
    if isinstance(value, list):
        return "array"
    return "longstr"


def _typed_array_items(value: Any) -> list[tuple[str, Any]]:
    items = []
    for element in value or []:
        if (
            isinstance(element, list)
            and len(element) == 2
            and isinstance(element[0], str)
            and element[0] in _TYPE_NAMES
        ):
            items.append((element[0], element[1]))
        else:
            items.append((infer_type(element), element))
    return items


def _pretty_amqp_value(type_name: str | None, value: Any) -> Any:
    """rabbitmqctl's prettify_typed_amqp_value: the value with its type dropped."""
    kind = type_name or infer_type(value)
    if kind == "table":
        return [(k, _pretty_amqp_value(t, v)) for k, t, v in table_entries(value)]
    if kind == "array":
        if type_name is None:
            return [_pretty_amqp_value(None, v) for v in value or []]
        return [_pretty_amqp_value(t, v) for t, v in _typed_array_items(value)]
    return value


def amqp_table_term(table: Any) -> str:
    """An AMQP table as rabbitmqctl prints it in a table cell: `[{"x-message-ttl",60000}]`."""
    return erl_term([(k, _pretty_amqp_value(t, v)) for k, t, v in table_entries(table)])


def _typed_json_value(type_name: str | None, value: Any) -> Any:
    kind = type_name or infer_type(value)
    if kind == "table":
        return amqp_table_json(value)
    if kind == "array":
        return [[t, _typed_json_value(t, v)] for t, v in _typed_array_items(value)]
    return value


def amqp_table_json(table: Any) -> list[list[Any]]:
    """An AMQP table as rabbitmqctl's JSON formatter writes it: [[key, type, value], ...]."""
    return [[k, t or infer_type(v), _typed_json_value(t, v)] for k, t, v in table_entries(table)]


# -- info item values ---------------------------------------------------------------------------


def _node_state_pairs(value: Any) -> list[tuple[str, Any]]:
    if isinstance(value, Mapping):
        return [(str(k), v) for k, v in value.items()]
    pairs = []
    for entry in value or []:
        if isinstance(entry, (list, tuple)) and len(entry) == 2:
            pairs.append((str(entry[0]), entry[1]))
    return pairs


def format_value(value: Any, item: str = "") -> str:
    """One table cell, as rabbitmqctl's FormatterHelpers.format_info_item renders it."""
    if item in TABLE_ITEMS and isinstance(value, (list, tuple, Mapping)):
        return amqp_table_term(value)
    if item == "cluster_state" and isinstance(value, (list, Mapping)):
        return (
            "["
            + ", ".join(
                f"{{{erl_atom(node)}, {format_value(state)}}}"
                for node, state in _node_state_pairs(value)
            )
            + "]"
        )
    if item == "protocol" and isinstance(value, list):
        return erl_term(tuple(value))
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return erlang_float(value)
    if isinstance(value, Mapping):
        return "#{" + ", ".join(f"{k} => {format_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        if not value:
            return "[]"
        first = value[0]
        if isinstance(first, (str, list, tuple, bool)) or first is None:
            return "[" + ", ".join(format_value(v) for v in value) + "]"
        return erl_term(list(value))
    return str(value)


def json_value(value: Any, item: str = "") -> Any:
    """One value for `--formatter json`, shaped as rabbitmqctl's JSON output shapes it."""
    if item in TABLE_ITEMS and isinstance(value, (list, tuple, Mapping)):
        return amqp_table_json(value)
    if item == "cluster_state" and isinstance(value, (list, Mapping)):
        return dict(_node_state_pairs(value))
    return value


# -- JSON encoding (the elixir "json" library as rabbitmqctl 3.10 uses it) --------------------

_JSON_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
}


def _json_string(text: str) -> str:
    out = []
    for c in text:
        if c in _JSON_ESCAPES:
            out.append(_JSON_ESCAPES[c])
        elif ord(c) < 32:
            out.append(f"\\u{ord(c):04X}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def json_encode(value: Any, sort_keys: bool = False) -> str:
    """Compact JSON: no spaces, non-ASCII left as is, Erlang-style floats."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return erlang_float(value)
    if isinstance(value, str):
        return _json_string(value)
    if isinstance(value, Mapping):
        items: Iterable[tuple[Any, Any]] = value.items()
        if sort_keys:
            items = sorted(items, key=lambda kv: str(kv[0]))
        return (
            "{"
            + ",".join(f"{_json_string(str(k))}:{json_encode(v, sort_keys)}" for k, v in items)
            + "}"
        )
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(json_encode(v, sort_keys) for v in value) + "]"
    return _json_string(str(value))


# -- result rendering ---------------------------------------------------------------------------


def table_lines(
    rows: Sequence[Mapping[str, Any]],
    items: Sequence[str],
    *,
    headers: bool = True,
    pad_to_header: bool = False,
    drop_missing: bool = False,
) -> list[str]:
    """rabbitmqctl's Table formatter: a header (from the first row) unless `headers` is false,
    then one tab-separated line per row; nothing at all for no rows."""
    lines: list[str] = []
    for index, row in enumerate(rows):
        columns = [i for i in items if not drop_missing or row.get(i) is not None]
        if index == 0 and headers and columns:
            lines.append("\t".join(columns))
        cells = []
        for column in columns:
            cell = format_value(row.get(column), column)
            if pad_to_header:
                cell = cell.ljust(len(column))
            cells.append(cell)
        lines.append("\t".join(cells))
    return lines


def json_row(row: Mapping[str, Any], items: Sequence[str], drop_missing: bool = False) -> str:
    return json_encode(
        {i: json_value(row.get(i), i) for i in items if not drop_missing or row.get(i) is not None}
    )


def json_lines(
    rows: Sequence[Mapping[str, Any]], items: Sequence[str], drop_missing: bool = False
) -> list[str]:
    """rabbitmqctl's JSON formatter for a stream of rows: `[`, `{...}`, `,{...}`, ..., `]`."""
    lines = ["["]
    for index, row in enumerate(rows):
        lines.append(("," if index else "") + json_row(row, items, drop_missing))
    lines.append("]")
    return lines


def csv_lines(rows: Sequence[Mapping[str, Any]], items: Sequence[str]) -> list[str]:
    """rabbitmqctl's CSV formatter: a quoted header (always) and quoted cells, as in tables."""

    def line(cells: Iterable[str]) -> str:
        return ",".join('"' + cell.replace('"', '""') + '"' for cell in cells)

    if not rows:
        return []
    return [line(items)] + [line(format_value(row.get(i), i) for i in items) for row in rows]


def vhost_limits_lines(
    rows: Sequence[Mapping[str, Any]], everywhere: bool, node: str, formatter: str, headers: bool
) -> list[str]:
    """list_vhost_limits as rabbitmqctl prints it: for one vhost its limits as a JSON line
    (an empty line when there are none); with --global a table of vhost and limits."""
    texts = [
        (str(row.get("vhost", "")), json_encode(row.get("limits") or {}, sort_keys=True))
        for row in rows
    ]
    if not everywhere:
        text = texts[0][1] if texts and texts[0][1] != "{}" else ""
        if formatter == "json":
            return [json_encode({"node": node, "result": "ok", "value": text})] if text else ["[]"]
        return [text]
    if not texts:
        return ["[]" if formatter == "json" else ""]
    if formatter == "json":
        return (
            ["["]
            + [
                ("," if index else "") + json_encode({"vhost": vhost, "limits": text})
                for index, (vhost, text) in enumerate(texts)
            ]
            + ["]"]
        )
    if formatter == "csv":
        return csv_lines([{"vhost": v, "limits": t} for v, t in texts], ["vhost", "limits"])
    return (["vhost\tlimits"] if headers else []) + [f"{v}\t{t}" for v, t in texts]


# -- timeouts ---------------------------------------------------------------------------------


def timeout_seconds(timeout_ms: int) -> str:
    """`#{timeout / 1000}` in Elixir: always a float (`60.0`)."""
    return erlang_float(timeout_ms / 1000)


# -- status -----------------------------------------------------------------------------------

PROTOCOL_PURPOSE = {"amqp": "AMQP 0-9-1", "amqp/ssl": "AMQP 0-9-1 over TLS"}


def _interface(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def listener_maps(status: Mapping[str, Any], node: str) -> list[dict[str, Any]]:
    listeners = []
    for entry in status.get("listeners") or []:
        if isinstance(entry, Mapping):
            host, port = entry.get("host", ""), entry.get("port", "")
            protocol = entry.get("protocol", "amqp")
        else:
            host, port = entry[0], entry[1]
            protocol = entry[2] if len(entry) > 2 else "amqp"
        listeners.append(
            {
                "interface": _interface(str(host)),
                "node": node,
                "port": port,
                "protocol": protocol,
                "purpose": PROTOCOL_PURPOSE.get(protocol, protocol),
            }
        )
    return listeners


def status_map(status: Mapping[str, Any], node: str, os_name: str) -> dict[str, Any]:
    """The status document for `--formatter json` (rabbitmqctl's key names where they exist)."""
    uptime = status.get("uptime", 0)
    return {
        "data_directory": status.get("data_dir", ""),
        "is_under_maintenance": False,
        "listeners": listener_maps(status, node),
        "os": os_name,
        "pid": status.get("pid"),
        "product_name": "trimq",
        "product_version": status.get("version", ""),
        "alarms": list(status.get("alarms", [])),
        "memory": status.get("memory", {}),
        "disk_free": status.get("disk", {}),
        "totals": {
            "connection_count": status.get("connections", 0),
            "queue_count": status.get("queues", 0),
            "message_count": status.get("messages", 0),
        },
        "uptime": int(uptime) if isinstance(uptime, (int, float)) else uptime,
        "warnings": [str(w) for w in status.get("warnings") or []],
    }


def _gb(value: Any) -> str:
    return f"{erlang_float(round(value / 1e9, 4))} gb" if isinstance(value, int) else "unknown"


def alarm_lines(alarms: Sequence[str], node: str) -> list[str]:
    names = {"memory": "Memory alarm", "disk": "Free disk space alarm"}
    return [f"{names.get(a, a)} on node {node}" for a in alarms]


def memory_lines(memory: Mapping[str, Any]) -> list[str]:
    if not memory:
        return []
    if memory.get("watermark_absolute"):
        setting = f"{_gb(memory['watermark_absolute'])}, computed to: {_gb(memory['limit'])}"
    else:
        setting = (
            f"{memory.get('watermark')} of available memory, computed to: "
            f"{_gb(memory.get('limit'))}"
        )
    return [
        f"Total memory used: {_gb(memory.get('used'))}",
        "Calculation strategy: rss",
        f"Memory high watermark setting: {setting}",
    ]


def disk_lines(disk: Mapping[str, Any]) -> list[str]:
    if not disk:
        return []
    return [
        f"Low free disk space watermark: {_gb(disk.get('limit'))}",
        f"Free disk space: {_gb(disk.get('free'))}",
    ]


def status_lines(status: Mapping[str, Any], node: str, os_name: str, tty: bool) -> list[str]:
    """`status` in rabbitmqctl's layout, with the sections trimq has."""
    m = status_map(status, node, os_name)
    lines = [
        f"{bright('Runtime', tty)}\n",
        f"OS PID: {m['pid']}",
        f"OS: {os_name}",
        f"Uptime (seconds): {m['uptime']}",
        "Is under maintenance?: false",
        f"Product name: {m['product_name']}",
        f"Product version: {m['product_version']}",
        f"Node name: {node}",
        f"\n{bright('Data directory', tty)}\n",
        f"Node data directory: {m['data_directory']}",
        *(f"Warning: {w}" for w in m["warnings"]),
        f"\n{bright('Alarms', tty)}\n",
        *(alarm_lines(m["alarms"], node) or ["(none)"]),
        f"\n{bright('Memory', tty)}\n",
        *memory_lines(m["memory"]),
        f"\n{bright('Free Disk Space', tty)}\n",
        *disk_lines(m["disk_free"]),
        f"\n{bright('Totals', tty)}\n",
        f"Connection count: {m['totals']['connection_count']}",
        f"Queue count: {m['totals']['queue_count']}",
        f"Message count: {m['totals']['message_count']}",
        f"\n{bright('Listeners', tty)}\n",
    ]
    listeners = m["listeners"]
    if not listeners:
        lines.append("(none)")
    for listener in listeners:
        lines.append(
            f"Interface: {listener['interface']}, port: {listener['port']}, "
            f"protocol: {listener['protocol']}, purpose: {listener['purpose']}"
        )
    return "\n".join(lines).split("\n")
