from django.urls import path

from publisher import views

app_name = "publisher"
urlpatterns = [
    path("businesses/", views.business_list, name="business_list"),
    path("posts/", views.post_list, name="post_list"),
    path("posts/<int:pk>/", views.post_detail, name="post_detail"),
    path("queue/", views.publishing_queue, name="queue"),
]
