"""WebShop's purchase score on worked examples (the cases of WebShop's own scorer tests, rebuilt here).

The issue-21 cases, where groupwise used to differ from WebShop, are in test_webshop_exact.py."""

import pytest

pytest.importorskip("rapidfuzz")

from envs.webshop import nouns
from envs.webshop.reward import Goal, Product, normalize_color, score

TITLE = "Organic Tea Tree Shampoo with Essential Oils for Dry Scalp"


def goal(**changes):
    base = dict(asin="B01", instruction="i need a tea tree shampoo",
                attributes=["tea tree", "essential oils", "natural ingredients"], options={"color": "grey", "size": "xl"}, price_upper=40.0, query="tea tree shampoo",
                product_category="beauty › hair care › shampoo", title=TITLE)
    return Goal(**{**base, **changes})


def product(**changes):
    base = dict(asin="B01", title=TITLE, price=35.0, query="tea tree shampoo",
                product_category="beauty › hair care › shampoo",
                attributes=["tea tree", "essential oil", "natural ingredients"],
                options={"color": ["grey", "black"], "size": ["m", "xl"]})
    return Product(**{**base, **changes})


CHOSEN = {"color": "grey", "size": "xl"}


def test_everything_matches_scores_one():
    s = score(product(), CHOSEN, goal())
    assert s.value == 1.0 and s.n_attr == 3 and s.n_opt == 2 and s.price_ok  # "essential oil" ~ "essential oils"


def test_attribute_found_in_the_description_counts():
    plain = product(title="Organic Shampoo for Dry Scalp", attributes=[], description="Made with natural ingredients.")
    s = score(plain, CHOSEN, goal())
    assert s.n_attr == 1 and s.r_type == 1.0 and s.value == pytest.approx((1 + 2 + 1) / 6)
    # the title counts as well ("tea tree", "essential oils" are in it)
    assert score(product(attributes=[]), CHOSEN, goal()).n_attr == 2


def test_missing_option_and_expensive_product_lower_the_score():
    g = goal(options={"color": "grey", "size": "xl", "amount": "pack of 12"})
    assert score(product(), CHOSEN, g).value == pytest.approx((3 + 2 + 1) / 7)
    assert score(product(price=45.0), CHOSEN, goal()).value == pytest.approx((3 + 2 + 0) / 6)


@pytest.mark.parametrize("path", [nouns.CONTENT_WORDS, nouns.SPACY])
def test_wrong_kind_of_product_is_scaled_down(path):
    if path == nouns.SPACY and nouns.spacy_model() is None:
        pytest.skip("needs spaCy and an English model")
    # another query and category; 1 of the goal title's 8 nouns shared: r_type 0.5
    other = product(title="Scalp Massager Brush", query="scalp brush", product_category="beauty › tools › brushes")
    s = score(other, CHOSEN, goal(), noun_path=path)
    assert len(nouns.title_nouns(TITLE, path)[0]) == 8 and s.title_overlap == pytest.approx(1 / 8)
    assert s.r_type == 0.5 and s.value == pytest.approx(0.5) and s.noun_path == path
    # no shared title word at all: nothing
    hose = product(title="Garden Hose Nozzle", query="hose", product_category="garden › hoses")
    assert score(hose, CHOSEN, goal(), noun_path=path).value == 0.0
    # one shared category level is not a category match, two are (as written: no lowercasing)
    other.product_category = "beauty › hair care › brushes"
    s = score(other, CHOSEN, goal(), noun_path=path)
    assert s.category_match and s.r_type == 1.0
    other.product_category = "Beauty › Hair Care › brushes"
    assert not score(other, CHOSEN, goal(), noun_path=path).category_match


def test_colours_match_by_base_colour():
    # WebShop's own examples (its values are lowercased when loaded; the test is case-sensitive)
    for value, base in [("", ""), ("black forest", "black"), ("violet lavender", "lavender"),
                        ("steelivy fuchsia", "fuchsia"), ("123alabaster", "alabaster"), ("webshop", "webshop")]:
        assert normalize_color(value) == base
    s = score(product(), {"color": "grey heather", "size": "xl"}, goal())
    assert s.n_opt == 2
    assert score(product(), {"color": "black", "size": "xl"}, goal()).n_opt == 1


def test_fuzzy_option_match_and_empty_options():
    # WebShop's examples with goal options as a list (human goals)
    g = goal(options=["cool powder snow", "XL", "pack of 12"])
    assert score(product(), {"a": "pack of 12", "b": "powder snow", "c": "XL"}, g).n_opt == 3
    assert score(product(), {"a": "pack of 12", "b": "blue", "c": "XL"}, g).n_opt == 2
    assert score(product(), {}, g).n_opt == 0
    assert score(product(), {"a": "goal 1"}, goal(options=[])).value == 1.0  # 3 attributes + price, all met
