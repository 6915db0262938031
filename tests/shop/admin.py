from django.contrib import admin

from tests.shop.models import Author, Book, Comment, Item, Product, Publisher, Review, Tag


@admin.register(Book)
class BookAdmin(admin.ModelAdmin):
    # "editor" is a nullable foreign key: before Django 6.1 the admin does not join it.
    list_display = ["title", "author", "editor", "publisher_name"]

    @admin.display(description="publisher")
    def publisher_name(self, book):
        return book.author.publisher.name


@admin.register(Author)
class AuthorAdmin(admin.ModelAdmin):
    list_display = ["name"]


@admin.register(Tag)
class TagAdmin(admin.ModelAdmin):
    list_display = ["name", "titles"]

    def get_queryset(self, request):
        # A project's own get_queryset: a fix must go inside it, never replace it.
        return super().get_queryset(request).order_by("name")

    @admin.display(description="books")
    def titles(self, tag):
        return ", ".join(book.title for book in tag.books.all())


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    # Product.objects builds its queryset without super(): the admin's is found all the same.
    list_display = ["name", "maker_name"]

    @admin.display(description="maker")
    def maker_name(self, product):
        return product.maker.name


@admin.register(Comment)
class CommentAdmin(admin.ModelAdmin):
    # The admin reads each comment's generic foreign key itself: no line of the project.
    list_display = ["text", "target"]


@admin.register(Review)
class ReviewAdmin(admin.ModelAdmin):
    # Before Django 6.1, a relation in list_display makes the admin call select_related()
    # with no names: book and book__author are joined, the nullable reviewer is not.
    list_display = ["text", "book", "book_author", "reviewer"]

    @admin.display(description="author")
    def book_author(self, review):
        return review.book.author.name


@admin.register(Item)
class ItemAdmin(admin.ModelAdmin):
    """No ordering of its own: the changelist sorts by the model's Meta.ordering."""

    list_display = ["name", "kind"]


@admin.register(Publisher)
class PublisherAdmin(admin.ModelAdmin):
    list_display = ["name", "early_authors"]

    @admin.display(description="early authors")
    def early_authors(self, publisher):
        # Counted by hand, per row, with a condition of its own.
        return Author.objects.filter(publisher=publisher, name__in=["A0", "A1"]).count()
