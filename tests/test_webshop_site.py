"""The WebShop site over real HTTP, and the text-mode env that shops on it."""

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("bm25s")

import httpx
from fastapi import HTTPException
from gymnasium.utils.env_checker import check_env

import envs
from envs import EnvPool
from envs.webshop.catalog import generate_catalog, make_goals
from envs.webshop.env import WebShopEnv, build_shop
from envs.webshop.site import MAX_BODY, Shop, ShopServer
from envs.webshop.text import parse_page
from expert_play import play_expert


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    shop = build_shop(num_products=300, num_goals=200, cache_dir=str(tmp_path_factory.mktemp("webshop")))
    with ShopServer(shop) as srv:
        yield srv


def make_env(server, **kwargs):
    return WebShopEnv(server_url=server.url, eval_goals=50, **kwargs)


def test_pages_follow_webshop_flow(server):
    http = httpx.Client(base_url=server.url)
    assert server.host == "127.0.0.1"
    search = parse_page(http.get("/t1", params={"goal": 3}).text)
    assert search.has_search_bar and search.segments[:2] == ["WebShop", "Instruction:"]
    results = parse_page(http.get("/search/t1", params={"q": "shampoo"}).text)
    assert results.segments[3].startswith("Page 1 (Total results: ") and "next >" in results.clickables
    assert 0 < len(results.products) <= 10 and results.products[0][0].lower() in results.clickables
    item = parse_page(http.get(results.clickables[results.products[0][0].lower()].href).text)
    assert "buy now" in item.clickables and item.clickables["buy now"].method == "POST"
    assert {"description", "features", "reviews", "attributes", "< prev", "back to search"} <= set(item.clickables)
    name, values = next(iter(item.options.items()))
    chosen = parse_page(http.get(item.clickables[values[0]].href).text)
    assert chosen.options == item.options  # choosing a value keeps the page, with that value checked
    done = http.post(chosen.clickables["buy now"].href)
    assert done.status_code == 200 and "Your score" in done.text
    state = http.get("/api/session/t1").json()
    assert state["done"] and 0.0 <= state["score"] <= 1.0 and state["options"] == {name: values[0]}


def test_bad_requests_get_4xx_not_a_crash(server):
    http = httpx.Client(base_url=server.url)
    http.get("/t2", params={"goal": 0})
    assert http.get("/no/such/route/here").status_code == 404
    assert http.get("/t-new").status_code == 400  # a new session needs its goal
    assert http.get("/t2", params={"goal": 10**6}).status_code == 400
    assert http.get("/search/t2", params={"q": "x", "page": "zero"}).status_code == 422
    assert http.get("/search/t2", params={"q": "x" * 600}).status_code == 413
    assert http.get("/item/t2/NOPE").status_code == 404
    assert http.get("/item/t2/" + server.shop.goals[0].asin, params={"options": "{not json"}).status_code == 400
    assert http.post("/buy/t2/x", content=b"x" * 20_000).status_code == 413
    assert http.get("/search/t2", params={"q": "shampoo"}).status_code == 200  # still serving


def test_catalog_text_is_escaped(tmp_path):
    products = generate_catalog(5)
    products[0].title = "<script>alert('x')</script> Shampoo"
    goals = make_goals(products, 3)
    goals[0].instruction = "<b>buy</b> it"
    with ShopServer(Shop(products, goals, str(tmp_path))) as srv:
        http = httpx.Client(base_url=srv.url)
        page = http.get("/e1", params={"goal": 0}).text
        assert "<b>buy</b>" not in page and "&lt;b&gt;buy&lt;/b&gt;" in page
        item = http.get(f"/item/e1/{products[0].asin}").text
        assert "<script>" not in item and "&lt;script&gt;" in item


def test_env_passes_the_env_checker(server):
    check_env(make_env(server), skip_render_check=True)


def test_expert_shopper_buys_the_right_thing(server):
    env = make_env(server)
    wins, scores = 0, []
    for seed in range(40):
        _, _, reward, info = play_expert(env, seed)
        wins += info["won"]
        scores.append(info.get("score", 0.0))
        assert reward == (10.0 if info["won"] else 0.0)
    assert wins >= 34, (wins, scores)


def test_actions_and_their_validity(server):
    env = make_env(server)
    obs, info = env.reset(seed=1)
    assert info["admissible_actions"] == ["search[<your query>]"]
    for bad in ("buy it", "click[nothing here]", "search[]", 42, "search[\udcff]", "click[\udcff]", "\udcff",
                "search[shampoo \udcff]", "\x00", "x" * 1_000_000):
        obs2, reward, terminated, truncated, info = env.step(bad)
        assert not info["valid_action"] and obs2 == obs and reward == 0.0 and not terminated
    obs, _, _, _, info = env.step("search[shampoo]")
    assert info["valid_action"] and "Total results" in obs["text"] and "click[next >]" in info["admissible_actions"]
    assert obs["anchor"] == obs["text"].split(" [SEP] ", 2)[2]  # the page without the instruction
    assert not env.step("search[conditioner]")[4]["valid_action"]  # no search bar on this page
    assert env.step("click[Back to Search]")[4]["valid_action"]  # buttons match without case


def test_step_limit_and_raw_score(server):
    env = make_env(server, max_steps=3)
    env.reset(seed=2)
    assert [env.step("click[nothing]")[3] for _ in range(3)] == [False, False, True]
    raw = make_env(server, success_reward=None)
    raw.reset(seed=2)
    raw.step(raw.expert_action())  # search
    raw.step(raw.expert_action())  # open the first candidate
    obs, reward, terminated, _, info = raw.step("click[buy now]")
    assert terminated and reward == info["score"] and 0.0 <= reward <= 1.0


def test_registered_env_starts_and_stops_its_own_server():
    env = envs.make("webshop", num_products=100, num_goals=60, eval_goals=10, split="eval")
    url = env.url
    obs, info = env.reset(seed=0)
    assert obs["text"].startswith("WebShop [SEP] Instruction:")
    env.close()
    with pytest.raises(httpx.ConnectError):
        httpx.get(url)
    with pytest.raises(ValueError, match="unknown split 'test'"):
        envs.make("webshop", split="test")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        envs.make("webshop", products_file="/nonexistent/items_shuffle.json")


def test_envs_of_a_process_share_one_server():
    a = envs.make("webshop", num_products=100, num_goals=60, eval_goals=10)
    b = envs.make("webshop", num_products=100, num_goals=60, eval_goals=10)
    assert a.url == b.url
    a.close()
    assert httpx.get(b.url + "/api/info").json() == {"products": 100, "goals": 60}
    b.close()
    with pytest.raises(httpx.ConnectError):
        httpx.get(b.url + "/api/info")


def test_server_binds_to_loopback_unless_asked(server):
    with pytest.raises(ValueError, match="loopback only.*allow_remote=True"):
        ShopServer(server.shop, host="0.0.0.0")


def test_a_pool_of_32_envs_keeps_separate_sessions(server):
    before = set(server.shop.sessions)
    with EnvPool("webshop", num_envs=32, num_workers=2, env_kwargs={"server_url": server.url, "eval_goals": 50}) as pool:
        _, infos = pool.reset(seeds=list(range(32)))
        tasks = [info["task"] for info in infos]
        running, won = set(range(32)), {}
        for _ in range(15):
            if not running:
                break
            order = sorted(running)
            results = pool.step(dict(zip(order, pool.call("expert_action", order))))
            for i, r in results.items():
                if r.terminated or r.truncated:
                    running.discard(i)
                    won[i] = r.info["won"]
    sessions = {sid: s for sid, s in server.shop.sessions.items() if sid not in before}
    assert len(sessions) == 32
    assert sorted(s.goal.instruction for s in sessions.values()) == sorted(tasks)
    assert sum(won.values()) >= 28 and all(s.done for s in sessions.values() if s.bought)


def test_session_state_does_not_show_the_goal(server):
    http = httpx.Client(base_url=server.url)
    http.get("/g1", params={"goal": 5})
    state = http.get("/api/session/g1").json()
    assert state == {"done": False, "score": None, "bought": "", "options": {}, "score_detail": None}
    goal = server.shop.goals[5]
    assert goal.asin not in http.get("/api/session/g1").text


def test_sessions_expire_after_their_ttl_and_the_least_recently_used_go_beyond_the_cap(tmp_path, monkeypatch):
    products = generate_catalog(5)
    shop = Shop(products, make_goals(products, 3), str(tmp_path), max_sessions=3, session_ttl=60)
    now = [1000.0]
    monkeypatch.setattr("envs.webshop.site.time.monotonic", lambda: now[0])
    for sid in ("a", "b", "c"):
        shop.open(sid, 0)
    shop.session("a")  # a is used again: b is now the least recently used
    shop.open("d", 1)
    assert list(shop.sessions) == ["c", "a", "d"]
    now[0] += 30
    shop.session("d")
    now[0] += 31  # c and a were last used 61 s ago, d 31 s ago
    shop.open("e", 2)
    assert list(shop.sessions) == ["d", "e"]
    with pytest.raises(HTTPException) as err:
        shop.session("a")
    assert err.value.status_code == 404 and "expired" in err.value.detail
    with pytest.raises(ValueError, match="max_sessions"):
        Shop(products, make_goals(products, 3), str(tmp_path), max_sessions=0)


def test_an_env_whose_session_expired_says_so(server):
    env = make_env(server)
    env.reset(seed=3)
    del server.shop.sessions[env._sid]
    with pytest.raises(RuntimeError, match="expired"):
        env.step("search[shampoo]")


def test_a_chunked_body_over_the_cap_is_refused(server):
    http = httpx.Client(base_url=server.url)
    http.get("/c1", params={"goal": 0})

    def chunks(total):  # no Content-Length: httpx sends Transfer-Encoding: chunked
        for _ in range(total // 4096):
            yield b"x" * 4096

    big = http.post("/buy/c1/" + server.shop.goals[0].asin, content=chunks(MAX_BODY + 8192))
    assert big.status_code == 413 and big.request.headers.get("transfer-encoding") == "chunked"
    assert not server.shop.sessions["c1"].done  # the purchase never reached the app
    small = http.post("/buy/c1/" + server.shop.goals[0].asin, content=chunks(8192))
    assert small.status_code == 200 and server.shop.sessions["c1"].done
    long_url = http.get("/item/c1/" + "A" * 10_000, params={"q": "x" * 60_000})  # path + query over 4 x the cap
    assert long_url.status_code == 413


def test_render_ansi_shows_the_page_text(server):
    env = make_env(server, render_mode="ansi")
    obs, _ = env.reset(seed=0)
    assert env.render() == obs["text"]
    assert make_env(server).render() is None
    with pytest.raises(ValueError, match="render_mode"):
        make_env(server, render_mode="rgb_array")
