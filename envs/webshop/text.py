"""WebShop pages as the agent reads them in text mode, and the scripted shopper that reads them too.

`parse_page(html)` turns a page of `envs.webshop.site` into WebShop's simplified text (visible text
pieces, stripped, joined with " [SEP] ") and the clickables: button texts and product ASINs
(lowercased) and option values, each with the request that clicking makes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser

SEP = " [SEP] "
_HIDDEN = {"head", "title", "style", "script"}


@dataclass(frozen=True)
class Clickable:
    method: str  # "GET" or "POST"
    href: str


@dataclass
class Page:
    segments: list[str] = field(default_factory=list)
    clickables: dict[str, Clickable] = field(default_factory=dict)
    has_search_bar: bool = False
    search_action: str = ""
    products: list[tuple[str, str]] = field(default_factory=list)  # (asin, title) on a results page
    options: dict[str, list[str]] = field(default_factory=dict)  # option name -> values on an item page

    @property
    def text(self) -> str:
        return SEP.join(self.segments)

    @property
    def body_text(self) -> str:
        """The page text after the instruction (the part that differs between pages of a task)."""
        if len(self.segments) > 1 and self.segments[0].startswith("Instruction:"):
            return SEP.join(self.segments[2:])
        if len(self.segments) > 2 and self.segments[1].startswith("Instruction:"):  # the search page's logo
            return SEP.join([self.segments[0], *self.segments[3:]])
        return self.text


class _Parser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.page = Page()
        self._hidden = 0
        self._link: tuple[str, str] | None = None  # (class, href) of the open <a>
        self._form_action = ""
        self._option_name = ""
        self._expect_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag in _HIDDEN:
            self._hidden += 1
        elif tag == "a":
            self._link = (a.get("class", ""), a.get("href", ""))
        elif tag == "form":
            self._form_action = a.get("action", "")
            if (a.get("method") or "get").lower() == "get":
                self.page.search_action = self._form_action
        elif tag == "input" and a.get("id") == "search_input":
            self.page.has_search_bar = True
        elif tag == "input" and a.get("type") == "radio":
            value = a.get("value", "")
            self.page.clickables[value] = Clickable("GET", a.get("data-href", ""))
            self.page.options.setdefault(a.get("name", ""), []).append(value)

    def handle_endtag(self, tag: str) -> None:
        if tag in _HIDDEN:
            self._hidden -= 1
        elif tag == "a":
            self._link = None

    def handle_data(self, data: str) -> None:
        text = data.strip()
        if self._hidden or not text:
            return
        self.page.segments.append(text)
        if self._expect_title:
            self.page.products[-1] = (self.page.products[-1][0], text)
            self._expect_title = False
        if self._link is not None:
            cls, href = self._link
            if "product-link" in cls:
                self.page.clickables[text.lower()] = Clickable("GET", href)
                self.page.products.append((text, ""))
                self._expect_title = True
            elif "btn" in cls:
                self.page.clickables[text.lower()] = Clickable("GET", href)
        elif self.lasttag == "button" and text.lower() != "search":
            self.page.clickables[text.lower()] = Clickable("POST", self._form_action)


def parse_page(html: str) -> Page:
    parser = _Parser()
    parser.feed(html)
    parser.close()
    return parser.page


# -- the scripted shopper ------------------------------------------------------------------------

_PRICE = re.compile(r",? and price lower than ([\d.]+) dollars")
_ASKED_OPTION = re.compile(r"(?:and )?([a-z][a-z ]*?): ([^,]+)")
# the words of a request that say nothing about the product (function words, "i need", "find me")
_FILLER = frozenset("""
    i i'm im i'd am is are be it it's its looking look need want wanted to buy find me would like and a an the
    some my our your his her their for of in on at by with that this which who should must can could you
    please get searching search something one also has have very really will shall do does so as or""".split())
MAX_CHECKED = 2  # products whose features it reads before it settles for the best (within 15 steps)


@dataclass
class Shopper:
    """The scripted shopper: it reads the instruction and the pages, nothing else.

    It checks products the way WebShop's score does, by kind, attributes, options and price, and
    does not insist on every word of the instruction ("for my living room" is on no page). It
    searches for the instruction (without its price) and opens, in the search's order, the first
    product within budget whose title names the product noun (in free text, where the noun is not
    marked, the asked word most result titles share). It goes back unless the product comes in
    the option values the instruction names, reads its features, and buys it when its pages show
    every asked word. Otherwise it tries the next one, and after `MAX_CHECKED` products it buys
    the one whose pages showed the most asked words, rather than paging on to the step limit.
    Option values come from WebShop's synthetic form ("with color: navy blue, and size: large"),
    or, in free text, are found by their names ("... in navy blue, size large").
    """

    instruction: str
    visited: set[str] = field(default_factory=set)
    chosen: dict[str, str] = field(default_factory=dict)
    shown: dict[str, set[str] | None] = field(default_factory=dict)  # asin -> words its pages show; None: wrong options
    current: tuple[str, str] = ("", "")  # (asin, title) of the open product
    target: str = ""  # the checked product to go back to and buy
    _item_text: dict[str, str] = field(default_factory=dict)  # asin -> its item page text

    def observe_click(self, key: str, page: Page) -> None:
        """Called before a click on `page` is carried out."""
        option_of = {v: name for name, values in page.options.items() for v in values}
        if key in option_of:
            self.chosen[option_of[key]] = key
        for asin, title in page.products:
            if key == asin.lower():
                self.visited.add(key)
                self.current, self.chosen = (key, title), {}

    def act(self, page: Page) -> str:
        if page.has_search_bar:  # the option values help the ranking: products list theirs
            return f"search[{_PRICE.sub('', self.instruction)}]"
        if page.products:
            return self._pick(page)
        if "buy now" not in page.clickables:  # a tab of the item page
            return self._read_tab(page)
        return self._on_item(page)

    def _on_item(self, page: Page) -> str:
        asin, _ = self.current
        wanted = self._wanted_values(page)
        if wanted is None:  # it does not come in what the instruction asks for
            self.shown.setdefault(asin, None)
            return "click[< prev]"
        if asin and asin not in self.shown:
            self._item_text[asin] = page.body_text
            return "click[features]"
        if asin != self.target and not self._buy_here(asin):
            return "click[< prev]"
        for name, value in wanted.items():
            if self.chosen.get(name) != value:
                return f"click[{value}]"
        return "click[buy now]"

    def _read_tab(self, page: Page) -> str:
        asin, title = self.current
        if asin and asin not in self.shown:
            self.shown[asin] = set(_stems(" ".join((title, self._item_text.get(asin, ""), page.body_text))))
        return _back(page)

    def _buy_here(self, asin: str) -> bool:
        """Buy the open product: it shows every asked word, or it is the best of enough tries."""
        if self._share(asin) >= 1.0:
            return True
        if sum(words is not None for words in self.shown.values()) < MAX_CHECKED:
            return False
        self.target = self._best()
        return self.target == asin

    def _share(self, asin: str) -> float:
        """The share of the asked words that this product's pages show (-1: not in the asked options)."""
        words = self.shown.get(asin)
        if words is None:
            return -1.0
        asked = self._asked_words()
        return len(asked & words) / len(asked) if asked else 1.0

    def _best(self) -> str:
        """The checked product in the asked options that showed the most (the first on a tie)."""
        fit = [asin for asin, words in self.shown.items() if words is not None]
        return max(fit, key=self._share) if fit else ""

    def _pick(self, page: Page) -> str:
        listed = {asin.lower() for asin, _ in page.products}
        if self.target in listed:
            return f"click[{self.target}]"
        ceiling = _PRICE.search(self.instruction)
        budget = float(ceiling.group(1)) if ceiling else float("inf")
        prices = _result_prices(page)
        fresh = [(asin, title) for asin, title in page.products
                 if asin.lower() not in self.visited and prices.get(asin, 0.0) <= budget]
        if fresh and not self.target:
            return f"click[{self._likeliest(fresh, page)[0].lower()}]"
        self.target = self._best()
        if self.target:  # nothing new worth trying here: settle for the best product seen
            return f"click[{self.target}]" if self.target in listed else _back(page)
        return "click[next >]" if "next >" in page.clickables else "click[back to search]"

    def _likeliest(self, fresh: list[tuple[str, str]], page: Page) -> tuple[str, str]:
        """The search's first product whose title names the product noun, else its first. The
        search ranks by description and options too, which titles do not show all of."""
        if _synthetic_options(_PRICE.sub("", self.instruction)):
            noun = _stem(expert_query(self.instruction).split()[-1])
        else:
            noun = _commonest(self._asked_words(), [title for _, title in page.products])
        return next((p for p in fresh if noun in _stems(p[1])), fresh[0])

    def _asked_words(self) -> set[str]:
        """The words of the instruction a matching product shows: for WebShop's synthetic form the
        part before its options (those are checked as options), else all of it."""
        text = _PRICE.sub("", self.instruction)
        if _synthetic_options(text):
            text = expert_query(text)
        return set(_stems(text)) - _FILLER_STEMS

    def _wanted_values(self, page: Page) -> dict[str, str] | None:
        """Option name -> the value to choose; None when an asked value is not offered."""
        text = _PRICE.sub("", self.instruction)
        asked = _synthetic_options(text)
        if asked:
            found = {name: _value_in(value, page.options.get(name, [])) for name, value in asked.items()}
            return None if None in found.values() else found  # type: ignore[return-value]
        named = {name: _mentioned(values, text) for name, values in page.options.items()}
        return {name: value for name, value in named.items() if value is not None}


def _commonest(words: set[str], titles: list[str]) -> str:
    """The word most of the titles name (the product noun of a free-text instruction), or ""."""
    counts = {w: sum(w in _stems(t) for t in titles) for w in sorted(words)}
    return max(counts, key=counts.__getitem__) if counts else ""


def _back(page: Page) -> str:
    return "click[< prev]" if "< prev" in page.clickables else "click[back to search]"


def expert_query(instruction: str) -> str:
    """What to search for: the instruction without its options and price ceiling."""
    return _PRICE.sub("", instruction).split(" with ")[0]


def _synthetic_options(text: str) -> dict[str, str]:
    """The "with name: value, and name: value" options of WebShop's synthetic goals ({} if none)."""
    if " with " not in text:
        return {}
    return dict(_ASKED_OPTION.findall(text.split(" with ", 1)[-1]))


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def _stem(word: str) -> str:
    """A crude stem, enough to meet "men's" with "men" and "shoes" with "shoe"."""
    word = word.strip("'")
    word = word[:-2] if word.endswith("'s") else word
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word


def _stems(text: str) -> list[str]:
    return [_stem(w) for w in _words(text)]


def _value_in(value: str, values: list[str]) -> str | None:
    value = value.strip().lower()
    return next((v for v in values if v.lower() == value), None)


def _mentioned(values: list[str], text: str) -> str | None:
    """The longest of `values` the text names as a whole phrase ("x-large" is not in "xx-large",
    "8" is not in "8.5")."""
    text = text.lower()
    for value in sorted(values, key=len, reverse=True):
        if re.search(rf"(?<![\w.-]){re.escape(value.lower())}(?![\w-]|\.\d)", text):
            return value
    return None


def _result_prices(page: Page) -> dict[str, float]:
    """Each listed product's price (the segment after its title)."""
    prices, segments = {}, page.segments
    for i, seg in enumerate(segments[:-2]):
        if any(seg == asin for asin, _ in page.products) and segments[i + 2].startswith("$"):
            prices[seg] = float(segments[i + 2][1:].split()[0].replace(",", ""))
    return prices


_FILLER_STEMS = frozenset(_stem(w) for w in _FILLER)
