"""Foreign keys the database itself follows on delete (Django 6.1's ``DB_CASCADE`` and
``DB_SET_NULL``; installed by tests/settings.py on Django 6.1 and later only)."""

from django.db import models

# Declared, so that the system checks do not ask a database (a query) whether it can.
FOLLOWED_BY_THE_DATABASE = {"supports_on_delete_db_cascade", "supports_on_delete_db_null"}


class Bookcase(models.Model):
    name = models.CharField(max_length=100)

    def __str__(self):
        return self.name


class Binder(models.Model):
    title = models.CharField(max_length=100)
    bookcase = models.ForeignKey(Bookcase, models.DB_CASCADE, related_name="binders")

    class Meta:
        required_db_features = FOLLOWED_BY_THE_DATABASE

    def __str__(self):
        return self.title


class Lending(models.Model):
    """Reached from a bookcase through a binder: the database follows both steps."""

    binder = models.ForeignKey(Binder, models.DB_SET_NULL, null=True, related_name="lendings")

    class Meta:
        required_db_features = FOLLOWED_BY_THE_DATABASE

    def __str__(self):
        return f"lending of {self.binder_id}"
