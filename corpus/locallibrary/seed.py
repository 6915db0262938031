"""Corpus seed for locallibrary (run by setup through `manage.py shell`): fixed data, no
randomness. 4 languages, 8 genres, 14 authors, 30 books (12 by the first author, 11 in the
first genre), 90 copies with distinct due dates, 45 of them on loan; users: reader and reader2
(borrowers), librarian (staff, group Librarians with catalog.can_mark_returned and the catalog
add/change/delete permissions), admin (superuser). Password of every user: corpus-password."""

import datetime
import uuid

from catalog.models import Author, Book, BookInstance, Genre, Language
from django.contrib.auth.models import Group, Permission, User
from django.db import transaction

PASSWORD = "corpus-password"

LANGUAGES = ["English", "French", "German", "Spanish"]
GENRES = [
    "Fantasy",
    "Science Fiction",
    "Mystery",
    "Historical Fiction",
    "Poetry",
    "Biography",
    "Horror",
    "Romance",
]
AUTHORS = [
    ("Terry", "Pratchett", datetime.date(1948, 4, 28), datetime.date(2015, 3, 12)),
    ("Ursula", "Le Guin", datetime.date(1929, 10, 21), datetime.date(2018, 1, 22)),
    ("Isaac", "Asimov", datetime.date(1920, 1, 2), datetime.date(1992, 4, 6)),
    ("Agatha", "Christie", datetime.date(1890, 9, 15), datetime.date(1976, 1, 12)),
    ("Hilary", "Mantel", datetime.date(1952, 7, 6), datetime.date(2022, 9, 22)),
    ("Mary", "Shelley", datetime.date(1797, 8, 30), datetime.date(1851, 2, 1)),
    ("Jane", "Austen", datetime.date(1775, 12, 16), datetime.date(1817, 7, 18)),
    ("Emily", "Dickinson", datetime.date(1830, 12, 10), datetime.date(1886, 5, 15)),
    ("Octavia", "Butler", datetime.date(1947, 6, 22), datetime.date(2006, 2, 24)),
    ("Jules", "Verne", datetime.date(1828, 2, 8), datetime.date(1905, 3, 24)),
    ("Bram", "Stoker", datetime.date(1847, 11, 8), datetime.date(1912, 4, 20)),
    ("Walter", "Isaacson", datetime.date(1952, 5, 20), None),
    ("Dorothy", "Sayers", datetime.date(1893, 6, 13), datetime.date(1957, 12, 17)),
    ("Umberto", "Eco", datetime.date(1932, 1, 5), datetime.date(2016, 2, 19)),
]
PRATCHETT = [
    "The Colour of Magic",
    "The Light Fantastic",
    "Equal Rites",
    "Mort",
    "Sourcery",
    "Wyrd Sisters",
    "Pyramids",
    "Guards! Guards!",
    "Eric",
    "Moving Pictures",
    "Reaper Man",
    "Witches Abroad",
]
OTHERS = [  # (title, author index, genre indexes)
    ("A Wizard of Earthsea", 1, [0, 1]),
    ("The Left Hand of Darkness", 1, [1]),
    ("Foundation", 2, [1]),
    ("I, Robot", 2, [1, 2]),
    ("Murder on the Orient Express", 3, [2]),
    ("The ABC Murders", 3, [2, 6]),
    ("Wolf Hall", 4, [3, 5]),
    ("Frankenstein", 5, [6, 1]),
    ("Pride and Prejudice", 6, [7, 3]),
    ("Collected Poems", 7, [4]),
    ("Kindred", 8, [1, 3]),
    ("Twenty Thousand Leagues Under the Seas", 9, [1]),
    ("Dracula", 10, [6, 0]),
    ("Steve Jobs", 11, [5]),
    ("Gaudy Night", 12, [2, 7]),
    ("The Name of the Rose", 13, [2, 3, 0]),
    ("Parable of the Sower", 8, [1]),
    ("Emma", 6, [7]),
]
STATUSES = ["o", "a", "o", "r", "o", "d"]  # half of the copies on loan
BASE_DATE = datetime.date(2030, 1, 1)


@transaction.atomic
def seed():
    BookInstance.objects.all().delete()
    Book.objects.all().delete()
    Author.objects.all().delete()
    Genre.objects.all().delete()
    Language.objects.all().delete()
    User.objects.filter(username__in=["reader", "reader2", "librarian", "admin"]).delete()

    reader = User.objects.create_user(
        "reader", "reader@example.com", PASSWORD, first_name="Rita", last_name="Reader"
    )
    reader2 = User.objects.create_user(
        "reader2", "reader2@example.com", PASSWORD, first_name="Rob", last_name="Reader"
    )
    librarian = User.objects.create_user(
        "librarian",
        "librarian@example.com",
        PASSWORD,
        first_name="Libby",
        last_name="Librarian",
        is_staff=True,
    )
    User.objects.create_superuser("admin", "admin@example.com", PASSWORD)
    librarians, _ = Group.objects.get_or_create(name="Librarians")
    librarians.permissions.set(
        Permission.objects.filter(
            content_type__app_label="catalog",
            codename__regex=r"^(can_mark_returned|(add|change|delete)_(author|book|bookinstance|genre|language))$",
        )
    )
    librarian.groups.add(librarians)

    languages = [Language.objects.create(name=name) for name in LANGUAGES]
    genres = [Genre.objects.create(name=name) for name in GENRES]
    authors = [
        Author.objects.create(
            first_name=first, last_name=last, date_of_birth=born, date_of_death=died
        )
        for first, last, born, died in AUTHORS
    ]
    books = []
    for i, title in enumerate(PRATCHETT):
        book = Book.objects.create(
            title=title,
            author=authors[0],
            language=languages[0],
            summary=f"Discworld novel number {i + 1}.",
            isbn=f"97800000{i:05d}",
        )
        book.genre.set([genres[0], genres[1 + i % 3], genres[7 - i % 2]])
        books.append(book)
    for j, (title, author, genre_indexes) in enumerate(OTHERS):
        book = Book.objects.create(
            title=title,
            author=authors[author],
            language=languages[j % len(languages)],
            summary=f"A book by {authors[author]}.",
            isbn=f"97810000{j:05d}",
        )
        book.genre.set([genres[g] for g in genre_indexes])
        books.append(book)

    borrowers = [reader, reader, reader2]
    loans = 0
    for n in range(90):
        book = books[n % len(books)]
        status = STATUSES[n % len(STATUSES)]
        borrower = None
        if status == "o":
            borrower = borrowers[loans % len(borrowers)]
            loans += 1
        BookInstance.objects.create(
            id=uuid.UUID(int=n + 1),
            book=book,
            imprint=f"Imprint {n % 7 + 1}, {2000 + n % 20}",
            due_back=BASE_DATE + datetime.timedelta(days=n),
            status=status,
            borrower=borrower,
        )


seed()
counts = [
    Language.objects.count(),
    Genre.objects.count(),
    Author.objects.count(),
    Book.objects.count(),
    BookInstance.objects.count(),
    BookInstance.objects.filter(status="o").count(),
    User.objects.count(),
]
print(
    "seed: languages {}, genres {}, authors {}, books {}, copies {} (on loan {}), users {}".format(
        *counts
    )
)
