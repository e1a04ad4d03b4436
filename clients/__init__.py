"""Clients: the phone web app, the dermatologist review UI and a small Python client."""
