"""The edge server's real-server fixtures, for the full sync loop."""

from tests.edge_server.conftest import demo_bundle, live_server_factory  # noqa: F401
