# Seed for the oscar corpus project, run by corpus/oscar/setup after the sandbox's own data
# (the Makefile's build_sandbox: users superuser/staff, ~200 products, images, offers, 1 order).
# Adds customers, 12 orders of several lines, product reviews and an open basket of 10 lines,
# so the order list, a product page and the basket page show >= 10 rows.
# Deterministic: fixed values, fixed dates, no randomness.
import datetime

from django.contrib.auth import get_user_model
from django.db import transaction
from oscar.apps.address.models import Country
from oscar.apps.basket.models import Basket
from oscar.apps.catalogue.models import Product
from oscar.apps.catalogue.reviews.models import ProductReview
from oscar.apps.order.models import Order, ShippingAddress
from oscar.apps.partner.strategy import Default
from oscar.test.factories import create_order

User = get_user_model()
PASSWORD = "corpus-pass-123"
BASE = datetime.datetime(2025, 2, 3, 10, 0, tzinfo=datetime.UTC)

with transaction.atomic():
    for username in ("superuser", "staff"):
        user = User.objects.get(username=username)
        user.set_password(PASSWORD)
        user.save()
    customers = [
        User.objects.create_user(
            f"customer{i}",
            f"customer{i}@example.com",
            PASSWORD,
            first_name=f"Cust{i}",
            last_name="Omer",
        )
        for i in range(1, 13)
    ]
    customer = customers[0]

    # Products that can be bought: standalone or child, with a stock record, in pk order.
    buyable = [
        p
        for p in Product.objects.filter(structure__in=["standalone", "child"])
        .filter(stockrecords__isnull=False)
        .distinct()
        .order_by("pk")
    ]
    uk = Country.objects.get(iso_3166_1_a2="GB")

    for n in range(12):
        basket = Basket.objects.create(owner=customers[n])
        basket.strategy = Default()
        for k in range(3):
            basket.add_product(buyable[(n * 3 + k) % len(buyable)], quantity=1 + (k % 2))
        address = ShippingAddress.objects.create(
            first_name=customers[n].first_name,
            last_name="Omer",
            line1=f"{n + 1} High Street",
            line4="London",
            postcode="SW1A 1AA",
            country=uk,
        )
        order = create_order(
            number=f"{100100 + n}",
            basket=basket,
            user=customers[n],
            shipping_address=address,
        )
        Order.objects.filter(pk=order.pk).update(
            date_placed=BASE + datetime.timedelta(days=n),
            status=["Pending", "Being processed", "Complete"][n % 3],
        )

    # Reviews of one product (snow-crash, shown on its detail page), by different customers.
    product = Product.objects.get(slug="snow-crash")
    for i, author in enumerate(customers[:11]):
        ProductReview.objects.create(
            product=product,
            user=author,
            score=1 + (i % 5),
            title=f"Review {i + 1}",
            body=f"Review body {i + 1}: an honest opinion.",
            status=ProductReview.APPROVED,
        )

    # An open basket of 10 lines for customer1 (the basket page, logged in).
    basket = Basket.objects.create(owner=customer)
    basket.strategy = Default()
    for k in range(10):
        basket.add_product(buyable[(k * 7) % len(buyable)], quantity=1)

print(
    "seeded:",
    User.objects.count(),
    "users,",
    Order.objects.count(),
    "orders,",
    ProductReview.objects.count(),
    "reviews,",
    basket.num_lines,
    "basket lines",
)
