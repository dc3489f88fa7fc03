"""Files: employees, a private storage directory per test, and moto's S3 server (session)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import boto3
import pytest

from bench.services import free_port, stop_process
from tests.factories import EmployeeFactory

MOTO_START_TIMEOUT = 30.0


@pytest.fixture(autouse=True)
def local_storage(settings, tmp_path):
    settings.MCHAT_STORAGE = "local"
    settings.MCHAT_STORAGE_DIR = tmp_path / "files"
    settings.MCHAT_FILE_MAX_BYTES = 1024 * 1024
    return settings.MCHAT_STORAGE_DIR


@pytest.fixture
def uploader(db):
    return EmployeeFactory(employee_id="emp_uma_001", name="Uma")


@pytest.fixture
def friend(db):
    return EmployeeFactory(employee_id="emp_fei_002", name="Fei")


@pytest.fixture
def stranger(db):
    return EmployeeFactory(employee_id="emp_sam_003", name="Sam")


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory):
    """moto's standalone server on 127.0.0.1 (S3 and STS), stopped by its pid."""
    executable = Path(sys.executable).with_name("moto_server")
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [str(executable), "-H", "127.0.0.1", "-p", str(port)], stdout=out, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + MOTO_START_TIMEOUT
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto_server did not start:\n{log.read_text()}") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(process)


@pytest.fixture
def s3_storage(settings, moto_server):
    """MCHAT_STORAGE=s3 against moto, with a bucket of this test's own."""
    bucket = f"mchat-test-{uuid.uuid4().hex[:12]}"
    settings.MCHAT_STORAGE = "s3"
    settings.MCHAT_S3_ENDPOINT_URL = moto_server
    settings.MCHAT_STS_ENDPOINT_URL = moto_server
    settings.MCHAT_S3_BUCKET = bucket
    settings.MCHAT_S3_REGION = "us-east-1"
    settings.MCHAT_S3_ACCESS_KEY = "mchat-test-key"
    settings.MCHAT_S3_SECRET_KEY = "mchat-test-secret"
    settings.MCHAT_STS_ROLE_ARN = "arn:aws:iam::123456789012:role/mchat-files"
    s3 = boto3.client(
        "s3",
        endpoint_url=moto_server,
        region_name="us-east-1",
        aws_access_key_id="mchat-test-key",
        aws_secret_access_key="mchat-test-secret",
    )
    s3.create_bucket(Bucket=bucket)
    return s3
