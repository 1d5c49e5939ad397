#!/usr/bin/env bash
# Real-terminal check: drive the installed `opsconsole` in tmux (send-keys / capture-pane).
# Starts `opsconsole --simulate healthy-8xh100` at 120x40 and 80x24, switches through every
# screen, asserts what each shows, quits with `q` and checks the exit status.
#   usage: tests/tui/tmux_check.sh [path/to/opsconsole]      exit 0 ok, 1 failed, 77 skipped (no tmux)
set -u
OPSCONSOLE=${1:-${OPSCONSOLE:-opsconsole}}
if ! command -v tmux >/dev/null 2>&1; then echo "SKIP: tmux is not installed"; exit 77; fi
if ! command -v "$OPSCONSOLE" >/dev/null 2>&1 && [ ! -x "$OPSCONSOLE" ]; then
  echo "FAIL: $OPSCONSOLE not found (pip install the package, or pass its path)"; exit 1
fi
work=$(mktemp -d)
sock="opsconsole-check-$$"
trap 'tmux -L "$sock" kill-server >/dev/null 2>&1; rm -rf "$work"' EXIT
export XDG_CONFIG_HOME="$work/config" XDG_STATE_HOME="$work/state" XDG_CACHE_HOME="$work/cache"
failures=0

capture() { tmux -L "$sock" capture-pane -p -t check; }

# wait_for TEXT [SECONDS]: poll the pane until TEXT shows
wait_for() {
  local text=$1 deadline=$((SECONDS + ${2:-15}))
  while [ $SECONDS -lt $deadline ]; do
    if capture | grep -qF -- "$text"; then return 0; fi
    sleep 0.2
  done
  echo "FAIL [$size]: '$text' not shown; the pane was:"; capture | sed 's/^/    | /'
  failures=$((failures + 1)); return 1
}

press() { tmux -L "$sock" send-keys -t check "$@"; }

for size in 120x40 80x24; do
  width=${size%x*}; height=${size#*x}
  rm -f "$work/exit"
  tmux -L "$sock" new-session -d -s check -x "$width" -y "$height" \
    "env TERM=xterm-256color $OPSCONSOLE --simulate healthy-8xh100; echo \$? > $work/exit; sleep 60"
  wait_for "dgx-h100-07" 20 && wait_for "H100 80GB HBM3" && wait_for "Processes" && wait_for "Kill process"
  press 2; wait_for "Log (paste"
  press 3; wait_for "KB:"
  press 4; wait_for "Playbooks (1"
  press 5; wait_for "Runs ("
  press 6; wait_for "CUDA environment"
  press '?'; wait_for "opsconsole — keys"
  press 1; wait_for "Processes"
  lines=$(capture | wc -l)
  [ "$lines" -eq "$height" ] || { echo "FAIL [$size]: pane has $lines lines, want $height"; failures=$((failures + 1)); }
  press q
  deadline=$((SECONDS + 10))
  while [ ! -s "$work/exit" ] && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
  status=$(cat "$work/exit" 2>/dev/null || echo "none")
  if [ "$status" != "0" ]; then
    echo "FAIL [$size]: q did not exit cleanly (exit status: $status)"; capture | sed 's/^/    | /'
    failures=$((failures + 1))
  else
    echo "ok [$size]: every screen shown, q exited 0"
  fi
  tmux -L "$sock" kill-session -t check >/dev/null 2>&1
done
[ $failures -eq 0 ] && echo "tmux check passed" || echo "tmux check: $failures failure(s)"
[ $failures -eq 0 ]
