"""The review hub: the dermatologists' server. It receives sealed cases from clinics, serves
the reviewers' web UI, seals each review back for its clinic and hosts the signed update
repository.

* :func:`~review_hub.app.create_hub_app` / :func:`~review_hub.server.start_hub`: the aiohttp
  service;
* :class:`~review_hub.store.HubStore`: its storage; :class:`~review_hub.settings.HubSettings`:
  its settings.

The wire protocol (envelopes, keys, request signing) belongs to :mod:`sync_agent`; the hub
imports it from there, never the other way round.
"""
