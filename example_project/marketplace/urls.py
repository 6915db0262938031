from django.urls import path

from marketplace import views

app_name = "marketplace"
urlpatterns = [
    path("jobs/", views.job_list, name="job_list"),
    path("jobs/<int:pk>/", views.job_detail, name="job_detail"),
    path("freelancers/", views.freelancer_list, name="freelancer_list"),
    path("payments/", views.payment_list, name="payment_list"),
]
