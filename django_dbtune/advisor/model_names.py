"""Which model a name in a project file means, without importing the file: names imported
from a models module, models read through the module itself (``models.Order``), models
loaded with ``get_model()``, and the methods a model's own managers and querysets add."""

from __future__ import annotations

import ast
import functools

from django.apps import apps
from django.db import models


class ModelNames:
    """Resolves the names a file imports to model classes."""

    def __init__(self) -> None:
        self.by_module: dict[tuple[str, str], type[models.Model]] = {}
        by_name: dict[str, list[type[models.Model]]] = {}
        for model in apps.get_models():
            self.by_module[(model.__module__, model.__name__)] = model
            by_name.setdefault(model.__name__, []).append(model)
        self.unique = {name: found[0] for name, found in by_name.items() if len(found) == 1}
        self.modules = {module for module, _ in self.by_module}
        owners: dict[str, set[type[models.Model]]] = {}
        for model in apps.get_models():
            for relation in model._meta.related_objects:
                # Keyed by the model the key points to: its subclasses and proxies have
                # the same accessor, and are one owner.
                if relation.one_to_many and (accessor := relation.get_accessor_name()):
                    owners.setdefault(accessor, set()).add(relation.model)
        self.accessors = {name: found.pop() for name, found in owners.items() if len(found) == 1}
        concrete: dict[tuple[str, str], set[type[models.Model]]] = {}
        for model in apps.get_models():
            for parent in model.__mro__[1:]:
                if getattr(getattr(parent, "_meta", None), "abstract", False):
                    concrete.setdefault((parent.__module__, parent.__name__), set()).add(model)
        self.abstract = {key: found.pop() for key, found in concrete.items() if len(found) == 1}
        by_abstract_name: dict[str, list[type[models.Model]]] = {}
        for (_, abstract_name), model in self.abstract.items():
            by_abstract_name.setdefault(abstract_name, []).append(model)
        self.unique_abstract = {
            n: found[0] for n, found in by_abstract_name.items() if len(found) == 1
        }
        """Abstract models that one concrete model alone inherits from (Oscar's
        ``AbstractBasket`` and ``Basket``): in its methods, ``self`` is one of its rows."""
        self.ambiguous = {
            name: sorted(model._meta.label for model in found)
            for name, found in owners.items()
            if len(found) > 1
        }
        """Reverse accessor names several models have: the labels of those models."""

    def defined(self, module: str, name: str) -> type[models.Model] | None:
        """The model a file's own ``class name(...)`` defines: ``module`` is the file's
        path read as a module (``shop/models.py``: ``shop.models``), which the project root
        may prefix with folders the import path does not have."""
        for model_module, model_name in self.by_module:
            if model_name == name and (
                model_module == module or module.endswith("." + model_module)
            ):
                return self.by_module[(model_module, model_name)]
        for (model_module, model_name), model in self.abstract.items():
            if model_name == name and (
                model_module == module or module.endswith("." + model_module)
            ):
                return model
        if "models" in module.split("."):
            # A models module under a path the import lacks.
            return self.unique.get(name) or self.unique_abstract.get(name)
        return None

    def accessor_owner(self, name: str) -> type[models.Model] | None:
        """The one model with a reverse foreign key named ``name`` (``entry_set``, a
        ``related_name``); None when no model or several have one (then nothing is said)."""
        return self.accessors.get(name)

    def ambiguity(self, name: str) -> str:
        """Why a chain through the accessor ``name`` several models have is left out."""
        owners = ", ".join(self.ambiguous[name])
        return (
            f"left out, '{name}' is the reverse relation of several models ({owners}), and "
            "which one this reads cannot be told"
        )

    def imported(self, node: ast.ImportFrom) -> dict[str, type[models.Model]]:
        """The models one ``from ... import ...`` statement binds, by local name."""
        names: dict[str, type[models.Model]] = {}
        for alias in node.names:
            model = self.by_module.get((node.module or "", alias.name))
            model = model or self.unique.get(alias.name)
            if model is not None:
                names[alias.asname or alias.name] = model
        return names

    def in_module(self, module: str, name: str) -> type[models.Model] | None:
        """``name`` read from a module the file imported (``models.Order`` after ``from
        shop import models``): by the module's name, else by the model's name when only one
        model has it (a relative import does not say which package it is)."""
        return self.by_module.get((module, name)) or self.unique.get(name)


def imported_modules(
    node: ast.Import | ast.ImportFrom, models_by_module: set[str]
) -> dict[str, str]:
    """The modules of models one import statement binds, by local name: ``from shop import
    models``, ``from . import models as m``, ``import shop.models as sm``."""
    bound: dict[str, str] = {}
    for alias in node.names:
        if isinstance(node, ast.ImportFrom):
            module = f"{node.module}.{alias.name}" if node.module else alias.name
        elif alias.asname is not None:
            module = alias.name
        else:
            continue  # "import shop.models" binds "shop", read as shop.models.Order: not followed
        if module.startswith("django."):
            continue  # django.db.models: fields and expressions, no model of the project
        if module in models_by_module or module.rsplit(".", 1)[-1] == "models":
            bound[alias.asname or alias.name] = module
    return bound


GET_MODEL = frozenset({"get_model"})
"""``apps.get_model("shop", "Order")``, and the same name in libraries that load swappable
models (Oscar's ``get_model("order", "Order")``)."""


def custom_method(model: type[models.Model], method: str) -> bool:
    """Whether one of ``model``'s managers, or a queryset class they build, defines
    ``method`` outside Django (a project's ``active()``, ``published()``...)."""
    for owner in chain_classes(model):
        defined = next((cls for cls in owner.__mro__ if method in vars(cls)), None)
        if defined is not None and not defined.__module__.startswith("django."):
            return True
    return False


@functools.cache
def chain_classes(model: type[models.Model]) -> tuple[type, ...]:
    """The classes a chain on ``model`` goes through: its managers' and the querysets they
    build (also a ``get_queryset`` that returns ``MyQuerySet(self.model, using=self._db)``;
    building a queryset runs no query)."""
    classes: list[type] = []
    for manager in model._meta.managers:
        classes.append(type(manager))
        queryset_class = getattr(manager, "_queryset_class", None)
        if isinstance(queryset_class, type):
            classes.append(queryset_class)
        try:
            classes.append(type(manager.get_queryset()))
        except Exception:  # a library's manager may need more than a model to build one
            continue
    return tuple(dict.fromkeys(classes))


def loaded_model(node: ast.expr) -> type[models.Model] | None:
    """The model ``get_model("shop", "Order")`` (or ``get_model("shop.Order")``) loads."""
    if not isinstance(node, ast.Call) or node.keywords:
        return None
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    labels = [
        a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)
    ]
    if name not in GET_MODEL or len(labels) != len(node.args) or not 1 <= len(labels) <= 2:
        return None
    try:
        return apps.get_model(labels[0], labels[1] if len(labels) == 2 else None)
    except (LookupError, ValueError):
        return None
