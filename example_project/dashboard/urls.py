from django.urls import path

from dashboard import cached, views

app_name = "dashboard"
urlpatterns = [
    path("", views.index, name="index"),
    path("cached/", cached.index, name="cached"),
]
