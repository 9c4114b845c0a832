#!/usr/bin/env bash
# Takes the README screenshot (assets/screenshot.png): two instances of the
# app, Alice and Sam, each with its own node, in a room with Kim (a headless
# daemon), chatting, on a virtual X server. Everything runs inside a private
# network namespace (`unshare -rn`) whose loopback carries mDNS, so names
# are announced as on a LAN and nothing leaves the machine.
#
# Needs: xvfb, openbox (a window manager, so that typed keys reach the
# focused window), xdotool, imagemagick, and a debug build (`cargo build`).
# Usage: scripts/screenshot.sh [OUT.png]   (default: assets/screenshot.png)
# The click positions assume the default layout at 1020x700 per window.
set -euo pipefail

inside() {
  cd "$WORK"
  ip link set lo up multicast on
  ip route add 224.0.0.0/4 dev lo
  export XDG_RUNTIME_DIR=$WORK/xdg DISPLAY=:77 KITH_PASSPHRASE='correct horse battery'
  mkdir -m 700 "$XDG_RUNTIME_DIR"
  Xvfb :77 -screen 0 2060x720x24 -nolisten tcp >/dev/null 2>&1 &
  pids=($!)
  trap 'kill "${pids[@]}" 2>/dev/null; wait' EXIT
  sleep 1
  openbox >/dev/null 2>&1 &
  pids+=($!)
  # Read before the apps start: an open account is locked to its process.
  declare -A key id
  for n in alice sam kim; do
    key[$n]=$("$KITH" --data $n id | awk '/public key/{print $3}')
    id[$n]=$("$KITH" --data $n id | awk '/peer id/{print $3}')
  done
  peer() { echo "--peer ${key[$1]}@127.0.0.1:$2"; }
  # shellcheck disable=SC2046
  "$KITH" --data kim daemon --listen 127.0.0.1:47003 --interface lo --name Kim \
    --accept-invites $(peer alice 47001) $(peer sam 47002) >/dev/null 2>&1 &
  pids+=($!)
  # shellcheck disable=SC2046
  "$KITH" --data alice app --listen 127.0.0.1:47001 --interface lo \
    $(peer sam 47002) $(peer kim 47003) >/dev/null 2>&1 &
  pids+=($!)
  sleep 2
  # shellcheck disable=SC2046
  "$KITH" --data sam app --listen 127.0.0.1:47002 --interface lo \
    $(peer alice 47001) $(peer kim 47003) >/dev/null 2>&1 &
  pids+=($!)
  sleep 6
  mapfile -t windows < <(xdotool search --name kith)
  xdotool windowmove "${windows[0]}" 0 0 windowsize "${windows[0]}" 1020 700
  xdotool windowmove "${windows[1]}" 1030 0 windowsize "${windows[1]}" 1020 700
  room=$("$KITH" --data alice room create kitchen --member "${id[sam]}" --member "${id[kim]}")
  sleep 2
  "$KITH" --data sam room accept "$room" >/dev/null
  sleep 3
  # Alice's window is at x 0, Sam's at x 1030; the top room row is at
  # y 84 and the composer at y 683.
  say() {
    xdotool mousemove "$(($1 + 600))" 683 click 1
    sleep 0.5
    xdotool type --delay 25 "$2"
    xdotool key Return
    sleep 2
  }
  xdotool mousemove 1067 84 click 1
  sleep 1
  say 1030 "dinner at 8?"
  "$KITH" --data kim send --to "$room" "count me in, I'll make soup" >/dev/null
  sleep 2
  xdotool mousemove 37 84 click 1
  sleep 1
  say 0 "works for me. I'll bring bread"
  say 1030 "perfect, see you all at 8"
  sleep 1
  xdotool mousemove 900 400
  sleep 1
  import -window root "$OUT"
  echo "wrote $OUT"
}

if [[ ${INSIDE:-} == 1 ]]; then
  inside
  exit
fi
repo=$(cd "$(dirname "$0")/.." && pwd)
out=$(realpath -m "${1:-$repo/assets/screenshot.png}")
kith=$(realpath "${KITH_BIN:-${CARGO_TARGET_DIR:-$repo/target}/debug/kith}")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export KITH_PASSPHRASE='correct horse battery'
for n in alice sam kim; do
  "$kith" --data "$work/$n" init >/dev/null
done
echo -n Alice >"$work/alice/display-name"
echo -n Sam >"$work/sam/display-name"
INSIDE=1 WORK="$work" OUT="$out" KITH="$kith" unshare -rn bash "$0"
