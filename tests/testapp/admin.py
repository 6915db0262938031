from django.contrib import admin

from tests.testapp.models import Author, Shelf


@admin.register(Shelf)
class ShelfAdmin(admin.ModelAdmin):
    list_filter = ["kind", "is_public", ("room", admin.AllValuesFieldListFilter)]
    search_fields = ["^label", "code", "=room"]
    ordering = ["-built"]
    date_hierarchy = "built"


@admin.register(Author)
class AuthorAdmin(admin.ModelAdmin):
    search_fields = ["^name"]
    ordering = ["email"]
