#!/usr/bin/env bash
# Install Debian's WordNet 3.0 for METEOR when it is missing and we can (root + apt-get).
# nltk cannot download corpora offline; skinspector reads /usr/share/wordnet instead and
# generates the one file Debian does not ship (lexnames). Never fatal: without WordNet the
# METEOR tests skip with a reason and METEOR fails with a message saying how to install it.
set -u
WORDNET_DIR=/usr/share/wordnet
if [ -f "$WORDNET_DIR/data.noun" ] && [ -f "$WORDNET_DIR/index.sense" ]; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian's WordNet (wordnet-base, wordnet-sense-index) for METEOR..."
  (apt-get update -q \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
       wordnet-base wordnet-sense-index) >/tmp/skinspector-wordnet.log 2>&1 \
    || echo "could not install WordNet (see /tmp/skinspector-wordnet.log); METEOR tests will skip"
else
  echo "WordNet not found and not root: METEOR tests will skip" \
       "(sudo apt-get install wordnet-base wordnet-sense-index)"
fi
exit 0
