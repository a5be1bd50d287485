"""A generated knowledge base for search question answering: entities, documents, questions.

    kb = generate_kb(num_entities=2000, seed=0)
    kb.write_corpus("corpus.jsonl")            # Search-R1 format: {"id": "0", "contents": '"Title"\\ntext'}
    questions = make_questions(kb, 1000, hops=(1, 2), seed=0)     # envs.search.questions
    train, test = split_questions(questions, eval_fraction=0.1)

The world is fictional (made-up names, attributes and relations), so a model cannot answer from
memory: it has to retrieve. Nothing is downloaded; everything is a pure function of the seeds.

* Entities have a type (`TYPES`), attributes (birth year, population, genre, ...) and relations to
  other entities (born_in a city, founded_by a person, ...). `FACTS` declares every attribute and
  relation: how questions ask about it and the sentence templates documents state it with. The
  reverse of a relation (a person's `founded` companies from the companies' `founded_by`) is
  derived by the `KnowledgeBase`, so facts never contradict each other.
* Documents: every fact of an entity is stated in exactly one of that entity's documents (short
  encyclopedic paragraphs, 1-3 per entity, titled with the entity's name), in a template drawn at
  random, mixed with filler sentences, so retrieval has to match meaning rather than one fixed
  wording. `kb.evidence(entity, fact)` is the id of the document that states the fact.
* Questions follow a path of facts from a named entity: one hop ("In which city was X born?") or
  several ("In which country is the city where X was born?"). A question is kept only if every
  hop has exactly one value (else it is ambiguous), no hop leads back to an entity already named,
  and, for multi-hop questions, the answer cannot be read off the documents of an earlier entity
  (so every hop is needed). `Question.entities` lists the entities whose documents must be
  retrieved, in order; `Question.doc_ids` the documents that state each hop.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from envs.search.facts import FACT_LIST, FACTS, FILLERS, HIDDEN_ATTRIBUTES, INTRO, NOUN, TYPES, Fact

__all__ = ["FACTS", "MIN_ENTITIES", "TYPES", "Entity", "Fact", "KnowledgeBase", "Question", "generate_kb",
           "read_corpus"]

@dataclass
class Entity:
    """A named thing: its `type` (one of `TYPES`), attribute values and relations (fact -> names)."""

    name: str
    type: str
    attributes: dict[str, int | str] = field(default_factory=dict)
    relations: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class Question:
    """A question with a unique answer, and what must be retrieved to answer it.

    `answers`: accepted spellings, canonical (as the documents write it) first. `entities`: the
    entities whose documents must be read, in hop order; `path`: the fact followed at each hop;
    `doc_ids`: the document stating each hop's fact.
    """

    question: str
    answers: list[str]
    hops: int
    entities: list[str]
    path: list[str]
    doc_ids: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


class KnowledgeBase:
    """Entities by name, with derived relations filled in, and the documents that describe them.

    Names must be unique (case-insensitively), every relation must point at an existing entity of
    the declared type, and only non-derived facts may be given: the KB fills in the reverse
    relations (`Fact.inverse`) and the other side of symmetric ones. `seed` picks the document
    wording.
    """

    def __init__(self, entities: Iterable[Entity], seed: int = 0):
        self.seed = seed
        self.entities: dict[str, Entity] = {}
        folded: dict[str, str] = {}
        for e in entities:
            if e.type not in TYPES:
                raise ValueError(f"entity {e.name!r} has unknown type {e.type!r}; use one of {', '.join(TYPES)}")
            key = e.name.casefold()
            if key in folded:
                raise ValueError(f"entity name {e.name!r} is used twice (also by {folded[key]!r}); names must be "
                                 "unique so that a question names exactly one entity")
            folded[key] = e.name
            # copied: the KB adds derived relations and must not change the caller's objects
            self.entities[e.name] = Entity(e.name, e.type, dict(e.attributes),
                                           {k: list(v) for k, v in e.relations.items()})
        self._link()
        self._docs: list[dict] | None = None
        self._evidence: dict[tuple[str, str], str] = {}
        self._doc_ids: dict[str, list[str]] = {}
        self._text: dict[str, str] = {}

    def _link(self) -> None:
        """Check facts against `FACTS` and add the derived relations."""
        derived: list[tuple[Entity, Fact, str]] = []
        for e in self.entities.values():
            for attr in e.attributes:
                fact = FACTS.get((e.type, attr))
                if attr not in HIDDEN_ATTRIBUTES and (fact is None or fact.object is not None):
                    raise ValueError(f"{e.type} {e.name!r} has unknown attribute {attr!r}; known: "
                                     f"{', '.join(fact_names(e.type, relations=False))}")
            for rel, objects in e.relations.items():
                fact = FACTS.get((e.type, rel))
                if fact is None or fact.object is None:
                    raise ValueError(f"{e.type} {e.name!r} has unknown relation {rel!r}; known: "
                                     f"{', '.join(fact_names(e.type, relations=True))}")
                if fact.derived:
                    source = next(f for f in FACT_LIST if f.inverse == rel and f.object == e.type)
                    raise ValueError(f"relation {rel!r} of {e.name!r} is derived by the knowledge base; set "
                                     f"{source.name!r} on the {source.subject} instead")
                for obj in objects:
                    target = self.entities.get(obj)
                    if target is None or target.type != fact.object:
                        found = f"a {target.type}" if target else "no entity"
                        raise ValueError(f"{e.name!r} {rel} {obj!r}: expected a {fact.object} named {obj!r}, "
                                         f"found {found}")
                    derived.append((e, fact, obj))
        for subject, fact, obj in derived:
            reverse = fact.name if fact.symmetric else fact.inverse
            if reverse is None:
                continue
            values = self.entities[obj].relations.setdefault(reverse, [])
            if subject.name not in values:
                values.append(subject.name)

    # -- lookup ---------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.entities)

    def __iter__(self) -> Iterator[Entity]:
        return iter(self.entities.values())

    def __contains__(self, name: object) -> bool:
        return name in self.entities

    def __getitem__(self, name: str) -> Entity:
        try:
            return self.entities[name]
        except KeyError:
            raise KeyError(f"no entity named {name!r} in the knowledge base") from None

    def of_type(self, type: str) -> list[Entity]:
        if type not in TYPES:
            raise ValueError(f"unknown entity type {type!r}; use one of {', '.join(TYPES)}")
        return [e for e in self.entities.values() if e.type == type]

    def values(self, name: str, fact: str) -> list:
        """The values of `fact` for entity `name`: related names, or [attribute value]; [] if unset."""
        e = self[name]
        if (e.type, fact) not in FACTS:
            raise KeyError(f"{e.type} has no fact {fact!r}; known: {', '.join(fact_names(e.type))}")
        if fact in e.relations:
            return list(e.relations[fact])
        return [e.attributes[fact]] if fact in e.attributes else []

    def facts(self, name: str) -> list[str]:
        """The facts entity `name` has a value for, in `FACTS` order."""
        e = self[name]
        return [f.name for f in FACT_LIST if f.subject == e.type and (f.name in e.relations or f.name in e.attributes)]

    # -- documents ------------------------------------------------------------------------

    def documents(self) -> list[dict]:
        """The corpus: `{"id": str, "contents": '"Title"\\ntext'}` per document (Search-R1's format)."""
        if self._docs is None:
            self._build_documents()
        return list(self._docs)

    def documents_of(self, name: str) -> list[dict]:
        """The documents about entity `name`, in order."""
        self.documents()
        return [self._docs[int(i)] for i in self._doc_ids[self[name].name]]  # ids are list positions

    def evidence(self, name: str, fact: str) -> str:
        """The id of the document that states `fact` of entity `name`."""
        self.documents()
        try:
            return self._evidence[(name, fact)]
        except KeyError:
            raise KeyError(f"{name!r} has no value for {fact!r}, so no document states it") from None

    def text_of(self, name: str) -> str:
        """All documents of entity `name`, joined (what a reader of them all has seen)."""
        self.documents()
        return self._text[self[name].name]

    def write_corpus(self, path: str | Path) -> Path:
        """Write the documents as JSONL (one `{"id", "contents"}` object per line); returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            for doc in self.documents():
                f.write(json.dumps(doc, ensure_ascii=False) + "\n")
        return path

    def _build_documents(self) -> None:
        rng = random.Random(f"kb-docs/{self.seed}")
        docs: list[dict] = []
        for e in self.entities.values():
            intro_fact = INTRO.get(e.type)
            intro = (None, f"{{S}} is a {e.type}.", "")
            body = []
            for name in self.facts(e.name):
                fact = FACTS[(e.type, name)]
                item = (name, rng.choice(fact.sentences), self._render(fact, self.values(e.name, name)))
                if name == intro_fact:
                    intro = item
                else:
                    body.append(item)
            rng.shuffle(body)
            for filler in rng.sample(FILLERS[e.type], rng.choice((0, 1, 1, 2))):
                body.insert(rng.randint(0, len(body)), (None, filler, ""))
            sentences = [intro] + body
            chunks, i = [], 0
            while i < len(sentences):
                size = rng.randint(3, 5)
                chunks.append(sentences[i:i + size])
                i += size
            if len(chunks) > 1 and len(chunks[-1]) < 2:  # no one-sentence documents
                tail = chunks.pop()
                chunks[-1] += tail
            self._doc_ids[e.name] = []
            texts = []
            for chunk in chunks:
                doc_id = str(len(docs))
                # each document names its subject in its first sentence, so it reads on its own
                text = " ".join(_sentence(e, template, value, j == 0, rng)
                                for j, (_, template, value) in enumerate(chunk))
                docs.append({"id": doc_id, "contents": f'"{e.name}"\n{text}'})
                self._doc_ids[e.name].append(doc_id)
                texts.append(text)
                for name, _, _ in chunk:
                    if name is not None:
                        self._evidence[(e.name, name)] = doc_id
            self._text[e.name] = "\n".join(texts)
        self._docs = docs

    def _render(self, fact: Fact, values: list) -> str:
        if fact.object is not None:
            return _join([text_name(self[v]) for v in values])
        value = values[0]
        return f"{value:,}" if fact.kind == "count" else str(value)


def fact_names(type: str, relations: bool | None = None) -> list[str]:
    """Fact names of a type, for error messages: all, the relations one may set, or the attributes."""
    facts = [f for f in FACT_LIST if f.subject == type]
    if relations is None:
        return [f.name for f in facts]
    if relations:
        return [f.name for f in facts if f.object is not None and not f.derived]
    return [f.name for f in facts if f.object is None]


def _join(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def text_name(e: Entity) -> str:
    """How documents write an entity's name inside a sentence ("the Oruna River")."""
    return f"the {e.name}" if e.type == "river" else e.name


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _sentence(e: Entity, template: str, value: str, first: bool, rng: random.Random) -> str:
    """Fill a template; the first sentence of a document names the entity, later ones mostly don't."""
    name = text_name(e)
    if first:
        s, p = name, name + "'s"
    elif e.type == "person":
        s, p = ("she", "her") if e.attributes.get("gender") == "female" else ("he", "his")
    elif rng.random() < 0.5:
        s, p = "it", "its"
    else:
        s = NOUN[e.type]
        p = s + "'s"
    return _cap(template.format(S=_cap(s), s=s, P=_cap(p), p=p, n=name, v=value))


# ---------------------------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------------------------

#: Share of each type in a generated KB; people take the rest (about a third).
_SHARES = {"country": 0.03, "city": 0.15, "company": 0.14, "book": 0.12, "film": 0.09, "river": 0.05, "mountain": 0.07}
_MINIMUM = {"country": 2, "city": 4, "company": 4, "book": 2, "film": 2, "river": 1, "mountain": 1, "person": 6}
MIN_ENTITIES = sum(_MINIMUM.values())

_ONSETS = ("b", "br", "c", "d", "dr", "f", "g", "gr", "h", "k", "kr", "l", "m", "n", "p", "r", "s", "st",
           "t", "tr", "v", "z", "th", "sh")
_VOWELS = ("a", "e", "i", "o", "u", "a", "e", "o", "ai", "ei", "ou")
_CODAS = ("", "", "", "n", "r", "l", "s", "m", "th", "nd", "rn", "sk")
_OCCUPATIONS = ("painter", "sculptor", "chemist", "novelist", "cartographer", "violinist", "surgeon",
                "botanist", "diplomat", "merchant", "physician", "poet", "geologist", "journalist",
                "photographer", "composer", "teacher", "lawyer", "banker", "pilot", "carpenter", "historian")
_BOOK_GENRES = ("mystery", "historical", "fantasy", "romance", "satirical", "gothic", "crime", "comic", "political")
_FILM_GENRES = ("drama", "comedy", "thriller", "western", "musical", "documentary", "war", "horror", "noir")
_INDUSTRIES = ("shipping", "software", "mining", "textile", "food", "banking", "railway", "chemical")
_COMPANY_SUFFIXES = {"publishing": ("Press", "Books", "Publishing"), "film": ("Pictures", "Studios", "Films")}
_OTHER_SUFFIXES = ("Industries", "Group", "Holdings", "Works", "Systems", "Company")
_TITLE_ADJECTIVES = ("Silent", "Hollow", "Bright", "Last", "Broken", "Hidden", "Northern", "Quiet", "Amber",
                     "Golden", "Lost", "Distant")
_TITLE_NOUNS = ("Garden", "Harbour", "Letters", "Tide", "Crown", "Lantern", "Orchard", "Bridge", "Song",
                "Mirror", "Road", "Winter")


class _Names:
    """Pronounceable made-up words, each used once (so every name is unique)."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.used: set[str] = set()

    def word(self, syllables: tuple[int, ...] = (2, 2, 3), ending: str | None = None) -> str:
        while True:
            n = self.rng.choice(syllables)
            parts = [self.rng.choice(_ONSETS) + self.rng.choice(_VOWELS) for _ in range(n)]
            word = "".join(parts) + (self.rng.choice(_CODAS) if ending is None else ending)
            if len(word) >= 4 and word not in self.used:
                self.used.add(word)
                return word.capitalize()

    def country(self) -> str:
        while True:
            name = self.word((2,)).lower().rstrip("aeiou") + self.rng.choice(("ia", "ar", "ora", "en"))
            if name not in self.used:
                self.used.add(name)
                return name.capitalize()

    def title(self) -> str:
        base, adj, noun = self.word(), self.rng.choice(_TITLE_ADJECTIVES), self.rng.choice(_TITLE_NOUNS)
        return self.rng.choice((f"The {adj} {base}", f"{base}'s {noun}", f"The {noun} of {base}",
                                f"Beyond {base}", f"A {noun} for {base}"))


def _type_counts(num_entities: int) -> dict[str, int]:
    counts = {t: max(_MINIMUM[t], round(share * num_entities)) for t, share in _SHARES.items()}
    counts["person"] = num_entities - sum(counts.values())
    if counts["person"] < _MINIMUM["person"]:  # only for tiny KBs: give people their minimum back
        counts["person"] = _MINIMUM["person"]
        for t in ("city", "company", "book", "film", "mountain", "river"):
            while sum(counts.values()) > num_entities and counts[t] > _MINIMUM[t]:
                counts[t] -= 1
    return counts


def generate_kb(num_entities: int = 2000, seed: int = 0) -> KnowledgeBase:
    """A fictional world of `num_entities` entities of every type in `TYPES`, the same for the same seed."""
    if isinstance(num_entities, bool) or not isinstance(num_entities, int) or num_entities < MIN_ENTITIES:
        raise ValueError(f"num_entities must be an integer of at least {MIN_ENTITIES} (one of each type and "
                         f"a few people to relate them); got {num_entities!r}")
    rng = random.Random(f"kb/{seed}")
    names = _Names(rng)
    counts = _type_counts(num_entities)

    countries = [Entity(names.country(), "country", {
        "population": rng.randint(5_000_000, 90_000_000), "area_km2": rng.randint(2_000, 900_000),
        "currency": names.word((2,)).lower()}) for _ in range(counts["country"])]
    cities = []
    for i in range(counts["city"]):
        country = countries[i] if i < len(countries) else rng.choice(countries)  # every country gets a city
        cities.append(Entity(names.word(), "city", {
            "population": rng.randint(2_000, 4_000_000), "founding_year": rng.randint(900, 1900)},
            {"country": [country.name]}))
    for country in countries:
        own = [c for c in cities if c.relations["country"] == [country.name]]
        country.relations["capital"] = [rng.choice(own).name]

    people = _people(rng, names, counts["person"], cities)
    companies = []
    for i in range(counts["company"]):
        if i < 2:  # a publisher and a film studio, so books and films have makers
            industry = ("publishing", "film")[i]
        else:  # about a third publish books or produce films
            industry = rng.choice(("publishing", "film")) if rng.random() < 0.33 else rng.choice(_INDUSTRIES)
        suffix = rng.choice(_COMPANY_SUFFIXES.get(industry, _OTHER_SUFFIXES))
        founder = rng.choice(people)
        companies.append(Entity(f"{names.word()} {suffix}", "company", {
            "industry": industry,
            "founding_year": min(founder.attributes["birth_year"] + rng.randint(22, 60), 2022),
            "employees": rng.randint(12, 90_000)},
            {"founded_by": [founder.name], "headquartered_in": [rng.choice(cities).name]}))

    works = []
    for kind, count in (("book", counts["book"]), ("film", counts["film"])):
        industry = "publishing" if kind == "book" else "film"
        makers = [c for c in companies if c.attributes["industry"] == industry]
        # film directors were born late enough for cinema to exist in their twenties
        creators = people if kind == "book" else [p for p in people if p.attributes["birth_year"] >= 1870] or people
        for _ in range(count):
            creator = rng.choice(creators)
            year = min(creator.attributes["birth_year"] + rng.randint(22, 70), 2024)
            # a work appears after its publisher or studio was founded, where one was
            maker = rng.choice([m for m in makers if m.attributes["founding_year"] <= year] or makers)
            if kind == "book":
                works.append(Entity(names.title(), "book", {
                    "genre": rng.choice(_BOOK_GENRES), "publication_year": year, "pages": rng.randint(90, 900)},
                    {"written_by": [creator.name], "published_by": [maker.name]}))
            else:
                works.append(Entity(names.title(), "film", {
                    "genre": rng.choice(_FILM_GENRES), "release_year": year, "runtime": rng.randint(75, 190)},
                    {"directed_by": [creator.name], "produced_by": [maker.name]}))

    rivers = [Entity(f"{names.word()} River", "river", {"length_km": rng.randint(40, 4_200)}, {
        "source_country": [rng.choice(countries).name],
        "passes_through": [c.name for c in rng.sample(cities, rng.choice((1, 1, 2, 3)))]})
        for _ in range(counts["river"])]
    mountains = []
    for _ in range(counts["mountain"]):
        m = Entity(f"Mount {names.word()}", "mountain", {"height_m": rng.randint(600, 8_600)},
                   {"country": [rng.choice(countries).name]})
        if rng.random() < 0.7:
            climber = rng.choice(people)
            m.relations["first_climbed_by"] = [climber.name]
            m.attributes["first_ascent_year"] = min(climber.attributes["birth_year"] + rng.randint(18, 55), 2020)
        mountains.append(m)
    return KnowledgeBase(countries + cities + people + companies + works + rivers + mountains, seed=seed)


def _people(rng: random.Random, names: _Names, count: int, cities: list[Entity]) -> list[Entity]:
    # Small pools of first and family names, so people share them as in a real corpus (retrieval
    # must match the full name); full names stay unique.
    given = {g: [names.word((2,), ending="" if g == "female" else None) for _ in range(max(12, count // 10))]
             for g in ("female", "male")}
    family = [names.word() for _ in range(max(12, count // 3))]
    people, taken = [], set()
    while len(people) < count:
        gender = rng.choice(("female", "male"))
        name = f"{rng.choice(given[gender])} {rng.choice(family)}"
        if name in taken:
            continue
        taken.add(name)
        tall = (150, 185) if gender == "female" else (160, 200)
        people.append(Entity(name, "person", {
            "gender": gender, "occupation": rng.choice(_OCCUPATIONS),
            "birth_year": rng.randint(1820, 1995), "height_cm": rng.randint(*tall)},
            {"born_in": [rng.choice(cities).name]}))
    # ~40% are married, each to the person of nearest age among them
    married = sorted(rng.sample(people, len(people) * 2 // 5), key=lambda p: p.attributes["birth_year"])
    for a, b in zip(married[0::2], married[1::2]):
        a.relations["spouse"] = [b.name]  # the KB adds b's side
    return people


def read_corpus(path: str | Path) -> list[dict]:
    """Read a JSONL corpus written by `KnowledgeBase.write_corpus` (or any Search-R1 corpus)."""
    docs = []
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            doc = json.loads(line)
            if not isinstance(doc, dict) or "id" not in doc or "contents" not in doc:
                raise ValueError(f"{path}:{line_no}: expected an object with \"id\" and \"contents\"")
            docs.append(doc)
    return docs
