from django.urls import include, path

from tests import views

urlpatterns = [
    path("async/tags/", views.async_tags),
    path("sync/tags/", views.sync_tags),
    path("", include("config.urls")),
]
