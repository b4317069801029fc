"""Security of the served app: who may log in, and what a request may do before it reaches Gradio.

Owns: `accounts` (the users file: scrypt hashes, admins, adding and removing users) and `guard` (the ASGI
middleware in front of the app: login throttling, allowed hosts and origins, the file routes, per-user
limits on events and uploads).
Ignores: what a logged-in user may see of the data (the service checks ownership on every call).
"""
