"""A django-scim2 SCIM service for latchkey's contract tests: SQLite, loopback, one process.

Usage: serve.py PORT DATA_DIR TOKEN. The glue an integrator of django-scim2 must write (a user
and a group model, a bearer-token check, a displayName filter for groups) and no more: every
SCIM behaviour (PATCH, filters, paging) is django-scim2's own.
"""
import os
import sys

port, data, token = sys.argv[1], sys.argv[2], sys.argv[3]
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ["LATCHKEY_PEER_DB"] = os.path.join(data, "scim.sqlite3")
os.environ["LATCHKEY_PEER_TOKEN"] = token
os.environ["DJANGO_SETTINGS_MODULE"] = "peer.settings"

from django.core.management import execute_from_command_line  # noqa: E402

execute_from_command_line(["serve.py", "migrate", "--run-syncdb", "--verbosity", "0"])
execute_from_command_line(["serve.py", "runserver", f"127.0.0.1:{port}", "--noreload", "--nothreading"])
