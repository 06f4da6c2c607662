# Settings of the small Django project the agent's e2e tests and benchmark
# serve.  Everything that varies comes from the environment:
#   AGENT_TEST_DB=sqlite (default) with AGENT_TEST_SQLITE=/path/to.db, or
#   AGENT_TEST_DB=postgres with AGENT_TEST_PG_HOST/_PORT/_NAME/_USER;
#   AGENT_TEST_NO_AGENT=1 leaves "pyrometer.django" out of INSTALLED_APPS
#   (for `pyrometer run` and for the benchmark's baseline).
import os

BASE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECRET_KEY = "pyrometer-tests-only"
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = False
ROOT_URLCONF = "mysite.urls"
WSGI_APPLICATION = "mysite.wsgi.application"
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"

INSTALLED_APPS = ["library"]
if os.environ.get("AGENT_TEST_NO_AGENT", "") in ("", "0"):
    INSTALLED_APPS.append("pyrometer.django")

MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]

if os.environ.get("AGENT_TEST_DB", "sqlite") == "postgres":
    DATABASES = {"default": {
        "ENGINE": "django.db.backends.postgresql",
        "HOST": os.environ["AGENT_TEST_PG_HOST"],
        "PORT": os.environ["AGENT_TEST_PG_PORT"],
        "NAME": os.environ.get("AGENT_TEST_PG_NAME", "library"),
        "USER": os.environ.get("AGENT_TEST_PG_USER", "postgres"),
    }}
else:
    DATABASES = {"default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("AGENT_TEST_SQLITE", os.path.join(BASE_DIR, "library.sqlite3")),
    }}
