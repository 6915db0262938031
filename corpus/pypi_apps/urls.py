"""The site's URLs: each app mounted as its documentation shows. No page is requested by the
check; the URLs are here so that the apps load as they would in a real site."""

from django.apps import apps
from django.contrib import admin
from django.urls import include, path
from machina import urls as machina_urls
from wagtail import urls as wagtail_urls
from wagtail.admin import urls as wagtailadmin_urls

urlpatterns = [
    path("admin/", admin.site.urls),
    path("shop/", include(apps.get_app_config("oscar").urls[0])),
    path("cms-admin/", include(wagtailadmin_urls)),
    path("helpdesk/", include("helpdesk.urls")),
    path("forum/", include(machina_urls)),
    path("pages/", include(wagtail_urls)),
    path("", include("cms.urls")),
]
