"""Running the clinic box unattended: systemd units, readiness/watchdog notifications,
the ``doctor`` health checks, and encrypted backups to an offline recovery key."""
