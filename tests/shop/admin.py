from django.contrib import admin

from tests.shop.models import Author, Book


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
