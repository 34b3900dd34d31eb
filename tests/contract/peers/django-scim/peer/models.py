import hmac
import os
from types import SimpleNamespace

from django.contrib.auth.models import AbstractUser
from django.db import models
from django_scim.filters import GroupFilterQuery as BaseGroupFilterQuery
from django_scim.models import AbstractSCIMGroupMixin, AbstractSCIMUserMixin


class Group(AbstractSCIMGroupMixin):
    name = models.CharField(max_length=150)


class User(AbstractSCIMUserMixin, AbstractUser):
    # The adapter reads a group's members as `group.user_set`.
    groups = models.ManyToManyField(Group, related_name="user_set", blank=True)

    @property
    def scim_groups(self):
        return self.groups


class GroupFilterQuery(BaseGroupFilterQuery):
    # django-scim2 maps no group attribute by default (every group filter matches nothing).
    attr_map = {("displayName", None, None): "name"}


class BearerToken:
    """Authenticates a request that carries the test's bearer token (django-scim2 asks
    `request.user.is_authenticated`)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        sent = request.headers.get("Authorization", "")
        ok = hmac.compare_digest(sent, "Bearer " + os.environ["LATCHKEY_PEER_TOKEN"])
        request.user = SimpleNamespace(is_authenticated=ok)
        return self.get_response(request)
