"""`webshop`: shop on the WebShop site for the product an instruction describes.

The env is a small text browser: it talks to the site (`envs.webshop.site`) over HTTP with httpx
and shows the agent WebShop's simplified page text. Actions are WebShop's: `search[query]` on the
search page and `click[button]` for any clickable on the page (a button, a product's ASIN, an
option value). Buying ends the episode with WebShop's score in `info["score"]`, its parts in
`info["score_detail"]` and the way the title nouns were found in `info["score_path"]` ("spacy", as
WebShop, or the "content-words" fallback; see `envs.webshop.nouns`); the reward is
`success_reward` (10, as in the GiGPO setup) when the score is 1, else 0, or the raw score with
`success_reward=None`.

Without `server_url` the env starts a server (on 127.0.0.1, a free port), shared with the other
envs of its process that ask for the same shop, and stopped when the last of them closes. Give `server_url` to share one server among many envs: every env shops in its own
session, and the catalog options (`num_products`, `products_file`, ...) are the server's. Goals: the first `eval_goals` goals are the `eval` split, the rest `train` (as verl-agent
splits WebShop's goals). A generated catalog has synthetic goals, or human-style ones with
`human_goals=True`; with WebShop's files the instructions file decides: `items_ins_v2*.json` holds
synthetic goals, `items_human_ins.json` human ones (give `attributes_file=items_ins_v2*.json` too
for the products' attributes, as WebShop reads both).
"""

from __future__ import annotations

import itertools
import os
import re
import threading
import httpx

from envs.base import ActionFormat, AgentEnv, cache_root, observation_space, unencodable
from envs.webshop import text as webtext
from envs.webshop.browser import BrowserTab
from envs.webshop.catalog import generate_catalog, load_webshop, make_goals, make_human_goals
from envs.webshop.site import Shop, ShopServer

_ACTION = re.compile(r"^\s*(search|click)\[(.+)\]\s*$", re.IGNORECASE | re.DOTALL)
_CLICK_AT = re.compile(r"^\s*click\(\s*(\d+)\s*,\s*(\d+)\s*\)\s*$", re.IGNORECASE)
_session_ids = itertools.count()


class WebShopEnv(AgentEnv):
    """WebShop: find and buy the product an instruction describes, on a real web site."""

    instructions = (
        "You are an expert online shopper. Find the product the instruction describes: search with "
        "search[query], open products and choose options with click[...], then click[buy now]."
    )
    metadata = {"render_modes": ["ansi"]}
    observation_space = observation_space()
    action_format = ActionFormat()

    def __init__(
        self,
        split: str = "train",
        num_products: int = 1000,
        num_goals: int = 6000,
        eval_goals: int = 500,
        catalog_seed: int = 0,
        products_file: str | None = None,
        instructions_file: str | None = None,
        server_url: str | None = None,
        max_steps: int = 15,
        success_reward: float | None = 10.0,
        cache_dir: str | None = None,
        mode: str = "text",
        viewport: tuple[int, int] = (800, 600),
        render_mode: str | None = None,
        human_goals: bool = False,
        attributes_file: str | None = None,
    ):
        if render_mode not in (None, "ansi"):
            raise ValueError(f"render_mode must be None or 'ansi' (the page text); got {render_mode!r}")
        self.render_mode = render_mode
        if split not in ("train", "eval"):
            raise ValueError(f"unknown split {split!r}; use 'train' or 'eval'")
        if mode not in ("text", "browser"):
            raise ValueError(f"unknown mode {mode!r}; use 'text' or 'browser'")
        self.mode, self.viewport = mode, (int(viewport[0]), int(viewport[1]))
        if mode == "browser":  # screenshots of the viewport: (height, width, 3)
            self.observation_space = observation_space(image_shape=(self.viewport[1], self.viewport[0]))
        self.split, self.max_steps, self.success_reward = split, int(max_steps), success_reward
        self._server_key: tuple | None = None
        if server_url is None:
            self._server_key = (num_products, num_goals, catalog_seed, products_file, instructions_file, cache_dir,
                                bool(human_goals), attributes_file)
            server_url = _acquire_server(self._server_key).url
        self.url = server_url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, timeout=30.0)
        total = self._http.get("/api/info").raise_for_status().json()["goals"]
        if not 0 < eval_goals < total:
            raise ValueError(f"eval_goals must be between 1 and the number of goals - 1 ({total - 1}); got {eval_goals}")
        self._goal_range = range(0, eval_goals) if split == "eval" else range(eval_goals, total)
        self._page = webtext.Page()
        self._tab: BrowserTab | None = None
        self._sid, self._instruction, self._steps = "", "", 0
        self._score_detail: dict = {}
        self._shopper = webtext.Shopper("")

    # -- gymnasium API ------------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        super().reset(seed=seed)
        if seed is None:
            seed = int(self.np_random.integers(2**31))
        goal = self._goal_range[seed % len(self._goal_range)]
        self._sid = f"{os.getpid()}-{id(self)}-{next(_session_ids)}"
        if self.mode == "browser":  # a fresh browser context per episode
            if self._tab is not None:
                self._tab.close()
            self._tab = BrowserTab(*self.viewport)
            self._page = webtext.parse_page(self._tab.goto(f"{self.url}/{self._sid}?goal={goal}"))
        else:
            self._load("GET", f"/{self._sid}", params={"goal": goal})
        self._instruction = self._page.segments[2] if len(self._page.segments) > 2 else ""
        self._steps, self._shopper = 0, webtext.Shopper(self._instruction)
        return self._obs(), self._info(valid=True, won=False)

    def step(self, action: str) -> tuple[dict, float, bool, bool, dict]:
        if not self._sid:
            raise RuntimeError("WebShopEnv: call reset() before step()")
        self._steps += 1
        valid, done, score = self._act(action if isinstance(action, str) else "")
        won = done and score == 1.0
        if self.success_reward is None:
            reward = score if done else 0.0
        else:
            reward = self.success_reward if won else 0.0
        truncated = not done and self._steps >= self.max_steps
        info = self._info(valid, won)
        if done:
            info["score"] = score
            info["score_detail"] = self._score_detail
            info["score_path"] = self._score_detail.get("noun_path", "")
        return self._obs(), float(reward), done, truncated, info

    def render(self) -> str | None:
        """The page text the agent reads (render_mode "ansi")."""
        return self._page.text if self.render_mode == "ansi" else None

    def close(self) -> None:
        if self._tab is not None:
            self._tab.close()
            self._tab = None
        self._http.close()
        if self._server_key is not None:
            _release_server(self._server_key)
            self._server_key = None

    # -- groupwise API ------------------------------------------------------------------------

    def expert_action(self) -> str:
        """A scripted shopper that reads the instruction and the page (see envs.webshop.text)."""
        return self._shopper.act(self._page)

    @property
    def task(self) -> str:
        return self._instruction

    # -- helpers ------------------------------------------------------------------------------

    def _act(self, action: str) -> tuple[bool, bool, float]:
        """(valid, done, score) after `action`; an invalid action leaves the page as it was."""
        at = _CLICK_AT.match(action)
        if at and self._tab is not None:  # browser mode also takes clicks at pixel coordinates
            html = self._tab.click_at(int(at.group(1)), int(at.group(2)))
            if html is None:
                return False, False, 0.0
            self._page = webtext.parse_page(html)
            return self._after_navigation()
        found = _ACTION.match(action)
        if not found:
            return False, False, 0.0
        kind, arg = found.group(1).lower(), found.group(2).strip()
        if unencodable(arg):  # a lone surrogate cannot go into a URL or a browser: not an action
            return False, False, 0.0
        if kind == "search":
            if not self._page.has_search_bar or not arg:
                return False, False, 0.0
            if self._tab is not None:
                self._page = webtext.parse_page(self._tab.search(arg[:500]))
            else:
                self._load("GET", self._page.search_action, params={"q": arg[:500]})
            return True, False, 0.0
        key = arg.lower() if arg.lower() in self._page.clickables else arg
        target = self._page.clickables.get(key)
        if target is None:
            return False, False, 0.0
        self._shopper.observe_click(key, self._page)
        if self._tab is not None:
            is_option = any(key in values for values in self._page.options.values())
            html = self._tab.click(target.href, radio_value=key if is_option else None,
                                   button=webtext_button(key) if target.method == "POST" else None)
            self._page = webtext.parse_page(html)
        else:
            self._load(target.method, target.href)
        return self._after_navigation() if target.method == "POST" else (True, False, 0.0)

    def _after_navigation(self) -> tuple[bool, bool, float]:
        """A click was carried out: did it buy? (The done page has no clickables.)"""
        state = _checked(self._http.get(f"/api/session/{self._sid}")).json()
        if state["done"]:
            self._score_detail = state.get("score_detail") or {}
            return True, True, float(state["score"])
        return True, False, 0.0

    def _load(self, method: str, path: str, params: dict | None = None) -> None:
        self._page = webtext.parse_page(_checked(self._http.request(method, path, params=params)).text)

    def _obs(self) -> dict:
        if self._tab is None:
            return self.make_obs(self._page.text, anchor=self._page.body_text)
        # what a browser agent sees: the screenshot and the page's accessibility tree as text
        return self.make_obs(self._tab.accessibility_text(), anchor=self._page.body_text,
                             images=(self._tab.screenshot(),))

    def _info(self, valid: bool, won: bool) -> dict:
        actions = (["search[<your query>]"] if self._page.has_search_bar else [])
        actions += [f"click[{c}]" for c in self._page.clickables]
        return self.make_info(won=won, valid_action=valid, admissible_actions=actions, task=self._instruction,
                              steps=self._steps)


# Envs of one process that want the same shop share one server (an EnvPool worker holds several).
_servers: dict[tuple, list] = {}  # shop options -> [server, number of envs using it]
_servers_lock = threading.Lock()


def _acquire_server(key: tuple) -> ShopServer:
    with _servers_lock:
        if key not in _servers:
            _servers[key] = [ShopServer(build_shop(*key)).start(), 0]
        _servers[key][1] += 1
        return _servers[key][0]


def _release_server(key: tuple) -> None:
    with _servers_lock:
        entry = _servers.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] <= 0:
            entry[0].stop()
            del _servers[key]


def _checked(response: httpx.Response) -> httpx.Response:
    """`response` if it succeeded; else an error with the server's reason (an expired session says so)."""
    if response.is_success:
        return response
    try:
        body = response.json()
    except ValueError:
        body = None
    detail = body.get("detail", "") if isinstance(body, dict) else response.text[:300]
    raise RuntimeError(f"WebShop server: {response.request.method} {response.request.url.path} -> "
                       f"{response.status_code}: {detail}")


def webtext_button(key: str) -> str:
    """The label of a submit button from its lowercased clickable key ("buy now" -> "Buy Now")."""
    return key.title()


def build_shop(num_products: int = 1000, num_goals: int = 6000, catalog_seed: int = 0,
               products_file: str | None = None, instructions_file: str | None = None,
               cache_dir: str | None = None, human_goals: bool = False,
               attributes_file: str | None = None) -> Shop:
    """The shop: a generated catalog, or WebShop's files when `products_file` is given."""
    if products_file:
        for path in (products_file, instructions_file, attributes_file):
            if path and not os.path.exists(path):
                raise FileNotFoundError(f"WebShop data file {path} does not exist")
        products, goals = load_webshop(products_file, instructions_file, attributes_json=attributes_file)
        if not goals:
            raise ValueError(f"no goals in {instructions_file}: WebShop goals come from items_ins_v2*.json "
                             "(synthetic) or items_human_ins.json (human)")
    else:
        products = generate_catalog(num_products, catalog_seed)
        make = make_human_goals if human_goals else make_goals
        goals = make(products, num_goals, catalog_seed)
    search_cache = str(cache_root() / "webshop") if cache_dir is None else cache_dir
    return Shop(products, goals, search_cache)

