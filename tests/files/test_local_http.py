"""The local backend over real HTTP: requests against Django's live server."""

from __future__ import annotations

import hashlib
import os
from urllib.parse import quote

import pytest
import requests

from messaging.models import StoredFile, UsedFileUrl
from tests.files.helpers import url_parts

pytestmark = pytest.mark.django_db(transaction=True)

HTTP_TIMEOUT = 10


@pytest.fixture
def base_url(live_server, settings):
    settings.MCHAT_PUBLIC_BASE_URL = live_server.url
    return live_server.url


def grant(call, employee, body: bytes, **fields) -> dict:
    response = call(
        employee,
        "file.upload_url",
        **{"file_name": "季度报告.pdf", "content_type": "application/pdf", "size": len(body), **fields},
    )
    assert response["code"] == 0, response
    return response["data"]


def put(data: dict, body: bytes, **headers) -> requests.Response:
    return requests.put(data["url"], data=body, headers={**data["headers"], **headers}, timeout=HTTP_TIMEOUT)


def download(call, employee, key: str) -> dict:
    response = call(employee, "file.download_url", key=key)
    assert response["code"] == 0, response
    return response["data"]


def test_upload_and_download_back_byte_identical(call, uploader, base_url, local_storage):
    body = os.urandom(300_000)  # several read chunks
    up = grant(call, uploader, body)
    stored = put(up, body)
    assert stored.status_code == 200, stored.text
    assert stored.json()["data"]["size"] == len(body)
    assert (local_storage / up["key"]).read_bytes() == body
    assert StoredFile.objects.get(key=up["key"]).uploaded_at is not None

    down = download(call, uploader, up["key"])
    got = requests.get(down["url"], timeout=HTTP_TIMEOUT)
    assert got.status_code == 200
    assert hashlib.sha256(got.content).hexdigest() == hashlib.sha256(body).hexdigest()
    assert got.headers["Content-Type"] == "application/pdf"
    assert got.headers["X-Content-Type-Options"] == "nosniff"
    assert "attachment" in got.headers["Content-Disposition"]
    assert quote("季度报告.pdf") in got.headers["Content-Disposition"]


def test_urls_are_single_use(call, uploader, base_url):
    body = b"once only"
    up = grant(call, uploader, body)
    assert put(up, body).status_code == 200
    again = put(up, body)
    assert again.status_code == 403
    assert again.json()["message"] == "链接已被使用"

    down = download(call, uploader, up["key"])
    assert requests.get(down["url"], timeout=HTTP_TIMEOUT).status_code == 200
    reused = requests.get(down["url"], timeout=HTTP_TIMEOUT)
    assert (reused.status_code, reused.json()["message"]) == (403, "链接已被使用")
    # A fresh URL for the same object works.
    assert requests.get(download(call, uploader, up["key"])["url"], timeout=HTTP_TIMEOUT).content == body
    assert UsedFileUrl.objects.count() == 3


def test_expired_urls_are_refused(call, uploader, base_url, settings):
    # A lifetime of 0 s: the URL expires at the (whole) second it is issued in, so it has
    # expired by the time it is used, without the test waiting for a clock.
    settings.MCHAT_UPLOAD_URL_TTL_SECONDS = 0
    body = b"late"
    up = grant(call, uploader, body)
    late = put(up, body)
    assert (late.status_code, late.json()["message"]) == (403, "链接已过期")

    settings.MCHAT_UPLOAD_URL_TTL_SECONDS = 60  # this one must not expire on a loaded machine
    fresh = grant(call, uploader, body)
    assert put(fresh, body).status_code == 200
    settings.MCHAT_DOWNLOAD_URL_TTL_SECONDS = 0
    down = download(call, uploader, fresh["key"])
    expired = requests.get(down["url"], timeout=HTTP_TIMEOUT)
    assert (expired.status_code, expired.json()["message"]) == (403, "链接已过期")


def test_tampered_urls_are_refused(call, uploader, base_url):
    body = b"original"
    up = grant(call, uploader, body)
    key, token = url_parts(up["url"])
    other = grant(call, uploader, body)
    other_key, _ = url_parts(other["url"])

    flipped = token[:-3] + ("A" if token[-3] != "A" else "B") + token[-2:]
    cases = [
        f"{base_url}/files/{quote(key)}?token={flipped}",  # signature broken
        f"{base_url}/files/{quote(other_key)}?token={token}",  # another key
        f"{base_url}/files/{quote(key)}",  # no token at all
    ]
    for url in cases:
        refused = requests.put(url, data=body, headers=up["headers"], timeout=HTTP_TIMEOUT)
        assert (refused.status_code, refused.json()["message"]) == (403, "链接签名无效"), url
    # An upload URL is not a download URL.
    wrong_method = requests.get(up["url"], timeout=HTTP_TIMEOUT)
    assert (wrong_method.status_code, wrong_method.json()["message"]) == (403, "链接签名无效")
    # None of the refusals used up the real URL.
    assert put(up, body).status_code == 200


def test_another_employee_gets_no_url_and_cannot_reuse_ones(call, uploader, stranger, base_url):
    body = b"private"
    up = grant(call, uploader, body)
    assert put(up, body).status_code == 200
    assert call(stranger, "file.download_url", key=up["key"])["code"] == 403
    # A stranger's own grant does not open someone else's key.
    theirs = grant(call, stranger, body)
    _, token = url_parts(theirs["url"])
    refused = requests.get(f"{base_url}/files/{quote(up['key'])}?token={token}", timeout=HTTP_TIMEOUT)
    assert refused.status_code == 403


def test_size_and_type_are_enforced_on_upload(call, uploader, base_url, settings, local_storage):
    body = b"x" * 1000
    up = grant(call, uploader, body)
    bigger = put(up, body + b"y")
    assert bigger.status_code == 413
    smaller = put(up, body[:-1])
    assert smaller.status_code == 400 and "Content-Length" in smaller.json()["message"]
    wrong_type = put(up, body, **{"Content-Type": "image/png"})
    assert wrong_type.status_code == 400 and "Content-Type" in wrong_type.json()["message"]
    # Refused before the body was read: the URL still works for the right upload.
    assert put(up, body).status_code == 200

    too_big = call(
        uploader,
        "file.upload_url",
        file_name="big.zip",
        content_type="application/zip",
        size=settings.MCHAT_FILE_MAX_BYTES + 1,
    )
    assert too_big["code"] == 400


def test_a_body_shorter_than_its_content_length_stores_nothing(call, uploader, base_url, local_storage):
    """The client announces the granted size but the connection ends early."""
    import socket
    from urllib.parse import urlsplit

    body = b"z" * 5000
    up = grant(call, uploader, body)
    parts = urlsplit(up["url"])
    with socket.create_connection((parts.hostname, parts.port), timeout=HTTP_TIMEOUT) as sock:
        sock.sendall(
            (
                f"PUT {parts.path}?{parts.query} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                f"Content-Type: application/pdf\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            ).encode()
            + body[:100]
        )
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
    assert answer.split(b"\r\n", 1)[0].split()[1] == b"400"
    assert not (local_storage / up["key"]).exists()
    assert StoredFile.objects.get(key=up["key"]).uploaded_at is None
    assert list((local_storage / up["key"]).parent.glob(".upload-*")) == []


def test_the_local_views_answer_404_when_s3_is_configured(call, uploader, base_url, settings):
    body = b"abc"
    up = grant(call, uploader, body)
    settings.MCHAT_STORAGE = "s3"
    assert put(up, body).status_code == 404


def test_concurrent_uses_of_one_url_succeed_once(call, uploader, base_url):
    from concurrent.futures import ThreadPoolExecutor

    body = b"contended"
    up = grant(call, uploader, body)
    assert put(up, body).status_code == 200
    url = download(call, uploader, up["key"])["url"]
    with ThreadPoolExecutor(max_workers=6) as pool:
        codes = sorted(pool.map(lambda _: requests.get(url, timeout=HTTP_TIMEOUT).status_code, range(6)))
    assert codes == [200, 403, 403, 403, 403, 403]
