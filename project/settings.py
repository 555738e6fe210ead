"""Sandpit settings: one module, environments differ only by environment variables.

Every variable is documented in `.env.example`. This is the only module that reads the environment.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import environ

from project.redis_connections import channel_layer_host

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
if (BASE_DIR / ".env").exists():
    environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DEBUG", default=True)

# A missing secret must fail loudly in production; the laptop default is fine only with DEBUG on.
if DEBUG:
    SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="sandpit-insecure-dev-key-change-me")
else:
    SECRET_KEY = env.str("DJANGO_SECRET_KEY")

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "runner",
    "axes",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "runner.middleware.PostRateLimitMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "runner.middleware.ContentSecurityPolicyMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "project.urls"
ASGI_APPLICATION = "project.asgi.application"

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

# Embedded default: a SQLite file. DATABASE_URL switches to Postgres for scale-out.
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL saved about 5 ms per run in the prototype; IMMEDIATE avoids SQLITE_BUSY upgrade deadlocks.
    # Servers checkpoint the WAL in the background (runner/services/housekeeping.py); the automatic
    # checkpoint inside a commit is only a backstop, at 10000 pages (about 40 MB) instead of 1000.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA wal_autocheckpoint=10000",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
    # One file per test process, so concurrent test runs on one machine never share a database.
    DATABASES["default"]["TEST"] = {"NAME": str(BASE_DIR / f".test-db-{os.getpid()}.sqlite3")}
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", 0)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Embedded default: the in-memory channel layer (one process). REDIS_URL switches to channels-redis.
REDIS_URL = env.str("REDIS_URL", default="")
CHANNEL_CAPACITY = env.int("CHANNEL_CAPACITY", default=2000)
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                # redis-py 8 reads with a 5 s socket timeout by default, the length of channels-redis's
                # blocking pop: an idle socket's pop then raced it, and lost, closing the websocket.
                # Connections whose commands a cancel always ends (project/redis_connections.py:
                # Python 3.11's wait_for, around redis-py's writes, can swallow a cancel).
                "hosts": [channel_layer_host(REDIS_URL, socket_timeout=30)],
                "capacity": CHANNEL_CAPACITY,
                "prefix": env.str("CHANNEL_PREFIX", default="sandpit"),
            },
        }
    }
else:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels.layers.InMemoryChannelLayer",
            "CONFIG": {"capacity": CHANNEL_CAPACITY},
        }
    }

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / ".staticfiles"
# Serve straight from the finders: no collectstatic step is needed under Daphne.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SECURE_CONTENT_TYPE_NOSNIFF = True
# The page frames nothing of its own (CSP frame-src 'none'), so no one may frame it.
X_FRAME_OPTIONS = "DENY"

# Deploy profile behind a TLS proxy (README "Running it for a school"). With DEBUG off and this on,
# `manage.py check --deploy` reports no issues.
HTTPS = env.bool("HTTPS", default=False)
if HTTPS:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = True
    # A plain-HTTP health probe from the proxy or a load balancer is answered, not redirected.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
    # The proxy terminates TLS and must set this header itself (overwriting the client's).
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = env.int("HSTS_SECONDS", default=365 * 24 * 3600)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("HSTS_INCLUDE_SUBDOMAINS", default=True)
    SECURE_HSTS_PRELOAD = env.bool("HSTS_PRELOAD", default=True)

# Login brute-force protection (django-axes): LOGIN_FAILURE_LIMIT wrong passwords for one username
# from one address lock that pair out for LOGIN_LOCKOUT_MINUTES; an admin unlocks it earlier by
# deleting its "access attempt" in the admin (or `manage.py axes_reset_username <name>`).
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("LOGIN_LOCKOUT_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
# Lockouts count by the client's address: REMOTE_ADDR, but behind the proxy (HTTPS=true) that is the
# proxy, which sets X-Real-IP to the client's (overwriting any sent by the client), as in the
# README's nginx sample. Without the proxy profile a client's X-Real-IP is never trusted.
CLIENT_IP_META = "HTTP_X_REAL_IP" if HTTPS else "REMOTE_ADDR"
AXES_CLIENT_IP_CALLABLE = "runner.middleware.client_ip_address"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django.channels.server": {"level": "WARNING"}},
}

# ---------------------------------------------------------------------------------------------
# Sandboxes
# ---------------------------------------------------------------------------------------------
# "auto": e2b when E2B_API_KEY is set, otherwise local. "local" or "e2b" forces one.
SANDBOX_BACKEND = env.str("SANDBOX_BACKEND", default="auto")

# The kernels' environment: a venv built on /usr/bin/python3, separate from the app's venv.
_default_state = Path("/var/lib/sandpit") if os.geteuid() == 0 else Path.home() / ".cache" / "sandpit"
SANDBOX_STATE_DIR = Path(env.str("SANDBOX_STATE_DIR", default=str(_default_state)))
SANDBOX_KERNEL_ENV = Path(env.str("SANDBOX_KERNEL_ENV", default=str(SANDBOX_STATE_DIR / "kenv")))
SANDBOX_BWRAP = env.str("SANDBOX_BWRAP", default="bwrap")
# The unprivileged system user kernels run as when the server runs as root.
SANDBOX_USER = env.str("SANDBOX_USER", default="sandpit-sbx")

SANDBOX_MEMORY_MB = env.int("SANDBOX_MEMORY_MB", default=512)
SANDBOX_PIDS = env.int("SANDBOX_PIDS", default=128)
SANDBOX_CPUS = env.float("SANDBOX_CPUS", default=1.0)
SANDBOX_TMPFS_MB = env.int("SANDBOX_TMPFS_MB", default=64)
SANDBOX_WORKSPACE_QUOTA_MB = env.int("SANDBOX_WORKSPACE_QUOTA_MB", default=256)
# How often the workspace is measured while code runs (code past the quota is stopped).
SANDBOX_QUOTA_CHECK_S = env.float("SANDBOX_QUOTA_CHECK_S", default=0.25)
SANDBOX_FILE_MAX_BYTES = env.int("SANDBOX_FILE_MAX_BYTES", default=10 * 1024 * 1024)
# Threads for workspace I/O (files panel, envd /files, quota checks), apart from the default pool.
SANDBOX_FILES_IO_THREADS = env.int("SANDBOX_FILES_IO_THREADS", default=4)
# The local backend's per-session workspaces (they outlive sandboxes); "" means under the state dir.
SANDBOX_WORKSPACES_DIR = Path(env.str("SANDBOX_WORKSPACES_DIR", default="") or SANDBOX_STATE_DIR / "workspaces")
# One upload request's body (several files at once); the page sends one file per request.
FILES_UPLOAD_MAX_BYTES = env.int("FILES_UPLOAD_MAX_BYTES", default=40 * 1024 * 1024)
# The server (project/serve.py) refuses a request body past these with 413 before reading it: a
# request with a session cookie or an API credential may send the largest upload, others (the
# login form) only a little.
HTTP_BODY_MAX_BYTES = env.int("HTTP_BODY_MAX_BYTES", default=FILES_UPLOAD_MAX_BYTES + 1024 * 1024)
HTTP_ANONYMOUS_BODY_MAX_BYTES = env.int("HTTP_ANONYMOUS_BODY_MAX_BYTES", default=64 * 1024)
SANDBOX_POOL_SIZE = env.int("SANDBOX_POOL_SIZE", default=1)
# Kernels one local sandbox may run at once (each E2B API code context is a kernel of its own).
SANDBOX_KERNELS_MAX = env.int("SANDBOX_KERNELS_MAX", default=8)
# Processes (E2B API commands, background or not) one API sandbox may run at once.
SANDBOX_PROCESSES_MAX = env.int("SANDBOX_PROCESSES_MAX", default=16)
# Filesystem watches (envd WatchDir and CreateWatcher) one local sandbox may hold at once.
SANDBOX_WATCHERS_MAX = env.int("SANDBOX_WATCHERS_MAX", default=8)
SANDBOX_IDLE_TIMEOUT_S = env.int("SANDBOX_IDLE_TIMEOUT_S", default=900)
# Live local sandboxes per server process: 0 ("auto") admits one while the memory left (MemAvailable,
# or the server's own cgroup limit) stays above SANDBOX_MEMORY_HEADROOM_MB; a number is a fixed cap.
SANDBOX_MAX_LIVE = 0 if env.str("SANDBOX_MAX_LIVE", default="auto").strip().lower() in ("auto", "0", "") else env.int("SANDBOX_MAX_LIVE")
SANDBOX_MEMORY_HEADROOM_MB = env.int("SANDBOX_MEMORY_HEADROOM_MB", default=512)
# How long a run waits in line for room for its new sandbox before it is refused.
SANDBOX_QUEUE_WAIT_S = env.float("SANDBOX_QUEUE_WAIT_S", default=120.0)
SANDBOX_INSTALL_TIMEOUT_S = env.int("SANDBOX_INSTALL_TIMEOUT_S", default=180)
# Where `install` fetches packages from; the kernel itself never reaches the network.
SANDBOX_PIP_INDEX_URL = env.str("SANDBOX_PIP_INDEX_URL", default="")

# E2B cloud
E2B_API_KEY = env.str("E2B_API_KEY", default="")
E2B_DOMAIN = env.str("E2B_DOMAIN", default="")
E2B_API_URL = env.str("E2B_API_URL", default="")
E2B_SANDBOX_URL = env.str("E2B_SANDBOX_URL", default="")
E2B_TEMPLATE = env.str("E2B_TEMPLATE", default="")
E2B_REQUEST_TIMEOUT_S = env.float("E2B_REQUEST_TIMEOUT_S", default=30.0)
# Prices per second (E2B's list prices); the default sandbox is 2 vCPU / 0.5 GiB, about $0.109 an hour.
E2B_PRICE_PER_VCPU_S = env.float("E2B_PRICE_PER_VCPU_S", default=0.000014)
E2B_PRICE_PER_GIB_S = env.float("E2B_PRICE_PER_GIB_S", default=0.0000045)
E2B_VCPUS = env.int("E2B_VCPUS", default=2)
E2B_MEMORY_MB = env.int("E2B_MEMORY_MB", default=512)

# ---------------------------------------------------------------------------------------------
# Runs
# ---------------------------------------------------------------------------------------------
RUN_CODE_MAX_BYTES = env.int("RUN_CODE_MAX_BYTES", default=100 * 1024)
RUN_TIMEOUT_S = env.int("RUN_TIMEOUT_S", default=60)
RUN_OUTPUT_MAX_BYTES = env.int("RUN_OUTPUT_MAX_BYTES", default=2 * 1024 * 1024)
# Of that cap, the last output kept when a run goes past it (at most half the cap); the rest is its head.
RUN_OUTPUT_TAIL_BYTES = env.int("RUN_OUTPUT_TAIL_BYTES", default=128 * 1024)
RUN_BATCH_MAX_BYTES = env.int("RUN_BATCH_MAX_BYTES", default=64 * 1024)
RUN_QUEUE_MAX = env.int("RUN_QUEUE_MAX", default=10)
# Websocket frames a client may send per 10 s before it is told to slow down.
WS_MESSAGES_PER_10S = env.int("WS_MESSAGES_PER_10S", default=60)
# Each server process writes a heartbeat this often; one silent for SERVER_STALE_S is dead, and
# its queued or running runs become interrupted (so several Daphnes never sweep each other).
SERVER_HEARTBEAT_S = env.int("SERVER_HEARTBEAT_S", default=10)
SERVER_STALE_S = env.int("SERVER_STALE_S", default=45)
# Each server process publishes its sandboxes' CPU and memory and its capacity this often, for the
# admin's live view (/admin/live/, which polls as often).
LIVE_STATS_S = env.int("LIVE_STATS_S", default=5)

# ---------------------------------------------------------------------------------------------
# Classrooms
# ---------------------------------------------------------------------------------------------
# A comment's body is at most this many characters; longer ones are refused with a clear message.
COMMENT_MAX_CHARS = env.int("COMMENT_MAX_CHARS", default=10_000)
# Comments one user may post or edit per minute, and join-code attempts per 10 minutes (guessing).
COMMENTS_PER_MINUTE = env.int("COMMENTS_PER_MINUTE", default=30)
JOIN_ATTEMPTS_PER_10MIN = env.int("JOIN_ATTEMPTS_PER_10MIN", default=20)
# Assignments: checks (hand-ins and "Check my work") one student may ask for per 10 minutes; how
# many run at once per server process; the longest one check session (replay + checks) may take;
# how often each process looks for queued checks.
ASSIGNMENT_CHECKS_PER_10MIN = env.int("ASSIGNMENT_CHECKS_PER_10MIN", default=10)
ASSIGNMENT_CHECKS_CONCURRENCY = env.int("ASSIGNMENT_CHECKS_CONCURRENCY", default=2)
ASSIGNMENT_CHECKS_TIMEOUT_S = env.int("ASSIGNMENT_CHECKS_TIMEOUT_S", default=300)
ASSIGNMENT_CHECKS_POLL_S = env.float("ASSIGNMENT_CHECKS_POLL_S", default=1.0)
# The class page's live grid flags a student as stuck after this many failed runs in a row, or when
# their last run failed and this many seconds have passed with no run; never once their newest run
# is older than CLASS_STUCK_WITHIN_S (an earlier lesson's).
CLASS_STUCK_FAILURES = env.int("CLASS_STUCK_FAILURES", default=3)
CLASS_STUCK_IDLE_S = env.int("CLASS_STUCK_IDLE_S", default=300)
CLASS_STUCK_WITHIN_S = env.int("CLASS_STUCK_WITHIN_S", default=3600)
# Usage, quotas and rate limits
# ---------------------------------------------------------------------------------------------
# Local sandboxes cost this much per vCPU-second and GiB-second (0: free), shown apart from E2B's.
LOCAL_PRICE_PER_VCPU_S = env.float("LOCAL_PRICE_PER_VCPU_S", default=0.0)
LOCAL_PRICE_PER_GIB_S = env.float("LOCAL_PRICE_PER_GIB_S", default=0.0)
# Default per-user limits; unset or 0 means no limit. Admins override them per user.
QUOTA_SANDBOX_SECONDS_PER_DAY = env.int("QUOTA_SANDBOX_SECONDS_PER_DAY", default=0)
QUOTA_RUNS_PER_DAY = env.int("QUOTA_RUNS_PER_DAY", default=0)
QUOTA_CONCURRENT_RUNS = env.int("QUOTA_CONCURRENT_RUNS", default=0)
QUOTA_USD_PER_MONTH = env.float("QUOTA_USD_PER_MONTH", default=0.0)
# Sandboxes one user may have live at once (0: no limit); well below SANDBOX_MAX_LIVE, the process cap.
QUOTA_LIVE_SANDBOXES = env.int("QUOTA_LIVE_SANDBOXES", default=3)
# How often each server checks budgets (closes idle sandboxes of users past a limit, records alerts).
BUDGET_CHECK_S = env.int("BUDGET_CHECK_S", default=30)
# HTTP POSTs one user may send per minute, across all processes (0: no limit).
HTTP_POSTS_PER_MINUTE = env.int("HTTP_POSTS_PER_MINUTE", default=120)

# Rate limits are counted in this cache, shared by every server process: Redis when REDIS_URL is
# set, otherwise a table in the database (which works across processes on SQLite too).
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env.str("CHANNEL_PREFIX", default="sandpit"),
        }
    }
else:
    # Culling past MAX_ENTRIES would drop live counters (one per active user and window): keep it high.
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.db.DatabaseCache",
            "LOCATION": "sandpit_cache",
            "OPTIONS": {"MAX_ENTRIES": 100_000},
        }
    }
# The E2B-compatible API (runner/e2b_api): the longest timeout a sandbox may ask for.
# ---------------------------------------------------------------------------------------------
API_SANDBOX_MAX_TIMEOUT_S = env.int("API_SANDBOX_MAX_TIMEOUT_S", default=3600)
# Requests one user may send to the API per 10 s, control and data planes together, over all their
# keys, sandboxes and server processes (0: no limit); past it, E2B's 429.
API_REQUESTS_PER_10S = env.int("API_REQUESTS_PER_10S", default=100)
# The E2B API's sandbox `domain` (create, connect): `get_host(port)` gives `<port>-<id>.<domain>`,
# which reaches the port through Sandpit when that name resolves to it (a wildcard DNS record).
# Empty: no domain (the SDK then names E2B's own).
API_SANDBOX_DOMAIN = env.str("API_SANDBOX_DOMAIN", default="")
