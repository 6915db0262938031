from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

from marketplace.models import Job, Payment, UserProfile


def job_list(request: HttpRequest) -> HttpResponse:
    # Slow spot: status filter plus Meta.ordering (-created_at), no index covers them.
    jobs = Job.objects.filter(status=Job.Status.OPEN)[:50]
    rows = []
    for job in jobs:
        # N+1 (forward foreign key): one query per job for its client.
        rows.append({"job": job, "client": job.client.display_name})
    return render(request, "marketplace/job_list.html", {"rows": rows})


def job_detail(request: HttpRequest, pk: int) -> HttpResponse:
    job = get_object_or_404(Job.objects.select_related("client"), pk=pk)
    applications = job.applications.select_related("freelancer").order_by("bid")
    context = {"job": job, "applications": applications}
    return render(request, "marketplace/job_detail.html", context)


def freelancer_list(request: HttpRequest) -> HttpResponse:
    # Slow spot: filter on role, sort by rating; no index covers them.
    freelancers = UserProfile.objects.filter(role="freelancer").order_by("-rating")[:50]
    rows = []
    for profile in freelancers:
        # N+1 (.count() in a loop): one COUNT query per freelancer.
        rows.append({"profile": profile, "applications": profile.applications.count()})
    return render(request, "marketplace/freelancer_list.html", {"rows": rows})


def payment_list(request: HttpRequest) -> HttpResponse:
    status = request.GET.get("status", Payment.Status.FAILED)
    # Slow spot: Payment.status is not indexed.
    payments = Payment.objects.filter(status=status).select_related("payer", "recipient")
    return render(request, "marketplace/payment_list.html", {"payments": payments[:50]})
