import os

SECRET_KEY = "latchkey-contract-tests-only"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "django_scim", "peer"]
MIDDLEWARE = ["peer.models.BearerToken"]
ROOT_URLCONF = "peer.urls"
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ["LATCHKEY_PEER_DB"]}}
AUTH_USER_MODEL = "peer.User"
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
USE_TZ = True
SCIM_SERVICE_PROVIDER = {
    "NETLOC": "127.0.0.1",
    "SCHEME": "http",
    "GROUP_MODEL": "peer.models.Group",
    "GROUP_FILTER_PARSER": "peer.models.GroupFilterQuery",
    "AUTHENTICATION_SCHEMES": [{"type": "oauthbearertoken", "name": "Bearer", "description": "tests"}],
}
