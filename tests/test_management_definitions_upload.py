"""Definitions imported as RabbitMQ's web UI sends them: a multipart/form-data POST to
/api/definitions[/{vhost}] whose file is the part `file` (`curl -F file=@defs.json`), and the
answers to bad uploads.

Every expectation was taken from a RabbitMQ 3.10.8 with rabbitmq_management (run against one
with tools/rabbitmq_reference.sh): 204 for an import, 303 to the form's `redirect` when it has
one, 400 failed_to_parse_json for a file that is not a JSON object or a form without `file`,
an empty 400 for a body that is not multipart data, an empty 415 for other media types; an
empty file imports nothing (204), and of two `file` parts the last one is imported.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from http_helpers import Api, temp_vhost

PARSE_ERROR = {"error": "bad_request", "reason": "failed_to_parse_json"}


@pytest.fixture
def api(management_url: str) -> Api:
    return Api(management_url)


@pytest.fixture
def vhost(api: Api, unique: str) -> Iterator[str]:
    with temp_vhost(api, unique + "-vh") as name:
        yield name


def queue_doc(name: str, vhost: str | None = None) -> dict[str, Any]:
    queue: dict[str, Any] = {"name": name, "durable": True, "auto_delete": False, "arguments": {}}
    if vhost is not None:
        queue["vhost"] = vhost
    return {"queues": [queue]}


def upload(api: Api, *segments: str, **kwargs: Any) -> requests.Response:
    return api.post("definitions", *segments, allow_redirects=False, **kwargs)


def queue_names(api: Api, vhost: str) -> list[str]:
    return [q["name"] for q in api.get("queues", vhost).json()]


def test_upload_imports_the_file(api: Api, unique: str, vhost: str) -> None:
    user = unique + "-user"
    doc = {
        **queue_doc("uploaded", vhost),
        "users": [{"name": user, "password_hash": "", "tags": "monitoring"}],
    }
    files = {"file": ("defs.json", json.dumps(doc), "application/json")}
    answer = upload(api, files=files)
    try:
        assert (answer.status_code, answer.content) == (204, b"")
        assert queue_names(api, vhost) == ["uploaded"]
        assert api.get("users", user).json()["tags"] in (["monitoring"], "monitoring")
    finally:
        api.delete("users", user)

    # into one vhost: the per-vhost document, its queues without a vhost
    files = {"file": ("defs.json", json.dumps(queue_doc("per-vhost")), "application/json")}
    assert upload(api, vhost, files=files).status_code == 204
    assert sorted(queue_names(api, vhost)) == ["per-vhost", "uploaded"]
    missing = upload(api, unique + "-none", files=files)
    assert (missing.status_code, missing.json()) == (
        404,
        {"error": "not_found", "reason": "vhost_not_found"},
    )


def test_upload_as_a_plain_field_and_the_last_file_wins(api: Api, vhost: str) -> None:
    field = {"file": (None, json.dumps(queue_doc("from-field", vhost)))}
    assert upload(api, files=field).status_code == 204
    assert queue_names(api, vhost) == ["from-field"]
    good = ("file", ("a.json", json.dumps(queue_doc("second", vhost)), "application/json"))
    bad = ("file", ("b.txt", b"not json", "text/plain"))
    assert upload(api, files=[bad, good]).status_code == 204
    answer = upload(api, files=[good, bad])
    assert (answer.status_code, answer.json()) == (400, PARSE_ERROR)
    assert sorted(queue_names(api, vhost)) == ["from-field", "second"]


def test_upload_redirect(api: Api, vhost: str) -> None:
    """RabbitMQ's form field `redirect`: where the browser goes after an import."""
    files = {"file": ("defs.json", json.dumps(queue_doc("redirected", vhost)), "application/json")}
    answer = upload(api, files=files, data={"redirect": "../../#/"})
    assert (answer.status_code, answer.headers["location"], answer.content) == (
        303,
        "../../#/",
        b"",
    )
    assert queue_names(api, vhost) == ["redirected"]
    files = {"file": ("defs.json", b"{nope", "application/json")}
    answer = upload(api, files=files, data={"redirect": "../../#/"})
    assert (answer.status_code, answer.json()) == (400, PARSE_ERROR)
    assert "location" not in answer.headers


@pytest.mark.parametrize(
    "content",
    [b"not json", b"[1, 2]", b"null", b'"x"', b"\xff\xfe", b'{"queues": '],
    ids=["text", "array", "null", "string", "binary", "truncated"],
)
def test_upload_of_a_file_that_is_not_a_json_object(api: Api, vhost: str, content: bytes) -> None:
    files = {"file": ("defs.json", content, "application/json")}
    for segments in ((), (vhost,)):
        answer = upload(api, *segments, files=files)
        assert (answer.status_code, answer.json()) == (400, PARSE_ERROR)


def test_empty_upload_and_form_without_file(api: Api, unique: str, vhost: str) -> None:
    before = api.get("definitions").json()
    empty = {"file": ("defs.json", b"", "application/octet-stream")}
    assert upload(api, files=empty).status_code == 204
    assert upload(api, vhost, files=empty).status_code == 204
    assert queue_names(api, vhost) == []
    assert {u["name"] for u in api.get("definitions").json()["users"]} == {
        u["name"] for u in before["users"]
    }
    # a form with no part named `file` (here `upload`), in all and in one vhost
    other = {"upload": ("defs.json", json.dumps(queue_doc("q", vhost)), "application/json")}
    for segments in ((), (vhost,), (unique + "-none",)):
        answer = upload(api, *segments, files=other)
        assert (answer.status_code, answer.json()) == (400, PARSE_ERROR)
    answer = upload(
        api, data=b"--XX--\r\n", headers={"content-type": "multipart/form-data; boundary=XX"}
    )
    assert (answer.status_code, answer.json()) == (400, PARSE_ERROR)


@pytest.mark.parametrize(
    "content_type",
    ["multipart/form-data; boundary=XX", "multipart/form-data"],
    ids=["garbage", "no-boundary"],
)
def test_body_that_is_not_multipart_data(api: Api, content_type: str) -> None:
    answer = upload(api, data=b"garbage", headers={"content-type": content_type})
    assert (answer.status_code, answer.content) == (400, b"")


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/mixed; boundary=XX", None],
    ids=["text", "urlencoded", "mixed", "none"],
)
def test_other_media_types_are_refused(api: Api, vhost: str, content_type: str | None) -> None:
    headers = {} if content_type is None else {"content-type": content_type}
    body = json.dumps(queue_doc("never", vhost)).encode()
    answer = upload(api, data=body, headers=headers)
    assert (answer.status_code, answer.content) == (415, b"")
    assert queue_names(api, vhost) == []


def test_json_body_empty_and_with_parameters(api: Api, vhost: str) -> None:
    empty = upload(api, data=b"", headers={"content-type": "application/json"})
    assert (empty.status_code, empty.content) == (204, b"")
    body = json.dumps(queue_doc("typed", vhost)).encode()
    answer = upload(api, data=body, headers={"content-type": "Application/JSON; charset=utf-8"})
    assert answer.status_code == 204
    assert queue_names(api, vhost) == ["typed"]


def test_upload_needs_an_administrator(management_url: str) -> None:
    files = {"file": ("defs.json", b"{}", "application/json")}
    answer = requests.post(management_url + "/api/definitions", files=files, timeout=10)
    assert (answer.status_code, answer.content) == (401, b"")


@pytest.mark.skipif(
    bool(os.environ.get("TRIMQ_TEST_URL")),
    reason="trimq-only: RabbitMQ takes a form posted from another site's page",
)
def test_form_from_another_site_is_refused(api: Api, vhost: str) -> None:
    """A page of another site may post a form here with the credentials a browser keeps for
    this one: trimq refuses a multipart import whose Origin is not this server."""
    files = {"file": ("defs.json", json.dumps(queue_doc("csrf", vhost)), "application/json")}
    answer = upload(api, files=files, headers={"origin": "http://evil.example"})
    assert answer.status_code == 403
    assert answer.json()["error"] == "forbidden"
    assert queue_names(api, vhost) == []
    same = api.base.split("//", 1)[1]
    answer = upload(api, files=files, headers={"origin": "http://" + same})
    assert answer.status_code == 204
    # a redirect elsewhere than this server is not followed: the import's plain answer
    answer = upload(api, files={"file": ("d.json", b"{}")}, data={"redirect": "http://x.example/"})
    assert (answer.status_code, "location" in answer.headers) == (204, False)


def test_upload_larger_than_a_megabyte(api: Api, vhost: str) -> None:
    """Past the 1 MB Starlette keeps a part in memory (it spools to a file): still one import;
    a key the importer does not know is ignored, as RabbitMQ does."""
    doc = {**queue_doc("big", vhost), "comment": "x" * 1_500_000}
    files = {"file": ("defs.json", json.dumps(doc), "application/json")}
    assert upload(api, files=files).status_code == 204
    assert queue_names(api, vhost) == ["big"]
