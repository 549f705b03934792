import random

import polars as pl
import pytest

from piimem.corpus.splits import LinkConfig, assign_splits, cross_split_links, link_messages, message_segments

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
