"""Stands for a CMS's specific-rows iterable (Wagtail's ``SpecificIterable``): a library's
code, named in IGNORED_MODULES by the tests that use it."""

from django.apps import apps
from django.db.models.query import ModelIterable


class SpecificRows(ModelIterable):
    """Each row of an Item queryset as its subclass: one query per subclass, with the
    queryset's ``for_specific_subqueries`` loads."""

    def __iter__(self):
        queryset = self.queryset
        kinds = list(queryset.values_list("pk", "kind"))
        rows = {}
        for kind in {kind for _, kind in kinds}:
            model = apps.get_model("shop", kind)
            subquery = model._base_manager.filter(pk__in=[pk for pk, k in kinds if k == kind])
            if queryset.specific_select:
                subquery = subquery.select_related(*queryset.specific_select)
            if queryset.specific_prefetch:
                subquery = subquery.prefetch_related(*queryset.specific_prefetch)
            rows.update((row.pk, row) for row in subquery)
        for pk, _ in kinds:
            yield rows[pk]
