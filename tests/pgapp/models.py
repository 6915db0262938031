"""Fields only PostgreSQL has (installed by tests/settings.py on PostgreSQL only)."""

from django.contrib.postgres.fields import ArrayField
from django.db import models


class Device(models.Model):
    name = models.CharField(max_length=100)
    roles = ArrayField(models.CharField(max_length=20), default=list)
