"""Deterministic synthetic CRM data in the Salesforce REST API shape, for the demo tenant.

    python -m samples.demo.generate OUT_DIR [--seed N] [--accounts N] [--contacts N]
                                            [--opportunities N] [--leads N]

writes `Account.ndjson`, `Contact.ndjson`, `Opportunity.ndjson` and `Lead.ndjson` for the
local `files` provider. Everything comes from `random.Random(seed)` and a fixed reference
time (`REFERENCE_TIME`, the moment the "export" was taken), never from the clock, so the
same arguments give byte-identical files.

The data is shaped for what the platform does with it: every contact and opportunity is
on an existing account, contact emails are at their account's domain (a few use personal
domains, which linking must not match by domain), opportunities carry 0-4 contact roles
from their own account, stages carry Salesforce's probabilities and forecast categories,
close dates spread over nine months either side of the reference time, and each record's
dates are in order (created <= last stage change <= last modified <= reference time).
"""

from __future__ import annotations

import argparse
import json
import string
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from random import Random
from typing import Any, NamedTuple

from core.providers.salesforce_defaults import SALESFORCE_ENTITIES

DEFAULT_SEED = 20250630
DEFAULT_ACCOUNTS = 500
DEFAULT_CONTACTS = 3000
DEFAULT_OPPORTUNITIES = 2000
DEFAULT_LEADS = 300
USER_COUNT = 20
REFERENCE_TIME = datetime(2025, 6, 30, 12, 0, tzinfo=UTC)
API_VERSION = "v60.0"
SELLER_DOMAIN = "northwind-demo.com"
PERSONAL_EMAIL_SHARE = 0.05
PERSONAL_DOMAINS = ("gmail.com", "outlook.com", "yahoo.com", "hotmail.com", "icloud.com")

USER_PREFIX = "005"
CONTACT_ROLE_PREFIX = "00K"

# (stage, probability, forecast category, weight among generated opportunities)
STAGES: tuple[tuple[str, int, str, int], ...] = (
    ("Prospecting", 10, "Pipeline", 12),
    ("Qualification", 20, "Pipeline", 10),
    ("Needs Analysis", 30, "Pipeline", 9),
    ("Value Proposition", 40, "Pipeline", 8),
    ("Id. Decision Makers", 50, "Pipeline", 6),
    ("Perception Analysis", 60, "Pipeline", 5),
    ("Proposal/Price Quote", 75, "Best Case", 6),
    ("Negotiation/Review", 90, "Commit", 4),
    ("Closed Won", 100, "Closed", 18),
    ("Closed Lost", 0, "Omitted", 22),
)
CLOSED_STAGES = frozenset({"Closed Won", "Closed Lost"})

FIRST_NAMES = (
    "Aisha", "Alex", "Amelia", "Ana", "Arjun", "Ben", "Carla", "Chen", "Chloe", "Daniel",
    "Diego", "Elena", "Emma", "Farah", "Felix", "Grace", "Hannah", "Hiro", "Isabel", "Ivan",
    "Jack", "Jamal", "Julia", "Kai", "Karen", "Lars", "Laura", "Leo", "Lina", "Lucas",
    "Maria", "Mateo", "Maya", "Mei", "Mohammed", "Nadia", "Noah", "Nora", "Olivia", "Omar",
    "Pablo", "Priya", "Rafael", "Rosa", "Sam", "Sara", "Sofia", "Tariq", "Thomas", "Uma",
    "Victor", "Wei", "Yara", "Yusuf", "Zoe", "Ethan", "Fatima", "George", "Ingrid", "Kenji",
)  # fmt: skip
LAST_NAMES = (
    "Adams", "Ahmed", "Alvarez", "Andersen", "Baker", "Bauer", "Becker", "Brown", "Campbell",
    "Chen", "Clarke", "Costa", "Das", "Dubois", "Evans", "Fischer", "Garcia", "Gupta", "Hall",
    "Hansen", "Hughes", "Ito", "Jensen", "Johnson", "Kim", "Klein", "Kowalski", "Kumar",
    "Larsen", "Lee", "Lopez", "Martin", "Meyer", "Miller", "Moreau", "Murphy", "Nakamura",
    "Nguyen", "Novak", "Okafor", "Olsen", "Park", "Patel", "Perez", "Petrov", "Quinn", "Reyes",
    "Rossi", "Santos", "Schmidt", "Silva", "Singh", "Smith", "Suzuki", "Taylor", "Thompson",
    "Van Dijk", "Wagner", "Walsh", "Wang", "Weber", "Williams", "Wilson", "Wright", "Young",
    "Zhang",
)  # fmt: skip
NAME_STARTS = (
    "Acu", "Apex", "Beacon", "Bright", "Cedar", "Cobalt", "Delta", "Drift", "Ember", "Ever",
    "Fable", "Falcon", "Gran", "Granite", "Harbor", "Helix", "Indigo", "Iron", "Jasper",
    "Juniper", "Kestrel", "Lattice", "Lumen", "Maple", "Meridian", "Nimbus", "Nova", "Orbit",
    "Pioneer", "Quartz", "River", "Sable", "Summit", "Tidal", "Umber", "Vertex", "Willow",
    "Xylo", "Yarrow", "Zenith",
)  # fmt: skip
NAME_ENDS = (
    "bridge", "core", "crest", "field", "forge", "gate", "grid", "hub", "line", "logic",
    "mark", "path", "point", "scale", "shift", "source", "stone", "stream", "view", "works",
)  # fmt: skip
INDUSTRY_WORDS: dict[str, tuple[str, ...]] = {
    "Technology": ("Systems", "Software", "Analytics", "Labs"),
    "Healthcare": ("Health", "Medical", "Care"),
    "Banking": ("Bank", "Financial"),
    "Finance": ("Capital", "Partners"),
    "Manufacturing": ("Industries", "Manufacturing", "Works"),
    "Retail": ("Retail", "Stores", "Brands"),
    "Energy": ("Energy", "Power"),
    "Transportation": ("Logistics", "Freight"),
    "Telecommunications": ("Networks", "Telecom"),
    "Education": ("Learning", "Academy"),
    "Media": ("Media", "Studios"),
    "Insurance": ("Insurance", "Assurance"),
    "Consulting": ("Consulting", "Advisors"),
    "Biotechnology": ("Bio", "Therapeutics"),
    "Food & Beverage": ("Foods", "Beverages"),
}


class Country(NamedTuple):
    name: str
    currency: str
    top_level_domain: str
    phone_prefix: str
    cities: tuple[str, ...]
    weight: int


COUNTRIES: tuple[Country, ...] = (
    Country("United States", "USD", "com", "+1", ("New York", "San Francisco", "Chicago", "Austin", "Boston", "Seattle", "Atlanta", "Denver"), 55),
    Country("United Kingdom", "GBP", "co.uk", "+44", ("London", "Manchester", "Edinburgh"), 12),
    Country("Germany", "EUR", "de", "+49", ("Berlin", "Munich", "Hamburg"), 8),
    Country("France", "EUR", "fr", "+33", ("Paris", "Lyon"), 6),
    Country("Canada", "CAD", "ca", "+1", ("Toronto", "Vancouver"), 7),
    Country("Australia", "AUD", "com.au", "+61", ("Sydney", "Melbourne"), 6),
    Country("Netherlands", "EUR", "nl", "+31", ("Amsterdam", "Rotterdam"), 6),
)  # fmt: skip
ACCOUNT_TYPES = (
    ("Customer - Direct", 40),
    ("Customer - Channel", 10),
    ("Prospect", 35),
    ("Channel Partner / Reseller", 5),
    ("Technology Partner", 5),
    ("Other", 5),
)
TITLES = (
    ("Chief Executive Officer", "Executive"),
    ("Chief Financial Officer", "Finance"),
    ("Chief Technology Officer", "Executive"),
    ("VP of Sales", "Sales"),
    ("VP of Engineering", "Engineering"),
    ("IT Director", "IT"),
    ("Head of Operations", "Operations"),
    ("Procurement Manager", "Procurement"),
    ("Marketing Manager", "Marketing"),
    ("Product Manager", "Product"),
    ("Software Engineer", "Engineering"),
    ("Data Analyst", "Analytics"),
    ("Legal Counsel", "Legal"),
    ("HR Business Partner", "Human Resources"),
    ("Finance Manager", "Finance"),
    ("Security Architect", "IT"),
)
CONTACT_ROLES = (
    "Business User",
    "Decision Maker",
    "Economic Buyer",
    "Economic Decision Maker",
    "Evaluator",
    "Executive Sponsor",
    "Influencer",
    "Technical Buyer",
    "Other",
)
PRIMARY_ROLES = ("Decision Maker", "Economic Buyer", "Executive Sponsor")
ROLE_COUNT_WEIGHTS = (15, 30, 25, 18, 12)  # for 0, 1, 2, 3, 4 contact roles
DEAL_NAMES = (
    "Platform Expansion", "Annual Renewal", "Pilot", "Enterprise License", "Data Migration",
    "Add-on Seats", "Multi-year Agreement", "Support Upgrade", "New Region Rollout",
    "Analytics Module", "Security Add-on", "Professional Services",
)  # fmt: skip
OPPORTUNITY_TYPES = (
    ("New Customer", 45),
    ("Existing Customer - Upgrade", 30),
    ("Existing Customer - Replacement", 15),
    ("Existing Customer - Downgrade", 10),
)
LEAD_SOURCES = (
    "Web", "Phone Inquiry", "Partner Referral", "Trade Show", "Employee Referral",
    "Advertisement", "Seminar - Internal", "Word of mouth", "Other",
)  # fmt: skip
NEXT_STEPS = (
    "Schedule product demo",
    "Send proposal",
    "Security review with IT",
    "Pricing call with CFO",
    "Legal redlines",
    "Technical deep dive",
    "Confirm budget",
    "Executive alignment meeting",
)
LEAD_STATUSES = (
    ("Open - Not Contacted", 30),
    ("Working - Contacted", 35),
    ("Closed - Converted", 15),
    ("Closed - Not Converted", 20),
)
RATINGS = ("Hot", "Warm", "Cold")

_BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
_CHECKSUM_ALPHABET = string.ascii_uppercase + "012345"


def salesforce_id(prefix: str, number: int) -> str:
    """An 18-character id: key prefix, instance and zero padding, a base-62 number, and the
    3-character case checksum Salesforce appends to its 15-character ids."""
    digits = ""
    for _ in range(6):
        number, remainder = divmod(number, 62)
        digits = _BASE62[remainder] + digits
    if number:
        raise ValueError(f"id number too large for prefix {prefix}")
    base = f"{prefix}5g0000{digits}"
    return base + salesforce_id_checksum(base)


def salesforce_id_checksum(base: str) -> str:
    """For each 5-character chunk, bit i is set when character i is an upper-case letter;
    the 5-bit value picks a character of A-Z0-5."""
    if len(base) != 15:
        raise ValueError(f"{base!r} is not a 15-character Salesforce id")
    suffix = ""
    for chunk in range(3):
        bits = sum(
            1 << position
            for position, character in enumerate(base[chunk * 5 : chunk * 5 + 5])
            if "A" <= character <= "Z"
        )
        suffix += _CHECKSUM_ALPHABET[bits]
    return suffix


def salesforce_datetime(moment: datetime) -> str:
    """Salesforce's REST date-time format: `2024-05-01T10:00:00.000+0000`."""
    return (
        moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.")
        + f"{moment.microsecond // 1000:03d}+0000"
    )


def _attributes(entity_type: str, record_id: str) -> dict[str, str]:
    return {
        "type": entity_type,
        "url": f"/services/data/{API_VERSION}/sobjects/{entity_type}/{record_id}",
    }


@dataclass(frozen=True)
class _Company:
    name: str
    domain: str
    industry: str
    country: Country


class _Generator:
    """One generation run; all randomness comes from `self.rng`, in a fixed order."""

    def __init__(self, seed: int) -> None:
        self.rng = Random(seed)  # noqa: S311 (reproducible synthetic data, not secrets)
        self.emails: set[str] = set()
        self.id_offsets: dict[str, int] = {}
        self.id_counts: dict[str, int] = {}
        stems = [start + end for start in NAME_STARTS for end in NAME_ENDS]
        self.rng.shuffle(stems)
        self.stems = stems
        self.stems_used = 0

    # -- building blocks ---------------------------------------------------------------

    def new_id(self, prefix: str) -> str:
        if prefix not in self.id_offsets:
            self.id_offsets[prefix] = self.rng.randrange(62**4, 62**5)
            self.id_counts[prefix] = 0
        self.id_counts[prefix] += 1
        return salesforce_id(prefix, self.id_offsets[prefix] + self.id_counts[prefix] * 3)

    def weighted(self, choices: Sequence[tuple[Any, int]]) -> Any:
        values = [value for value, _ in choices]
        return self.rng.choices(values, [weight for _, weight in choices])[0]

    def moment_between(self, start: datetime, end: datetime) -> datetime:
        """A time in [start, end], to the millisecond."""
        span = max(0, int((end - start).total_seconds() * 1000))
        return start + timedelta(milliseconds=self.rng.randint(0, span))

    def day_between(self, start: date, end: date) -> date:
        return start + timedelta(days=self.rng.randint(0, max(0, (end - start).days)))

    def working_time(self, day: date) -> datetime:
        moment = datetime(day.year, day.month, day.day, 8, tzinfo=UTC)
        return moment + timedelta(
            seconds=self.rng.randrange(0, 4 * 3600), milliseconds=self.rng.randrange(1000)
        )

    def company(self) -> _Company:
        """A company with a unique name and domain (a number is added once names run out)."""
        stem = self.stems[self.stems_used % len(self.stems)]
        round_number = self.stems_used // len(self.stems)
        self.stems_used += 1
        if round_number:
            stem = f"{stem}{round_number + 1}"
        industry = self.rng.choice(list(INDUSTRY_WORDS))
        country = self.weighted([(country, country.weight) for country in COUNTRIES])
        name = f"{stem} {self.rng.choice(INDUSTRY_WORDS[industry])}"
        tld = country.top_level_domain
        if tld == "com":
            tld = self.weighted([("com", 85), ("io", 10), ("co", 5)])
        return _Company(name, f"{stem.lower()}.{tld}", industry, country)

    def phone(self, prefix: str) -> str:
        if prefix == "+1":
            return f"+1 {self.rng.randint(201, 989)} 555 {self.rng.randint(100, 199):04d}"
        return f"{prefix} {self.rng.randint(10, 99)} {self.rng.randint(1_000_000, 9_999_999)}"

    def email(self, first: str, last: str, domain: str | None) -> str:
        """A unique address at `domain`, or at a personal domain when `domain` is None."""
        first_part, last_part = (
            "".join(ch for ch in part.lower() if ch.isalnum()) for part in (first, last)
        )
        if domain is None:
            domain = self.rng.choice(PERSONAL_DOMAINS)
            local = f"{first_part}.{last_part}{self.rng.randint(1, 99)}"
        else:
            local = self.rng.choice(
                (
                    f"{first_part}.{last_part}",
                    f"{first_part[0]}{last_part}",
                    f"{first_part}_{last_part}",
                )
            )
        address = f"{local}@{domain}"
        number = 2
        while address in self.emails:
            address = f"{local}{number}@{domain}"
            number += 1
        self.emails.add(address)
        return address

    def person(self) -> tuple[str, str]:
        return self.rng.choice(FIRST_NAMES), self.rng.choice(LAST_NAMES)

    # -- records -----------------------------------------------------------------------

    def users(self) -> list[dict[str, Any]]:
        users: list[dict[str, Any]] = []
        names: set[tuple[str, str]] = set()
        while len(users) < USER_COUNT:
            first, last = self.person()
            if (first, last) in names:
                continue
            names.add((first, last))
            user_id = self.new_id(USER_PREFIX)
            users.append(
                {
                    "Id": user_id,
                    "Name": f"{first} {last}",
                    "Email": self.email(first, last, SELLER_DOMAIN),
                }
            )
        return users

    def accounts(
        self, count: int, users: list[dict[str, Any]]
    ) -> list[tuple[dict[str, Any], _Company]]:
        accounts: list[tuple[dict[str, Any], _Company]] = []
        for index in range(count):
            company = self.company()
            record_id = self.new_id(SALESFORCE_ENTITIES["Account"].id_prefix)
            created = REFERENCE_TIME - timedelta(days=self.rng.uniform(400, 1500))
            modified = self.moment_between(created, REFERENCE_TIME)
            employees = int(10 ** self.rng.uniform(1, 4.7))
            website = self.weighted(
                [
                    (f"https://www.{company.domain}", 60),
                    (f"https://{company.domain}", 20),
                    (f"http://www.{company.domain}/", 10),
                    (f"www.{company.domain}", 10),
                ]
            )
            parent = (
                accounts[self.rng.randrange(index)][0]["Id"]
                if index and self.rng.random() < 0.05
                else None
            )
            activity = (
                self.day_between(created.date(), REFERENCE_TIME.date()).isoformat()
                if self.rng.random() < 0.85
                else None
            )
            record = {
                "attributes": _attributes("Account", record_id),
                "Id": record_id,
                "Name": company.name,
                "Website": website,
                "Industry": company.industry,
                "Type": self.weighted(ACCOUNT_TYPES),
                "AnnualRevenue": float(round(employees * self.rng.uniform(80_000, 400_000), -3)),
                "NumberOfEmployees": employees,
                "Phone": self.phone(company.country.phone_prefix),
                "BillingCity": self.rng.choice(company.country.cities),
                "BillingCountry": company.country.name,
                "OwnerId": self.rng.choice(users)["Id"],
                "ParentId": parent,
                "Description": (
                    f"{company.name} is a {company.industry.lower()} company based in "
                    f"{company.country.name}."
                    if self.rng.random() < 0.6
                    else None
                ),
                "CreatedDate": salesforce_datetime(created),
                "LastModifiedDate": salesforce_datetime(modified),
                "LastActivityDate": activity,
            }
            accounts.append((record, company))
        return accounts

    def contacts(
        self, count: int, accounts: list[tuple[dict[str, Any], _Company]]
    ) -> list[dict[str, Any]]:
        """Each account gets a contact before any gets a second; the rest go to accounts
        at random, larger companies more often."""
        if not count:
            return []
        if not accounts:
            raise ValueError("contacts need at least one account")
        weights = [record["NumberOfEmployees"] ** 0.3 for record, _ in accounts]
        placement = list(range(min(count, len(accounts))))
        placement += self.rng.choices(range(len(accounts)), weights, k=count - len(placement))
        contacts: list[dict[str, Any]] = []
        for account_index in placement:
            account, company = accounts[account_index]
            first, last = self.person()
            personal = self.rng.random() < PERSONAL_EMAIL_SHARE
            title, department = self.rng.choice(TITLES)
            record_id = self.new_id(SALESFORCE_ENTITIES["Contact"].id_prefix)
            account_created = datetime.fromisoformat(account["CreatedDate"])
            created = self.moment_between(account_created, REFERENCE_TIME - timedelta(days=30))
            modified = self.moment_between(created, REFERENCE_TIME)
            contacts.append(
                {
                    "attributes": _attributes("Contact", record_id),
                    "Id": record_id,
                    "FirstName": first,
                    "LastName": last,
                    "Name": f"{first} {last}",
                    "Email": self.email(first, last, None if personal else company.domain),
                    "Phone": self.phone(company.country.phone_prefix),
                    "Title": title,
                    "Department": department,
                    "AccountId": account["Id"],
                    "OwnerId": account["OwnerId"],
                    "CreatedDate": salesforce_datetime(created),
                    "LastModifiedDate": salesforce_datetime(modified),
                    "LastActivityDate": (
                        self.day_between(created.date(), REFERENCE_TIME.date()).isoformat()
                        if self.rng.random() < 0.7
                        else None
                    ),
                }
            )
        return contacts

    def opportunity_dates(self, stage: str) -> tuple[date, datetime, datetime, datetime]:
        """(close date, created, last stage change, last modified), in order and never
        after the reference time; closed deals closed in the last nine months, open ones
        close in the next nine (a few are overdue)."""
        today = REFERENCE_TIME.date()
        if stage in CLOSED_STAGES:
            close = today - timedelta(days=self.rng.randint(0, 270))
            created = self.working_time(close - timedelta(days=self.rng.randint(15, 240)))
            stage_changed = self.working_time(close)
        else:
            close = today + timedelta(days=self.rng.randint(-30, 270))
            created = self.moment_between(
                REFERENCE_TIME - timedelta(days=300), REFERENCE_TIME - timedelta(days=5)
            )
            if close <= created.date():
                close = created.date() + timedelta(days=self.rng.randint(7, 60))
            stage_changed = self.moment_between(created, REFERENCE_TIME)
        modified = self.moment_between(
            stage_changed, min(REFERENCE_TIME, stage_changed + timedelta(days=30))
        )
        return close, created, stage_changed, modified

    def opportunities(
        self,
        count: int,
        accounts: list[tuple[dict[str, Any], _Company]],
        contacts: list[dict[str, Any]],
        users: list[dict[str, Any]],
    ) -> list[dict[str, Any]]:
        if not count:
            return []
        if not accounts:
            raise ValueError("opportunities need at least one account")
        contacts_by_account: dict[str, list[dict[str, Any]]] = {}
        for contact in contacts:
            contacts_by_account.setdefault(contact["AccountId"], []).append(contact)
        users_by_id = {user["Id"]: user for user in users}
        weights = [record["NumberOfEmployees"] ** 0.3 for record, _ in accounts]
        stage_table = {stage: (probability, category) for stage, probability, category, _ in STAGES}
        opportunities: list[dict[str, Any]] = []
        for account_index in self.rng.choices(range(len(accounts)), weights, k=count):
            account, company = accounts[account_index]
            stage = self.weighted([(stage, weight) for stage, _, _, weight in STAGES])
            probability, forecast_category = stage_table[stage]
            close, created, stage_changed, modified = self.opportunity_dates(stage)
            owner = (
                users_by_id[account["OwnerId"]]
                if self.rng.random() < 0.75
                else self.rng.choice(users)
            )
            record_id = self.new_id(SALESFORCE_ENTITIES["Opportunity"].id_prefix)
            closed = stage in CLOSED_STAGES
            available = contacts_by_account.get(account["Id"], [])
            role_count = min(len(available), self.weighted(list(enumerate(ROLE_COUNT_WEIGHTS))))
            roles = [
                self.contact_role(record_id, contact, primary=position == 0)
                for position, contact in enumerate(self.rng.sample(available, role_count))
            ]
            opportunities.append(
                {
                    "attributes": _attributes("Opportunity", record_id),
                    "Id": record_id,
                    "Name": f"{company.name} - {self.rng.choice(DEAL_NAMES)}",
                    "AccountId": account["Id"],
                    "Account": {
                        "attributes": _attributes("Account", account["Id"]),
                        "Name": account["Name"],
                        "Industry": account["Industry"],
                    },
                    "OwnerId": owner["Id"],
                    "Owner": {
                        "attributes": _attributes("User", owner["Id"]),
                        "Name": owner["Name"],
                        "Email": owner["Email"],
                    },
                    "StageName": stage,
                    "Probability": float(probability),
                    "Amount": float(round(10 ** self.rng.uniform(3.7, 5.7), -2)),
                    "CurrencyIsoCode": company.country.currency,
                    "CloseDate": close.isoformat(),
                    "Type": self.weighted(OPPORTUNITY_TYPES),
                    "LeadSource": self.rng.choice(LEAD_SOURCES),
                    "ForecastCategoryName": forecast_category,
                    "NextStep": None if closed else self.rng.choice(NEXT_STEPS),
                    "Description": (
                        f"{self.rng.choice(DEAL_NAMES)} for {company.name}'s "
                        f"{company.industry.lower()} teams."
                        if self.rng.random() < 0.3
                        else None
                    ),
                    "IsClosed": closed,
                    "IsWon": stage == "Closed Won",
                    "CreatedDate": salesforce_datetime(created),
                    "LastModifiedDate": salesforce_datetime(modified),
                    "LastStageChangeDate": salesforce_datetime(stage_changed),
                    "LastActivityDate": (
                        self.day_between(created.date(), modified.date()).isoformat()
                        if self.rng.random() < 0.85
                        else None
                    ),
                    "OpportunityContactRoles": (
                        {"totalSize": len(roles), "done": True, "records": roles} if roles else None
                    ),
                }
            )
        return opportunities

    def contact_role(
        self, opportunity_id: str, contact: dict[str, Any], *, primary: bool
    ) -> dict[str, Any]:
        record_id = self.new_id(CONTACT_ROLE_PREFIX)
        return {
            "attributes": _attributes("OpportunityContactRole", record_id),
            "Id": record_id,
            "OpportunityId": opportunity_id,
            "ContactId": contact["Id"],
            "Role": self.rng.choice(PRIMARY_ROLES if primary else CONTACT_ROLES),
            "IsPrimary": primary,
            "Contact": {
                "attributes": _attributes("Contact", contact["Id"]),
                "Email": contact["Email"],
            },
        }

    def leads(
        self,
        count: int,
        contacts: list[dict[str, Any]],
        opportunities: list[dict[str, Any]],
        users: list[dict[str, Any]],
    ) -> list[dict[str, Any]]:
        """Converted leads point at an opportunity, its account and one of its contacts
        (each opportunity at most once); the others are people at companies that are not
        accounts yet."""
        contacts_by_id = {contact["Id"]: contact for contact in contacts}
        convertible = [
            opportunity for opportunity in opportunities if opportunity["OpportunityContactRoles"]
        ]
        self.rng.shuffle(convertible)
        leads: list[dict[str, Any]] = []
        for _ in range(count):
            status = self.weighted(LEAD_STATUSES)
            if status == "Closed - Converted" and not convertible:
                status = "Closed - Not Converted"
            record_id = self.new_id(SALESFORCE_ENTITIES["Lead"].id_prefix)
            converted: dict[str, Any] = {
                "IsConverted": False,
                "ConvertedDate": None,
                "ConvertedAccountId": None,
                "ConvertedContactId": None,
                "ConvertedOpportunityId": None,
            }
            if status == "Closed - Converted":
                opportunity = convertible.pop()
                role = self.rng.choice(opportunity["OpportunityContactRoles"]["records"])
                contact = contacts_by_id[role["ContactId"]]
                converted_on = datetime.fromisoformat(opportunity["CreatedDate"]).date()
                first, last, email = contact["FirstName"], contact["LastName"], contact["Email"]
                company_name, industry = (
                    opportunity["Account"]["Name"],
                    opportunity["Account"]["Industry"],
                )
                phone = contact["Phone"]
                created = self.working_time(converted_on - timedelta(days=self.rng.randint(1, 60)))
                modified = self.working_time(converted_on)
                converted = {
                    "IsConverted": True,
                    "ConvertedDate": converted_on.isoformat(),
                    "ConvertedAccountId": opportunity["AccountId"],
                    "ConvertedContactId": contact["Id"],
                    "ConvertedOpportunityId": opportunity["Id"],
                }
            else:
                company = self.company()
                first, last = self.person()
                personal = self.rng.random() < 0.1
                email = self.email(first, last, None if personal else company.domain)
                company_name, industry = company.name, company.industry
                phone = self.phone(company.country.phone_prefix)
                created = REFERENCE_TIME - timedelta(days=self.rng.uniform(1, 365))
                modified = self.moment_between(created, REFERENCE_TIME)
            leads.append(
                {
                    "attributes": _attributes("Lead", record_id),
                    "Id": record_id,
                    "FirstName": first,
                    "LastName": last,
                    "Name": f"{first} {last}",
                    "Email": email,
                    "Phone": phone,
                    "Company": company_name,
                    "Title": self.rng.choice(TITLES)[0],
                    "Industry": industry,
                    "Status": status,
                    "LeadSource": self.rng.choice(LEAD_SOURCES),
                    "Rating": self.rng.choice(RATINGS) if self.rng.random() < 0.7 else None,
                    "OwnerId": self.rng.choice(users)["Id"],
                    **converted,
                    "CreatedDate": salesforce_datetime(created),
                    "LastModifiedDate": salesforce_datetime(modified),
                    "LastActivityDate": (
                        self.day_between(created.date(), modified.date()).isoformat()
                        if self.rng.random() < 0.6
                        else None
                    ),
                }
            )
        return leads


def demo_records(
    *,
    seed: int = DEFAULT_SEED,
    accounts: int = DEFAULT_ACCOUNTS,
    contacts: int = DEFAULT_CONTACTS,
    opportunities: int = DEFAULT_OPPORTUNITIES,
    leads: int = DEFAULT_LEADS,
) -> dict[str, list[dict[str, Any]]]:
    """The records by entity type, in sync order."""
    counts = {
        "accounts": accounts,
        "contacts": contacts,
        "opportunities": opportunities,
        "leads": leads,
    }
    for name, value in counts.items():
        if value < 0:
            raise ValueError(f"{name} must be 0 or more, got {value}")
    generator = _Generator(seed)
    users = generator.users()
    account_rows = generator.accounts(accounts, users)
    contact_records = generator.contacts(contacts, account_rows)
    opportunity_records = generator.opportunities(
        opportunities, account_rows, contact_records, users
    )
    return {
        "Account": [record for record, _ in account_rows],
        "Contact": contact_records,
        "Opportunity": opportunity_records,
        "Lead": generator.leads(leads, contact_records, opportunity_records, users),
    }


def generate(
    out_dir: str | Path,
    *,
    seed: int = DEFAULT_SEED,
    accounts: int = DEFAULT_ACCOUNTS,
    contacts: int = DEFAULT_CONTACTS,
    opportunities: int = DEFAULT_OPPORTUNITIES,
    leads: int = DEFAULT_LEADS,
) -> dict[str, Path]:
    """Write `<EntityType>.ndjson` per entity type into `out_dir` (created if needed) and
    return the files. Refuses a directory that holds another file for one of these entity
    types, because the files provider would not know which one to read."""
    directory = Path(out_dir)
    records = demo_records(
        seed=seed, accounts=accounts, contacts=contacts, opportunities=opportunities, leads=leads
    )
    directory.mkdir(parents=True, exist_ok=True)
    for entity_type in records:
        others = [
            path
            for path in (directory / f"{entity_type}.json", directory / f"{entity_type}.csv")
            if path.exists()
        ]
        if others:
            raise ValueError(
                f"{others[0]} already holds {entity_type} records; remove it or pick another "
                "directory (the files provider reads one file per entity type)"
            )
    written: dict[str, Path] = {}
    for entity_type, items in records.items():
        path = directory / f"{entity_type}.ndjson"
        lines = (
            json.dumps(item, ensure_ascii=False, separators=(",", ":")) + "\n" for item in items
        )
        path.write_bytes("".join(lines).encode("utf-8"))
        written[entity_type] = path
    return written


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is negative")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m samples.demo.generate",
        description="Write deterministic Salesforce-shaped demo CRM data as NDJSON files.",
    )
    parser.add_argument("out_dir", type=Path, help="directory to write the files into")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--accounts", type=_count, default=DEFAULT_ACCOUNTS)
    parser.add_argument("--contacts", type=_count, default=DEFAULT_CONTACTS)
    parser.add_argument("--opportunities", type=_count, default=DEFAULT_OPPORTUNITIES)
    parser.add_argument("--leads", type=_count, default=DEFAULT_LEADS)
    arguments = parser.parse_args(argv)
    try:
        written = generate(
            arguments.out_dir,
            seed=arguments.seed,
            accounts=arguments.accounts,
            contacts=arguments.contacts,
            opportunities=arguments.opportunities,
            leads=arguments.leads,
        )
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for entity_type, path in written.items():
        with path.open("rb") as lines:
            print(f"{entity_type}: {sum(1 for _ in lines)} records -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
