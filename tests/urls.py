from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import LoginView
from django.urls import include, path, re_path
from django.views.generic import ListView
from rest_framework.routers import SimpleRouter

from tests import views
from tests.shop import library
from tests.shop import views as shop
from tests.shop.models import Book

router = SimpleRouter()
router.register("shop/api/books", shop.BookViewSet)
router.register("shop/api/author-tree", shop.AuthorTreeViewSet)
router.register("shop/api/loaded-books", shop.LoadedBookViewSet, basename="loaded-book")
router.register("shop/api/private-books", shop.PrivateBookViewSet, basename="private-book")
router.register("shop/api/built-books", shop.BuiltBookViewSet, basename="built-book")

urlpatterns = [
    path("async/tags/", views.async_tags),
    path("sync/tags/", views.sync_tags),
    path("tags/<str:name>/count/", views.tag_count),
    path("my/businesses/", login_required(views.my_businesses)),
    # settings.LOGIN_URL (the default), where login_required sends anonymous users.
    path("accounts/login/", LoginView.as_view(template_name="admin/login.html")),
    path("shop/books/", shop.book_list),
    path("shop/books/fixed/", shop.fixed_book_list),
    path("shop/books/async/", shop.async_book_titles),
    path("shop/books/generic/", shop.BookListView.as_view()),
    path("shop/products/", shop.product_list),
    path("shop/", shop.home),
    # A CMS's way: every page on one pattern, the page's type chosen by its path.
    re_path(r"^pages/((?:[\w\-]+/)*)$", shop.cms_page),
    path("shop/books/titles/", shop.titles_only),
    path("shop/books/paused/", shop.paused_book_list),
    path("shop/authors/<int:pk>/", shop.AuthorDetailView.as_view()),
    path("shop/authors/<int:pk>/summaries/", shop.AuthorSummariesView.as_view()),
    path("shop/authors/<int:pk>/reversed/", shop.AuthorReversedView.as_view()),
    path("shop/library/listing/", library.listing),
    path("shop/library/books/", library.Listing.as_view()),
    path("shop/library/shelf/", library.Shelf.as_view()),
    path("shop/library/dashboard/", library.Dashboard.as_view()),
    path("shop/library/authors/", library.AuthorIndex.as_view()),
    # Django's own generic view, used as it is: no class of the project builds the queryset.
    path(
        "shop/generic/books/",
        ListView.as_view(model=Book, template_name="shop/generic_books.html"),
    ),
    *router.urls,
    path("", include("config.urls")),
]
