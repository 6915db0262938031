"""A small shop with every kind of relation, for the N+1 detector's tests."""

from django.contrib.contenttypes.fields import GenericForeignKey, GenericRelation
from django.contrib.contenttypes.models import ContentType
from django.db import models
from taggit.managers import TaggableManager

from django_dbtune.cache import CachedManager


class Publisher(models.Model):
    name = models.CharField(max_length=100)

    def __str__(self):
        return self.name

    def named_authors(self):
        """Its authors with a name, from ``_prefetched_named_authors`` when set: a method
        whose read goes on with a filter, which no ``Prefetch`` of the chain before it matches."""
        if hasattr(self, "_prefetched_named_authors"):
            return self._prefetched_named_authors
        return self.authors.all().exclude(name="")


class Author(models.Model):
    name = models.CharField(max_length=100)
    publisher = models.ForeignKey(Publisher, models.SET_NULL, null=True, related_name="authors")

    objects = models.Manager()
    cached_objects = CachedManager()

    def __str__(self):
        return self.name

    def summarized_books(self):
        """Its books with a summary, from ``_prefetched_summarized_books`` when a prefetch
        filled it (django-oscar's ``Product.get_public_children()`` does this)."""
        if hasattr(self, "_prefetched_summarized_books"):
            return self._prefetched_summarized_books
        return self.books.summarized()


class Profile(models.Model):
    author = models.OneToOneField(Author, models.CASCADE, related_name="profile")
    bio = models.TextField(default="")


class Tag(models.Model):
    name = models.CharField(max_length=50)

    objects = models.Manager()
    cached_objects = CachedManager()


class Comment(models.Model):
    content_type = models.ForeignKey(ContentType, models.CASCADE)
    object_id = models.PositiveIntegerField()
    target = GenericForeignKey("content_type", "object_id")
    text = models.CharField(max_length=200)


class BookQuerySet(models.QuerySet):
    def summarized(self):
        """Books with a summary: a method a template calls on a related manager
        (``author.books.summarized``), as Oscar's ``product.reviews.approved``."""
        return self.exclude(summary="")


class Book(models.Model):
    title = models.CharField(max_length=200)
    summary = models.TextField(default="")
    author = models.ForeignKey(Author, models.CASCADE, related_name="books")
    editor = models.ForeignKey(
        Author, models.SET_NULL, null=True, blank=True, related_name="edited_books"
    )
    tags = models.ManyToManyField(Tag, blank=True, related_name="books")
    comments = GenericRelation(Comment)

    objects = BookQuerySet.as_manager()
    cached_objects = CachedManager()

    def __str__(self):
        return f"{self.title} by {self.author.name}"


class Review(models.Model):
    """Reached from a book through Django's default reverse accessor, ``book.review_set``."""

    book = models.ForeignKey(Book, models.CASCADE)
    reviewer = models.ForeignKey(Author, models.CASCADE, null=True, related_name="+")
    text = models.TextField(default="")


class NoteQuerySet(models.QuerySet):
    def visible(self):
        return self.exclude(text="")


class NoteManager(models.Manager):
    """Builds its queryset the way Django's documentation shows, without super()."""

    def get_queryset(self):
        return NoteQuerySet(self.model, using=self._db)


class Note(models.Model):
    """Reached from a product through a generic relation whose manager skips super()."""

    content_type = models.ForeignKey(ContentType, models.CASCADE)
    object_id = models.PositiveIntegerField()
    target = GenericForeignKey("content_type", "object_id")
    text = models.CharField(max_length=200)

    objects = NoteManager()


class ProductQuerySet(models.QuerySet):
    def in_stock(self):
        return self.filter(stock__gt=0)


class ProductManager(models.Manager):
    def get_queryset(self):
        return ProductQuerySet(self.model, using=self._db)

    def in_stock(self):
        return self.get_queryset().in_stock()


class Product(models.Model):
    """Sold beside the books: tagged with django-taggit, noted through a generic relation,
    and listed through a manager that builds its queryset without super()."""

    name = models.CharField(max_length=100)
    stock = models.PositiveIntegerField(default=1)
    maker = models.ForeignKey(Publisher, models.CASCADE, related_name="products")
    tags = TaggableManager(blank=True)
    notes = GenericRelation(Note)

    objects = ProductManager()

    def __str__(self):
        # A lookup written by hand: per row, it is an N+1 of its own.
        return f"{self.name} by {Publisher.objects.get(pk=self.maker_id).name}"


class Flag(models.Model):
    """A feature flag, looked up by name from a template tag."""

    name = models.CharField(max_length=50, unique=True)
    active = models.BooleanField(default=False)


class ItemQuerySet(models.QuerySet):
    """Like a CMS's page queryset (Wagtail's ``PageQuerySet``): ``specific()`` yields each row
    as its subclass, loaded by one query per subclass in library code, and
    ``select_related``/``prefetch_related`` with ``for_specific_subqueries=True`` name the
    subclasses' own relations for those queries."""

    specific_select: tuple[str, ...] = ()
    specific_prefetch: tuple[str, ...] = ()

    def _clone(self):
        clone = super()._clone()
        clone.specific_select = self.specific_select
        clone.specific_prefetch = self.specific_prefetch
        return clone

    def specific(self):
        from tests.shop.specific import SpecificRows

        clone = self._chain()
        clone._iterable_class = SpecificRows
        return clone

    def select_related(self, *fields, for_specific_subqueries=False):
        if not for_specific_subqueries:
            return super().select_related(*fields)
        clone = self._chain()
        clone.specific_select = (*self.specific_select, *fields)
        return clone

    def prefetch_related(self, *lookups, for_specific_subqueries=False):
        if not for_specific_subqueries:
            return super().prefetch_related(*lookups)
        clone = self._chain()
        clone.specific_prefetch = (*self.specific_prefetch, *lookups)
        return clone


class Item(models.Model):
    """A shop item; its rows are Posters or Mugs (multi-table inheritance)."""

    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=20)

    objects = ItemQuerySet.as_manager()

    class Meta:
        ordering = ["kind", "-name"]


class Poster(Item):
    artist = models.ForeignKey(Author, models.CASCADE, related_name="posters")


class Mug(Item):
    maker = models.ForeignKey(Publisher, models.CASCADE, related_name="mugs")


class BookTitle(models.Model):
    """A database view over the books (the query cache's tests create and drop it)."""

    title = models.CharField(max_length=100)

    cached_objects = CachedManager()

    class Meta:
        managed = False
        db_table = "shop_book_titles"

    def __str__(self):
        return self.title
