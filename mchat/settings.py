"""MChat settings: everything from the environment, with the embedded defaults of DESIGN §1.

Unset variables give the one-machine setup that `make up` runs: SQLite and broker files under
`var/`, Celery in eager mode, a local Mosquitto on 127.0.0.1:1883.
"""

import json
import os
import secrets
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("MCHAT_VAR_DIR", BASE_DIR / "var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)


def _env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _persistent_secret(name: str) -> str:
    """A random secret kept under var/ so that restarts of the embedded setup keep it."""
    path = VAR_DIR / name
    if not path.exists():
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY") or _persistent_secret("django-secret-key")
DEBUG = _env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,testserver").split(",")
CSRF_TRUSTED_ORIGINS = [o for o in os.environ.get("DJANGO_CSRF_TRUSTED_ORIGINS", "").split(",") if o]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "mptt",
    "import_export",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "org",
    "messaging",
    "bridge",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "mchat.urls"
WSGI_APPLICATION = "mchat.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{VAR_DIR / 'mchat.sqlite3'}"),
        conn_max_age=int(os.environ.get("DATABASE_CONN_MAX_AGE", "60")),
    )
}
if DATABASES["default"]["ENGINE"].endswith("postgresql"):
    # Server-side binding with prepared statements: a statement run a few times (every one on
    # the request path) is parsed and planned once per connection instead of on every call,
    # which for the message store's one statement was a third of its time. Django leaves
    # preparation off unless prepare_threshold is given. "off" for a pooler that cannot keep
    # prepared statements (PgBouncer in transaction mode before 1.21).
    _prepare = os.environ.get("DATABASE_PREPARE_THRESHOLD", "5")
    DATABASES["default"]["OPTIONS"] = {
        "server_side_binding": True,
        "prepare_threshold": None if _prepare.lower() in ("", "off", "none") else int(_prepare),
    }
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # Several processes (bridge, web, worker) share the file: WAL and a busy timeout
    # keep writers from failing with "database is locked" under light concurrency.
    DATABASES["default"]["OPTIONS"] = {
        # Seconds a writer waits for the lock; past it the request gets 500 (bounded).
        "timeout": 5,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    # A file, not shared-cache memory: tests run a bridge thread beside the test thread.
    # One file per test run, so that parallel runs on one machine never share it.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-{os.getpid()}.sqlite3")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

# One language for everything user-facing, as the interface document: no per-browser
# negotiation, which would mix Django's own English with MChat's Chinese.
LANGUAGE_CODE = os.environ.get("MCHAT_LANGUAGE", "zh-hans")
LANGUAGES = [("zh-hans", "简体中文"), ("en", "English")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = os.environ.get("MCHAT_TIME_ZONE", "Asia/Shanghai")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("MCHAT_LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

# --- Celery: eager (in-process) unless a broker URL is configured -------------------------
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "")
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_BACKEND = os.environ.get("CELERY_RESULT_BACKEND") or None
CELERY_TASK_IGNORE_RESULT = True

# --- MQTT ---------------------------------------------------------------------------------
# Where the bridge (and any server process that publishes) connects.
MCHAT_MQTT_URL = os.environ.get("MCHAT_MQTT_URL", "mqtt://127.0.0.1:1883")
MCHAT_BRIDGE_USERNAME = os.environ.get("MCHAT_BRIDGE_USERNAME", "mchat-bridge")
MCHAT_BRIDGE_PASSWORD = os.environ.get("MCHAT_BRIDGE_PASSWORD") or _persistent_secret("bridge-password")
# What employee.create tells clients (spec 3.3 mqtt_connection).
MCHAT_PUBLIC_MQTT_HOST = os.environ.get("MCHAT_PUBLIC_MQTT_HOST", "127.0.0.1")
MCHAT_PUBLIC_MQTT_PORT = int(os.environ.get("MCHAT_PUBLIC_MQTT_PORT", "1883"))
MCHAT_PUBLIC_MQTT_TLS = _env_bool("MCHAT_PUBLIC_MQTT_TLS", False)

# Broker files rendered from the database (DESIGN §3) and the pid file used for SIGHUP.
MCHAT_BROKER_DIR = Path(os.environ.get("MCHAT_BROKER_DIR", VAR_DIR / "broker"))
MCHAT_BROKER_PORT = int(os.environ.get("MCHAT_BROKER_PORT", "1883"))
# Seconds to gather changes before one re-render; 0 renders synchronously after commit.
MCHAT_BROKER_SYNC_DEBOUNCE = float(os.environ.get("MCHAT_BROKER_SYNC_DEBOUNCE", "0.05"))

# --- Request pipeline (DESIGN §4) ---------------------------------------------------------
MCHAT_MAX_PAYLOAD = int(os.environ.get("MCHAT_MAX_PAYLOAD", str(64 * 1024)))
# Requests served in one transaction when they arrive together (1 = one commit per request).
MCHAT_BRIDGE_BATCH = int(os.environ.get("MCHAT_BRIDGE_BATCH", "64"))
# A batch or periodic job of the bridge that takes longer is logged as a warning (like
# PostgreSQL's log_min_duration_statement): every request in hand waits for it.
MCHAT_BRIDGE_SLOW_MS = int(os.environ.get("MCHAT_BRIDGE_SLOW_MS", "200"))
MCHAT_IDEMPOTENCY_TTL_HOURS = int(os.environ.get("MCHAT_IDEMPOTENCY_TTL_HOURS", "48"))
# Jobs every bridge process runs between batches and while idle: {"module:function": seconds}.
MCHAT_BRIDGE_PERIODIC = {
    "django.db:close_old_connections": 30,
    "bridge.services:processed_requests_purge": 3600,
    # Sends to AI agents whose acknowledgement deadline passed get their 504 (DESIGN §5).
    "bridge.deferred:expire_due": 0.2,
    "bridge.deferred:resolved_waits_purge": 3600,
    # Streamed replies: coalesced deltas, the text stored every few seconds, idle streams ended.
    "messaging.streams:streams_tick": 0.05,
    "messaging.streams:streams_expire": 10,
}
# Token buckets per employee and action class: {"class": [per_second, burst]}.
MCHAT_RATE_LIMITS = {
    "auth": [5, 20],
    "read": [20, 60],
    "write": [10, 40],
    "message": [50, 200],
    "stream": [200, 400],  # msg.stream_append, conversation.typing
    **json.loads(os.environ.get("MCHAT_RATE_LIMITS", "{}")),
}
MCHAT_CHALLENGE_TTL_SECONDS = int(os.environ.get("MCHAT_CHALLENGE_TTL_SECONDS", "300"))

# --- Groups and messages (DESIGN §5) ------------------------------------------------------
# How long a sender may recall its own message (group owners and admins may always).
MCHAT_RECALL_WINDOW_SECONDS = int(os.environ.get("MCHAT_RECALL_WINDOW_SECONDS", "120"))
MCHAT_GROUP_MAX_MEMBERS = int(os.environ.get("MCHAT_GROUP_MAX_MEMBERS", "2000"))
# Group read receipts: at most one event per message per this many seconds.
MCHAT_RECEIPT_INTERVAL_SECONDS = float(os.environ.get("MCHAT_RECEIPT_INTERVAL_SECONDS", "1.0"))
# System notifications to more inboxes than this go through Celery tasks of this size.
MCHAT_NOTIFY_BATCH_SIZE = int(os.environ.get("MCHAT_NOTIFY_BATCH_SIZE", "100"))

# --- Files and object storage (DESIGN §1, §5) ----------------------------------------------
# "local": files under MCHAT_STORAGE_DIR, moved through Django views behind signed, expiring,
# single-use URLs; "s3": any S3-compatible store, presigned URLs and STS credentials.
MCHAT_STORAGE = os.environ.get("MCHAT_STORAGE", "local")
MCHAT_STORAGE_DIR = Path(os.environ.get("MCHAT_STORAGE_DIR", VAR_DIR / "files"))
MCHAT_FILE_MAX_BYTES = int(os.environ.get("MCHAT_FILE_MAX_BYTES", str(50 * 1024 * 1024)))
# Content types a client may upload: exact types or "major/*".
MCHAT_FILE_ALLOWED_TYPES = [
    t.strip()
    for t in os.environ.get(
        "MCHAT_FILE_ALLOWED_TYPES",
        "image/*,audio/*,video/*,text/plain,text/csv,text/markdown,application/pdf,"
        "application/zip,application/x-7z-compressed,application/gzip,application/json,"
        "application/msword,application/vnd.ms-excel,application/vnd.ms-powerpoint,"
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document,"
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet,"
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    ).split(",")
    if t.strip()
]
MCHAT_UPLOAD_URL_TTL_SECONDS = int(os.environ.get("MCHAT_UPLOAD_URL_TTL_SECONDS", "900"))
MCHAT_DOWNLOAD_URL_TTL_SECONDS = int(os.environ.get("MCHAT_DOWNLOAD_URL_TTL_SECONDS", "300"))
# config.storage: lifetime of temporary credentials (STS accepts 900 s to 12 h).
MCHAT_STORAGE_CREDENTIALS_TTL_SECONDS = int(os.environ.get("MCHAT_STORAGE_CREDENTIALS_TTL_SECONDS", "3600"))
# Where clients reach this Django for the local backend's upload and download URLs.
MCHAT_PUBLIC_BASE_URL = os.environ.get("MCHAT_PUBLIC_BASE_URL", "http://127.0.0.1:8000").rstrip("/")
MCHAT_S3_ENDPOINT_URL = os.environ.get("MCHAT_S3_ENDPOINT_URL") or None  # None: AWS itself
MCHAT_S3_BUCKET = os.environ.get("MCHAT_S3_BUCKET", "mchat-files")
MCHAT_S3_REGION = os.environ.get("MCHAT_S3_REGION", "us-east-1")
MCHAT_S3_ACCESS_KEY = os.environ.get("MCHAT_S3_ACCESS_KEY") or None  # None: boto3's own chain
MCHAT_S3_SECRET_KEY = os.environ.get("MCHAT_S3_SECRET_KEY") or None
# STS: AssumeRole on this role when set (AWS, MinIO), else GetFederationToken.
MCHAT_STS_ENDPOINT_URL = os.environ.get("MCHAT_STS_ENDPOINT_URL") or MCHAT_S3_ENDPOINT_URL
MCHAT_STS_ROLE_ARN = os.environ.get("MCHAT_STS_ROLE_ARN", "")
# Organisation-wide notices to every inbox go through Celery tasks of this many recipients.
MCHAT_NOTICE_BATCH_SIZE = int(os.environ.get("MCHAT_NOTICE_BATCH_SIZE", "500"))

# --- REST API -----------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "mchat.errors.drf_exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "MChat HR integration API",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
}
