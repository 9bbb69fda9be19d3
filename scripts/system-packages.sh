#!/usr/bin/env bash
# Debian packages the corpus builder and its tests use: speech engines with phone timings
# and the sentence sources. Installs only what is missing; needs root (or sudo).
set -euo pipefail
pkgs=(espeak-ng flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts festlex-cmu
      wordnet-base fortunes fortunes-min dict-gcide sox)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
[ ${#missing[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
  echo "note: not a Debian system; install ${missing[*]} yourself (corpus tests skip without them)" >&2
  exit 0
fi
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
