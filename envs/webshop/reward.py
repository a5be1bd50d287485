"""WebShop's purchase score: how well a bought product (with its chosen options) fits the goal.

The definition is the WebShop paper's (Yao et al., 2022, eq. 1), computed as WebShop's released
scorer (`web_agent_site/engine/goal.py`, `get_reward`) computes it:

    score = (n_attr + n_opt + [price <= price_upper]) / (|goal attrs| + |goal opts| + 1) * r_type

- `n_attr`: goal attributes the product has. One counts when its similarity to a product attribute
  is above 85, or else when it appears verbatim, as written in the goal, in the lowercased title,
  the lowercased features or the lowercased description (each on its own).
- `n_opt`: goal options matched by a chosen option value (similarity above 85). Both sides first
  reduce to a colour word when they contain one (`normalize_color`). A goal's options come as a
  dict (synthetic goals, option name -> value) or a list of values (human goals); from a dict
  WebShop compares the (name, value) pair, so the name takes part: goal "size: x-large" does not
  match a chosen "xx-large", while the human goal "x-large" does.
- `r_type` in {1, 0.5, 0.1, 0}: whether the product is the right kind of thing. 1 when the product
  came from the goal's search query, shares two levels of its category path, or shares more than
  a fifth of the goal title's nouns; 0.5 otherwise; 0.1 under a tenth; 0 with no shared noun.

Similarity is thefuzz's `token_set_ratio` (which WebShop uses): both sides converted with `str`,
characters 128-255 dropped (`force_ascii`, so "crème" compares as "crme"), lowercased, everything
but letters and digits made a space; the ratio is rounded to an integer before the `> 85` test.
The ratio is the Indel one of thefuzz >= 0.20 and of thefuzz 0.19 with python-Levenshtein; thefuzz
0.19 without it uses difflib, whose ratio is lower on dissimilar strings but makes the same
decisions on every pair of the generated catalog's attribute and option strings.

The title nouns come from spaCy's English model when it is installed (`pip install
'groupwise[webshop-exact]'`), as in WebShop; otherwise from content words (see `envs.webshop.nouns`).
`Score.noun_path` says which.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence, Union

from rapidfuzz import fuzz, utils

from envs.webshop.nouns import title_nouns

MATCH_THRESHOLD = 85  # a rounded similarity (0-100) above this is a match
# WebShop's colour words (normalize.py), in its order: the first one inside a value wins, so
# "dark green" reduces to "dark" and "navy blue" to "blue"
COLOR_SET: tuple[str, ...] = tuple("""
    alabaster apricot aqua ash asphalt azure banana beige black blue blush bordeaux bronze brown
    burgundy camel camo caramel champagne charcoal cheetah chestnut chocolate christmas coffee cognac
    copper coral cranberry cream crystal dark denim eggplant elephant espresso fuchsia gold granite
    grape graphite grass gray green grey heather indigo ivory ivy khaki lavender lemon leopard light
    lilac lime magenta maroon mauve merlot midnight mint mocha multicolor mushroom mustard natural
    navy nude olive orange peach pewter pink plum purple rainbow red rose royal rust sand sapphire
    seashell silver skull slate steel stone stonewash sunflower tan taupe teal tiger turquoise violet
    walnut wheat white wine yellow
""".split())
_NOT_ASCII = {code: None for code in range(128, 256)}  # what thefuzz's force_ascii removes

GoalOptions = Union[Mapping[str, str], Sequence[str]]


@dataclass
class Product:
    """A catalog item, with the fields WebShop's product files carry."""

    asin: str
    title: str
    price: float
    category: str = ""  # top level, e.g. "beauty"
    product_category: str = ""  # breadcrumb, "beauty › skin care › face › creams"
    query: str = ""  # the search query the product was collected under
    attributes: list[str] = field(default_factory=list)
    options: dict[str, list[str]] = field(default_factory=dict)  # option name -> values
    description: str = ""
    bullet_points: list[str] = field(default_factory=list)
    reviews: list[dict] = field(default_factory=list)
    rating: float | None = None


@dataclass
class Goal:
    """What the shopper wants: an instruction and the parts of it the score checks.

    `options` is a dict (option name -> wanted value) for synthetic goals and a list of wanted
    values for human goals, as in WebShop's two goal sets.
    """

    asin: str  # the product the goal was made from
    instruction: str
    attributes: list[str]
    options: GoalOptions
    price_upper: float
    query: str = ""
    product_category: str = ""
    title: str = ""


@dataclass(frozen=True)
class Score:
    value: float
    r_type: float
    n_attr: int
    n_opt: int
    price_ok: bool
    title_overlap: float
    query_match: bool
    category_match: bool
    noun_path: str = ""  # "spacy" or "content-words": how the title nouns were found

    def detail(self) -> dict:
        """The parts of the score, for `info` and the session API."""
        return {"r_type": self.r_type, "n_attr": self.n_attr, "n_opt": self.n_opt, "price_ok": self.price_ok,
                "title_overlap": self.title_overlap, "query_match": self.query_match,
                "category_match": self.category_match, "noun_path": self.noun_path}


def fuzz_token_set_ratio(a: object, b: object) -> int:
    """thefuzz's `token_set_ratio(a, b)` with its defaults (force_ascii, full_process): 0-100."""
    pa, pb = _full_process(a), _full_process(b)
    return int(round(fuzz.token_set_ratio(pa, pb)))


def similar(a: object, b: object) -> bool:
    return fuzz_token_set_ratio(a, b) > MATCH_THRESHOLD


def normalize_color(value: str | tuple[str, ...]) -> str | tuple[str, ...]:
    """The first of WebShop's colour words in `value`, else `value` unchanged.

    For a string that is a substring test ("dark green" -> "dark"). A (name, value) pair, as a
    synthetic goal's option reaches WebShop's check, is tested for an element equal to a colour
    word, so ("color", "green") -> "green" while ("color", "dark green") stays a pair.
    """
    return next((c for c in COLOR_SET if c in value), value)


def type_reward(product: Product, goal: Goal, noun_path: str | None = None) -> tuple[float, float, bool, bool, str]:
    """(r_type, title overlap, query match, category match, noun path)."""
    query_match = product.query == goal.query
    category_match = len(_levels(product.product_category) & _levels(goal.product_category)) >= 2
    wanted, path = title_nouns(goal.title, noun_path)
    have, _ = title_nouns(product.title, path)
    # WebShop divides by the goal's noun count with repeats ("storage space ... storage bin": 2)
    overlap = len(set(have) & set(wanted)) / len(wanted) if wanted else 0.2
    r_type = 1.0
    if not (query_match or category_match or overlap > 0.2):
        r_type = 0.5
    if overlap < 0.1:
        r_type = 0.1
    if overlap == 0.0:
        r_type = 0.0
    return r_type, overlap, query_match, category_match, path


def attribute_matches(product: Product, wanted: Sequence[str]) -> int:
    texts = (product.title.lower(), " ".join(product.bullet_points).lower(), product.description.lower())
    return sum(_has_attribute(product.attributes, texts, want) for want in wanted)


def _has_attribute(attributes: Sequence[str], texts: Sequence[str], want: str) -> bool:
    # the verbatim test keeps the goal attribute's case: "Paraben Free" is not in "paraben free"
    return any(similar(have, want) for have in attributes) or any(want in text for text in texts)


def option_matches(chosen: Mapping[str, str], wanted: GoalOptions) -> int:
    values = [normalize_color(v) for v in chosen.values()]
    goals = [normalize_color(g) for g in _goal_option_items(wanted)]
    return sum(any(similar(v, g) for v in values) for g in goals)


def _goal_option_items(wanted: GoalOptions) -> list:
    """A dict's (name, value) pairs, or a list's values: what WebShop compares the choices with."""
    if isinstance(wanted, Mapping):
        return list(wanted.items())
    return list(wanted)


def score(product: Product, chosen_options: Mapping[str, str], goal: Goal, noun_path: str | None = None) -> Score:
    """WebShop's score in [0, 1] for buying `product` with `chosen_options` under `goal`.

    `noun_path` forces how title nouns are found ("spacy" or "content-words"); by default spaCy
    when it is installed.
    """
    r_type, overlap, query_match, category_match, path = type_reward(product, goal, noun_path)
    n_attr = attribute_matches(product, goal.attributes)
    n_opt = option_matches(chosen_options, goal.options)
    price_ok = product.price <= goal.price_upper
    # the same operations in the same order as WebShop, so the floats agree to the last bit
    value = (n_attr + n_opt + price_ok) / (len(goal.attributes) + len(goal.options) + 1) * r_type
    return Score(value, r_type, n_attr, n_opt, price_ok, overlap, query_match, category_match, path)


def _full_process(s: object) -> str:
    return utils.default_process(str(s).translate(_NOT_ASCII))


def _levels(breadcrumb: str) -> set[str]:
    # as WebShop: split on "›" and strip, no lowercasing, empty levels kept
    return {level.strip() for level in breadcrumb.split("›")}
