"""The S3 backend against moto's standalone server (started by the tests on 127.0.0.1).

moto checks neither the signatures nor the expiry of presigned URLs, so what S3 itself
enforces (signed Content-Type and Content-Length, expiry) is asserted on the URLs we issue;
expiry, reuse and tampering are exercised for real on the local backend (test_local_http.py).
"""

from __future__ import annotations

import hashlib
import json
import os
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
import requests
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from messaging.models import Message, StoredFile
from messaging.storage import s3 as s3_backend

pytestmark = pytest.mark.django_db

HTTP_TIMEOUT = 10


def grant(call, employee, body: bytes, **fields) -> dict:
    response = call(
        employee,
        "file.upload_url",
        **{"file_name": "设计稿.png", "content_type": "image/png", "size": len(body), **fields},
    )
    assert response["code"] == 0, response
    return response["data"]


def put(data: dict, body: bytes) -> requests.Response:
    return requests.put(data["url"], data=body, headers=data["headers"], timeout=HTTP_TIMEOUT)


def test_upload_and_download_back_byte_identical(call, uploader, s3_storage, settings):
    body = os.urandom(200_000)
    up = grant(call, uploader, body)
    assert up["url"].startswith(f"{settings.MCHAT_S3_ENDPOINT_URL}/{settings.MCHAT_S3_BUCKET}/emp_uma_001/")
    stored = put(up, body)
    assert stored.status_code == 200, stored.text

    head = s3_storage.head_object(Bucket=settings.MCHAT_S3_BUCKET, Key=up["key"])
    assert (head["ContentLength"], head["ContentType"]) == (len(body), "image/png")

    down = call(uploader, "file.download_url", key=up["key"])
    assert down["code"] == 0, down
    got = requests.get(down["data"]["url"], timeout=HTTP_TIMEOUT)
    assert got.status_code == 200
    assert hashlib.sha256(got.content).digest() == hashlib.sha256(body).digest()
    assert StoredFile.objects.get(key=up["key"]).uploaded_at is not None


def test_presigned_urls_sign_type_size_and_expiry(call, uploader, s3_storage, settings):
    up = grant(call, uploader, b"12345")
    query = parse_qs(urlsplit(up["url"]).query)
    assert query["X-Amz-SignedHeaders"][0].split(";") == ["content-length", "content-type", "host"]
    assert int(query["X-Amz-Expires"][0]) <= settings.MCHAT_UPLOAD_URL_TTL_SECONDS
    assert query["X-Amz-Credential"][0].startswith("mchat-test-key/")

    assert put(up, b"12345").status_code == 200
    down = call(uploader, "file.download_url", key=up["key"])["data"]
    query = parse_qs(urlsplit(down["url"]).query)
    assert int(query["X-Amz-Expires"][0]) <= settings.MCHAT_DOWNLOAD_URL_TTL_SECONDS
    assert query["response-content-disposition"][0].startswith("attachment; filename*=UTF-8''")


def test_another_employee_is_refused_and_members_of_the_conversation_are_not(
    call, uploader, friend, stranger, s3_storage
):
    body = b"\x89PNG fake"
    up = grant(call, uploader, body)
    assert call(uploader, "file.download_url", key=up["key"])["code"] == 404  # nothing uploaded yet
    assert put(up, body).status_code == 200
    assert call(stranger, "file.download_url", key=up["key"])["code"] == 403

    image = {"type": "image", "key": up["key"], "width": 10, "height": 10}
    assert call(uploader, "msg.send_private", to_employee_id=friend.employee_id, content=image)["code"] == 0
    opened = call(friend, "file.download_url", key=up["key"])
    assert opened["code"] == 0
    assert requests.get(opened["data"]["url"], timeout=HTTP_TIMEOUT).content == body
    assert call(stranger, "file.download_url", key=up["key"])["code"] == 403


def test_size_limit_and_size_mismatch(call, uploader, friend, s3_storage, settings):
    too_big = call(
        uploader,
        "file.upload_url",
        file_name="a.png",
        content_type="image/png",
        size=settings.MCHAT_FILE_MAX_BYTES + 1,
    )
    assert too_big["code"] == 400 and "size 不能超过" in too_big["message"]

    # A store that did not enforce the signed Content-Length (moto): the server still does.
    up = grant(call, uploader, b"four")
    assert put(up, b"four and more").status_code == 200
    refused = call(uploader, "file.download_url", key=up["key"])
    assert refused["code"] == 400 and "不一致" in refused["message"]
    image = {"type": "image", "key": up["key"], "width": 1, "height": 1}
    sent = call(uploader, "msg.send_private", to_employee_id=friend.employee_id, content=image)
    assert sent["code"] == 400
    assert not Message.objects.exists()


def test_config_storage_returns_sts_credentials_for_the_callers_prefix(call, uploader, s3_storage, settings):
    response = call(uploader, "config.storage")
    assert response["code"] == 0, response
    data = response["data"]
    assert data["backend"] == "s3"
    assert (data["endpoint"], data["bucket"], data["region"]) == (
        settings.MCHAT_S3_ENDPOINT_URL,
        settings.MCHAT_S3_BUCKET,
        "us-east-1",
    )
    assert data["prefix"] == "emp_uma_001/"
    assert data["access_key"] and data["secret_key"] and data["session_token"]
    assert data["access_key"] != settings.MCHAT_S3_ACCESS_KEY
    assert parse_datetime(data["expires_at"]) > timezone.now()

    # A client uses them directly, under its prefix, and may then send the object by key.
    client = boto3.client(
        "s3",
        endpoint_url=data["endpoint"],
        region_name=data["region"],
        aws_access_key_id=data["access_key"],
        aws_secret_access_key=data["secret_key"],
        aws_session_token=data["session_token"],
    )
    key = f"{data['prefix']}notes/方案.pdf"
    client.put_object(Bucket=data["bucket"], Key=key, Body=b"%PDF-1.4", ContentType="application/pdf")
    assert client.get_object(Bucket=data["bucket"], Key=key)["Body"].read() == b"%PDF-1.4"
    content = {"type": "file", "key": key, "name": "方案.pdf", "size": 8}
    assert call(uploader, "msg.send_private", to_employee_id="emp_uma_001", content=content)["code"] == 0
    stored = StoredFile.objects.get(key=key)
    assert (stored.owner, stored.size, stored.content_type, stored.name) == (
        uploader,
        8,
        "application/pdf",
        "方案.pdf",
    )


def test_the_session_policy_allows_only_the_callers_prefix():
    policy = s3_backend.session_policy(bucket="mchat-files", employee_id="emp_uma_001")
    [statement] = policy["Statement"]
    assert statement["Effect"] == "Allow"
    assert statement["Resource"] == ["arn:aws:s3:::mchat-files/emp_uma_001/*"]
    assert set(statement["Action"]) == {"s3:PutObject", "s3:GetObject", "s3:AbortMultipartUpload"}
    assert "s3:ListBucket" not in json.dumps(policy)


def test_the_policy_is_what_sts_is_asked_for(uploader, s3_storage, settings, monkeypatch):
    backend = s3_backend.S3Backend()
    sts = backend._sts()
    calls = []
    sts.meta.events.register("provide-client-params.sts.*", lambda params, **kw: calls.append(params))
    try:
        backend.temporary_credentials(employee_id="emp_uma_001", seconds=60)
        settings.MCHAT_STS_ROLE_ARN = ""
        backend.temporary_credentials(employee_id="emp_uma_001", seconds=60)
    finally:
        sts.meta.events.unregister("provide-client-params.sts.*")
    assume, federation = calls
    expected = s3_backend.session_policy(bucket=settings.MCHAT_S3_BUCKET, employee_id="emp_uma_001")
    assert json.loads(assume["Policy"]) == expected
    assert assume["RoleArn"] == "arn:aws:iam::123456789012:role/mchat-files"
    assert assume["DurationSeconds"] == 900  # STS's minimum
    assert json.loads(federation["Policy"]) == expected
    assert federation["Name"] == "emp_uma_001"


def test_another_employees_prefix_is_not_claimable(call, uploader, friend, s3_storage, settings):
    # An object under uploader's prefix that the server never granted (uploaded with STS).
    s3_storage.put_object(
        Bucket=settings.MCHAT_S3_BUCKET, Key="emp_uma_001/x.png", Body=b"x", ContentType="image/png"
    )
    assert call(friend, "file.download_url", key="emp_uma_001/x.png")["code"] == 404
    image = {"type": "image", "key": "emp_uma_001/x.png", "width": 1, "height": 1}
    refused = call(friend, "msg.send_private", to_employee_id=uploader.employee_id, content=image)
    assert refused["code"] == 400
    assert not StoredFile.objects.exists()
    assert call(uploader, "file.download_url", key="emp_uma_001/x.png")["code"] == 0
