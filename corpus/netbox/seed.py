"""Seed NetBox with fixed corpus data through the ORM (run by corpus/netbox/setup).

Run from the checkout's netbox/ directory with DJANGO_SETTINGS_MODULE=settings_corpus.
Deterministic: no randomness; every run first empties the tables it fills (TRUNCATE ...
RESTART IDENTITY CASCADE), so the rows get the same primary keys every time (the first
device is /dcim/devices/1/).

What it makes:
  users: "admin" (superuser, password "corpus-admin-password-1") with a v2 API token
         (header "Authorization: Bearer nbt_corpusapikey.<TOKEN>", see TOKEN below)
  3 regions, 4 tenants, 12 sites, 4 racks, 4 manufacturers, 6 device types, 5 device roles,
  3 platforms, 30 devices (4 interfaces each = 120), 2 VRFs, 2 VLAN groups, 24 VLANs,
  12 prefixes, 60 IP addresses (2 per device, on its first two interfaces; the first one is
  the device's primary IPv4), 6 tags (2-3 on every site, device, VLAN, IP address and on
  every other interface), and 4 custom fields on dcim.Device: text "asset_owner",
  select "support_level", object "service_tenant" (-> tenancy.Tenant) and multi-object
  "served_vlans" (-> ipam.VLAN), filled on every device.
"""

import os
import sys

import django

sys.path.insert(0, os.getcwd())
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings_corpus")
django.setup()

from core.models import ObjectType  # noqa: E402
from dcim.models import (  # noqa: E402
    Device,
    DeviceRole,
    DeviceType,
    Interface,
    Manufacturer,
    Platform,
    Rack,
    Region,
    Site,
)
from django.db import connection, transaction  # noqa: E402
from extras.models import CustomField, CustomFieldChoiceSet, Tag, TaggedItem  # noqa: E402
from extras.models.search import CachedValue  # noqa: E402
from ipam.models import VLAN, VRF, IPAddress, Prefix, Role, VLANGroup  # noqa: E402
from netaddr import IPNetwork  # noqa: E402
from tenancy.models import Tenant  # noqa: E402
from users.models import Token, User, UserConfig  # noqa: E402

ADMIN = "admin"
PASSWORD = "corpus-admin-password-1"
TOKEN_KEY = "corpusapikey"  # 12 characters (users.constants.TOKEN_KEY_LENGTH)
TOKEN = "corpus0token0for0the0admin0user000000001"  # 40 characters

RESET_MODELS = [
    Token,
    UserConfig,
    User,
    TaggedItem,
    Tag,
    CustomField,
    CustomFieldChoiceSet,
    CachedValue,
    IPAddress,
    Prefix,
    VLAN,
    VLANGroup,
    Role,
    VRF,
    Interface,
    Device,
    Platform,
    DeviceRole,
    DeviceType,
    Manufacturer,
    Rack,
    Site,
    Region,
    Tenant,
]


def reset():
    tables = ", ".join(connection.ops.quote_name(m._meta.db_table) for m in RESET_MODELS)
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")


def slug(text):
    return text.lower().replace(" ", "-").replace("/", "-")


def seed():
    admin = User.objects.create_superuser(ADMIN, "admin@example.com", PASSWORD)
    token = Token(user=admin, key=TOKEN_KEY, description="corpus API token", token=TOKEN)
    token.save()

    device_type_ot = ObjectType.objects.get_for_model(Device)

    # Tags
    tag_specs = [
        ("Production", "4caf50"),
        ("Staging", "ff9800"),
        ("Core", "2196f3"),
        ("Edge", "9c27b0"),
        ("Monitored", "607d8b"),
        ("Legacy", "795548"),
    ]
    tags = [Tag.objects.create(name=n, slug=slug(n), color=c) for n, c in tag_specs]

    def tag_set(i):
        # 2 or 3 tags, cycling deterministically
        picked = [tags[i % 6], tags[(i + 2) % 6]]
        if i % 3 == 0:
            picked.append(tags[(i + 4) % 6])
        return picked

    # Tenancy and organisation
    tenants = [
        Tenant.objects.create(name=f"Tenant {c}", slug=f"tenant-{c.lower()}") for c in "ABCD"
    ]
    regions = [
        Region.objects.create(name=n, slug=slug(n)) for n in ("Europe", "North America", "Asia")
    ]
    sites = []
    for i in range(12):
        site = Site.objects.create(
            name=f"Site {i + 1:02d}",
            slug=f"site-{i + 1:02d}",
            status="active",
            region=regions[i % 3],
            tenant=tenants[i % 4],
            facility=f"DC-{i + 1:02d}",
            description=f"Corpus site {i + 1}",
        )
        site.tags.set(tag_set(i))
        sites.append(site)
    racks = [
        Rack.objects.create(name=f"Rack {i + 1}", site=sites[i], status="active", u_height=42)
        for i in range(4)
    ]

    # Device catalogue
    manufacturers = [
        Manufacturer.objects.create(name=n, slug=slug(n))
        for n in ("Cisco", "Juniper", "Arista", "Dell")
    ]
    device_types = [
        DeviceType.objects.create(
            manufacturer=manufacturers[i % 4], model=m, slug=slug(m), u_height=1
        )
        for i, m in enumerate(("C9300-48P", "MX204", "7050SX3", "R640", "C9500-32C", "EX4300"))
    ]
    roles = [
        DeviceRole.objects.create(name=n, slug=slug(n), color=c)
        for n, c in (
            ("Core Switch", "2196f3"),
            ("Access Switch", "4caf50"),
            ("Router", "f44336"),
            ("Server", "9e9e9e"),
            ("Firewall", "ff5722"),
        )
    ]
    platforms = [
        Platform.objects.create(name=n, slug=slug(n), manufacturer=manufacturers[i])
        for i, n in enumerate(("IOS-XE", "Junos", "EOS"))
    ]

    # IPAM
    vrfs = [
        VRF.objects.create(name="Blue", rd="65000:1"),
        VRF.objects.create(name="Red", rd="65000:2"),
    ]
    vlan_role = Role.objects.create(name="Users", slug="users")
    site_ot = ObjectType.objects.get_for_model(Site)
    vlan_groups = [
        VLANGroup.objects.create(
            name=f"Group {n}", slug=f"group-{n}", scope_type=site_ot, scope_id=sites[k].pk
        )
        for k, n in enumerate(("one", "two"))
    ]
    vlans = []
    for i in range(24):
        vlan = VLAN.objects.create(
            vid=100 + i,
            name=f"VLAN {100 + i}",
            status="active",
            site=sites[i % 12] if i % 2 == 0 else None,
            group=vlan_groups[i % 2] if i % 2 == 1 else None,
            tenant=tenants[i % 4],
            role=vlan_role if i % 3 == 0 else None,
        )
        vlan.tags.set(tag_set(i + 1))
        vlans.append(vlan)
    for i in range(12):
        Prefix.objects.create(
            prefix=IPNetwork(f"10.{i}.0.0/24"),
            status="active",
            vrf=vrfs[i % 2] if i % 3 else None,
            tenant=tenants[i % 4],
            vlan=vlans[i],
        )

    # Custom fields on devices
    choice_set = CustomFieldChoiceSet.objects.create(
        name="Support levels",
        extra_choices=[["gold", "Gold"], ["silver", "Silver"], ["bronze", "Bronze"]],
    )
    custom_fields = [
        CustomField(name="asset_owner", label="Asset owner", type="text"),
        CustomField(
            name="support_level", label="Support level", type="select", choice_set=choice_set
        ),
        CustomField(
            name="service_tenant",
            label="Service tenant",
            type="object",
            related_object_type=ObjectType.objects.get_for_model(Tenant),
        ),
        CustomField(
            name="served_vlans",
            label="Served VLANs",
            type="multiobject",
            related_object_type=ObjectType.objects.get_for_model(VLAN),
        ),
    ]
    for cf in custom_fields:
        cf.save()
        cf.object_types.set([device_type_ot])

    # Devices, interfaces, IP addresses
    for i in range(30):
        device = Device(
            name=f"device-{i + 1:02d}",
            device_type=device_types[i % 6],
            role=roles[i % 5],
            site=sites[i % 12],
            rack=racks[i % 4] if i % 12 < 4 else None,
            tenant=tenants[i % 4] if i % 5 else None,
            platform=platforms[i % 3] if i % 4 else None,
            status="active" if i % 7 else "planned",
            serial=f"SN{1000 + i}",
            custom_field_data={
                "asset_owner": f"Team {'XYZ'[i % 3]}",
                "support_level": ("gold", "silver", "bronze")[i % 3],
                "service_tenant": tenants[(i + 1) % 4].pk,
                "served_vlans": [vlans[i % 24].pk, vlans[(i + 5) % 24].pk],
            },
        )
        device.save()
        device.tags.set(tag_set(i))
        interfaces = []
        for n in range(4):
            iface = Interface.objects.create(
                device=device,
                name=f"eth{n}",
                type="1000base-t",
                enabled=n != 3,
                description=f"uplink {n}" if n < 2 else "",
            )
            if n % 2 == 0:
                iface.tags.set(tag_set(i + n))
            interfaces.append(iface)
        ips = []
        for n in range(2):
            ip = IPAddress.objects.create(
                address=IPNetwork(f"10.{i % 12}.{n}.{i + 10}/24"),
                status="active",
                vrf=vrfs[i % 2] if n else None,
                tenant=tenants[i % 4],
                dns_name=f"device-{i + 1:02d}-{n}.example.net",
                assigned_object=interfaces[n],
            )
            ip.tags.set(tag_set(i + n + 2))
            ips.append(ip)
        device.primary_ip4 = ips[0]
        device.save()


def main():
    with transaction.atomic():
        reset()
        seed()
    print(
        f"seed: {Device.objects.count()} devices, {Interface.objects.count()} interfaces, "
        f"{IPAddress.objects.count()} IP addresses, {VLAN.objects.count()} VLANs, "
        f"{Site.objects.count()} sites, "
        f"{TaggedItem.objects.count()} tag assignments; user {ADMIN!r} with an API token"
    )


if __name__ == "__main__":
    main()
