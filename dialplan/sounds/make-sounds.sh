#!/bin/sh
# Regenerate the announcement sounds the dialplan plays (CALLROUTER_ANNOUNCE), with a
# synthetic voice: espeak-ng speaks, sox converts to what Asterisk's "wav" format reads
# (RIFF/WAVE, PCM, mono, 8000 Hz, 16-bit; formats/format_wav.c). Re-record them with a
# human voice for production; keep the names and the format.
#
#   apt-get install espeak-ng sox      # Debian
#   sh dialplan/sounds/make-sounds.sh  # writes dialplan/sounds/callrouter/*.wav
set -eu

here=$(cd "$(dirname "$0")" && pwd)
out="$here/callrouter"
voice=${VOICE:-en-us}
speed=${SPEED:-165}     # words per minute; espeak-ng's default (175) is hurried on a phone
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

say() {  # name text
    espeak-ng -v "$voice" -s "$speed" -w "$tmp/$1.raw.wav" "$2"
    # trim leading/trailing silence, telephone band, mono 8 kHz 16-bit, peak at -3 dBFS;
    # -D: no dither, so the same text gives the same bytes
    sox -D "$tmp/$1.raw.wav" -c 1 -b 16 -e signed-integer "$out/$1.wav" \
        silence 1 0.02 0.5% reverse silence 1 0.02 0.5% reverse \
        highpass 300 lowpass 3400 rate -v 8000 gain -n -3 pad 0.1 0.2
    sox --i "$out/$1.wav"
}

# The rules' defaults: announcement / specialist_announcement (callrouter.sample.toml)
say your-operator "Welcome back. We are connecting you to the operator you spoke with last time."
say your-specialist "Welcome back. We are connecting you to the specialist who knows your case."
