"""MChat settings: everything from the environment, with the embedded defaults of DESIGN §1.

Unset variables give the one-machine setup that `make up` runs: SQLite and broker files under
`var/`, Celery in eager mode, a local Mosquitto on 127.0.0.1:1883.
"""

import json
import os
from datetime import timedelta
from pathlib import Path

import dj_database_url

from mchat import local_state

BASE_DIR = Path(__file__).resolve().parent.parent
# Created by `manage.py runstack` (mchat.local_state), never by importing these settings.
VAR_DIR = Path(os.environ.get("MCHAT_VAR_DIR", BASE_DIR / "var"))


def _env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


# From the environment, else var/django-secret-key (written by runstack), else random for this
# process only (sessions and signed URLs then do not survive it; check --deploy warns).
SECRET_KEY = local_state.secret(VAR_DIR, "DJANGO_SECRET_KEY")
DEBUG = _env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,testserver").split(",")
CSRF_TRUSTED_ORIGINS = [o for o in os.environ.get("DJANGO_CSRF_TRUSTED_ORIGINS", "").split(",") if o]

# --- Web security (`manage.py check --deploy`; docs/deploy.md) ----------------------------
# Headers on every response (SecurityMiddleware, XFrameOptionsMiddleware); Django's defaults
# spelled out so that nobody loosens them by accident.
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# MCHAT_HTTPS=1: browsers reach this site only over HTTPS (a TLS-terminating proxy in front,
# which sets X-Forwarded-Proto). Secure cookies, redirect to HTTPS, HSTS. The embedded default
# serves plain HTTP on 127.0.0.1 and therefore keeps these off (README: Operations).
MCHAT_HTTPS = _env_bool("MCHAT_HTTPS", False)
SESSION_COOKIE_SECURE = MCHAT_HTTPS
CSRF_COOKIE_SECURE = MCHAT_HTTPS
SECURE_SSL_REDIRECT = MCHAT_HTTPS
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if MCHAT_HTTPS else None
SECURE_HSTS_SECONDS = int(os.environ.get("MCHAT_HSTS_SECONDS", "31536000" if MCHAT_HTTPS else "0"))
# Set these two to 0 when a subdomain must stay reachable over plain HTTP (docs/deploy.md).
SECURE_HSTS_INCLUDE_SUBDOMAINS = _env_bool("MCHAT_HSTS_INCLUDE_SUBDOMAINS", MCHAT_HTTPS)
SECURE_HSTS_PRELOAD = _env_bool("MCHAT_HSTS_PRELOAD", MCHAT_HTTPS)
# /healthz answers plain HTTP on loopback probes even with MCHAT_HTTPS.
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]

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
    # Swagger UI and ReDoc served from our own static files, never a CDN.
    "drf_spectacular_sidecar",
    # Prometheus metrics of the web process (requests, latency, responses) on /metrics.
    "django_prometheus",
    "org",
    "messaging",
    "audit",
    "bridge",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Static files (hashed, compressed) straight from the web process: no runserver, no CDN.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "audit.context.AuditSourceMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
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

# Local passwords (console, web): people choose them, so the usual rules apply.
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": int(os.environ.get("MCHAT_PASSWORD_MIN_LENGTH", "10"))},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
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
# Filled by `manage.py collectstatic` (the Makefile runs it for `make up` and `make test`).
STATIC_ROOT = Path(os.environ.get("MCHAT_STATIC_ROOT", VAR_DIR / "static"))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # Names carry a content hash (cached for a year by browsers), with .gz/.br beside them.
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "mchat.logs.JsonFormatter"},
    },
    # MCHAT_LOG_JSON=1: one JSON object per line (mchat/logs.py).
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json" if _env_bool("MCHAT_LOG_JSON", False) else "plain",
        }
    },
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
# With JSON logs the worker keeps Django's logging configuration instead of its own format.
CELERY_WORKER_HIJACK_ROOT_LOGGER = not _env_bool("MCHAT_LOG_JSON", False)

# --- MQTT ---------------------------------------------------------------------------------
# TLS (docs/deploy.md): with a certificate and key (PEM) the broker also listens with TLS on
# MCHAT_TLS_PORT, clients are told to use it, and the bridge connects over it, verifying the
# certificate against MCHAT_TLS_CA (or the system's CAs). Plain TCP stays for loopback.
MCHAT_TLS_CERT = os.environ.get("MCHAT_TLS_CERT", "")
MCHAT_TLS_KEY = os.environ.get("MCHAT_TLS_KEY", "")
MCHAT_TLS_CA = os.environ.get("MCHAT_TLS_CA", "")
MCHAT_TLS_PORT = int(os.environ.get("MCHAT_TLS_PORT", "8883"))
_tls = bool(MCHAT_TLS_CERT or MCHAT_TLS_KEY)
# Where the bridge (and any server process that publishes) connects.
MCHAT_MQTT_URL = os.environ.get(
    "MCHAT_MQTT_URL", f"mqtts://127.0.0.1:{MCHAT_TLS_PORT}" if _tls else "mqtt://127.0.0.1:1883"
)
MCHAT_BRIDGE_USERNAME = os.environ.get("MCHAT_BRIDGE_USERNAME", "mchat-bridge")
MCHAT_BRIDGE_PASSWORD = local_state.secret(VAR_DIR, "MCHAT_BRIDGE_PASSWORD")
# What employee.create tells clients (spec 3.3 mqtt_connection).
MCHAT_PUBLIC_MQTT_HOST = os.environ.get("MCHAT_PUBLIC_MQTT_HOST", "127.0.0.1")
MCHAT_PUBLIC_MQTT_TLS = _env_bool("MCHAT_PUBLIC_MQTT_TLS", _tls)
MCHAT_PUBLIC_MQTT_PORT = int(
    os.environ.get("MCHAT_PUBLIC_MQTT_PORT", str(MCHAT_TLS_PORT if MCHAT_PUBLIC_MQTT_TLS else 1883))
)

# Broker files rendered from the database (DESIGN §3) and the pid file used for SIGHUP.
MCHAT_BROKER_DIR = Path(os.environ.get("MCHAT_BROKER_DIR", VAR_DIR / "broker"))
MCHAT_BROKER_PORT = int(os.environ.get("MCHAT_BROKER_PORT", "1883"))
# Connections each listener of the generated config accepts; 0: the open-files limit that
# runstack raises for the broker, less a reserve (bridge.broker.max_connections_for).
MCHAT_BROKER_MAX_CONNECTIONS = int(os.environ.get("MCHAT_BROKER_MAX_CONNECTIONS", "0"))
# Seconds to gather changes before one re-render; 0 renders synchronously after commit.
MCHAT_BROKER_SYNC_DEBOUNCE = float(os.environ.get("MCHAT_BROKER_SYNC_DEBOUNCE", "0.05"))

# The implementations of the domain's ports ("module:name"), created on first use (DESIGN §6):
# where answers and deliveries are published (mchat.outbox) and who renders the broker's
# credentials and ACL (mchat.broker_policy). The bridge installs its own publisher at start-up.
MCHAT_PUBLISHER = "bridge.publisher:server_publisher"
MCHAT_BROKER_POLICY = "bridge.acl:BrokerFiles"

# --- Request pipeline (DESIGN §4) ---------------------------------------------------------
MCHAT_MAX_PAYLOAD = int(os.environ.get("MCHAT_MAX_PAYLOAD", str(64 * 1024)))
# Requests served in one transaction when they arrive together (1 = one commit per request).
MCHAT_BRIDGE_BATCH = int(os.environ.get("MCHAT_BRIDGE_BATCH", "64"))
# A batch or periodic job of the bridge that takes longer is logged as a warning (like
# PostgreSQL's log_min_duration_statement): every request in hand waits for it.
MCHAT_BRIDGE_SLOW_MS = int(os.environ.get("MCHAT_BRIDGE_SLOW_MS", "200"))
MCHAT_IDEMPOTENCY_TTL_HOURS = int(os.environ.get("MCHAT_IDEMPOTENCY_TTL_HOURS", "48"))
# Jobs every bridge process runs between batches and while idle: {"module:function": seconds}.
# Only what belongs to serving requests; clean-ups are in MCHAT_SCHEDULE.
MCHAT_BRIDGE_PERIODIC = {
    "django.db:close_old_connections": 30,
    # Sends to AI agents whose acknowledgement deadline passed get their 504 (DESIGN §5).
    "bridge.deferred:expire_due": 0.2,
    # Streamed replies: coalesced deltas, the text stored every few seconds, idle streams ended.
    "messaging.streams:streams_tick": 0.05,
    "messaging.streams:streams_expire": 10,
}
# --- Observability (docs/deploy.md) --------------------------------------------------------
# Metrics and health ports listen here (loopback unless configured).
MCHAT_METRICS_HOST = os.environ.get("MCHAT_METRICS_HOST", "127.0.0.1")
# runbridge's /metrics and /healthz port (0 = off; runstack uses 9310; one per bridge process).
MCHAT_BRIDGE_METRICS_PORT = int(os.environ.get("MCHAT_BRIDGE_METRICS_PORT", "0"))
# The bridge's /healthz fails when its loop has not turned for this long.
MCHAT_BRIDGE_STALE_SECONDS = float(os.environ.get("MCHAT_BRIDGE_STALE_SECONDS", "30"))
# One JSON object per log line (for a log shipper) instead of plain text.
MCHAT_LOG_JSON = _env_bool("MCHAT_LOG_JSON", False)
# The web's /metrics answers only loopback clients unless requests carry this bearer token.
MCHAT_METRICS_TOKEN = os.environ.get("MCHAT_METRICS_TOKEN", "")

# Periodic clean-ups, {Celery task: seconds}: Celery beat sends them to a worker when
# CELERY_BROKER_URL is set; otherwise `manage.py runschedule` (started by runstack) runs them.
MCHAT_PURGE_INTERVAL_SECONDS = float(os.environ.get("MCHAT_PURGE_INTERVAL_SECONDS", "3600"))
MCHAT_SCHEDULE = {
    "bridge.tasks.processed_requests_purge": MCHAT_PURGE_INTERVAL_SECONDS,
    "bridge.tasks.agent_waits_purge": MCHAT_PURGE_INTERVAL_SECONDS,
    "org.tasks.challenges_purge": MCHAT_PURGE_INTERVAL_SECONDS,
    "messaging.tasks.file_records_purge": MCHAT_PURGE_INTERVAL_SECONDS,
    # Web sessions (one row per sign-in) that can no longer matter.
    "org.tasks.web_sessions_purge": MCHAT_PURGE_INTERVAL_SECONDS,
    # Retention (audit/retention.py): messages past MCHAT_MESSAGE_RETENTION_DAYS or their
    # group's own setting, and audit rows past MCHAT_AUDIT_RETENTION_DAYS, in bounded batches.
    "audit.tasks.message_retention_run": MCHAT_PURGE_INTERVAL_SECONDS,
    "audit.tasks.audit_retention_run": MCHAT_PURGE_INTERVAL_SECONDS,
}
CELERY_BEAT_SCHEDULE = {task: {"task": task, "schedule": seconds} for task, seconds in MCHAT_SCHEDULE.items()}
# Token buckets per employee and action class: {"class": [per_second, burst]}.
MCHAT_RATE_LIMITS = {
    "auth": [5, 20],
    "read": [20, 60],
    "write": [10, 40],
    "message": [50, 200],
    "stream": [200, 400],  # msg.stream_append, conversation.typing
    **json.loads(os.environ.get("MCHAT_RATE_LIMITS", "{}")),
}
# Redis shared by every bridge for the rate limit (one employee gets the rate in total);
# defaults to Celery's Redis. Empty: each bridge process limits on its own.
MCHAT_RATE_LIMIT_REDIS_URL = os.environ.get(
    "MCHAT_RATE_LIMIT_REDIS_URL",
    CELERY_BROKER_URL if CELERY_BROKER_URL.startswith(("redis://", "rediss://")) else "",
)
# Open streamed replies (messaging.stream_buffers): in Redis, shared by every bridge process,
# when this is set (defaults to the rate limit's Redis); empty: in each bridge process's memory,
# which serves one bridge process only (docs/deploy.md).
MCHAT_STREAM_REDIS_URL = os.environ.get("MCHAT_STREAM_REDIS_URL", MCHAT_RATE_LIMIT_REDIS_URL)
MCHAT_STREAM_BUFFER = (
    "messaging.stream_buffers_redis:RedisStreamBuffer"
    if MCHAT_STREAM_REDIS_URL
    else "messaging.stream_buffers:MemoryStreamBuffer"
)
# Seconds between two coalesced stream_delta deliveries of one stream: 0.1 = at most ~10 a
# second (issue 17); an append waits half of it on average before it is sent.
MCHAT_STREAM_DELTA_INTERVAL = float(os.environ.get("MCHAT_STREAM_DELTA_INTERVAL", "0.1"))
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

# --- Audit log and retention (DESIGN §10, audit.retention) --------------------------------
# Audit rows older than this are deleted by the retention job.
MCHAT_AUDIT_RETENTION_DAYS = int(os.environ.get("MCHAT_AUDIT_RETENTION_DAYS", "365"))
# Messages older than this are deleted (with their files) unless a group overrides it or a
# legal hold applies; unset or 0: kept for ever.
MCHAT_MESSAGE_RETENTION_DAYS = int(os.environ.get("MCHAT_MESSAGE_RETENTION_DAYS") or 0) or None

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
    # Swagger UI and ReDoc from drf-spectacular-sidecar's static files (offline intranets).
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- Web client and sign-in (DESIGN §8) ---------------------------------------------------
# Employees sign in with Django's auth machinery (org.web_auth; SSO: org.web_oidc); console
# accounts are separate users.
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "org.web_auth.EmployeeWebBackend",
]
LOGIN_URL = "/login/"
# The built browser client (`make web`): served under /static/web/, its index.html by "/".
MCHAT_WEB_DIST_DIR = Path(os.environ.get("MCHAT_WEB_DIST_DIR", BASE_DIR / "web" / "dist"))
STATICFILES_DIRS = [("web", MCHAT_WEB_DIST_DIR)] if MCHAT_WEB_DIST_DIR.is_dir() else []
# MQTT over WebSockets for browsers: the broker's listener and what the page is told.
MCHAT_WS_PORT = int(os.environ.get("MCHAT_WS_PORT", "8083"))
MCHAT_PUBLIC_WS_URL = os.environ.get("MCHAT_PUBLIC_WS_URL") or (
    f"{'wss' if MCHAT_PUBLIC_MQTT_TLS else 'ws'}://{MCHAT_PUBLIC_MQTT_HOST}:{MCHAT_WS_PORT}"
)
# Lifetime of the page's MQTT credential; the page refreshes it at 80 % of this.
MCHAT_WEB_TOKEN_TTL_SECONDS = int(os.environ.get("MCHAT_WEB_TOKEN_TTL_SECONDS", "300"))
# Cookies: HttpOnly session, SameSite=Lax; Secure when the site is served over TLS.
# (MCHAT_HTTPS above turns it on; MCHAT_COOKIE_SECURE alone is for a site behind TLS that
# must not redirect.)
MCHAT_COOKIE_SECURE = _env_bool("MCHAT_COOKIE_SECURE", MCHAT_HTTPS)
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_SECURE = MCHAT_COOKIE_SECURE
CSRF_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SECURE = MCHAT_COOKIE_SECURE
CSRF_FAILURE_VIEW = "org.views_web.csrf_failure"
# Content-Security-Policy (django-csp): no inline scripts, no other hosts except the MQTT
# WebSockets endpoint and the storage endpoint for file bytes.
if MCHAT_STORAGE == "s3":
    _storage_origin = MCHAT_S3_ENDPOINT_URL or f"https://{MCHAT_S3_BUCKET}.s3.{MCHAT_S3_REGION}.amazonaws.com"
else:
    _storage_origin = MCHAT_PUBLIC_BASE_URL
MCHAT_CSP_STORAGE_ORIGINS = os.environ.get("MCHAT_CSP_STORAGE_ORIGINS", _storage_origin).split()
# org.web_csp adds MCHAT_PUBLIC_WS_URL and the storage origins to the policy below.
MIDDLEWARE.append("org.web_csp.WebClientCSPMiddleware")
CONTENT_SECURITY_POLICY = {
    # The REST API's Swagger UI and ReDoc (drf-spectacular's pages, our own static files from
    # the sidecar) need inline scripts and styles and a blob: worker; no user content there.
    "EXCLUDE_URL_PREFIXES": ["/api/docs/", "/api/redoc/"],
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:", "blob:"],
        "media-src": ["'self'", "blob:"],
        "font-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'self'"],
    },
}

# --- Sign-in hardening (issue 20): lock-out, two-factor for the console ---------------------
# django-axes, the one lock-out policy of every authenticate(request=...) call (console, web):
# after MCHAT_LOCKOUT_FAILURES failures in the cool-off for one account OR from one address,
# that account / address is refused (even with the right password) for
# MCHAT_LOCKOUT_COOLOFF_MINUTES or until HR unlocks it (docs/signin.md).
INSTALLED_APPS += ["axes", "django_otp", "django_otp.plugins.otp_totp", "django_otp.plugins.otp_static"]
# Axes' backend goes first; it refuses locked-out credentials before any password is checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    *globals().get("AUTHENTICATION_BACKENDS", ["django.contrib.auth.backends.ModelBackend"]),
]
_auth_middleware = MIDDLEWARE.index("django.contrib.auth.middleware.AuthenticationMiddleware")
MIDDLEWARE[_auth_middleware + 1 : _auth_middleware + 1] = [
    "django_otp.middleware.OTPMiddleware",
    "org.twofactor.middleware.ConsoleTwoFactorMiddleware",
]
MIDDLEWARE += ["axes.middleware.AxesMiddleware"]  # turns a lock-out into the cool-off page
MCHAT_LOCKOUT_FAILURES = int(os.environ.get("MCHAT_LOCKOUT_FAILURES", "5"))
MCHAT_LOCKOUT_COOLOFF_MINUTES = float(os.environ.get("MCHAT_LOCKOUT_COOLOFF_MINUTES", "15"))
AXES_FAILURE_LIMIT = MCHAT_LOCKOUT_FAILURES
AXES_COOLOFF_TIME = timedelta(minutes=MCHAT_LOCKOUT_COOLOFF_MINUTES)
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]  # each counted and locked on its own
AXES_LOCKOUT_CALLABLE = "org.lockout.lockout_response"  # the Chinese cool-off page
AXES_HTTP_RESPONSE_CODE = 429
AXES_VERBOSE = False  # no start-up banner in every process's log; lock-outs are still logged
AXES_ENABLE_ACCESS_FAILURE_LOG = True  # every failure kept with address and user agent
# Logged failures show the address; the typed username stays masked (people type passwords there).
AXES_SENSITIVE_PARAMETERS = ["username"]
# Behind a reverse proxy: MCHAT_PROXY_COUNT=1 makes the client address X-Forwarded-For's.
AXES_IPWARE_PROXY_COUNT = (
    int(os.environ["MCHAT_PROXY_COUNT"]) if os.environ.get("MCHAT_PROXY_COUNT") else None
)
# Two-factor for console users (staff): "off" (embedded default), "optional" (those who
# enrolled must enter a code), "required" (every console user enrols at first sign-in).
MCHAT_CONSOLE_2FA = os.environ.get("MCHAT_CONSOLE_2FA", "off").strip().lower()
if MCHAT_CONSOLE_2FA not in {"off", "optional", "required"}:
    raise ValueError("MCHAT_CONSOLE_2FA must be off, optional or required")
OTP_TOTP_ISSUER = os.environ.get("MCHAT_OTP_ISSUER", "MChat")

# --- Single sign-on for the console (issue 20): OpenID Connect, on when a client id is set --
# Endpoints are given one by one (no discovery at start-up). See org/oidc.py for matching.
MCHAT_OIDC = bool(os.environ.get("MCHAT_OIDC_CLIENT_ID"))
OIDC_RP_CLIENT_ID = os.environ.get("MCHAT_OIDC_CLIENT_ID", "")
OIDC_RP_CLIENT_SECRET = os.environ.get("MCHAT_OIDC_CLIENT_SECRET", "")
OIDC_OP_AUTHORIZATION_ENDPOINT = os.environ.get("MCHAT_OIDC_AUTHORIZATION_ENDPOINT", "")
OIDC_OP_TOKEN_ENDPOINT = os.environ.get("MCHAT_OIDC_TOKEN_ENDPOINT", "")
OIDC_OP_USER_ENDPOINT = os.environ.get("MCHAT_OIDC_USERINFO_ENDPOINT", "")
OIDC_OP_JWKS_ENDPOINT = os.environ.get("MCHAT_OIDC_JWKS_ENDPOINT", "")
OIDC_RP_SIGN_ALGO = os.environ.get("MCHAT_OIDC_SIGN_ALGO", "RS256")
OIDC_RP_SCOPES = "openid email profile"
OIDC_CREATE_USER = _env_bool("MCHAT_OIDC_CREATE_USERS", False)
MCHAT_OIDC_MATCH_CLAIM = os.environ.get("MCHAT_OIDC_MATCH_CLAIM", "email")
MCHAT_OIDC_USER_FIELD = os.environ.get("MCHAT_OIDC_USER_FIELD", "email")
LOGIN_REDIRECT_URL = "/admin/"
LOGIN_REDIRECT_URL_FAILURE = "/admin/login/?sso=failed"
# With SSO on, local console passwords can be switched off (MCHAT_LOCAL_PASSWORDS=false).
MCHAT_LOCAL_PASSWORDS = _env_bool("MCHAT_LOCAL_PASSWORDS", True)
# Employees on the web client through the same provider (org/web_oidc.py), matched by a claim
# to an employee's email or employee_id; /login/sso/callback/ must be registered there too.
MCHAT_WEB_OIDC = MCHAT_OIDC and _env_bool("MCHAT_WEB_OIDC", False)
MCHAT_WEB_OIDC_MATCH_CLAIM = os.environ.get("MCHAT_WEB_OIDC_MATCH_CLAIM", "email")
MCHAT_WEB_OIDC_EMPLOYEE_FIELD = os.environ.get("MCHAT_WEB_OIDC_EMPLOYEE_FIELD", "email")
if MCHAT_WEB_OIDC_EMPLOYEE_FIELD not in {"email", "employee_id"}:
    raise ValueError("MCHAT_WEB_OIDC_EMPLOYEE_FIELD must be email or employee_id")
MCHAT_WEB_OIDC_CREATE_EMPLOYEES = _env_bool("MCHAT_WEB_OIDC_CREATE_EMPLOYEES", False)
# With web SSO on, MCHAT_WEB_LOCAL_PASSWORDS=false takes password sign-in off the web client.
MCHAT_WEB_LOCAL_PASSWORDS = not MCHAT_WEB_OIDC or _env_bool("MCHAT_WEB_LOCAL_PASSWORDS", True)
if MCHAT_OIDC:
    AUTHENTICATION_BACKENDS += ["org.oidc.ConsoleOIDCBackend"]
    if MCHAT_WEB_OIDC:
        AUTHENTICATION_BACKENDS += ["org.web_oidc.EmployeeOIDCBackend"]
    if not MCHAT_LOCAL_PASSWORDS:
        AUTHENTICATION_BACKENDS.remove("django.contrib.auth.backends.ModelBackend")
