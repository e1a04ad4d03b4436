"""mDNS (DNS-SD) for the clinic box: names, settings, the LAN addresses, the announcer that
phones discover (`_skinspector._tcp`) and a browser for tests and tools."""
