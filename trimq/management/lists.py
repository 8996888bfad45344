"""The one list helper every list endpoint uses: RabbitMQ's `sort`, `sort_reverse`,
`columns`, and pagination (`page`, `page_size`, `name`, `use_regex`).

Objects are rendered lazily: sorting by a key the endpoint can read straight from its objects
(`keys`, e.g. the name) and filtering by name need no rendering, and only the page asked for
is rendered, so a page of 100 out of 10,000 queues costs 100 renderings and one sort.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from starlette.datastructures import QueryParams

from trimq.management.errors import ApiError, bad_request

T = TypeVar("T")

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 500


def lookup(row: Mapping[str, Any], dotted: str) -> Any:
    """A value at a dotted path (`message_stats.publish`), None if absent."""
    value: Any = row
    for part in dotted.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def select_columns(row: Mapping[str, Any], columns: Sequence[str]) -> dict[str, Any]:
    """Only `columns` of `row`, nested ones kept nested (`a.b` gives {"a": {"b": ...}});
    columns the row lacks are left out, as RabbitMQ does."""
    out: dict[str, Any] = {}
    for column in columns:
        parts = column.split(".")
        value = lookup(row, column)
        if value is None and lookup(row, parts[0]) is None and parts[0] not in row:
            continue
        target = out
        for part in parts[:-1]:
            target = target.setdefault(part, {})
        target[parts[-1]] = value
    return out


def _sortable(value: Any) -> tuple[int, Any]:
    """Values of different types in one order (numbers, then text, then anything else)."""
    if isinstance(value, bool) or value is None:
        return (2, str(value))
    if isinstance(value, (int, float)):
        return (0, value)
    if isinstance(value, str):
        return (1, value.encode("utf-8"))
    return (2, repr(value))


def _positive(text: str | None) -> int | None:
    if text is None:
        return None
    if not text.strip().lstrip("-").isdigit():
        raise bad_request("Pagination parameters are invalid")
    return int(text)


def _name_filter(name: str, use_regex: bool) -> Callable[[str], bool]:
    """RabbitMQ's name filter: a case-insensitive substring, or a case-insensitive regex."""
    if use_regex:
        try:
            pattern = re.compile(name, re.IGNORECASE)
        except re.error:
            raise bad_request("Pagination parameters are invalid") from None
        return lambda candidate: pattern.search(candidate) is not None
    folded = name.lower()
    return lambda candidate: folded in candidate.lower()


class ListQuery:
    """The list parameters of one request, checked."""

    def __init__(self, query: QueryParams) -> None:
        self.columns = [c for c in (query.get("columns") or "").split(",") if c]
        self.sort = query.get("sort") or None
        self.reverse = query.get("sort_reverse") == "true"
        self.paginated = "page" in query
        self.page = _positive(query.get("page")) if self.paginated else None
        size = _positive(query.get("page_size")) if self.paginated else None
        self.page_size = DEFAULT_PAGE_SIZE if size is None else size
        if self.page is not None and (self.page < 1 or not 1 <= self.page_size <= MAX_PAGE_SIZE):
            shown = "undefined" if query.get("page_size") is None else self.page_size
            raise ApiError(
                400,
                "invalid_pagination_parameters",
                f"Invalid pagination parameters: page number {self.page}, page size {shown}",
            )
        self.name = (query.get("name") or "") if self.paginated else ""
        self.use_regex = query.get("use_regex") == "true"


def respond_list(
    query: QueryParams,
    objects: Iterable[T],
    render: Callable[[T], dict[str, Any]],
    *,
    name: Callable[[T], str],
    keys: Mapping[str, Callable[[T], Any]] | None = None,
    default_sort: Sequence[str] = ("name",),
) -> Any:
    """A list answer: a JSON array, or the paginated object when `page` is given.

    `name` reads an object's name (for the `name` filter); `keys` are sort keys readable
    without rendering; `default_sort` the order when `sort` is not given."""
    params = ListQuery(query)
    items = list(objects)
    total = len(items)
    if params.name:
        matches = _name_filter(params.name, params.use_regex)
        items = [item for item in items if matches(name(item))]
    cheap = dict(keys or {})
    cheap.setdefault("name", name)
    rendered: dict[int, dict[str, Any]] = {}

    def row(index: int) -> dict[str, Any]:
        if index not in rendered:
            rendered[index] = render(items[index])
        return rendered[index]

    def sort_key(column: str) -> Callable[[int], tuple[int, Any]]:
        if column in cheap:
            read = cheap[column]
            return lambda i: _sortable(read(items[i]))
        return lambda i: _sortable(lookup(row(i), column))

    order = list(range(len(items)))
    for column in reversed(default_sort):
        order.sort(key=sort_key(column))
    if params.sort:
        order.sort(key=sort_key(params.sort))
    if params.reverse:
        order.reverse()

    def shaped(index: int) -> dict[str, Any]:
        full = row(index)
        return select_columns(full, params.columns) if params.columns else full

    if params.page is None:
        return [shaped(i) for i in order]
    filtered = len(order)
    page_count = -(-filtered // params.page_size)
    if params.page > max(page_count, 1):
        raise ApiError(
            400,
            "page_out_of_range",
            f"Page out of range, page: {params.page} page size: {params.page_size}, "
            f"len: {filtered}",
        )
    start = (params.page - 1) * params.page_size
    page = [shaped(i) for i in order[start : start + params.page_size]]
    return {
        "filtered_count": filtered,
        "item_count": len(page),
        "items": page,
        "page": params.page,
        "page_count": page_count,
        "page_size": params.page_size,
        "total_count": total,
    }
