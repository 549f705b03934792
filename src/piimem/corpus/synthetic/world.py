"""The world the synthetic mail is written in: places, companies and a population of people.

Real Enron mail is written among a few mailbox owners and a large, thinly spread population: most names
and addresses in a message occur in one or two messages of a thousand, a few in dozens. The population
here is `people_per_message` x messages strong; each person has a popularity weight that falls with a
random rank as 1 / (rank + 10) ** `popularity`, and every appearance (a recipient, a name in the text) is a
weighted draw, so appearances follow a heavy tail. Names are unique: a population past Faker's likely names
(about 120,000 people, some 8,500 messages at the default density) also draws its rarer ones, and one past 90 %
of its 690 x 1000 pairs gets double surnames (`Cast.name`).
"""

from __future__ import annotations

import functools
import itertools
import math
import random
import re
from array import array
from dataclasses import dataclass

from faker import Faker

from piimem.pii.normalize import normalize

# Real US cities with a plausible ZIP prefix and their area code, so that addresses and phone numbers
# agree with each other and spaCy recognises the city (Faker's invented cities it often does not).
US_CITIES = (
    ("Houston", "TX", "770", "713"), ("Houston", "TX", "770", "281"), ("Dallas", "TX", "752", "214"),
    ("Austin", "TX", "787", "512"), ("San Antonio", "TX", "782", "210"), ("Fort Worth", "TX", "761", "817"),
    ("El Paso", "TX", "799", "915"), ("Corpus Christi", "TX", "784", "361"), ("Midland", "TX", "797", "432"),
    ("Beaumont", "TX", "777", "409"), ("Amarillo", "TX", "791", "806"), ("Lubbock", "TX", "794", "806"),
    ("Plano", "TX", "750", "972"), ("Tulsa", "OK", "741", "918"), ("Oklahoma City", "OK", "731", "405"),
    ("New Orleans", "LA", "701", "504"), ("Baton Rouge", "LA", "708", "225"), ("Lafayette", "LA", "705", "337"),
    ("Shreveport", "LA", "711", "318"), ("Little Rock", "AR", "722", "501"), ("Kansas City", "MO", "641", "816"),
    ("St. Louis", "MO", "631", "314"), ("Omaha", "NE", "681", "402"), ("Lincoln", "NE", "685", "402"),
    ("Denver", "CO", "802", "303"), ("Colorado Springs", "CO", "809", "719"), ("Salt Lake City", "UT", "841", "801"),
    ("Phoenix", "AZ", "850", "602"), ("Tucson", "AZ", "857", "520"), ("Albuquerque", "NM", "871", "505"),
    ("Las Vegas", "NV", "891", "702"), ("Reno", "NV", "895", "775"), ("Los Angeles", "CA", "900", "213"),
    ("San Diego", "CA", "921", "619"), ("San Francisco", "CA", "941", "415"), ("Oakland", "CA", "946", "510"),
    ("San Jose", "CA", "951", "408"), ("Sacramento", "CA", "958", "916"), ("Fresno", "CA", "937", "559"),
    ("Long Beach", "CA", "908", "562"), ("Irvine", "CA", "926", "949"), ("Bakersfield", "CA", "933", "661"),
    ("Portland", "OR", "972", "503"), ("Eugene", "OR", "974", "541"), ("Seattle", "WA", "981", "206"),
    ("Tacoma", "WA", "984", "253"), ("Spokane", "WA", "992", "509"), ("Boise", "ID", "837", "208"),
    ("Billings", "MT", "591", "406"), ("Cheyenne", "WY", "820", "307"), ("Minneapolis", "MN", "554", "612"),
    ("St. Paul", "MN", "551", "651"), ("Milwaukee", "WI", "532", "414"), ("Madison", "WI", "537", "608"),
    ("Chicago", "IL", "606", "312"), ("Naperville", "IL", "605", "630"), ("Indianapolis", "IN", "462", "317"),
    ("Detroit", "MI", "482", "313"), ("Ann Arbor", "MI", "481", "734"), ("Columbus", "OH", "432", "614"),
    ("Cleveland", "OH", "441", "216"), ("Cincinnati", "OH", "452", "513"), ("Pittsburgh", "PA", "152", "412"),
    ("Philadelphia", "PA", "191", "215"), ("Harrisburg", "PA", "171", "717"), ("Allentown", "PA", "181", "610"),
    ("New York", "NY", "100", "212"), ("Buffalo", "NY", "142", "716"), ("Albany", "NY", "122", "518"),
    ("White Plains", "NY", "106", "914"), ("Boston", "MA", "021", "617"), ("Hartford", "CT", "061", "860"),
    ("Stamford", "CT", "069", "203"), ("Providence", "RI", "029", "401"), ("Newark", "NJ", "071", "973"),
    ("Trenton", "NJ", "086", "609"), ("Baltimore", "MD", "212", "410"), ("Washington", "DC", "200", "202"),
    ("Richmond", "VA", "232", "804"), ("Charlotte", "NC", "282", "704"), ("Raleigh", "NC", "276", "919"),
    ("Atlanta", "GA", "303", "404"), ("Savannah", "GA", "314", "912"), ("Jacksonville", "FL", "322", "904"),
    ("Miami", "FL", "331", "305"), ("Tampa", "FL", "336", "813"), ("Orlando", "FL", "328", "407"),
    ("Birmingham", "AL", "352", "205"), ("Mobile", "AL", "366", "251"), ("Nashville", "TN", "372", "615"),
    ("Memphis", "TN", "381", "901"), ("Knoxville", "TN", "379", "865"), ("Louisville", "KY", "402", "502"),
    ("Jackson", "MS", "392", "601"), ("Des Moines", "IA", "503", "515"), ("Wichita", "KS", "672", "316"),
    ("Anchorage", "AK", "995", "907"), ("Honolulu", "HI", "968", "808"), ("Columbia", "SC", "292", "803"),
    ("Sioux Falls", "SD", "571", "605"), ("Fargo", "ND", "581", "701"),
)
# The company's own offices; most employees sit in the first one.
OFFICES = (0, 0, 0, 0, 0, 1, 2, 4, 21, 24, 42, 64)
WORLD_CITIES = (
    "London", "Calgary", "Toronto", "Vancouver", "Montreal", "Edmonton", "Mexico City", "Monterrey", "Tokyo",
    "Singapore", "Sydney", "Oslo", "Rotterdam", "Frankfurt", "Madrid", "Milan", "Buenos Aires", "Rio de Janeiro",
    "Sao Paulo", "Bogota", "Lima", "Mumbai", "New Delhi", "Bangkok", "Seoul", "Beijing", "Shanghai",
    "Hong Kong", "Dubai", "Cairo", "Lagos", "Johannesburg", "Moscow", "Warsaw", "Vienna", "Zurich", "Geneva",
    "Brussels", "Amsterdam", "Dublin", "Paris", "Stockholm", "Copenhagen", "Helsinki", "Caracas", "Santiago",
    "Manila", "Jakarta", "Istanbul", "Athens", "Lisbon", "Prague", "Budapest", "Rome", "Barcelona", "Munich",
    "Hamburg", "Berlin", "Edinburgh", "Aberdeen", "Glasgow", "Manchester",
)
US_STATES = (
    "Alabama", "Alaska", "Arizona", "Arkansas", "California", "Colorado", "Connecticut", "Delaware", "Florida",
    "Hawaii", "Idaho", "Illinois", "Indiana", "Iowa", "Kansas", "Kentucky", "Louisiana", "Maine", "Maryland",
    "Massachusetts", "Michigan", "Minnesota", "Mississippi", "Missouri", "Montana", "Nebraska", "Nevada",
    "New Hampshire", "New Jersey", "New Mexico", "North Carolina", "North Dakota", "Ohio", "Oklahoma", "Oregon",
    "Pennsylvania", "Rhode Island", "South Carolina", "South Dakota", "Tennessee", "Texas", "Utah", "Vermont",
    "Virginia", "Washington State", "West Virginia", "Wisconsin", "Wyoming",
)
# Country names that read as names of people or of US states are left out.
_AMBIGUOUS_COUNTRIES = {"Georgia", "Jersey", "Chad", "Jordan", "Guernsey", "Niger", "Dominica", "Turkey"}


def countries() -> tuple[str, ...]:
    """Faker's country names of one or two plain words (no territories in parentheses)."""
    from faker.providers.address.en_US import Provider

    return tuple(c for c in Provider.countries
                 if re.fullmatch(r"[A-Z][a-z]+(?: [A-Z][a-z]+)?", c) and c not in _AMBIGUOUS_COUNTRIES)


# Invented company names from plain words, so they add no unlabelled PERSON or place.
COMPANY_WORDS = (
    "Northgate", "Bluestem", "Gulfline", "Ridgeway", "Clearwater", "Summit", "Prairie", "Keystone", "Redrock",
    "Lakeshore", "Ironwood", "Silverline", "Crosspoint", "Highplains", "Tidewater", "Copperfield", "Stonebridge",
    "Brightwater", "Cedarline", "Eastfield", "Westbrook", "Granite", "Harborview", "Longhorn", "Mesa",
    "Midstream", "Oakridge", "Pinecrest", "Riverbend", "Sandstone", "Skyline", "Sunbelt", "Timberline",
    "Trinity", "Twin Rivers", "Windstar", "Blackwater", "Coastal", "Frontier", "Heartland", "Horizon",
    "Meridian", "Pioneer", "Pathway", "Sterling", "Vantage", "Whitewater", "Bayou", "Canyon", "Delta",
)
COMPANY_KINDS = ("Energy", "Power", "Gas Marketing", "Pipeline", "Resources", "Utilities", "Capital", "Trading",
                 "Partners", "Petroleum", "Electric", "Consulting")
FREE_MAIL = ("aol.com", "hotmail.com", "yahoo.com", "msn.com", "earthlink.net", "juno.com", "compuserve.com")
TITLES = (
    "Vice President, Gas Trading", "Director, Power Origination", "Manager, Risk Management", "Senior Analyst",
    "Analyst", "Associate", "Trader", "Senior Trader", "Director, Structuring", "Manager, Gas Logistics",
    "Senior Counsel", "Credit Analyst", "Scheduler", "Director, Regulatory Affairs", "Manager, Deal Clearing",
    "Administrative Assistant", "Senior Specialist", "Manager, Contract Administration", "Director, Finance",
    "Senior Director, Government Affairs", "Manager, Volume Management", "Specialist, Settlements",
)
EXTERNAL_TITLES = (
    "Account Manager", "Director of Supply", "Fuel Buyer", "Portfolio Manager", "Controller", "Attorney",
    "Energy Consultant", "Vice President, Marketing", "Partner", "Senior Engineer", "Principal", "Broker",
    "Research Analyst", "Project Manager", "Procurement Manager", "Reporter",
)


@dataclass(frozen=True)
class Person:
    first: str
    last: str
    email: str
    title: str
    phone: str
    street: str
    city: str
    state: str
    zip: str
    company: str
    internal: bool

    @property
    def full(self) -> str:
        return f"{self.first} {self.last}"

    @property
    def mailbox_id(self) -> str:
        return f"{self.last.lower()}-{self.first[0].lower()}"


@functools.cache
def _faker_names(kind: str) -> tuple[tuple[str, ...], list[float]]:
    """Faker's en_US `first_names` or `last_names` and their cumulative weights."""
    from faker.providers.person.en_US import Provider

    names = getattr(Provider, kind)
    return tuple(names), list(itertools.accumulate(names.values()))


def faker_name(stream: random.Random, kind: str) -> str:
    """`fake.first_name()` (kind "first_names") or `fake.last_name()` ("last_names") of the Faker instance whose
    random stream is `stream` (`fake.random`): the same draw with the same result (tests/test_synthetic_scale.py
    checks it against Faker), but with the weights summed once, where Faker re-sums them on every call."""
    names, cum_weights = _faker_names(kind)
    return stream.choices(names, cum_weights=cum_weights)[0]


def ascii_word(stream: random.Random, kind: str) -> str:
    """A name part of plain letters (e-mail local parts and mailbox ids are built from it)."""
    while True:
        word = faker_name(stream, kind)
        if word.isascii() and word.isalpha():
            return word


def phone_number(rng: random.Random, area: str, style: int) -> str:
    exchange = rng.randrange(200, 1000)
    while exchange % 100 == 11 or exchange == 555:  # N11 codes are not assigned to subscribers
        exchange = rng.randrange(200, 1000)
    line = rng.randrange(0, 10000)
    if style == 0:
        return f"({area}) {exchange:03d}-{line:04d}"
    return f"{area}-{exchange:03d}-{line:04d}"


# Street names from plain words: Faker's streets are built from first names ("Elizabeth Squares"),
# which NER tags as PERSON, and a street is not labelled PII here.
_STREET_WORDS = (
    "Oak", "Elm", "Pine", "Cedar", "Maple", "Main", "Market", "Church", "Park", "Lake", "Hill", "River",
    "Ridge", "Meadow", "Forest", "Spring", "Mill", "Bay", "Harbor", "Sunset", "Highland", "Willow",
    "Walnut", "Chestnut", "Cherry", "Commerce", "Prairie", "Bluebonnet", "Post Oak", "Briar",
)
_STREET_KINDS = ("Street", "Avenue", "Boulevard", "Drive", "Lane", "Road", "Way", "Court", "Parkway")


def street(rng: random.Random) -> str:
    line = f"{rng.randrange(100, 9900)} {rng.choice(_STREET_WORDS)} {rng.choice(_STREET_KINDS)}"
    roll = rng.random()
    if roll < 0.2:
        line += f" Apt. {rng.randrange(1, 400)}"
    elif roll < 0.35:
        line += f", Suite {rng.randrange(100, 3000)}"
    return line


# Misses in a row (a drawn (first, last) pair someone already has) before a person's name is drawn another
# way. Faker's en_US lists hold 690 x 1000 pairs, most of them unlikely under its weights: a large corpus's
# population uses up the likely ones, and redrawing until a free pair turned up took ever longer (and forever
# past 690,000 people). The default world misses at most 3 times in a row, so its names are as before.
NAME_TRIES = 20
# Share of those pairs no person takes: an e-mail canary is first.last from the same lists (`canary_email`) and
# must be no person's name, so the canaries need pairs left over.
PAIRS_KEPT_FREE = 0.1


class FreePairs:
    """The (first, last) pairs of Faker's plain names that no one has, drawn uniformly: once weighted draws keep
    missing, the few likely pairs are taken, and a draw from what is left costs the same at any size."""

    def __init__(self, taken: set[tuple[str, str]]):
        def plain(kind: str) -> list[str]:
            return [n for n in _faker_names(kind)[0] if n.isascii() and n.isalpha()]

        self.firsts, self.lasts = plain("first_names"), plain("last_names")
        self.index = ({n: i for i, n in enumerate(self.firsts)}, {n: i for i, n in enumerate(self.lasts)})
        n_pairs = len(self.firsts) * len(self.lasts)
        # Pair p is (firsts[p // len(lasts)], lasts[p % len(lasts)]); free[:] lists the free pairs in any order
        # and slot[p] is p's place in it, so that taking a pair is a swap with the last one.
        self.free = array("l", range(n_pairs))
        self.slot = array("l", range(n_pairs))
        self.reserve = math.ceil(PAIRS_KEPT_FREE * n_pairs)
        for first, last in sorted(taken):  # in a fixed order: a set's order changes with the process's hash seed
            self.discard(first, last)

    def __len__(self) -> int:
        return len(self.free)

    def exhausted(self) -> bool:
        """Whether only the pairs kept free for canaries are left."""
        return len(self.free) <= self.reserve

    def _pair(self, first: str, last: str) -> int | None:
        i, j = self.index[0].get(first), self.index[1].get(last)
        return None if i is None or j is None else i * len(self.lasts) + j

    def discard(self, first: str, last: str) -> None:
        pair = self._pair(first, last)
        if pair is not None and self.slot[pair] < len(self.free) and self.free[self.slot[pair]] == pair:
            self._remove(pair)  # (else not a plain pair, or taken already)

    def take(self, stream: random.Random) -> tuple[str, str]:
        pair = self.free[stream.randrange(len(self.free))]
        self._remove(pair)
        return self.firsts[pair // len(self.lasts)], self.lasts[pair % len(self.lasts)]

    def _remove(self, pair: int) -> None:
        moved = self.free[-1]
        self.free[self.slot[pair]] = moved
        self.slot[moved] = self.slot[pair]
        self.free.pop()


class Cast:
    """Everyone who writes or is written to, with unique names, e-mail addresses and phones, and the
    weights by which they appear."""

    def __init__(self, rng: random.Random, fake: Faker, n_mailboxes: int, n_people: int, popularity: float):
        self.rng, self.fake = rng, fake
        self.fake_stream = fake.random  # Faker's own stream, which the names are drawn from
        self.free_pairs: FreePairs | None = None  # made when the weighted names run out (`name`)
        self.names: set[tuple[str, str]] = set()
        self.mailbox_ids: set[str] = set()
        self.emails: set[str] = set()
        self.phones: set[str] = set()  # normalised digits
        word = rng.choice(COMPANY_WORDS)
        self.company = f"{word} {rng.choice(COMPANY_KINDS[:3])}"
        self.domain = f"{word.lower().replace(' ', '')}-{self.company.split()[-1].lower()}.com"
        self.owners = [self.person(internal=True, owner=True) for _ in range(n_mailboxes)]
        # Two in five people work for the company, as in a mailbox where most mail is internal.
        self.people = [self.person(internal=rng.random() < 0.4) for _ in range(max(n_people, 20))]
        ranks = list(range(len(self.people)))
        rng.shuffle(ranks)
        self.weights = [1.0 / (rank + 10) ** popularity for rank in ranks]
        # Summed once: random.choices re-sums `weights` on every call, which made each draw cost the size of
        # the population (it grows with the corpus) and the generator quadratic. The same sums, so the same
        # draws.
        self.cum_weights = list(itertools.accumulate(self.weights))

    def draw(self, k: int, exclude=()) -> list[Person]:
        """k distinct people by popularity, none of `exclude`."""
        chosen: list[Person] = []
        excluded = {id(p) for p in exclude}
        while len(chosen) < k:
            for p in self.rng.choices(self.people, cum_weights=self.cum_weights, k=k - len(chosen)):
                if id(p) not in excluded:
                    excluded.add(id(p))
                    chosen.append(p)
        return chosen

    def fresh_phone(self, area: str, style: int) -> str:
        while True:
            phone = phone_number(self.rng, area, style)
            if normalize("PHONE_NUMBER", phone) not in self.phones:
                self.phones.add(normalize("PHONE_NUMBER", phone))
                return phone

    def name(self, owner: bool) -> tuple[str, str]:
        """A (first, last) name no one else has, and for an owner a mailbox id no other owner has.

        Faker's weighted names, redrawn while taken. After NAME_TRIES misses in a row an owner gets a double
        surname ("Smith-Jones", as Enron's own "mims-thurston-p"), and for everyone after the first person who
        missed that often, names are drawn uniformly from the pairs left (`FreePairs`), then, once only those
        kept for the canaries are left, with double surnames: a name costs a bounded number of draws at any size.
        """
        if not owner and self.free_pairs is not None:
            if not self.free_pairs.exhausted():
                return self._claim(*self.free_pairs.take(self.fake_stream))
            misses = NAME_TRIES  # the plain pairs are used up
        else:
            misses = 0
        while True:
            first, last = ascii_word(self.fake_stream, "first_names"), ascii_word(self.fake_stream, "last_names")
            if misses >= NAME_TRIES:
                second = ascii_word(self.fake_stream, "last_names")
                if second == last:
                    continue
                last = f"{last}-{second}"
            mailbox_id = f"{last.lower()}-{first[0].lower()}"  # as Person.mailbox_id
            if (first, last) not in self.names and not (owner and mailbox_id in self.mailbox_ids):
                if owner:
                    self.mailbox_ids.add(mailbox_id)
                return self._claim(first, last)
            misses += 1
            if misses == NAME_TRIES and not owner and self.free_pairs is None:
                self.free_pairs = FreePairs(self.names)
                return self.name(owner)

    def _claim(self, first: str, last: str) -> tuple[str, str]:
        self.names.add((first, last))
        if self.free_pairs is not None:
            self.free_pairs.discard(first, last)
        return first, last

    def person(self, internal: bool, owner: bool = False) -> Person:
        rng = self.rng
        first, last = self.name(owner)
        if internal:
            company, title = self.company, rng.choice(TITLES)
            email = f"{first.lower()}.{last.lower()}@{self.domain}"
            city = US_CITIES[rng.choice(OFFICES)]
        else:
            word = rng.choice([w for w in COMPANY_WORDS if not self.company.startswith(w)])
            kind = rng.choice(COMPANY_KINDS)
            company, title = f"{word} {kind}", rng.choice(EXTERNAL_TITLES)
            host = f"{word.lower().replace(' ', '')}{kind.split()[0].lower()}.com"
            style = rng.random()
            if style < 0.3:
                email = f"{first[0].lower()}{last.lower()}@{rng.choice(FREE_MAIL)}"
            elif style < 0.6:
                email = f"{first.lower()}.{last.lower()}@{host}"
            elif style < 0.8:
                email = f"{first[0].lower()}{last.lower()}@{host}"
            else:
                email = f"{first.lower()}_{last.lower()}@{host}"
            city = rng.choice(US_CITIES)
        while email in self.emails:  # two "jsmith"s at aol.com: the second gets a number
            local, at, domain = email.partition("@")
            email = f"{local}{rng.randrange(2, 100)}{at}{domain}"
        self.emails.add(email)
        name, state, zip_prefix, area = city
        return Person(
            first=first, last=last, email=email, title=title,
            phone=self.fresh_phone(area, rng.randrange(2)), street=street(rng), city=name, state=state,
            zip=f"{zip_prefix}{rng.randrange(0, 100):02d}", company=company, internal=internal,
        )
