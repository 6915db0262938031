"""Fields only PostgreSQL has (installed by tests/settings.py on PostgreSQL only)."""

from django.contrib.postgres.fields import ArrayField
from django.db import models


class Device(models.Model):
    name = models.CharField(max_length=100)
    roles = ArrayField(models.CharField(max_length=20), default=list)


class BookCount(models.Model):
    """A materialized view over the shop's books (the test creates and refreshes it)."""

    n = models.IntegerField(primary_key=True)

    class Meta:
        managed = False
        db_table = "shop_book_count"

    def __str__(self):
        return str(self.n)
