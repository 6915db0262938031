"""Views with N+1 queries in each place a Django project hides them."""

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.generic import ListView
from rest_framework import serializers, viewsets

from tests.shop.models import Author, Book, Product


def book_list(request: HttpRequest) -> HttpResponse:
    books = Book.objects.order_by("id")
    return render(request, "shop/book_list.html", {"books": books})


def fixed_book_list(request: HttpRequest) -> HttpResponse:
    books = Book.objects.select_related("author").order_by("id")
    return render(request, "shop/book_list.html", {"books": books})


async def async_book_titles(request: HttpRequest) -> JsonResponse:
    rows = []
    async for book in Book.objects.order_by("id"):
        author = await Author.objects.aget(pk=book.author_id)
        rows.append(f"{book.title} by {author.name}")
    return JsonResponse({"rows": rows})


class BookListView(ListView):
    model = Book
    template_name = "shop/book_list.html"
    context_object_name = "books"


class AuthorSerializer(serializers.ModelSerializer):
    class Meta:
        model = Author
        fields = ["id", "name"]


class BookSerializer(serializers.ModelSerializer):
    author = AuthorSerializer()

    class Meta:
        model = Book
        fields = ["id", "title", "author"]


class BookViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = Book.objects.order_by("id")
    serializer_class = BookSerializer


def product_list(request: HttpRequest) -> HttpResponse:
    products = Product.objects.order_by("id")
    return render(request, "shop/product_list.html", {"products": products})


def home(request: HttpRequest) -> HttpResponse:
    books = Book.objects.order_by("id")
    return render(request, "shop/home.html", {"books": books})
