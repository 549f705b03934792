import random

import polars as pl
import pytest

from piimem.corpus.splits import (
    SPLITS_SCHEMA,
    LinkConfig,
    assign_splits,
    cross_split_links,
    link_messages,
    message_segments,
    texts_inside_split,
    with_groups,
    word_ngrams,
)

FRACTIONS = {"train": 0.6, "test": 0.3, "public": 0.1}


def make_messages(n_mailboxes=40, seed=0, shared_bodies=30):
    """doc_id, mailbox, body_hash: mailboxes of uneven size, copies within a mailbox, broadcasts across."""
    rng = random.Random(seed)
    rows = []
    for m in range(n_mailboxes):
        for i in range(rng.randint(5, 120)):
            body = f"m{m}-b{i}"
            rows.append((f"box{m:02d}", body))
            if rng.random() < 0.15:  # the same message filed in another folder
                rows.append((f"box{m:02d}", body))
    for b in range(shared_bodies):  # one broadcast received by several mailboxes
        for m in rng.sample(range(n_mailboxes), rng.randint(2, min(6, n_mailboxes))):
            rows.append((f"box{m:02d}", f"broadcast{b}"))
    rng.shuffle(rows)
    return pl.DataFrame(
        {
            "doc_id": list(range(len(rows))),
            "mailbox": [r[0] for r in rows],
            "body_hash": [r[1] for r in rows],
        },
        schema={"doc_id": pl.Int64, "mailbox": pl.Utf8, "body_hash": pl.Utf8},
    )


def realised(splits: pl.DataFrame) -> dict[str, float]:
    counts = dict(splits.group_by("split").len().iter_rows())
    return {name: counts.get(name, 0) / splits.height for name in FRACTIONS}


def splits_per(joined: pl.DataFrame, key: str) -> pl.Series:
    return joined.group_by(key).agg(pl.col("split").n_unique())["split"]


@pytest.mark.parametrize("by", ["message", "mailbox"])
def test_no_body_in_two_splits_and_every_message_once(by):
    messages = make_messages()
    splits = assign_splits(messages, fractions=FRACTIONS, by=by, seed=3)
    assert splits.columns == ["doc_id", "split"]
    assert splits.schema == pl.Schema({"doc_id": pl.Int64, "split": pl.Utf8})
    assert splits["doc_id"].to_list() == sorted(messages["doc_id"].to_list())
    assert set(splits["split"].unique()) == set(FRACTIONS)
    joined = messages.join(splits, on="doc_id")
    assert splits_per(joined, "body_hash").max() == 1


def test_fractions_realised_by_message():
    messages = make_messages()
    splits = assign_splits(messages, fractions=FRACTIONS, by="message", seed=1)
    largest_group = messages.group_by("body_hash").len()["len"].max()
    for name, share in realised(splits).items():
        assert abs(share - FRACTIONS[name]) * messages.height <= largest_group, name


def test_by_mailbox_keeps_mailboxes_whole_except_broadcasts():
    messages = make_messages()
    splits = assign_splits(messages, fractions=FRACTIONS, by="mailbox", seed=1)
    joined = messages.join(splits, on="doc_id")
    broadcast = pl.col("body_hash").str.starts_with("broadcast")
    # Mail that only one mailbox holds moves with its mailbox.
    assert splits_per(joined.filter(~broadcast), "mailbox").max() == 1
    # A broadcast goes where most of its recipients' mailboxes went.
    home = joined.filter(~broadcast).group_by("mailbox").agg(pl.col("split").first().alias("home"))
    votes = joined.filter(broadcast).join(home, on="mailbox")
    for (body,), group in votes.group_by(["body_hash"]):
        tally = group["home"].value_counts()
        top = tally["count"].max()
        assert group["split"][0] in tally.filter(pl.col("count") == top)["home"].to_list(), body
    # Fractions within about one mailbox of the targets.
    largest_mailbox = messages.group_by("mailbox").len()["len"].max()
    for name, share in realised(splits).items():
        assert abs(share - FRACTIONS[name]) * messages.height <= largest_mailbox + 30, name


@pytest.mark.parametrize("by", ["message", "mailbox"])
def test_seeded(by):
    messages = make_messages()
    first = assign_splits(messages, fractions=FRACTIONS, by=by, seed=7)
    assert first.equals(assign_splits(messages, fractions=FRACTIONS, by=by, seed=7))
    assert not first.equals(assign_splits(messages, fractions=FRACTIONS, by=by, seed=8))
    # Row order of the input does not matter, only its content.
    shuffled = messages.sample(fraction=1.0, shuffle=True, seed=5)
    assert first.equals(assign_splits(shuffled, fractions=FRACTIONS, by=by, seed=7))


def test_zero_fraction_split_gets_nothing():
    messages = make_messages(n_mailboxes=10)
    no_public = {"train": 0.75, "test": 0.25, "public": 0.0}
    splits = assign_splits(messages, fractions=no_public, by="message", seed=0)
    assert "public" not in set(splits["split"])
    everything = assign_splits(messages, fractions={"train": 1, "test": 0}, by="mailbox", seed=0)
    assert set(everything["split"]) == {"train"}


def test_empty_table():
    empty = make_messages().head(0)
    assert assign_splits(empty, fractions=FRACTIONS, by="message", seed=0).height == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fractions": {"train": 0.6, "test": 0.3}}, r"corpus\.split\.fractions must sum to 1, got 0\.9"),
        (
            {"fractions": {"train": 1.2, "test": -0.2}},
            r"corpus\.split\.fractions: 'train' must be a number between 0 and 1",
        ),
        ({"fractions": {"train": "0.5", "test": 0.5}}, r"corpus\.split\.fractions: 'train' must be a number"),
        ({"fractions": {}}, r"corpus\.split\.fractions must be a non-empty mapping"),
        (
            {"fractions": FRACTIONS, "by": "person"},
            r"corpus\.split\.by must be one of \('message', 'mailbox'\), got 'person'",
        ),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        assign_splits(make_messages(n_mailboxes=3), seed=0, **kwargs)


def test_missing_column():
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['mailbox'\]"):
        assign_splits(make_messages(n_mailboxes=3).drop("mailbox"), fractions=FRACTIONS, by="mailbox", seed=0)


def test_enron_mini_copies_follow_originals(enron_mini_parsed):
    messages = enron_mini_parsed.messages
    targets = {"train": 0.7, "test": 0.2, "public": 0.1}
    splits = assign_splits(messages, fractions=targets, by="message", seed=0)
    joined = messages.join(splits, on="doc_id")
    copies = joined.filter(pl.col("duplicate_of").is_not_null()).join(
        joined.select(pl.col("doc_id").alias("duplicate_of"), pl.col("split").alias("split_orig")),
        on="duplicate_of",
    )
    assert copies.height == 162 and (copies["split"] == copies["split_orig"]).all()
    assert splits_per(joined, "body_hash").max() == 1
    shares = dict(splits.group_by("split").len().iter_rows())
    assert abs(shares["train"] / messages.height - 0.7) < 0.01

    mailbox_splits = assign_splits(messages, fractions=FRACTIONS, by="mailbox", seed=0)
    by_mailbox = messages.join(mailbox_splits, on="doc_id")
    assert splits_per(by_mailbox, "body_hash").max() == 1
    # Only the handful of bodies shared across mailboxes may leave their mailbox.
    homes = by_mailbox.group_by("body_hash").agg(pl.col("mailbox").n_unique().alias("n"))
    shared = homes.filter(pl.col("n") > 1)
    own = by_mailbox.join(shared, on="body_hash", how="anti")
    assert splits_per(own, "mailbox").max() == 1


# ------------------------------------------------------------------------------------------
# Messages linked by shared parts (quotes, forwards) stay in one split

WORDS = ("gas pipeline capacity schedule meeting contract price volume trade desk report review "
         "storage transport deal counterparty invoice forecast weather hedge position").split()


def _prose(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) + str(rng.randint(0, 99)) for _ in range(n))


def test_message_segments_split_at_quote_markers_and_drop_quoted_headers():
    body = ("Sounds good to me.\n\n -----Original Message-----\nFrom: \tA B [mailto:a@b.c]\nSent:\tMonday\n"
            "To:\tC D\nSubject:\tRe: gas\n\nThe parent's own words.\n"
            "---------------------- Forwarded by X Y/HOU/ECT on 05/01/2001 ---------------------------\n\n"
            "The forwarded text.\n> a quoted line\n>> and a deeper one\n")
    assert message_segments(body) == ["Sounds good to me.", "The parent's own words.", "The forwarded text.",
                                       "a quoted line\nand a deeper one"]
    assert message_segments("Just one part.") == ["Just one part."]
    notes = "Fine.\n\nJohn Smith@ENRON on 04/05/2001 10:12 AM\nTo: Jane Doe/HOU/ECT@ECT\ncc:\nSubject: x\n\nOld text."
    assert message_segments(notes) == ["Fine.", "Old text."]
    # a date in a sentence is no Notes header: the line is text, not a quote marker
    outage = "The mail server will be down on 1/2/01 from 5:00 to 10:30.\nSave your work."
    assert message_segments(outage) == [outage]


def _quoting_corpus(n: int = 300, seed: int = 3) -> pl.DataFrame:
    """n messages; every third one replies to an earlier one, quoting it whole."""
    rng = random.Random(seed)
    bodies = []
    for i in range(n):
        own = _prose(rng, rng.randint(25, 60))
        if i % 3 == 2:
            own += "\n\n-----Original Message-----\nFrom: someone\nSent: today\n\n" + bodies[rng.randrange(i)]
        bodies.append(own)
    return pl.DataFrame({"doc_id": range(n), "body": bodies, "body_hash": [str(hash(b)) for b in bodies]},
                        schema={"doc_id": pl.Int64, "body": pl.Utf8, "body_hash": pl.Utf8})


def test_a_reply_and_the_message_it_quotes_share_a_split():
    messages = _quoting_corpus()
    groups, counts = link_messages(messages, LinkConfig())
    assert counts["part_links"] >= 100 and counts["largest_group"] < 60
    by_body = assign_splits(messages, fractions=FRACTIONS, seed=0)
    linked = assign_splits(messages, fractions=FRACTIONS, seed=0, groups=groups)
    assert cross_split_links(groups, by_body) > 10  # by identical bodies alone, test messages quote training text
    assert cross_split_links(groups, linked) == 0
    # Every reply is in its parent's split.
    split = dict(linked.iter_rows())
    bodies = messages["body"].to_list()
    for i, body in enumerate(bodies):
        if "-----Original Message-----" in body:
            parent = bodies.index(body.split("Sent: today\n\n", 1)[1])
            assert split[i] == split[parent]
    assert abs(realised(linked)["train"] - FRACTIONS["train"]) < 0.05
    # Unrelated messages of the same vocabulary do not link: without quotes, no part links.
    rng = random.Random(5)
    plain = pl.DataFrame({"doc_id": range(200), "body": [_prose(rng, 40) for _ in range(200)],
                          "body_hash": [str(i) for i in range(200)]})
    assert link_messages(plain, LinkConfig())[1]["part_links"] == 0
    assert link_messages(messages, LinkConfig(enabled=False))[1]["part_links"] == 0


def test_enron_mini_test_messages_hold_no_training_part(enron_mini_parsed):
    messages = enron_mini_parsed.messages
    groups, counts = link_messages(messages, LinkConfig())
    splits = assign_splits(messages, fractions={"train": 0.6, "test": 0.2, "public": 0.2}, seed=42, groups=groups)
    by_body = assign_splits(messages, fractions={"train": 0.6, "test": 0.2, "public": 0.2}, seed=42)
    assert cross_split_links(groups, by_body) > 0 and cross_split_links(groups, splits) == 0
    assert counts["part_links"] > 100 and counts["largest_group"] <= 20


def _bodies(bodies: list[str]) -> pl.DataFrame:
    return pl.DataFrame({"doc_id": range(len(bodies)), "body": bodies, "body_hash": [str(hash(b)) for b in bodies]},
                        schema={"doc_id": pl.Int64, "body": pl.Utf8, "body_hash": pl.Utf8})


def test_a_short_message_inside_a_longer_one_is_linked_and_generic_short_text_is_not():
    rng = random.Random(11)
    short = "Can you send me the revised nomination for the Katy hub before noon tomorrow"  # 14 words
    parent = _prose(rng, 40)
    bodies = [
        short,
        _prose(rng, 40) + "\n\n" + short + "\n\n" + _prose(rng, 30),  # the short message, unmarked, inside
        parent,
        _prose(rng, 60) + " " + " ".join(parent.split()[:30]),  # 30 of the parent's 40 words: no near duplicate
        "Lunch at noon on Friday works for me, see you at the usual place",
        "The printer on the third floor is out of toner again this week",
    ]
    # Generic text in more than max_parts bodies: a common line alone or after a message's own text, sign-offs
    generic = "Thanks for your help, let me know if you have any questions."
    bodies += [f"{generic}\n{name}" for name in ("Kay", "Lee", "Ann", "Bob", "Sue", "Tom", "Joe", "Amy")]
    bodies += [f"{_prose(rng, 25)}\n\n{generic}\n{name}" for name in ("Kay", "Lee", "Ann", "Bob")]
    bodies += [f"Thanks, {name}" for name in ("Kay", "Lee", "Ann", "Bob", "Sue", "Tom", "Joe", "Amy", "Zoe")]
    messages = _bodies(bodies)
    groups, counts = link_messages(messages, LinkConfig())
    group = groups["group"].to_list()
    assert group[:4] == [0, 0, 2, 2]  # the short message joins the one holding it; the parent its partial copy
    assert counts["part_links"] == 0 and counts["containment_links"] == 2  # neither pair is a near duplicate
    assert len(set(group[4:])) == len(bodies) - 4  # unrelated and generic messages stay alone
    for seed in range(5):
        split = assign_splits(messages, fractions=FRACTIONS, seed=seed, groups=groups)["split"].to_list()
        assert split[0] == split[1] and split[2] == split[3]
    # the near-duplicate test alone (min_words 20) linked neither pair
    assert link_messages(messages, LinkConfig(containment=1.0, min_ngrams=100))[1]["groups"] == len(bodies)
    # generic text becomes distinctive when fewer bodies hold it than max_parts: then it glues them
    glued = link_messages(messages, LinkConfig(max_parts=20))[1]
    assert glued["largest_group"] >= 12


def test_the_splits_table_carries_the_link_group():
    messages = _quoting_corpus(n=60)
    groups, _ = link_messages(messages, LinkConfig())
    splits = with_groups(assign_splits(messages, fractions=FRACTIONS, seed=0, groups=groups), groups)
    assert splits.schema == pl.Schema(SPLITS_SCHEMA)
    assert splits["doc_id"].to_list() == list(range(60))
    # the group is the lowest doc_id of its messages, and a group lies in one split
    assert (splits.group_by("group").agg(pl.col("doc_id").min())
            .filter(pl.col("group") != pl.col("doc_id")).height) == 0
    assert splits.group_by("group").agg(pl.col("split").n_unique())["split"].max() == 1
    assert splits["group"].n_unique() < 60  # replies share their parent's group
    with pytest.raises(ValueError, match=r"splits: 1 message\(s\) have no link group"):
        with_groups(splits.drop("group"), groups.filter(pl.col("doc_id") != 5))


def test_the_audit_counts_test_messages_mostly_inside_a_training_message():
    rng = random.Random(4)
    inside, partly = _prose(rng, 15), _prose(rng, 20)
    template = "The daily {} position report for {} is available on the report server. If you have questions " \
               "about this report, contact the risk group. This is an automated message; please do not reply."
    bodies = [
        f"{_prose(rng, 30)}\n{inside}\n{_prose(rng, 30)}",  # train: holds the first test message
        f"{partly} {_prose(rng, 30)}",  # train: holds 20 of the second test message's 40 words
        inside,  # test: wholly inside a training message
        f"{partly} {_prose(rng, 20)}",  # test: its first 20 of 40 words inside: 16 of 36 5-grams, under half
        _prose(rng, 25),  # test: unrelated
    ]
    bodies += [template.format(rng.choice(WORDS), f"{day}/7/2001") for day in range(1, 13)]
    split = ["train", "train", "test", "test", "test"] + ["train"] * 11 + ["test"]
    messages = _bodies(bodies)
    splits = pl.DataFrame({"doc_id": range(len(bodies)), "split": split})
    assert texts_inside_split(messages, splits, words=5, level=0.5) == 2  # the copy and the template
    assert texts_inside_split(messages, splits, words=5, level=0.4) == 3
    # counting only n-grams of at most 10 bodies, the template is no longer inside (12 bodies hold it)
    assert texts_inside_split(messages, splits, words=5, level=0.5, max_bodies=10) == 1


def _inside_by_brute_force(messages: pl.DataFrame, splits: pl.DataFrame, words: int, level: float,
                           max_bodies: int | None) -> int:
    """The audit's definition, pair by pair: every test message against every training message."""
    table = messages.join(splits, on="doc_id")
    grams = {}
    for split in ("train", "test"):
        part = table.filter(pl.col("split") == split)
        rows, keys = word_ngrams(part["body"].to_list(), words)
        grams[split] = [set(keys[rows == r].tolist()) for r in range(part.height)]
    distinct = None
    if max_bodies is not None:
        rows, keys = word_ngrams(messages.unique("body_hash", keep="first")["body"].to_list(), words)
        held = {}
        for key in keys.tolist():
            held[key] = held.get(key, 0) + 1
        distinct = {key for key, times in held.items() if times <= max_bodies}
    count = 0
    for ours in grams["test"]:
        counted = ours if distinct is None else ours & distinct
        if ours and any(len(counted & theirs) >= level * len(ours) for theirs in grams["train"]):
            count += 1
    return count


@pytest.mark.parametrize("seed", range(6))
def test_the_audits_prefix_filter_finds_what_every_pair_finds(seed, monkeypatch):
    """`texts_inside_split` checks only the holders of each test message's rarest n-grams (a block at a time):
    on corpora of templates (n-grams held by many messages), quotes and unrelated text it counts what comparing
    every test message with every training message counts, also when a holder list spans several blocks."""
    import piimem.corpus.splits

    monkeypatch.setattr(piimem.corpus.splits, "_BLOCK", 4 if seed % 2 else 1_024)
    rng = random.Random(seed)
    templates = [_prose(rng, 25) for _ in range(3)]
    bodies = []
    for _ in range(300):
        shape = rng.random()
        if shape < 0.4:  # a template with a few words changed: its n-grams are held by many bodies
            words = rng.choice(templates).split()
            for _ in range(rng.randint(0, 4)):
                words[rng.randrange(len(words))] = _prose(rng, 1)
            bodies.append(" ".join(words))
        elif shape < 0.7 and bodies:  # quotes part of an earlier body
            quoted = rng.choice(bodies).split()
            start = rng.randrange(len(quoted))
            bodies.append(f"{_prose(rng, rng.randint(0, 12))} {' '.join(quoted[start:start + rng.randint(5, 30)])}")
        else:
            bodies.append(_prose(rng, rng.randint(3, 40)))
    messages = _bodies(bodies)
    splits = pl.DataFrame({"doc_id": range(len(bodies)), "split": [rng.choice(["train", "train", "test"])
                                                                   for _ in bodies]})
    for level, max_bodies in ((0.8, None), (0.5, None), (0.8, 10), (0.3, 3)):
        found = texts_inside_split(messages, splits, words=5, level=level, max_bodies=max_bodies)
        assert found == _inside_by_brute_force(messages, splits, 5, level, max_bodies), (level, max_bodies)
