#!/usr/bin/env bash
# Make audio/demo/caller_message.wav: the message a remote caller leaves in `gatewayd demo`
# (and the speech of the recorder's tests). Same voice and format as audio/generate.sh:
# espeak-ng `fr` at 150 words per minute, 8 kHz 16-bit mono, 300-3400 Hz, -3 dBFS peak,
# silence trimmed then 20 ms lead-in and 100 ms tail. Idempotent (sox -R).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
text="Bonjour, c'est Paul. Rappelle-moi quand tu peux, s'il te plaît. À bientôt."
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
printf '%s\n' "$text" | espeak-ng -b 1 -v fr -s 150 --stdin -w "$tmp/speech.wav"
sox -R -V1 "$tmp/speech.wav" -r 8000 -b 16 -e signed-integer -c 1 -L "$tmp/out.wav" \
    silence 1 0.01 0.1% reverse silence 1 0.01 0.1% reverse \
    sinc 300-3400 rate 8000 gain -n -3 pad 0.02 0.1
cmp -s "$tmp/out.wav" "$here/caller_message.wav" || mv "$tmp/out.wav" "$here/caller_message.wav"
echo "$here/caller_message.wav"
