# Run by corpus/oscar/setup after seeding: requests every page of truth.toml once (as its user),
# so first-request effects are done before anything is measured: sorl-thumbnail makes its
# thumbnails, oscar's analytics creates its ProductRecord rows (a first product view inserts,
# later views update). Later requests of a page then run the same queries every time.
import os
import tomllib

from django.contrib.auth import get_user_model
from django.test import Client

User = get_user_model()
truth = os.path.join(os.environ["DBTUNE_CORPUS_HERE"], "truth.toml")
with open(truth, "rb") as f:
    pages = tomllib.load(f)["pages"]
for page in pages:
    client = Client()
    if page.get("user"):
        client.force_login(User.objects.get(**{User.USERNAME_FIELD: page["user"]}))
    response = client.get(page["url"])
    print("warm:", page["url"], response.status_code)
