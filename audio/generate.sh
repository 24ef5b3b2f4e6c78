#!/usr/bin/env bash
# Regenerate the prompt WAVs (audio/<lang>/<id>.wav) from audio/prompts.toml.
#
# Usage: audio/generate.sh [--out DIR] [ID...]
#   --out DIR  write DIR/<lang>/<id>.wav instead of next to this script
#   ID...      only these prompt ids (default: every id of prompts.toml)
#
# Needs python3 (>= 3.11, for tomllib), espeak-ng and sox (Debian: apt-get install espeak-ng sox).
# The box itself needs none of them: the WAVs are committed.
#
# Format (what gatewayd/prompts.py accepts): WAV, 8000 Hz, 16-bit signed little-endian, mono,
# band-limited to 300-3400 Hz (the telephone band), silence trimmed at both ends then a fixed
# 20 ms lead-in and 100 ms tail (so prompts played back to back, like the read-back digits, stay
# distinct), peak normalised to -3 dBFS.
#
# Idempotent: sox runs in repeatable mode (fixed dither seed), and a file whose bytes would not
# change is left alone. A full run also deletes WAVs whose id is no longer in the catalogue.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
catalogue="$here/prompts.toml"
out="$here"
# espeak-ng words per minute: a little slower than its default 175, for a phone line.
speed=150

if [ "${1:-}" = "--out" ]; then
    [ $# -ge 2 ] || { echo "generate.sh: --out needs a directory" >&2; exit 2; }
    out="$2"
    shift 2
fi

for tool in python3 espeak-ng sox; do
    if ! command -v "$tool" >/dev/null; then
        echo "generate.sh: $tool not found; on Debian: apt-get install espeak-ng sox" >&2
        exit 1
    fi
done

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# One "lang<TAB>id<TAB>text" line per WAV to make; tomllib checks the catalogue's syntax.
python3 - "$catalogue" "$@" >"$tmp/jobs.tsv" <<'PY'
import re
import sys
import tomllib

path, wanted = sys.argv[1], sys.argv[2:]
with open(path, "rb") as f:
    catalogue = tomllib.load(f)
unknown = [i for i in wanted if i not in catalogue]
if unknown:
    sys.exit(f"generate.sh: {path}: no prompt id {', '.join(unknown)}")
for prompt_id in wanted or catalogue:
    texts = catalogue[prompt_id]
    if not re.fullmatch(r"[a-z0-9_]+", prompt_id) or not isinstance(texts, dict):
        sys.exit(f"generate.sh: {path}: [{prompt_id}] must be a table named with a-z, 0-9, _")
    for lang, text in texts.items():
        if not re.fullmatch(r"[a-z]{2,3}", lang) or not isinstance(text, str) or not text.strip():
            sys.exit(f"generate.sh: {path}: [{prompt_id}] {lang} must be a non-empty text")
        if "\t" in text or "\n" in text:
            sys.exit(f"generate.sh: {path}: [{prompt_id}] {lang} must be one line")
        print(f"{lang}\t{prompt_id}\t{text}")
PY

made=0
kept=0
while IFS=$'\t' read -r lang prompt_id text; do
    mkdir -p "$out/$lang"
    target="$out/$lang/$prompt_id.wav"
    printf '%s\n' "$text" | espeak-ng -b 1 -v "$lang" -s "$speed" --stdin -w "$tmp/speech.wav"
    # Trim first so normalisation sees only speech; band-limit before resampling to 8 kHz.
    sox -R -V1 "$tmp/speech.wav" -r 8000 -b 16 -e signed-integer -c 1 -L "$tmp/prompt.wav" \
        silence 1 0.01 0.1% reverse silence 1 0.01 0.1% reverse \
        sinc 300-3400 rate 8000 gain -n -3 pad 0.02 0.1
    if cmp -s "$tmp/prompt.wav" "$target"; then
        kept=$((kept + 1))
    else
        mv "$tmp/prompt.wav" "$target"
        made=$((made + 1))
    fi
    printf '%s\n' "$target" >>"$tmp/written"
done <"$tmp/jobs.tsv"

removed=0
if [ $# -eq 0 ]; then
    # Only the catalogue's language folders: --out may name a folder holding other files.
    for lang in $(cut -f1 "$tmp/jobs.tsv" | sort -u); do
        for wav in "$out/$lang/"*.wav; do
            [ -e "$wav" ] || continue
            if ! grep -qxF "$wav" "$tmp/written"; then
                rm -- "$wav"
                echo "removed $wav (not in prompts.toml)"
                removed=$((removed + 1))
            fi
        done
    done
fi

echo "generate.sh: $made written, $kept unchanged, $removed removed, in $out"
