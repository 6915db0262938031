"""Write netbox/netbox/configuration.py from NetBox's own configuration_example.py.

Run by corpus/netbox/setup with the checkout's netbox/ directory as argument. Every value is
fixed (this is a local corpus instance on loopback services, not a deployment): the same file
comes out every time.
"""

import pathlib
import sys

# Fixed, not secret: a local corpus instance that no one can reach from outside.
SECRET_KEY = "corpus-netbox-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz"
PEPPER = "corpus-netbox-api-token-pepper-0123456789-abcdefghijklmnopqrstuvwxyz"
REDIS_DB = 12

REPLACEMENTS = [
    # (old, new, how many times it must occur)
    ("ALLOWED_HOSTS = []", "ALLOWED_HOSTS = ['*']", 1),
    ("'NAME': 'netbox',", "'NAME': 'corpus_netbox',", 1),
    (
        "'USER': '',               # PostgreSQL username",
        "'USER': 'postgres',       # PostgreSQL username",
        1,
    ),
    (
        "'HOST': 'localhost',      # Database server",
        "'HOST': '127.0.0.1',      # Database server",
        1,
    ),
    ("'PORT': '',               # Database port", "'PORT': '5432',           # Database port", 1),
    (
        "'HOST': 'localhost',\n        'PORT': 6379,",
        "'HOST': '127.0.0.1',\n        'PORT': 6379,",
        2,
    ),
    ("'DATABASE': 0,", f"'DATABASE': {REDIS_DB},", 1),
    ("'DATABASE': 1,", f"'DATABASE': {REDIS_DB},", 1),
    ("SECRET_KEY = ''", f"SECRET_KEY = '{SECRET_KEY}'", 1),
    ("API_TOKEN_PEPPERS = {}", f"API_TOKEN_PEPPERS = {{1: '{PEPPER}'}}", 1),
]

EXTRA = """

# --- corpus/netbox additions ---
# No outbound traffic: no census report, no release check, no internet-only dashboard widgets.
CENSUS_REPORTING_ENABLED = False
ISOLATED_DEPLOYMENT = True
RELEASE_CHECK_URL = None
"""


def main(netbox_dir: str) -> None:
    conf_dir = pathlib.Path(netbox_dir) / "netbox"
    text = (conf_dir / "configuration_example.py").read_text()
    for old, new, times in REPLACEMENTS:
        found = text.count(old)
        if found != times:
            sys.exit(
                f"configure.py: expected {times} x {old!r} in configuration_example.py, "
                f"found {found}"
            )
        text = text.replace(old, new)
    (conf_dir / "configuration.py").write_text(text + EXTRA)


if __name__ == "__main__":
    main(sys.argv[1])
