"""A control request's arguments, each checked for its type: a malformed one is a usage error
(never an exception inside a handler, which would be a bug: `internal`)."""

from __future__ import annotations

import math
from typing import Any

from trimq.admin_errors import AdminError, ErrorKind
from trimq.broker.vhost import VHost
from trimq.info_items import ITEMS
from trimq.server.state import ServerState

REQUIRED: Any = object()  # the default of an argument that must be given


def arg(args: dict[str, Any], key: str, default: Any) -> Any:
    value = args.get(key)
    if value is None:
        if default is REQUIRED:
            raise AdminError(ErrorKind.USAGE, f"missing argument '{key}'")
        return default
    return value


def arg_str(args: dict[str, Any], key: str, default: Any = REQUIRED) -> str:
    value = arg(args, key, default)
    if not isinstance(value, str):
        raise AdminError(ErrorKind.USAGE, f"argument '{key}' must be a string")
    return value


def arg_int(
    args: dict[str, Any], key: str, default: Any = REQUIRED, low: int = 0, high: int = 2**63 - 1
) -> int:
    value = arg(args, key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise AdminError(
            ErrorKind.USAGE, f"argument '{key}' must be an integer from {low} to {high}"
        )
    return value


def arg_number(args: dict[str, Any], key: str, default: Any = REQUIRED) -> float:
    value = arg(args, key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise AdminError(ErrorKind.USAGE, f"argument '{key}' must be a number")
    return float(value)


def arg_bool(args: dict[str, Any], key: str) -> bool:
    value = arg(args, key, False)
    if not isinstance(value, bool):
        raise AdminError(ErrorKind.USAGE, f"argument '{key}' must be true or false")
    return value


def arg_strings(args: dict[str, Any], key: str) -> list[str]:
    value = arg(args, key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise AdminError(ErrorKind.USAGE, f"argument '{key}' must be a list of strings")
    return list(value)


def info_items(args: dict[str, Any], kind: str) -> list[str]:
    """The `items` a listing asks for, each one the listing has."""
    items = arg_strings(args, "items")
    unknown = [i for i in items if i not in ITEMS[kind]]
    if unknown:
        raise AdminError(ErrorKind.USAGE, f"Info key(s) {','.join(unknown)} are not supported")
    return items


def vhost_arg(state: ServerState, args: dict[str, Any]) -> VHost:
    """The vhost `vhost` names (default /); vhost_not_found if there is none."""
    return state.broker.get_vhost(arg_str(args, "vhost", "/"))
