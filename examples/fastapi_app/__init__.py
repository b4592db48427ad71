"""A FastAPI application beside hubbub: its own logins and session cookie, hubbub's connect and
publish proxies, webhooks that store the chat, and notices published with `hubbub.client.api`.

Run it from the repository root as its README.md says; `app.py` holds the routes, `accounts.py` the
users and the signed session cookie, `store.py` the messages the webhooks deliver.
"""
