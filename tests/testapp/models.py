"""Models that exercise each way an index can cover, or fail to cover, a column."""

from django.db import models


class Author(models.Model):
    name = models.CharField(max_length=100)
    email = models.CharField(max_length=200, unique=True)


class Book(models.Model):
    title = models.CharField(max_length=200)
    # Covered by Django's automatic foreign key index.
    author = models.ForeignKey(Author, models.CASCADE, related_name="books")
    # Covered as the leading column of a composite index.
    editor = models.ForeignKey(Author, models.CASCADE, related_name="+", db_index=False)
    # Covered as the leading column of a UniqueConstraint.
    translator = models.ForeignKey(Author, models.CASCADE, related_name="+", db_index=False)
    # Covered as the leading column of unique_together.
    illustrator = models.ForeignKey(Author, models.CASCADE, related_name="+", db_index=False)
    # Not covered: only the second column of an index.
    reviewer = models.ForeignKey(Author, models.CASCADE, related_name="+", db_index=False)
    # Not covered: only by a partial index.
    sponsor = models.ForeignKey(Author, models.CASCADE, related_name="+", db_index=False)
    tags = models.ManyToManyField("Tag", blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["editor", "title"], name="book_editor_title"),
            models.Index(fields=["title", "reviewer"], name="book_title_reviewer"),
            models.Index(
                fields=["sponsor"], name="book_sponsor_some", condition=models.Q(title="x")
            ),
        ]
        constraints = [
            models.UniqueConstraint(fields=["translator", "title"], name="book_translator_title")
        ]
        unique_together = [("illustrator", "title")]


class Tag(models.Model):
    name = models.CharField(max_length=50, db_index=True)


class Edition(models.Model):
    # A foreign key that is the primary key is never reported.
    book = models.OneToOneField(Book, models.CASCADE, primary_key=True)
    number = models.PositiveIntegerField()


class PaperbackBook(Book):
    """Multi-table inheritance: the parent link is this table's primary key."""


class BookProxy(Book):
    class Meta:
        proxy = True


class LegacyLoan(models.Model):
    book = models.ForeignKey(Book, models.DO_NOTHING, db_index=False)

    class Meta:
        managed = False
        db_table = "legacy_loan"


class Shelf(models.Model):
    code = models.CharField(max_length=20)
    room = models.CharField(max_length=20)
    row = models.PositiveIntegerField()
    label = models.CharField(max_length=50, default="")
    kind = models.CharField(
        max_length=10, choices=[("public", "Public"), ("staff", "Staff")], default="public"
    )
    is_public = models.BooleanField(default=True)
    built = models.DateTimeField(null=True)

    class Meta:
        get_latest_by = "built"
        unique_together = [("room", "row")]
        indexes = [
            models.Index(fields=["code"], name="shelf_code_a"),
            models.Index(fields=["code"], name="shelf_code_b"),
            models.Index(fields=["room"], name="shelf_room"),
        ]


class Stamped(models.Model):
    """An abstract parent: its fields land in each child's table."""

    owner = models.ForeignKey(Author, models.CASCADE, related_name="+", db_index=False)

    class Meta:
        abstract = True


class Note(Stamped):
    text = models.TextField()


class StaffShelf(Shelf):
    """A proxy: its queries read Shelf's table."""

    class Meta:
        proxy = True


class Listing(models.Model):
    """Attributes kept as JSON, searched by key and containment."""

    title = models.CharField(max_length=100)
    attributes = models.JSONField(default=dict)


class OpenReminders(models.Manager):
    """A manager that filters, as Oscar's ``Basket.open`` does: the value is its own."""

    state = "open"

    def get_queryset(self):
        return super().get_queryset().filter(state=self.state)


class ReminderQuerySet(models.QuerySet):
    def unread(self):
        return self.filter(read_at=None)

    def by_others(self, author):
        Author.objects.filter(name="not this chain's")
        return self.exclude(author=author)

    def visible_to(self, user):
        if user.is_staff:
            return self
        return self.filter(state="open")

    def about(self, subject):
        ids = self.model.objects.filter(subject=subject).values("author")
        return self.filter(author__in=ids)


class Reminder(models.Model):
    """Rows that pile up under their author in states no page asks for (done, read)."""

    author = models.ForeignKey(Author, models.CASCADE, related_name="reminders")
    state = models.CharField(
        max_length=10, choices=[("open", "Open"), ("done", "Done")], default="open"
    )
    read_at = models.DateTimeField(null=True)
    subject = models.CharField(max_length=100, default="")

    objects = ReminderQuerySet.as_manager()
    open = OpenReminders()


class Route(models.Model):
    """Sorted with its NULLs placed, as NetBox sorts its prefixes: a plain index on
    PostgreSQL keeps NULLs last when ascending, so it does not give this order."""

    author = models.ForeignKey(Author, models.CASCADE, null=True, related_name="+")
    name = models.CharField(max_length=50)

    class Meta:
        ordering = (models.F("author").asc(nulls_first=True), "name", "pk")


class Tagline(models.Model):
    """A nullable text column sorted with its NULLs placed, and prefix-searched."""

    code = models.CharField(max_length=20, null=True)  # noqa: DJ001  (real projects have them)

    class Meta:
        ordering = (models.F("code").asc(nulls_first=True),)


class NoteLink(models.Model):
    """``links`` of a Note, whose abstract parent's methods read them as ``self.links``."""

    note = models.ForeignKey(Note, models.CASCADE, related_name="links")
    url = models.CharField(max_length=200)


class ShelfLink(models.Model):
    """A second model with ``links``: the accessor alone does not tell the owner."""

    # No constraint: a test drops Shelf's table.
    shelf = models.ForeignKey(Shelf, models.DO_NOTHING, related_name="links", db_constraint=False)
    url = models.CharField(max_length=200)
