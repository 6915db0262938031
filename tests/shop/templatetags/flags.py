"""Feature flags for templates, as a flags library ships them (the tests list this module in
DBTUNE["IGNORED_MODULES"], so that it counts as a library's code)."""

from django import template

from tests.shop.models import Flag

register = template.Library()


@register.simple_tag
def flag_on(name):
    return Flag.objects.filter(name=name, active=True).exists()
