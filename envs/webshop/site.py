"""The WebShop web site: a real ASGI app (FastAPI) served by uvicorn on 127.0.0.1.

Pages follow WebShop's flow: search -> results (10 per page, at most 50 hits) -> item (options,
tabs for description / features / reviews / attributes) -> buy, which scores the purchase. Each
agent shops in its own session, named by the first path segment as in WebShop (`/s1`, `/s2`...),
so one server serves a whole pool. A session's goal is set when it is opened: `/{sid}?goal=17`.

Every page is plain HTML a browser shows properly. Navigation is links with class `btn` and
product links with class `product-link`; option values are radio buttons whose `data-href` is the
item page with that option chosen; "Buy Now" is a POST form. Everything from the catalog or the
user is HTML-escaped; requests over 16 KB (counted on the bytes read, so a chunked body without a
Content-Length is held to it too) and queries over 500 characters are refused.

Sessions expire: one unused for `session_ttl` seconds (an hour) is dropped, and beyond
`max_sessions` (10,000) the least recently used goes first, so a long-running server does not grow
without bound. `/api/session/{sid}` tells the env whether its session bought, the score and its
parts (`score_detail`, with the noun path that scored); it does not show the goal product.
"""

from __future__ import annotations

import html
import json
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Sequence
from urllib.parse import quote, urlencode

from fastapi import FastAPI, HTTPException
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse

from envs.webshop.reward import Goal, Product, Score, score
from envs.webshop.search import MAX_RESULTS, ProductSearch
from tools.serving import BodyLimit, LoopbackServer

PAGE_SIZE = 10
MAX_QUERY = 500
MAX_BODY = 16_384
MAX_SESSIONS = 10_000
SESSION_TTL = 3600.0  # seconds a session may sit unused before it is dropped
TABS = ("Description", "Features", "Reviews", "Attributes")
BACK, NEXT, PREV, BUY = "Back to Search", "Next >", "< Prev", "Buy Now"
_STYLE = """body{font-family:sans-serif;max-width:900px;margin:1em auto;color:#222}
.btn{display:inline-block;margin:2px;padding:4px 10px;border:1px solid #888;border-radius:4px;
background:#f3f3f3;color:#000;text-decoration:none;font-size:14px;cursor:pointer}
.product{border-bottom:1px solid #ddd;padding:6px 0}.price{color:#b12704}
#instruction-text{background:#eef5ff;padding:6px 10px;border-radius:4px}"""


@dataclass
class Session:
    goal: Goal
    done: bool = False
    result: Score | None = None
    bought: str = ""
    options: dict[str, str] = field(default_factory=dict)
    used: float = field(default_factory=time.monotonic)  # when a request last touched it


class Shop:
    """Catalog, goals, search and the open sessions, shared by every request.

    Sessions live in least-recently-used order: each request moves its session to the end, and
    opening one first drops those unused for `session_ttl` seconds, then the oldest while there
    are more than `max_sessions`.
    """

    def __init__(self, products: Sequence[Product], goals: Sequence[Goal], cache_dir: str | None = None,
                 max_sessions: int = MAX_SESSIONS, session_ttl: float = SESSION_TTL):
        if max_sessions < 1 or not session_ttl > 0:
            raise ValueError(f"max_sessions must be >= 1 and session_ttl > 0; got {max_sessions}, {session_ttl}")
        self.products = {p.asin: p for p in products}
        self.goals = list(goals)
        self.search = ProductSearch(products, cache_dir)
        self.sessions: OrderedDict[str, Session] = OrderedDict()
        self.max_sessions, self.session_ttl = int(max_sessions), float(session_ttl)
        self.lock = threading.Lock()

    def open(self, sid: str, goal: int | None) -> Session:
        with self.lock:
            self._expire()
            if goal is not None or sid not in self.sessions:
                if goal is None:
                    raise HTTPException(400, f"session {sid!r} is new (or expired): open it with ?goal=<index>")
                if not 0 <= goal < len(self.goals):
                    raise HTTPException(400, f"goal must be in [0, {len(self.goals)}); got {goal}")
                self.sessions[sid] = Session(self.goals[goal])
                while len(self.sessions) > self.max_sessions:
                    self.sessions.popitem(last=False)
            return self._touch(sid)

    def session(self, sid: str) -> Session:
        with self.lock:
            self._expire()
            if sid not in self.sessions:
                raise HTTPException(404, f"no session {sid!r} (never opened, or expired: sessions last "
                                         f"{self.session_ttl:g} s unused); open it with /{sid}?goal=<index>")
            return self._touch(sid)

    def _touch(self, sid: str) -> Session:
        session = self.sessions[sid]
        session.used = time.monotonic()
        self.sessions.move_to_end(sid)
        return session

    def _expire(self) -> None:
        """Drop the sessions unused for `session_ttl` seconds (the oldest are first in the order)."""
        cutoff = time.monotonic() - self.session_ttl
        while self.sessions and next(iter(self.sessions.values())).used < cutoff:
            self.sessions.popitem(last=False)

    def product(self, asin: str) -> Product:
        if asin not in self.products:
            raise HTTPException(404, f"no product {asin!r}")
        return self.products[asin]


# -- pages ----------------------------------------------------------------------------------------

def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _price(p: Product) -> str:
    return f"${p.price:.2f}"


def _page(title: str, sid: str, goal: Goal, body: str, logo: bool = False) -> str:
    head = "<h2>WebShop</h2>" if logo else ""
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{_e(title)}</title>"
            f"<style>{_STYLE}</style></head><body>{head}"
            f"<div id='instruction-text'><h4>Instruction:<br>{_e(goal.instruction)}</h4></div>{body}</body></html>")


def _btn(label: str, href: str) -> str:
    return f"<a class='btn' href='{_e(href)}'>{_e(label)}</a>"


def _item_href(sid: str, asin: str, q: str, page: int, options: dict[str, str], tab: str = "") -> str:
    tail = f"/{tab.lower()}" if tab else ""
    return f"/item/{quote(sid)}/{quote(asin)}{tail}?" + urlencode({"q": q, "page": page, "options": json.dumps(options)})


def search_page(sid: str, goal: Goal) -> str:
    form = (f"<form method='get' action='/search/{_e(quote(sid))}'><input id='search_input' name='q' "
            f"maxlength='{MAX_QUERY}' placeholder='Search'> <button class='btn' type='submit'>Search</button></form>")
    return _page("WebShop", sid, goal, form, logo=True)


def results_page(shop: Shop, sid: str, goal: Goal, q: str, page: int) -> str:
    hits = shop.search.search(q, MAX_RESULTS)
    shown = hits[(page - 1) * PAGE_SIZE: page * PAGE_SIZE]
    nav = _btn(BACK, f"/{quote(sid)}")
    nav += f"<p>Page {page} (Total results: {len(hits)})</p>"
    if page > 1:
        nav += _btn(PREV, f"/search/{quote(sid)}?" + urlencode({"q": q, "page": page - 1}))
    nav += _btn(NEXT, f"/search/{quote(sid)}?" + urlencode({"q": q, "page": page + 1}))
    items = "".join(
        f"<div class='product'><a class='product-link' href='{_e(_item_href(sid, a, q, page, {}))}'>{_e(a)}</a>"
        f"<div>{_e(shop.products[a].title)}</div><div class='price'>{_price(shop.products[a])}</div></div>"
        for a in shown
    )
    return _page(f"Results for {q}", sid, goal, nav + items)


def item_page(sid: str, goal: Goal, p: Product, q: str, page: int, options: dict[str, str]) -> str:
    body = _btn(BACK, f"/{quote(sid)}") + _btn(PREV, f"/search/{quote(sid)}?" + urlencode({"q": q, "page": page}))
    for name, values in p.options.items():
        radios = "".join(
            f"<label><input type='radio' name='{_e(name)}' value='{_e(v)}' "
            f"data-href='{_e(_item_href(sid, p.asin, q, page, {**options, name: v}))}' "
            f"onclick='location.href=this.dataset.href'{' checked' if options.get(name) == v else ''}>{_e(v)}</label> "
            for v in values
        )
        body += f"<div class='option'><h4>{_e(name)}</h4>{radios}</div>"
    body += (f"<h3>{_e(p.title)}</h3><p class='price'>Price: {_price(p)}</p>"
             f"<p>Rating: {_e(p.rating if p.rating is not None else 'N.A.')}</p>")
    body += "".join(_btn(tab, _item_href(sid, p.asin, q, page, options, tab)) for tab in TABS)
    buy = f"/buy/{quote(sid)}/{quote(p.asin)}?" + urlencode({"options": json.dumps(options)})
    body += f"<form method='post' action='{_e(buy)}'><button class='btn' type='submit'>{BUY}</button></form>"
    return _page(p.title, sid, goal, body)


def tab_page(sid: str, goal: Goal, p: Product, q: str, page: int, options: dict[str, str], tab: str) -> str:
    body = _btn(BACK, f"/{quote(sid)}") + _btn(PREV, _item_href(sid, p.asin, q, page, options))
    if tab == "Description":
        body += f"<p>{_e(p.description)}</p>"
    elif tab == "Features":
        body += "<ul>" + "".join(f"<li>{_e(b)}</li>" for b in p.bullet_points) + "</ul>"
    elif tab == "Reviews":
        body += "".join(f"<div><b>\"{_e(r.get('title', ''))}\"</b> <span>{_e(r.get('score', ''))}</span>"
                        f"<p>{_e(r.get('body', ''))}</p></div>" for r in p.reviews)
    else:
        body += "<ul>" + "".join(f"<li>{_e(a)}</li>" for a in p.attributes) + "</ul>"
    return _page(f"{p.title}: {tab}", sid, goal, body)


def done_page(sid: str, goal: Goal, result: Score) -> str:
    body = (f"<h3>Thank you for shopping with us!</h3>"
            f"<p>Your score (min 0.0, max 1.0)</p><h3 id='reward'>{result.value:.4f}</h3>")
    return _page("Done", sid, goal, body)


# -- the app --------------------------------------------------------------------------------------

def _options(raw: str) -> dict[str, str]:
    try:
        options = json.loads(raw or "{}")
    except json.JSONDecodeError as exc:
        raise HTTPException(400, f"options must be a JSON object: {exc}") from exc
    if not isinstance(options, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in options.items()):
        raise HTTPException(400, "options must be a JSON object of strings")
    return options


def _query(q: str) -> str:
    if len(q) > MAX_QUERY:
        raise HTTPException(413, f"query longer than {MAX_QUERY} characters")
    return q


def create_app(shop: Shop) -> FastAPI:
    app = FastAPI(title="groupwise WebShop", docs_url=None, redoc_url=None, openapi_url=None)

    app.add_middleware(BodyLimit, limit=MAX_BODY, url_limit=4 * MAX_BODY)

    @app.get("/", response_class=HTMLResponse)
    def root() -> Any:
        return RedirectResponse("/s0?goal=0")

    @app.get("/{sid}", response_class=HTMLResponse)
    def index(sid: str, goal: int | None = None) -> str:
        session = shop.open(sid, goal)
        return search_page(sid, session.goal)

    @app.get("/search/{sid}", response_class=HTMLResponse)
    def search(sid: str, q: str, page: int = 1) -> str:
        if page < 1:
            raise HTTPException(400, "page starts at 1")
        return results_page(shop, sid, shop.session(sid).goal, _query(q), page)

    @app.get("/item/{sid}/{asin}", response_class=HTMLResponse)
    def item(sid: str, asin: str, q: str = "", page: int = 1, options: str = "{}") -> str:
        return item_page(sid, shop.session(sid).goal, shop.product(asin), _query(q), page, _options(options))

    @app.get("/item/{sid}/{asin}/{tab}", response_class=HTMLResponse)
    def item_tab(sid: str, asin: str, tab: str, q: str = "", page: int = 1, options: str = "{}") -> str:
        names = {t.lower(): t for t in TABS}
        if tab not in names:
            raise HTTPException(404, f"no tab {tab!r}; tabs: {', '.join(names)}")
        goal = shop.session(sid).goal
        return tab_page(sid, goal, shop.product(asin), _query(q), page, _options(options), names[tab])

    @app.post("/buy/{sid}/{asin}", response_class=HTMLResponse)
    def buy(sid: str, asin: str, options: str = "{}") -> str:
        session, product, chosen = shop.session(sid), shop.product(asin), _options(options)
        session.result = score(product, chosen, session.goal)
        session.done, session.bought, session.options = True, asin, chosen
        return done_page(sid, session.goal, session.result)

    @app.get("/api/info")
    def info() -> dict:
        return {"products": len(shop.products), "goals": len(shop.goals)}

    @app.get("/api/session/{sid}")
    def state(sid: str) -> dict:
        s = shop.session(sid)  # what the shopper did; never the goal product
        return {"done": s.done, "score": s.result.value if s.result else None, "bought": s.bought,
                "options": s.options, "score_detail": s.result.detail() if s.result else None}

    return app


class ShopServer(LoopbackServer):
    """uvicorn serving `create_app(shop)` from a background thread; loopback only by default."""

    name = "WebShop server"

    def __init__(self, shop: Shop, host: str = "127.0.0.1", port: int = 0, allow_remote: bool = False):
        super().__init__(create_app(shop), host, port, allow_remote, limit_concurrency=256)
        self.shop = shop
