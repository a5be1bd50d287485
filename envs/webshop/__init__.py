"""WebShop, groupwise's own implementation of the task (issue 6, in progress).

- `reward`: WebShop's purchase score (product type, attributes, options, price), as WebShop computes it.
- `nouns`: the title nouns the score compares: spaCy's (the `webshop-exact` extra) or content words.
- `catalog`: generated products and goals (synthetic and human-style), and WebShop's own files.
- `search`: BM25 product search (bm25s), cached on disk per catalog.
- `site`: the web site (FastAPI + uvicorn on 127.0.0.1): search, results, item, tabs, buy.
- `text`: pages as WebShop's simplified text with their clickables, and the scripted shopper.
- `env`: the `webshop` environment (text mode).

Still to come: browser mode (Playwright + Chromium), one server shared by an EnvPool.
"""
