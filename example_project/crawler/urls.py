from django.urls import path

from crawler import views

app_name = "crawler"
urlpatterns = [
    path("websites/", views.website_list, name="website_list"),
    path("websites/<int:pk>/", views.website_detail, name="website_detail"),
    path("pages/", views.page_list, name="page_list"),
    path("broken/", views.broken_pages, name="broken_pages"),
    path("recommendations/", views.recommendation_list, name="recommendation_list"),
]
