"""S3-compatible storage (AWS, MinIO, Ceph...; moto's server in tests) through boto3.

Uploads and downloads use presigned URLs: the PUT signs Content-Type and Content-Length, so
the store refuses a body of another type or size. config.storage hands out STS temporary
credentials whose session policy allows only the caller's own prefix.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from functools import lru_cache
from urllib.parse import quote

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError
from django.conf import settings
from django.utils import timezone

from messaging.storage import ObjectInfo

# STS refuses shorter sessions.
STS_MIN_SECONDS = 900


@lru_cache(maxsize=8)
def _client(
    service: str, endpoint_url: str | None, region: str, access_key: str | None, secret_key: str | None
):
    # Path-style addressing for self-hosted endpoints (no wildcard DNS for bucket hosts).
    addressing = "path" if endpoint_url else "auto"
    return boto3.session.Session().client(
        service,
        endpoint_url=endpoint_url,
        region_name=region,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        config=Config(
            signature_version="s3v4", s3={"addressing_style": addressing}, retries={"max_attempts": 3}
        ),
    )


def session_policy(*, bucket: str, employee_id: str) -> dict:
    """What temporary credentials may do: read and write objects under the employee's prefix."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "OwnPrefixOnly",
                "Effect": "Allow",
                "Action": ["s3:PutObject", "s3:GetObject", "s3:AbortMultipartUpload"],
                "Resource": [f"arn:aws:s3:::{bucket}/{employee_id}/*"],
            }
        ],
    }


def _attachment(name: str) -> str:
    return f"attachment; filename*=UTF-8''{quote(name, safe='')}"


class S3Backend:
    name = "s3"

    def __init__(self) -> None:
        self.bucket = settings.MCHAT_S3_BUCKET
        self.endpoint = settings.MCHAT_S3_ENDPOINT_URL
        self.region = settings.MCHAT_S3_REGION

    def _s3(self):
        return _client(
            "s3", self.endpoint, self.region, settings.MCHAT_S3_ACCESS_KEY, settings.MCHAT_S3_SECRET_KEY
        )

    def _sts(self):
        return _client(
            "sts",
            settings.MCHAT_STS_ENDPOINT_URL,
            self.region,
            settings.MCHAT_S3_ACCESS_KEY,
            settings.MCHAT_S3_SECRET_KEY,
        )

    def expiry(self, now: datetime, method: str) -> datetime:
        seconds = (
            settings.MCHAT_UPLOAD_URL_TTL_SECONDS
            if method == "PUT"
            else settings.MCHAT_DOWNLOAD_URL_TTL_SECONDS
        )
        return now + timedelta(seconds=seconds)

    def _expires_in(self, expires_at: datetime) -> int:
        return max(1, int((expires_at - timezone.now()).total_seconds()))

    def upload_target(self, *, key: str, content_type: str, size: int, expires_at: datetime) -> str:
        return self._s3().generate_presigned_url(
            "put_object",
            Params={"Bucket": self.bucket, "Key": key, "ContentType": content_type, "ContentLength": size},
            ExpiresIn=self._expires_in(expires_at),
            HttpMethod="PUT",
        )

    def download_url(self, *, key: str, name: str, content_type: str, expires_at: datetime) -> str:
        return self._s3().generate_presigned_url(
            "get_object",
            Params={
                "Bucket": self.bucket,
                "Key": key,
                "ResponseContentType": content_type,
                "ResponseContentDisposition": _attachment(name),
            },
            ExpiresIn=self._expires_in(expires_at),
            HttpMethod="GET",
        )

    def object_info(self, key: str) -> ObjectInfo | None:
        try:
            head = self._s3().head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        return ObjectInfo(size=int(head["ContentLength"]), content_type=head.get("ContentType"))

    def delete(self, key: str) -> None:
        self._s3().delete_object(Bucket=self.bucket, Key=key)

    def temporary_credentials(self, *, employee_id: str, seconds: int) -> dict:
        """STS credentials limited to the employee's prefix: AssumeRole on MCHAT_STS_ROLE_ARN
        when set, else GetFederationToken (needs long-term IAM user credentials)."""
        policy = json.dumps(session_policy(bucket=self.bucket, employee_id=employee_id))
        duration = max(STS_MIN_SECONDS, seconds)
        if settings.MCHAT_STS_ROLE_ARN:
            answer = self._sts().assume_role(
                RoleArn=settings.MCHAT_STS_ROLE_ARN,
                RoleSessionName=f"mchat-{employee_id}"[:64],
                Policy=policy,
                DurationSeconds=duration,
            )
        else:
            answer = self._sts().get_federation_token(
                Name=employee_id[:32], Policy=policy, DurationSeconds=duration
            )
        credentials = answer["Credentials"]
        return {
            "endpoint": self.endpoint or f"https://s3.{self.region}.amazonaws.com",
            "bucket": self.bucket,
            "region": self.region,
            "access_key": credentials["AccessKeyId"],
            "secret_key": credentials["SecretAccessKey"],
            "session_token": credentials["SessionToken"],
            "expires_at": credentials["Expiration"],
        }
