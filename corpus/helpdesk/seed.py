# Seed for the helpdesk corpus project, run by corpus/helpdesk/setup after the demo's own
# fixtures (emailtemplate.json, demo.json: user "admin", 2 queues, 3 tickets, 2 KB categories,
# 3 KB items). Adds staff users, KB items, 40 tickets with follow-ups, changes, dependencies,
# CCs, custom field values and shared saved searches, so every list page shows >= 10 rows.
# Deterministic: fixed values, fixed dates, no randomness.
import datetime

from django.contrib.auth import get_user_model
from django.db import transaction
from helpdesk.models import (
    CustomField,
    FollowUp,
    KBCategory,
    KBItem,
    PreSetReply,
    Queue,
    SavedSearch,
    Ticket,
    TicketCC,
    TicketChange,
    TicketCustomFieldValue,
    TicketDependency,
    UserSettings,
)
from helpdesk.query import query_to_base64

User = get_user_model()
PASSWORD = "Pa33w0rd"  # the demo's own admin password, used for every seeded user
BASE = datetime.datetime(2025, 1, 6, 9, 0, tzinfo=datetime.UTC)

with transaction.atomic():
    admin = User.objects.get(username="admin")
    admin.first_name, admin.last_name = "Ada", "Admin"
    admin.set_password(PASSWORD)
    admin.save()

    agents = []
    for i, (first, last) in enumerate(
        [("Bob", "Agent"), ("Carla", "Agent"), ("Dan", "Agent")], start=1
    ):
        user = User.objects.create_user(
            f"agent{i}",
            f"agent{i}@example.com",
            PASSWORD,
            first_name=first,
            last_name=last,
            is_staff=True,
        )
        agents.append(user)
    customer = User.objects.create_user(
        "customer", "customer@example.com", PASSWORD, first_name="Cy", last_name="Customer"
    )
    for user in User.objects.all():
        UserSettings.objects.get_or_create(user=user)

    dh = Queue.objects.get(slug="DH")
    sp = Queue.objects.get(slug="SP")
    billing = Queue.objects.create(
        title="Billing",
        slug="BIL",
        email_address="billing@example.com",
        allow_public_submission=True,
    )
    queues = [dh, sp, billing]

    cat1 = KBCategory.objects.get(slug="kbcat1")
    cat2 = KBCategory.objects.get(slug="kbcat2")
    cat3 = KBCategory.objects.create(
        name="billing",
        title="Billing questions",
        slug="billing",
        description="Invoices, refunds and payment methods.",
        public=True,
    )
    cats = [cat1, cat2, cat3]
    kbitems = list(KBItem.objects.order_by("pk"))
    for i in range(1, 28):
        kbitems.append(
            KBItem.objects.create(
                category=cats[i % 3],
                title=f"How do I do thing {i}?",
                question=f"Question number {i} about the product.",
                answer=f"Answer number {i}: follow the *documented* steps.",
                votes=i,
                recommendations=i // 2,
                order=i,
                last_updated=BASE + datetime.timedelta(days=i),
            )
        )

    # Two custom fields, as a real installation has.
    CustomField.objects.create(
        name="customer_number",
        label="Customer number",
        data_type="varchar",
        max_length=20,
        ordering=1,
    )
    CustomField.objects.create(
        name="severity",
        label="Severity",
        data_type="list",
        list_values="Low\nMedium\nHigh",
        ordering=2,
    )
    fields = list(CustomField.objects.order_by("ordering"))

    staff = [admin, *agents]
    owners = [admin, agents[0], agents[1], None, agents[2]]
    submitters = ["helpdesk@example.com", "customer@example.com", "someone@example.org"]
    tickets = []
    for i in range(40):
        status = [
            Ticket.OPEN_STATUS,
            Ticket.REOPENED_STATUS,
            Ticket.OPEN_STATUS,
            Ticket.RESOLVED_STATUS,
            Ticket.CLOSED_STATUS,
        ][i % 5]
        ticket = Ticket.objects.create(
            title=f"Seeded ticket {i + 1:02d}: printer on floor {i % 7} is jammed",
            queue=queues[i % 3],
            submitter_email=submitters[i % 3],
            assigned_to=owners[i % 5],
            status=status,
            priority=(i % 5) + 1,
            description=f"Ticket body {i + 1}.\n\nSteps to reproduce: press *print*.",
            kbitem=kbitems[i % len(kbitems)] if i % 2 == 0 else None,
            due_date=BASE + datetime.timedelta(days=30 + i),
        )
        tickets.append(ticket)
        for n in range(3):
            author = staff[(i + n) % 4] if n else None
            fu = FollowUp.objects.create(
                ticket=ticket,
                title="Ticket Opened" if n == 0 else f"Comment {n}",
                comment=f"Follow-up {n} on ticket {i + 1}.",
                public=n != 2,
                user=author,
                time_spent=datetime.timedelta(minutes=15 * n) if n else None,
            )
            FollowUp.objects.filter(pk=fu.pk).update(
                date=BASE + datetime.timedelta(days=i, hours=n)
            )
            if n == 1:
                TicketChange.objects.create(
                    followup=fu,
                    field="Priority",
                    old_value="3",
                    new_value=str((i % 5) + 1),
                )
        for field in fields:
            TicketCustomFieldValue.objects.create(
                ticket=ticket,
                field=field,
                value=f"C-{1000 + i}" if field.name == "customer_number" else "Medium",
            )
        if i % 4 == 0:
            TicketCC.objects.create(ticket=ticket, email=f"watcher{i}@example.com")

    # One long ticket: 14 follow-ups from different people, with changes.
    long_ticket = tickets[0]
    for n in range(3, 15):
        fu = FollowUp.objects.create(
            ticket=long_ticket,
            title=f"Comment {n}",
            comment=f"More detail, round {n}.",
            public=True,
            user=staff[n % 4],
            time_spent=datetime.timedelta(minutes=5),
        )
        FollowUp.objects.filter(pk=fu.pk).update(date=BASE + datetime.timedelta(hours=n))
        TicketChange.objects.create(
            followup=fu, field="Status", old_value="Open", new_value="Open"
        )

    # Dependencies: the first five tickets wait on later open ones.
    for i in range(5):
        TicketDependency.objects.create(ticket=tickets[i], depends_on=tickets[i + 10])

    # Fixed dates and secret keys for every ticket (save() stamps created/modified with
    # now(), secret_key is a random UUID by default).
    for i, ticket in enumerate(Ticket.objects.order_by("pk")):
        Ticket.objects.filter(pk=ticket.pk).update(
            created=BASE + datetime.timedelta(days=i),
            modified=BASE + datetime.timedelta(days=i, hours=5),
            secret_key=f"00000000-0000-4000-8000-{ticket.pk:012d}",
        )

    for i in range(10):
        owner = staff[(i % 3) + 1]
        SavedSearch.objects.create(
            user=owner,
            title=f"{owner.username}'s search {i + 1}",
            shared=True,
            query=query_to_base64(
                {
                    "filtering": {"status__in": [1, 2], "queue__id__in": [queues[i % 3].pk]},
                    "filtering_null": {},
                    "sorting": "created",
                    "sortreverse": False,
                    "search_string": "",
                }
            ),
        )

    for i in range(3):
        reply = PreSetReply.objects.create(
            name=f"Canned reply {i + 1}", body=f"Thanks for your ticket ({i + 1})."
        )
        if i:
            reply.queues.add(queues[i])

print(
    "seeded:",
    User.objects.count(),
    "users,",
    Ticket.objects.count(),
    "tickets,",
    FollowUp.objects.count(),
    "follow-ups,",
    KBItem.objects.count(),
    "KB items",
)
