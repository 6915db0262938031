"""Corpus seed for bakerydemo, run by setup (through `manage.py shell`) after the project's own
load_initial_data. Fixed data, no randomness. Adds to the demo content so that list pages show
10 rows or more: 8 people (12 in all), 8 blog posts (14; 10 tagged "baking"), 3 breads (14; the
index shows 12 per page), 6 locations (12). Makes sure of the users the pages need: admin
(superuser, from the fixture) and editor (from the fixture), password corpus-password. Then
requests the corpus pages once, so that every image rendition they show exists beforehand and
the measured pages only read (a first visit writes renditions)."""

import datetime

from bakerydemo.base.models import Person
from bakerydemo.blog.models import BlogIndexPage, BlogPage, BlogPersonRelationship
from bakerydemo.breads.models import (
    BreadIngredient,
    BreadPage,
    BreadsIndexPage,
    BreadType,
    Country,
)
from bakerydemo.locations.models import LocationOperatingHours, LocationPage, LocationsIndexPage
from django.contrib.auth import get_user_model
from django.db import transaction
from django.test import Client
from wagtail.images.models import Image
from wagtail.models import Page

PASSWORD = "corpus-password"
WHEN = datetime.datetime(2024, 1, 1, 9, 0, tzinfo=datetime.UTC)

PEOPLE = [
    ("Ada", "Baker", "Head baker", 8),
    ("Ben", "Crust", "Pastry chef", 52),
    ("Cora", "Dough", "Sourdough lead", 53),
    ("Dan", "Ember", "Oven keeper", 51),
    ("Eva", "Flour", "Miller", 8),
    ("Finn", "Grain", "Apprentice", 52),
    ("Gia", "Hearth", "Shop manager", 53),
    ("Hal", "Icing", "Decorator", 51),
]
POSTS = [  # title, image id, author indexes into the new people, extra tag
    ("Morning bake diaries", 21, [0], "yeast"),
    ("The rye revival", 22, [1, 2], "grain"),
    ("Crumb shots explained", 23, [2], "fermentation"),
    ("A week of baguettes", 42, [3], "sandwich"),
    ("Starter maintenance", 43, [4, 0], "yeast"),
    ("Hydration and you", 55, [5], "grain"),
    ("Scoring patterns", 21, [6], "fire"),
    ("Cooling racks matter", 22, [7, 1], "soda"),
]
BREADS = [("Brioche", 9, 9, 4), ("Ciabatta", 10, 12, 2), ("Pumpernickel", 11, 3, 16)]
LOCATIONS = [
    ("Husavik", 44),
    ("Isafjordur", 45),
    ("Egilsstadir", 46),
    ("Borgarnes", 47),
    ("Grindavik", 48),
    ("Hveragerdi", 49),
]
DAYS = ["MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"]
PARAGRAPH = [{"type": "paragraph_block", "value": "<p>Fresh from the corpus oven.</p>"}]


def publish(page, when):
    page.first_published_at = when
    page.save()
    page.save_revision().publish()


@transaction.atomic
def seed():
    User = get_user_model()
    admin = User.objects.filter(username="admin").first() or User(username="admin")
    admin.is_superuser = admin.is_staff = admin.is_active = True
    admin.set_password(PASSWORD)
    admin.save()
    editor = User.objects.get(username="editor")  # in the fixture: Editors group
    editor.set_password(PASSWORD)
    editor.save()

    if Person.objects.filter(first_name="Ada", last_name="Baker").exists():
        return  # already seeded (setup always starts from a fresh database)
    people = []
    for first, last, job, image in PEOPLE:
        person = Person(
            first_name=first,
            last_name=last,
            job_title=job,
            image=Image.objects.get(pk=image),
            live=True,
        )
        person.save()
        people.append(person)

    blog_index = BlogIndexPage.objects.get()
    for i, (title, image, authors, tag) in enumerate(POSTS):
        post = BlogPage(
            title=title,
            slug=f"corpus-post-{i + 1}",
            introduction=f"{title}: notes.",
            subtitle="From the corpus",
            image=Image.objects.get(pk=image),
            body=PARAGRAPH,
            date_published=datetime.date(2020, 1, 1 + i),
        )
        post.tags.add("baking", tag)
        for order, who in enumerate(authors):
            post.blog_person_relationship.add(
                BlogPersonRelationship(person=people[who], sort_order=order)
            )
        blog_index.add_child(instance=post)
        publish(post, WHEN + datetime.timedelta(days=i))

    breads_index = BreadsIndexPage.objects.get()
    for i, (title, image, country, bread_type) in enumerate(BREADS):
        bread = BreadPage(
            title=title,
            slug=title.lower(),
            introduction=f"About {title}.",
            image=Image.objects.get(pk=image),
            body=PARAGRAPH,
            origin=Country.objects.get(pk=country),
            bread_type=BreadType.objects.get(pk=bread_type),
        )
        bread.ingredients.set(BreadIngredient.objects.order_by("pk")[i * 3 : i * 3 + 4])
        breads_index.add_child(instance=bread)
        publish(bread, WHEN + datetime.timedelta(days=20 + i))

    locations_index = LocationsIndexPage.objects.get()
    for i, (title, image) in enumerate(LOCATIONS):
        location = LocationPage(
            title=title,
            slug=title.lower(),
            introduction=f"Our {title} shop.",
            image=Image.objects.get(pk=image),
            body=PARAGRAPH,
            address=f"{i + 1} Main Street\n{title}\nIceland",
            lat_long=f"64.{i + 1}, -21.{i + 1}",
        )
        for order, day in enumerate(DAYS):
            location.hours_of_operation.add(
                LocationOperatingHours(
                    sort_order=order,
                    day=day,
                    opening_time=datetime.time(8),
                    closing_time=datetime.time(18),
                    closed=(day == "SUN"),
                )
            )
        locations_index.add_child(instance=location)
        publish(location, WHEN + datetime.timedelta(days=30 + i))


def warm():
    """Request the corpus pages (and every live page) once: the renditions they show are made
    now, not during a measured request."""
    User = get_user_model()
    anonymous = Client(HTTP_HOST="localhost")
    admin = Client(HTTP_HOST="localhost")
    admin.force_login(User.objects.get(username="admin"))
    urls = [page.url for page in Page.objects.live().filter(depth__gt=1).specific()]
    urls += [
        "/blog/tags/baking/",
        "/api/v2/pages/",
        "/api/v2/pages/?type=blog.BlogPage&fields=*",
        "/api/v2/persons/",
        "/api/v2/images/",
    ]
    for url in urls:
        anonymous.get(url)
    admin_urls = [
        "/admin/",
        "/admin/snippets/base/person/",
        "/admin/bread_pages/",
        "/admin/images/",
    ]
    admin_urls += [
        f"/admin/pages/{pk}/"
        for pk in Page.objects.filter(numchild__gt=0).values_list("pk", flat=True)
    ]
    for url in admin_urls:
        admin.get(url)


seed()
warm()
counts = [
    Person.objects.count(),
    BlogPage.objects.count(),
    BreadPage.objects.count(),
    LocationPage.objects.count(),
    Page.objects.count(),
    Image.get_rendition_model().objects.count(),
]
print(
    "seed: people {}, blog posts {}, breads {}, locations {}, pages {}, renditions {}".format(
        *counts
    )
)
