"""The clinic box: aiohttp app, case store, two-pass pipeline, mDNS, bundle activation."""
