"""WebShop's catalog and shopping goals: generated per seed, or loaded from WebShop's own files.

Generated products come from product *kinds* (a noun such as "shampoo", its category path, the
attributes and option groups such products have, a price range). A product draws a brand, 2-4
attributes, 1-3 option groups and a price; its title, description, features and reviews are
written from those. A goal is made from one product, like WebShop's synthetic goals: the
product's attributes, one value of each option group, and a price ceiling a little above its
price, in a sentence such as "i am looking for a paraben free shampoo with scent: lavender, and
price lower than 30.00 dollars". Because the goal product has everything the goal asks for,
every goal can score 1. `make_human_goals` writes goals the way WebShop's human goals read (free
word order, words on no product page, option values without names, options as a list).

`load_webshop(products_json, instructions_json)` reads WebShop's `items_shuffle*.json` and either
goal file, `items_ins_v2*.json` (synthetic goals) or `items_human_ins.json` (human goals), and
returns the same `Product` / `Goal` objects.
"""

from __future__ import annotations

import itertools
import json
import random
import re
from dataclasses import dataclass
from pathlib import Path

from envs.webshop.reward import Goal, Product

PRICE_STEPS = range(10, 1000, 10)  # price ceilings are multiples of 10 above the price


@dataclass(frozen=True)
class Kind:
    noun: str
    path: tuple[str, ...]  # category breadcrumb below the top level
    attributes: tuple[str, ...]
    options: tuple[str, ...]  # option group names (values in OPTION_VALUES)
    price: tuple[float, float]


_BEAUTY_ATTRS = ("paraben free", "cruelty free", "long lasting", "natural ingredients", "sulfate free",
                 "dermatologist tested", "fragrance free", "travel size", "vegan", "easy to use")
_ELEC_ATTRS = ("high speed", "wireless", "noise cancelling", "fast charging", "water resistant",
               "long battery life", "easy to install", "plug and play", "hands free", "compact design")
_FASHION_ATTRS = ("machine wash", "slim fit", "moisture wicking", "quick drying", "non slip",
                  "button closure", "elastic waist", "soft material", "breathable", "long sleeve")
_FOOD_ATTRS = ("gluten free", "sugar free", "non gmo", "low calorie", "high protein", "keto friendly",
               "ready to eat", "plant based", "individually wrapped", "caffeine free")
_HOME_ATTRS = ("easy to clean", "easy to assemble", "space saving", "solid wood", "heavy duty",
               "storage space", "living room", "non slip", "stainless steel", "dining room")

KINDS: dict[str, tuple[Kind, ...]] = {
    "beauty": (
        Kind("shampoo", ("hair care", "shampoo & conditioner"), _BEAUTY_ATTRS, ("scent", "volume"), (6, 40)),
        Kind("conditioner", ("hair care", "shampoo & conditioner"), _BEAUTY_ATTRS, ("scent", "volume"), (6, 40)),
        Kind("lipstick", ("makeup", "lips"), _BEAUTY_ATTRS, ("color",), (5, 30)),
        Kind("face cream", ("skin care", "face"), _BEAUTY_ATTRS, ("volume",), (10, 80)),
        Kind("body lotion", ("skin care", "body"), _BEAUTY_ATTRS, ("scent", "volume"), (5, 35)),
        Kind("nail polish", ("makeup", "nails"), _BEAUTY_ATTRS, ("color", "pack"), (4, 25)),
        Kind("perfume", ("fragrance", "women"), _BEAUTY_ATTRS, ("volume",), (20, 150)),
        Kind("hair brush", ("hair care", "tools"), _BEAUTY_ATTRS, ("color",), (5, 30)),
    ),
    "electronics": (
        Kind("headphones", ("audio", "headphones"), _ELEC_ATTRS, ("color",), (15, 300)),
        Kind("bluetooth speaker", ("audio", "speakers"), _ELEC_ATTRS, ("color",), (20, 200)),
        Kind("usb cable", ("accessories", "cables"), _ELEC_ATTRS, ("length", "color", "pack"), (5, 25)),
        Kind("phone charger", ("accessories", "chargers"), _ELEC_ATTRS, ("color", "pack"), (8, 40)),
        Kind("hdmi cable", ("accessories", "cables"), _ELEC_ATTRS, ("length", "pack"), (6, 30)),
        Kind("security camera", ("camera & photo", "surveillance"), _ELEC_ATTRS, ("pack",), (25, 250)),
        Kind("wireless mouse", ("computers", "mice"), _ELEC_ATTRS, ("color",), (8, 60)),
        Kind("power bank", ("accessories", "batteries"), _ELEC_ATTRS, ("capacity", "color"), (15, 80)),
    ),
    "fashion": (
        Kind("t-shirt", ("men", "clothing", "shirts"), _FASHION_ATTRS, ("color", "size"), (8, 40)),
        Kind("dress", ("women", "clothing", "dresses"), _FASHION_ATTRS, ("color", "size"), (15, 90)),
        Kind("running shoes", ("men", "shoes", "athletic"), _FASHION_ATTRS, ("color", "shoe size"), (30, 160)),
        Kind("jeans", ("women", "clothing", "jeans"), _FASHION_ATTRS, ("color", "size"), (20, 90)),
        Kind("hoodie", ("men", "clothing", "hoodies"), _FASHION_ATTRS, ("color", "size"), (18, 70)),
        Kind("socks", ("women", "clothing", "socks"), _FASHION_ATTRS, ("color", "size", "pack"), (6, 25)),
        Kind("sandals", ("women", "shoes", "sandals"), _FASHION_ATTRS, ("color", "shoe size"), (15, 70)),
        Kind("leggings", ("women", "clothing", "leggings"), _FASHION_ATTRS, ("color", "size"), (10, 50)),
    ),
    "grocery": (
        Kind("protein bar", ("snacks", "bars"), _FOOD_ATTRS, ("flavor", "pack"), (10, 45)),
        Kind("green tea", ("beverages", "tea"), _FOOD_ATTRS, ("flavor", "pack"), (5, 30)),
        Kind("coffee beans", ("beverages", "coffee"), _FOOD_ATTRS, ("flavor", "weight"), (8, 45)),
        Kind("beef jerky", ("snacks", "meat snacks"), _FOOD_ATTRS, ("flavor", "weight"), (7, 40)),
        Kind("granola", ("breakfast", "cereal"), _FOOD_ATTRS, ("flavor", "weight"), (5, 25)),
        Kind("hot sauce", ("condiments", "sauces"), _FOOD_ATTRS, ("flavor", "pack"), (4, 20)),
        Kind("olive oil", ("pantry", "oils"), _FOOD_ATTRS, ("volume", "pack"), (8, 50)),
        Kind("dark chocolate", ("snacks", "candy"), _FOOD_ATTRS, ("flavor", "pack"), (4, 35)),
    ),
    "home": (
        Kind("coffee table", ("furniture", "living room"), _HOME_ATTRS, ("color",), (60, 400)),
        Kind("bookshelf", ("furniture", "storage"), _HOME_ATTRS, ("color", "shelves"), (40, 300)),
        Kind("dining chair", ("furniture", "dining"), _HOME_ATTRS, ("color", "pack"), (30, 250)),
        Kind("bed frame", ("furniture", "bedroom"), _HOME_ATTRS, ("color", "bed size"), (90, 600)),
        Kind("desk lamp", ("lighting", "lamps"), _HOME_ATTRS, ("color",), (12, 90)),
        Kind("shower curtain", ("bath", "curtains"), _HOME_ATTRS, ("color", "size"), (8, 40)),
        Kind("throw pillow", ("decor", "pillows"), _HOME_ATTRS, ("color", "size", "pack"), (8, 45)),
        Kind("storage bin", ("storage", "bins"), _HOME_ATTRS, ("color", "pack"), (10, 60)),
    ),
}
OPTION_VALUES: dict[str, tuple[str, ...]] = {
    "color": ("black", "white", "navy blue", "red", "grey", "green", "pink", "beige", "brown", "purple",
              "light blue", "dark green", "burgundy", "yellow"),
    "size": ("small", "medium", "large", "x-large", "xx-large"),
    "volume": ("1 fl oz", "3.4 fl oz", "8 fl oz", "16 fl oz", "32 fl oz"),
    "shoe size": ("6", "7", "7.5", "8", "8.5", "9", "9.5", "10", "11", "12"),
    "bed size": ("twin", "full", "queen", "king"),
    "scent": ("lavender", "coconut", "unscented", "rose", "citrus", "mint", "vanilla"),
    "flavor": ("original", "chocolate", "peanut butter", "vanilla", "spicy", "honey", "sea salt", "berry"),
    "pack": ("pack of 1", "pack of 2", "pack of 3", "pack of 4", "pack of 6", "pack of 12"),
    "length": ("3 ft", "6 ft", "10 ft", "15 ft"),
    "capacity": ("5000 mah", "10000 mah", "20000 mah"),
    "weight": ("8 ounce", "12 ounce", "1 pound", "2 pound"),
    "shelves": ("3 shelves", "4 shelves", "5 shelves"),
}
_BRAND_A = ("north", "blue", "bright", "pure", "urban", "silver", "green", "true", "golden", "wild", "clear")
_BRAND_B = ("peak", "leaf", "craft", "home", "wave", "nest", "line", "field", "stone", "bay", "works")
_INTROS = ("i am looking for", "i need", "i want to buy", "find me", "i'm looking for", "i would like")
_REVIEWERS = ("Works as described", "Great value", "Not bad", "Would buy again", "Disappointed", "Love it")


def generate_catalog(num_products: int = 1000, seed: int = 0) -> list[Product]:
    """`num_products` products, the same ones for the same seed (100,000 take a few seconds)."""
    rng = random.Random(f"webshop-catalog/{seed}")
    kinds = [(top, kind) for top, group in KINDS.items() for kind in group]
    return [_product(rng, i, *kinds[rng.randrange(len(kinds))]) for i in range(num_products)]


def _product(rng: random.Random, index: int, top: str, kind: Kind) -> Product:
    brand = (rng.choice(_BRAND_A) + rng.choice(_BRAND_B)).title()
    attributes = rng.sample(kind.attributes, rng.randint(2, 4))
    groups = [kind.options[0]] + [g for g in kind.options[1:] if rng.random() < 0.7]
    options = {g: sorted(rng.sample(OPTION_VALUES[g], rng.randint(2, min(6, len(OPTION_VALUES[g]))))) for g in groups}
    shown = rng.sample(attributes, rng.randint(1, 2))  # the title names one or two attributes
    title = f"{brand} {' '.join(a.title() for a in shown)} {kind.noun.title()}"
    if rng.random() < 0.5:
        title += f", {rng.choice(options[groups[0]]).title()}"
    lo, hi = kind.price
    price = round(rng.uniform(lo, hi), 2)
    features = [f"{a.capitalize()}: made to be {a} every day" for a in attributes]
    rng.shuffle(features)
    description = (f"The {brand} {kind.noun} is {', '.join(attributes[:-1])} and {attributes[-1]}. "
                   f"Available in {len(next(iter(options.values())))} {groups[0]} choices.")
    reviews = [{"title": rng.choice(_REVIEWERS), "score": rng.randint(1, 5),
                "body": f"I bought this {kind.noun} {rng.randint(1, 11)} months ago."}
               for _ in range(rng.randint(0, 3))]
    rating = round(sum(r["score"] for r in reviews) / len(reviews), 1) if reviews else None
    return Product(
        asin=f"B{index:09d}", title=title, price=price, category=top,
        product_category=" › ".join((top, *kind.path)), query=kind.noun, attributes=attributes,
        options=options, description=description, bullet_points=features, reviews=reviews, rating=rating,
    )


def make_goal(product: Product, rng: random.Random) -> Goal:
    """A goal that `product` with the right options satisfies fully (score 1)."""
    wanted = sorted(rng.sample(product.attributes, rng.randint(1, min(3, len(product.attributes)))))
    options = {name: rng.choice(values) for name, values in product.options.items()}
    price_upper = _price_upper(product.price, rng)
    noun = product.query
    text = f"{rng.choice(_INTROS)} {' and '.join(wanted)} {noun}"
    if options:
        text += " with " + ", and ".join(f"{k}: {v}" for k, v in options.items())
    text += f", and price lower than {price_upper:.2f} dollars"
    return Goal(asin=product.asin, instruction=text, attributes=wanted, options=options, price_upper=price_upper,
                query=product.query, product_category=product.product_category, title=product.title)


def _price_upper(price: float, rng: random.Random) -> float:
    """Two of the next four multiples of 10 above the price, the larger (WebShop's rule)."""
    above = [p for p in PRICE_STEPS if p > price][:4]
    return float(max(rng.sample(above, 2))) if len(above) >= 2 else 1_000_000.0


def make_goals(products: list[Product], num_goals: int, seed: int = 0) -> list[Goal]:
    rng = random.Random(f"webshop-goals/{seed}")
    return [make_goal(products[rng.randrange(len(products))], rng) for _ in range(num_goals)]


# -- human-style goals ----------------------------------------------------------------------------
# Written the way WebShop's crowd workers wrote theirs (items_human_ins.json): free word order,
# words that are on no product page ("for my living room", "for men"), option values named
# without their option name, and the options as a plain list.

_HUMAN_INTROS = ("i need", "i'm looking for", "looking for", "i want", "can you find me", "i would like",
                 "please find me", "i am searching for", "get me", "i'd like to buy")
_PURPOSES = {
    "beauty": ("for my daily routine", "for dry hair", "for sensitive skin", "as a gift for my wife", ""),
    "electronics": ("for my office", "for travel", "for my home setup", "for my son", ""),
    "fashion": ("for men", "for women", "for the gym", "for summer", "for everyday wear", ""),
    "grocery": ("for my kids", "for snacking at work", "for breakfast", "for a picnic", ""),
    "home": ("for my living room", "for the bedroom", "for a small apartment", "for our new house", ""),
}
# how a value of each option group is named in a sentence ({} is the value)
_OPTION_PHRASES = {
    "color": ("in {}", "in the color {}", "{} colored"), "size": ("size {}", "in size {}", "in {}"),
    "shoe size": ("size {}", "in a size {}"), "bed size": ("{} size", "for a {} bed"),
    "volume": ("{}", "in the {} bottle"), "scent": ("{} scent", "that smells like {}", "in {}"),
    "flavor": ("{} flavor", "in {} flavor", "that tastes like {}"), "pack": ("{}", "in a {}"),
    "length": ("{} long", "{}"), "capacity": ("{}", "with {} capacity"), "weight": ("{}", "in a {} bag"),
    "shelves": ("with {}", "that has {}"),
}
_SHAPES = (  # {a}: "a " or "", {attrs}: the wanted attributes joined with "and"
    "{intro} {a}{attrs} {noun} {purpose} {options}",
    "{intro} {a}{noun} that is {attrs} {options} {purpose}",
    "{intro} {a}{noun} {options}, it should be {attrs}",
    "{intro} {a}{attrs} {noun} {options} {purpose}",
    "{intro} {a}{noun} {purpose} which is {attrs}, {options}",
)


def make_human_goal(product: Product, rng: random.Random) -> Goal:
    """A human-style goal that `product` with the right options satisfies fully (score 1).

    Its options are a list of values, as in WebShop's human goals; some option groups go unnamed,
    as people leave out what they do not care about.
    """
    wanted = sorted(rng.sample(product.attributes, rng.randint(1, min(2, len(product.attributes)))))
    groups = [g for g in product.options if rng.random() < 0.75]
    values = [rng.choice(product.options[g]) for g in groups]
    price_upper = _price_upper(product.price, rng)
    options = " ".join(rng.choice(_OPTION_PHRASES.get(g, ("{}",))).format(v) for g, v in zip(groups, values))
    text = rng.choice(_SHAPES).format(
        intro=rng.choice(_HUMAN_INTROS), a=rng.choice(("a ", "some ", "")), attrs=" and ".join(wanted),
        noun=product.query, purpose=rng.choice(_PURPOSES.get(product.category, ("",))), options=options)
    text = re.sub(r"\s+", " ", text).strip(" ,").replace(" ,", ",")
    return Goal(asin=product.asin, instruction=text + _price_text(price_upper), attributes=wanted, options=values,
                price_upper=price_upper, query=product.query, product_category=product.product_category,
                title=product.title)


def make_human_goals(products: list[Product], num_goals: int, seed: int = 0) -> list[Goal]:
    rng = random.Random(f"webshop-human-goals/{seed}")
    return [make_human_goal(products[rng.randrange(len(products))], rng) for _ in range(num_goals)]


# -- WebShop's own files ------------------------------------------------------------------------

def parse_pricing(pricing: object) -> list[float]:
    """A product's prices as WebShop's loader reads its `pricing` field.

    A string is split on "$" and each piece keeps only digits and dots, so "$1,249.99" is 1249.99
    and "$10.99 - $20.99" is [10.99, 20.99]; text without a "$" has no price (the shop then uses
    100). A number or a list of numbers (WebShop's preprocessed product file) is taken as it is.
    A piece with no number in it is skipped (WebShop's loader would stop with an error).
    """
    if isinstance(pricing, (int, float)) and not isinstance(pricing, bool):
        return [float(pricing)]
    if isinstance(pricing, (list, tuple)):
        return [float(p) for p in pricing if isinstance(p, (int, float)) and not isinstance(p, bool)]
    if not isinstance(pricing, str):
        return []
    prices = []
    for piece in pricing.split("$")[1:]:
        digits = re.sub(r"[^\d.]", "", piece)
        try:
            prices.append(float(digits))
        except ValueError:  # "" or "1.2.3": no number here
            continue
    return prices


def load_webshop(products_json: str | Path, instructions_json: str | Path | None = None, seed: int = 233,
                 attributes_json: str | Path | None = None) -> tuple[list[Product], list[Goal]]:
    """Products from `items_shuffle*.json` and goals from an instructions file, in either of WebShop's forms.

    - `items_ins_v2*.json` (asin -> {"attributes", "instruction", "instruction_attributes"}): the
      product's attributes, and synthetic goals, one per combination of its option values, with
      the options as a dict.
    - `items_human_ins.json` (asin -> a list of {"instruction", "instruction_attributes",
      "instruction_options"}): human goals, one per entry with attributes, the options as the list
      the file gives. The products' own attributes are in `items_ins_v2*.json`: pass it as
      `attributes_json`, as WebShop reads both files for its human goals.

    A product priced as a range ("$10.99 - $20.99") gets one price drawn from it, as WebShop does.
    """
    rng = random.Random(seed)
    raw = json.loads(Path(products_json).read_text())
    instructions = json.loads(Path(instructions_json).read_text()) if instructions_json else {}
    attributes = json.loads(Path(attributes_json).read_text()) if attributes_json else {}
    products = [_webshop_product(item, rng, attributes, instructions) for item in _unique_items(raw)]
    goals = []
    for product in products:
        entry = instructions.get(product.asin)
        if isinstance(entry, list):  # as WebShop, a human goal without attributes is skipped
            goals += [_human_goal(product, e, rng) for e in entry
                      if isinstance(e, dict) and e.get("instruction_attributes")]
        elif isinstance(entry, dict) and entry.get("instruction"):
            goals += _synthetic_goals(product, entry, rng)
    return products, goals


def _unique_items(raw: list[dict]) -> list[dict]:
    """The items WebShop keeps: a real ASIN (not "nan", at most 10 characters), first copy only."""
    seen, items = set(), []
    for item in raw:
        asin = str(item.get("asin", ""))
        if asin and asin != "nan" and len(asin) <= 10 and asin not in seen:
            seen.add(asin)
            items.append(item)
    return items


def _webshop_product(item: dict, rng: random.Random, *attribute_files: dict) -> Product:
    asin = str(item["asin"])
    prices = parse_pricing(item.get("pricing"))
    bullets = item.get("small_description") or []
    options = {name.lower(): [str(v["value"]).strip().replace("/", " | ").lower() for v in values]
               for name, values in (item.get("customization_options") or {}).items() if values}
    # product attributes come from items_ins_v2 (a dict per asin), whichever file that is
    info = next((f[asin] for f in attribute_files if isinstance(f.get(asin), dict)), {})
    return Product(
        asin=asin, title=item.get("name") or "", price=_draw_price(prices, rng),
        category=item.get("category") or "", product_category=item.get("product_category") or "",
        query=str(item.get("query") or "").lower().strip(), attributes=list(info.get("attributes") or []),
        options=options, description=item.get("full_description") or "",
        bullet_points=[bullets] if isinstance(bullets, str) else list(bullets),
    )


def _draw_price(prices: list[float], rng: random.Random) -> float:
    if not prices:
        return 100.0
    return rng.uniform(*prices[:2]) if len(prices) >= 2 else prices[0]


def _price_text(price_upper: float) -> str:
    return f", and price lower than {price_upper:.2f} dollars" if price_upper < 1_000_000 else ""


def _synthetic_goals(product: Product, entry: dict, rng: random.Random) -> list[Goal]:
    """One goal per combination of the product's option values, sharing one price ceiling."""
    text, attrs = entry["instruction"], list(entry.get("instruction_attributes") or [])
    price_upper = _price_upper(product.price, rng)
    names = sorted(product.options)
    goals = []
    for values in itertools.product(*(product.options[n] for n in names)):
        options = dict(zip(names, values))
        suffix = " with " + ", and ".join(f"{k}: {v}" for k, v in options.items()) if options else ""
        goals.append(Goal(asin=product.asin, instruction=f"{text}{suffix}{_price_text(price_upper)}",
                          attributes=attrs, options=options, price_upper=price_upper, query=product.query,
                          product_category=product.product_category, title=product.title))
    return goals


def _human_goal(product: Product, entry: dict, rng: random.Random) -> Goal:
    price_upper = _price_upper(product.price, rng)
    options = entry.get("instruction_options") or []
    if not isinstance(options, dict):
        options = [str(o) for o in options]
    return Goal(asin=product.asin, instruction=str(entry.get("instruction", "")).strip(".") + _price_text(price_upper),
                attributes=list(entry["instruction_attributes"]), options=options, price_upper=price_upper,
                query=product.query, product_category=product.product_category, title=product.title)
