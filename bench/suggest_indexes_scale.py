"""How long suggest_indexes takes on a large project: 300 models and about 50,000 lines.

Generates a synthetic project (30 apps x 10 models, with views full of querysets) in a
temporary folder, builds its tables in an in-memory SQLite database, then times a full
``suggest_indexes`` run (models, code scan, database indexes, drift) and, in the same run,
``manage.py check`` on the same project as a yardstick.

    python bench/suggest_indexes_scale.py [--apps 30] [--models 10] [--views 115]
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

MODEL = """

class {name}(models.Model):
    title = models.CharField(max_length=200)
    slug = models.SlugField(unique=True)
    status = models.CharField(max_length=20, choices=[("a", "A"), ("b", "B"), ("c", "C")])
    score = models.IntegerField(default=0)
    created = models.DateTimeField()
    is_public = models.BooleanField(default=True)
    parent = models.ForeignKey("{parent}", models.CASCADE, null=True, db_index={indexed})

    class Meta:
        indexes = [models.Index(fields=["score"], name="{table}_score")]

    def __str__(self):
        return self.title
"""

VIEW = """

def view_{n}(request, pk, key):
    items = {model}.objects.filter(status="a", created__gte=request.since).order_by("-score")
    if request.GET.get("q"):
        items = items.filter(title__startswith=request.GET["q"])
    one = get_object_or_404({model}, pk=pk)
    children = one.{related}.filter(score__gt=3)
    for child in children:
        child.parent.title  # a read per row
    total = {model}.objects.exclude(is_public=False).count()
    ordered = {model}.objects.order_by(key)
    latest = {model}.objects.filter(slug=request.GET.get("slug")).first()
    return render(request, "x.html", {{"items": items, "total": total, "o": ordered, "l": latest}})
"""


def generate(root: Path, apps: int, models_per_app: int, views: int) -> int:
    lines = 0
    for a in range(apps):
        app = root / f"app{a:03d}"
        app.mkdir(parents=True)
        (app / "__init__.py").write_text("")  # no migrations: syncdb builds the tables
        names = [f"Thing{a:03d}x{m:02d}" for m in range(models_per_app)]
        source = "from django.db import models\n"
        for m, name in enumerate(names):
            source += MODEL.format(
                name=name,
                parent=names[m - 1] if m else name,
                indexed=m % 3 != 0,
                table=f"a{a}m{m}",
            )
        (app / "models.py").write_text(source)
        view_source = (
            "from django.shortcuts import get_object_or_404, render\n\n"
            f"from app{a:03d}.models import {', '.join(names)}\n"
        )
        for n in range(views):
            model = names[n % models_per_app]
            related = f"{model.lower()}_set"
            view_source += VIEW.format(n=n, model=model, related=related)
        (app / "views.py").write_text(view_source)
        lines += source.count("\n") + view_source.count("\n")
    settings = textwrap.dedent(f"""
        SECRET_KEY = "bench"
        INSTALLED_APPS = ["django.contrib.contenttypes", "django_dbtune"] + [
            "app%03d" % a for a in range({apps})
        ]
        DATABASES = {{"default": {{"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}}}
        DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
        BASE_DIR = {str(root)!r}
        USE_TZ = True
    """)
    (root / "bench_settings.py").write_text(settings)
    return lines


RUNNER = """
import io, json, sys, time
import django
django.setup()
from django.core.management import call_command
from django.apps import apps
call_command("migrate", run_syncdb=True, verbosity=0)
start = time.perf_counter(); call_command("check", stdout=io.StringIO())
check = time.perf_counter() - start
out = io.StringIO()
start = time.perf_counter(); call_command("suggest_indexes", "--format", "json", stdout=out)
suggest = time.perf_counter() - start
findings = json.loads(out.getvalue())
models = sum(1 for m in apps.get_models() if m._meta.app_label.startswith("app"))
print(json.dumps({"check": check, "suggest": suggest, "findings": len(findings),
                  "models": models}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--apps", type=int, default=30)
    parser.add_argument("--models", type=int, default=10)
    parser.add_argument("--views", type=int, default=115)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        lines = generate(root, args.apps, args.models, args.views)
        env = {"PYTHONPATH": f"{root}:{ROOT}", "DJANGO_SETTINGS_MODULE": "bench_settings"}
        result = subprocess.run(
            [sys.executable, "-c", RUNNER],
            cwd=root,
            env={**__import__("os").environ, **env},
            capture_output=True,
            text=True,
            check=True,
        )
        import json

        figures = json.loads(result.stdout.strip().splitlines()[-1])
        out = io.StringIO()
        print(f"project: {figures['models']} models, {lines:,} lines of Python", file=out)
        print(
            f"suggest_indexes: {figures['suggest']:.2f} s, {figures['findings']} findings",
            file=out,
        )
        print(
            f"manage.py check on the same project: {figures['check']:.2f} s "
            f"(suggest_indexes / check = {figures['suggest'] / figures['check']:.1f}x)",
            file=out,
        )
        print(out.getvalue(), end="")


if __name__ == "__main__":
    main()
