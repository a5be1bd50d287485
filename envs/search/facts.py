"""What the search knowledge base can say: entity types, their facts (attributes and relations)
with the questions that ask about them and the sentence templates that state them, and the filler
sentences of documents. envs/search/kb.py builds entities and documents from these tables.
"""

from __future__ import annotations

from dataclasses import dataclass

TYPES: tuple[str, ...] = ("country", "city", "person", "company", "book", "film", "river", "mountain")


@dataclass(frozen=True)
class Fact:
    """An attribute or relation of one entity type.

    `ask` is the question about it and `describe` the noun phrase for its (unique) value, both with
    "{x}" standing for the subject, so facts chain: describe(born_in) then ask(country) gives "In
    which country is the city where X was born?". `sentences` are the document templates:
    {S}/{s} the subject (sentence start / inside), {P}/{p} its possessive, {n} its name, {v} the value.
    """

    subject: str
    name: str
    ask: str
    sentences: tuple[str, ...]
    object: str | None = None  # the entity type of a relation's values; None for an attribute
    describe: str | None = None
    kind: str = "text"  # attributes: "year", "count" (written with thousands separators) or "text"
    unit: str = ""  # counts: the unit an answer may carry ("182 cm")
    inverse: str | None = None  # relations: the fact the KB derives on the object
    derived: bool = False  # filled in by the KB from another fact's `inverse`, never set directly
    symmetric: bool = False  # spouse: the KB adds the reverse link


_F = Fact
#: Every fact, in the order entities and documents are generated with.
FACT_LIST: tuple[Fact, ...] = (
    # person
    _F("person", "occupation", "What is the occupation of {x}?",
       ("{S} is a {v}.", "{S} works as a {v}.", "By profession, {s} is a {v}.")),
    _F("person", "birth_year", "In what year was {x} born?",
       ("{S} was born in {v}.", "{P} year of birth is {v}.", "Records give {v} as the year of {p} birth."),
       kind="year"),
    _F("person", "born_in", "In which city was {x} born?",
       ("{S} was born in the city of {v}.", "{P} birthplace is {v}.", "{S} is a native of {v}."),
       object="city", describe="the city where {x} was born"),
    _F("person", "height_cm", "How tall is {x}, in centimetres?",
       ("{S} is {v} cm tall.", "{P} height is given as {v} cm."), kind="count", unit="cm"),
    _F("person", "spouse", "Who is the spouse of {x}?", ("{S} is married to {v}.", "{P} spouse is {v}."),
       object="person", describe="the spouse of {x}", symmetric=True),
    _F("person", "founded", "Which company did {x} found?", ("{S} founded {v}.", "{S} is the founder of {v}."),
       object="company", describe="the company founded by {x}", derived=True),
    _F("person", "wrote", "Which book did {x} write?", ("{S} wrote {v}.", "{S} is the author of {v}."),
       object="book", describe="the book written by {x}", derived=True),
    _F("person", "directed", "Which film did {x} direct?",
       ("{S} directed {v}.", "{S} is known as the director of {v}."),
       object="film", describe="the film directed by {x}", derived=True),
    _F("person", "climbed", "Which mountain was first climbed by {x}?",
       ("{S} made the first ascent of {v}.", "{S} was the first to climb {v}."),
       object="mountain", describe="the mountain first climbed by {x}", derived=True),
    # city
    _F("city", "country", "In which country is {x}?", ("{S} is a city in {v}.", "{S} is a city located in {v}."),
       object="country", describe="the country where {x} is located"),
    _F("city", "population", "What is the population of {x}?",
       ("{S} has a population of {v}.", "The population of {n} is {v}.", "{P} population is {v}."), kind="count"),
    _F("city", "founding_year", "In what year was {x} founded?",
       ("{S} was founded in {v}.", "{P} founding dates to {v}.", "The first settlement at {n} was established in {v}."),
       kind="year"),
    _F("city", "capital_of", "Of which country is {x} the capital?",
       ("{S} is the capital of {v}.", "{S} serves as the capital of {v}."),
       object="country", describe="the country whose capital is {x}", derived=True),
    _F("city", "rivers", "Which river flows through {x}?", ("{S} lies on the banks of {v}.", "{S} lies on {v}."),
       object="river", describe="the river that flows through {x}", derived=True),
    # country
    _F("country", "capital", "What is the capital of {x}?",
       ("{P} capital is {v}.", "The capital of {n} is {v}.", "{v} is the capital of {n}."),
       object="city", describe="the capital of {x}", inverse="capital_of"),
    _F("country", "population", "What is the population of {x}?",
       ("{S} has a population of {v}.", "{P} population is {v}."), kind="count"),
    _F("country", "area_km2", "What is the area of {x}, in square kilometres?",
       ("{S} covers an area of {v} square kilometres.", "{P} area is {v} square kilometres."),
       kind="count", unit="square kilometres"),
    _F("country", "currency", "What is the currency of {x}?",
       ("The currency of {n} is the {v}.", "{P} currency is the {v}.")),
    # company
    _F("company", "industry", "In which industry does {x} operate?",
       ("{S} is a {v} company.", "{S} is a company in the {v} industry.")),
    _F("company", "founded_by", "Who founded {x}?",
       ("{S} was founded by {v}.", "{P} founder is {v}.", "{v} founded {n}."),
       object="person", describe="the founder of {x}", inverse="founded"),
    _F("company", "founding_year", "In what year was {x} founded?",
       ("{S} was established in {v}.", "{P} founding year is {v}.", "{S} dates back to {v}."), kind="year"),
    _F("company", "headquartered_in", "In which city is {x} headquartered?",
       ("{S} is headquartered in {v}.", "{P} headquarters are in {v}.", "{S} has its head office in {v}."),
       object="city", describe="the city where {x} is headquartered"),
    _F("company", "employees", "How many people does {x} employ?",
       ("{S} employs {v} people.", "{P} workforce numbers {v}."), kind="count"),
    _F("company", "published", "Which book did {x} publish?", ("{S} published {v}.", "{P} catalogue includes {v}."),
       object="book", describe="the book published by {x}", derived=True),
    _F("company", "produced", "Which film did {x} produce?", ("{S} produced {v}.", "{P} productions include {v}."),
       object="film", describe="the film produced by {x}", derived=True),
    # book
    _F("book", "genre", "What is the genre of {x}?", ("{S} is a {v} novel.", "{S} is a novel in the {v} genre.")),
    _F("book", "written_by", "Who wrote {x}?", ("{S} was written by {v}.", "{P} author is {v}.", "{v} wrote {n}."),
       object="person", describe="the author of {x}", inverse="wrote"),
    _F("book", "publication_year", "In what year was {x} published?",
       ("{S} was first published in {v}.", "{S} appeared in {v}.", "{P} first edition came out in {v}."), kind="year"),
    _F("book", "published_by", "Which company published {x}?", ("{S} was published by {v}.", "{P} publisher is {v}."),
       object="company", describe="the company that published {x}", inverse="published"),
    _F("book", "pages", "How many pages does {x} have?",
       ("{S} runs to {v} pages.", "The first edition of {n} has {v} pages."), kind="count", unit="pages"),
    # film
    _F("film", "genre", "What is the genre of {x}?", ("{S} is a {v} film.", "{S} is a film in the {v} genre.")),
    _F("film", "directed_by", "Who directed {x}?",
       ("{S} was directed by {v}.", "{P} director is {v}.", "{v} directed {n}."),
       object="person", describe="the director of {x}", inverse="directed"),
    _F("film", "release_year", "In what year was {x} released?",
       ("{S} was released in {v}.", "{S} premiered in {v}."), kind="year"),
    _F("film", "produced_by", "Which company produced {x}?", ("{S} was produced by {v}.", "{v} produced {n}."),
       object="company", describe="the company that produced {x}", inverse="produced"),
    _F("film", "runtime", "How long is {x}, in minutes?",
       ("{S} runs for {v} minutes.", "{P} running time is {v} minutes."), kind="count", unit="minutes"),
    # river
    _F("river", "source_country", "In which country does {x} rise?",
       ("{S} is a river that rises in {v}.", "{S} is a river with its source in {v}."),
       object="country", describe="the country where {x} rises"),
    _F("river", "length_km", "How long is {x}, in kilometres?",
       ("{S} is {v} km long.", "{P} length is {v} km."), kind="count", unit="km"),
    _F("river", "passes_through", "Which city does {x} flow through?",
       ("{S} flows through {v}.", "{S} passes through {v}."),
       object="city", describe="the city that {x} flows through", inverse="rivers"),
    # mountain
    _F("mountain", "country", "In which country is {x}?", ("{S} is a mountain in {v}.", "{S} is a peak in {v}."),
       object="country", describe="the country where {x} is located"),
    _F("mountain", "height_m", "How high is {x}, in metres?",
       ("{S} rises to {v} metres.", "{P} summit stands {v} metres above sea level."), kind="count", unit="metres"),
    _F("mountain", "first_climbed_by", "Who first climbed {x}?",
       ("{S} was first climbed by {v}.", "The first ascent of {n} was made by {v}."),
       object="person", describe="the first person to climb {x}", inverse="climbed"),
    _F("mountain", "first_ascent_year", "In what year was {x} first climbed?",
       ("{S} was first climbed in {v}.", "{P} first ascent took place in {v}."), kind="year"),
)
#: Every fact by (entity type, fact name).
FACTS: dict[tuple[str, str], Fact] = {(f.subject, f.name): f for f in FACT_LIST}
#: Attributes that shape the text (pronouns) but are never asked about.
HIDDEN_ATTRIBUTES = {"gender"}
#: The fact the first sentence of an entity's first document states.
INTRO = {"person": "occupation", "city": "country", "company": "industry", "book": "genre", "film": "genre",
          "river": "source_country", "mountain": "country"}
#: How later sentences of a document refer to an entity when not by name or pronoun.
NOUN = {"country": "the country", "city": "the city", "company": "the company", "book": "the novel",
         "film": "the film", "river": "the river", "mountain": "the mountain"}
#: Sentences that state nothing, mixed into documents so retrieval has to match meaning.
FILLERS = {
    "person": ("{S} was known for a dry sense of humour.", "{S} spent several years travelling abroad.",
               "{S} kept detailed diaries throughout {p} life.", "{S} gave many public lectures."),
    "city": ("{S} is known for its covered markets.", "{S} holds a lantern festival every autumn.",
             "{S} has a large public library.", "The old quarter of {n} is built around a stone square."),
    "country": ("{S} has a long coastline.", "{P} economy relies on trade and farming.",
                "{S} is divided into several provinces."),
    "company": ("{S} is known for its apprenticeship programme.", "{S} has offices in several countries.",
                "{S} was restructured after a difficult decade."),
    "book": ("{S} was translated into several languages.", "{S} received mixed reviews on its release.",
             "{S} has been adapted for the stage."),
    "film": ("{S} was shot mostly on location.", "{S} received several awards.",
             "{S} was restored for a later re-release."),
    "river": ("{S} is popular with anglers.", "{S} floods in most springs.", "Several bridges cross {n}."),
    "mountain": ("{S} is popular with hikers.", "{S} is snow-capped for most of the year.",
                 "The slopes of {n} are covered in pine forest."),
}
