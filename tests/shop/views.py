"""Views with N+1 queries in each place a Django project hides them."""

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.generic import DetailView, ListView
from rest_framework import decorators, permissions, request, response, serializers, viewsets

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


def titles_only(request: HttpRequest) -> JsonResponse:
    # The join is never read: removing it costs nothing.
    books = Book.objects.select_related("author").order_by("id")
    return JsonResponse({"titles": [book.title for book in books]})


def paused_book_list(request: HttpRequest) -> JsonResponse:
    # Read under pause(), so the detector does not see the join read: removing it would
    # cost one query per row.
    from django_dbtune.nplusone import pause

    books = Book.objects.select_related("author").order_by("id")
    with pause():
        rows = [f"{book.title} by {book.author.name}" for book in books]
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


class BookTagsSerializer(serializers.ModelSerializer):
    tags = serializers.StringRelatedField(many=True)

    class Meta:
        model = Book
        fields = ["id", "title", "tags"]


class AuthorTreeSerializer(serializers.ModelSerializer):
    books = BookTagsSerializer(many=True, read_only=True)

    class Meta:
        model = Author
        fields = ["id", "name", "books"]


class AuthorTreeViewSet(viewsets.ReadOnlyModelViewSet):
    """One author with its books, and each book's tags: on the detail page the per-book
    loads are fixed on this queryset of authors, through ``books``."""

    queryset = Author.objects.order_by("id")
    serializer_class = AuthorTreeSerializer


class LoadedBookViewSet(viewsets.ReadOnlyModelViewSet):
    """Its list reads every book's author; the detail action ``title`` reads none."""

    queryset = Book.objects.select_related("author").order_by("id")
    serializer_class = BookSerializer

    @decorators.action(detail=True)
    def title(self, asked: request.Request, pk: str | None = None) -> response.Response:
        return response.Response({"title": self.get_object().title})


def product_list(request: HttpRequest) -> HttpResponse:
    products = Product.objects.order_by("id")
    return render(request, "shop/product_list.html", {"products": products})


def home(request: HttpRequest) -> HttpResponse:
    books = Book.objects.order_by("id")
    return render(request, "shop/home.html", {"books": books})


class AuthorDetailView(DetailView):
    # The template reads author.books.all and each book's editor: the fix goes on this
    # view's queryset, the only place in the project that fetches the author.
    model = Author
    template_name = "shop/author_detail.html"


class AuthorSummariesView(DetailView):
    # The template builds its own queryset of the author's books (a filter through the
    # related manager): no prefetch on this view is read by it.
    model = Author
    template_name = "shop/author_summaries.html"


class AuthorReversedView(DetailView):
    # The template reverses the author's books: a new query even after a prefetch.
    model = Author
    template_name = "shop/author_reversed.html"


def cms_page(request: HttpRequest, path: str) -> HttpResponse:
    """A CMS's page: every path on one pattern, a template of the path's own if there is one."""
    from django.template.response import TemplateResponse  # (the tests pin this file's lines)

    books = Book.objects.order_by("id")
    page = path.strip("/").replace("/", "_")
    templates = [f"shop/{page}.html", "shop/book_list.html"]
    return TemplateResponse(request, templates, {"books": books})


class PrivateBookViewSet(viewsets.ReadOnlyModelViewSet):
    """Refused with 403 to an anonymous request, as REST framework's session
    authentication answers (no redirect to a login page)."""

    queryset = Book.objects.order_by("id")
    serializer_class = BookSerializer
    permission_classes = [permissions.IsAuthenticated]


class BuiltBookViewSet(LoadedBookViewSet):
    """The same, with its queryset built in ``get_queryset``."""

    queryset = None

    def get_queryset(self):  # type: ignore[no-untyped-def]
        return Book.objects.select_related("author").order_by("id")
