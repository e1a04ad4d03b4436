#!/usr/bin/env bash
# Install Debian's Chromium for the browser tests when it is missing and we can (root + apt).
# Never fatal: without Chromium the browser tests skip with a reason.
set -u
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian's chromium for the browser tests..."
  (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium) >/tmp/skinspector-chromium.log 2>&1 \
    || echo "could not install chromium (see /tmp/skinspector-chromium.log); browser tests will skip"
else
  echo "chromium not found and not root: browser tests will skip (apt-get install chromium)"
fi
exit 0
