from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("", include("dashboard.urls")),
    path("crawler/", include("crawler.urls")),
    path("publisher/", include("publisher.urls")),
    path("marketplace/", include("marketplace.urls")),
    path("admin/", admin.site.urls),
]
