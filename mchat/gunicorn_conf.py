"""gunicorn settings of the web process (`gunicorn -c python:mchat.gunicorn_conf mchat.wsgi`).

`manage.py runstack` and the tests use this file; a deployment may pass its own options after
it on the command line (they win). Variables: MCHAT_WEB_BIND, MCHAT_WEB_WORKERS.
"""

import os

bind = os.environ.get("MCHAT_WEB_BIND", "127.0.0.1:8000")
# Sync workers: the console and REST are short requests; file bytes go through signed URLs.
workers = int(os.environ.get("MCHAT_WEB_WORKERS", "2"))
worker_class = "sync"
timeout = 60
graceful_timeout = 20
# A worker restarts after this many requests (bounded memory growth), staggered.
max_requests = 2000
max_requests_jitter = 200
accesslog = "-"
errorlog = "-"
# Only a reverse proxy on this machine may say which scheme the client used.
forwarded_allow_ips = "127.0.0.1"
proc_name = "mchat-web"
# gunicorn 24+ opens a control socket at ~/.gunicorn/gunicorn.ctl, one path for every instance
# on the machine (tests start several): not used here.
control_socket_disable = True

if os.environ.get("MCHAT_LOG_JSON", "").strip().lower() in {"1", "true", "yes", "on"}:
    # gunicorn's own logs (start-up, access lines) as JSON objects too, like Django's.
    logconfig_dict = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "mchat.logs.JsonFormatter"}},
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "json"}},
        "loggers": {
            "gunicorn.error": {"handlers": ["console"], "level": "INFO", "propagate": False},
            "gunicorn.access": {"handlers": ["console"], "level": "INFO", "propagate": False},
        },
    }


def child_exit(server, worker):
    # Prometheus multi-process mode (PROMETHEUS_MULTIPROC_DIR, set by runstack): forget the
    # gauges of a worker that is gone.
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
