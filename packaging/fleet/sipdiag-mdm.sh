#!/bin/sh
# MDM wrapper (Jamf, Intune for Linux/macOS, cron): run `sipdiag check`, keep the last N JSON
# reports in a directory, and return sipdiag's exit code (0 ok, 1 checks failed, 64 usage,
# 70 internal, 130 interrupted).
#
# Usage: sipdiag-mdm.sh [-k KEEP] [-d DIR] [-b SIPDIAG] [-w] [-- CHECK-ARGS...]
#   -k KEEP     reports to keep (default 10)
#   -d DIR      where reports go (default: $HOME/sipdiag-reports)
#   -b SIPDIAG  the sipdiag program (default: sipdiag on PATH)
#   -w          also install the `sipdiag watch` systemd user service (Linux; or WATCH=1):
#               run as root, for every user from their next login (/etc/systemd/user,
#               `systemctl --global enable`); run as the agent, for them now
#               (~/.config/systemd/user, `systemctl --user`). Rewritten and restarted only
#               when it changed, so a daily policy may pass -w every time.
#               WATCH_SCOPE=user|global and WATCH_UNIT_DIR override the two choices.
#   CHECK-ARGS  passed to `sipdiag check`, e.g. --profile /etc/sipdiag/profile.toml
set -u
keep=10
dir=${HOME:-/tmp}/sipdiag-reports
sipdiag=sipdiag
watch=${WATCH:-0}
while [ $# -gt 0 ]; do
  case $1 in
    -k) keep=$2; shift 2 ;;
    -d) dir=$2; shift 2 ;;
    -b) sipdiag=$2; shift 2 ;;
    -w) watch=1; shift ;;
    --) shift; break ;;
    *) break ;;
  esac
done
case $keep in
  ''|*[!0-9]*|0) echo "sipdiag-mdm: error: -k needs a positive number, got '$keep'" >&2; exit 64 ;;
esac

# The unit as packaging/fleet/systemd/sipdiag-watch.service has it (a test keeps them equal),
# with @SIPDIAG@ for the program's absolute path.
watch_unit() {
  cat <<'UNIT'
# A systemd *user* service: `sipdiag watch` follows the agent through the shift in their own
# session (the audio checks need its sound server, the keyring its login) and appends a timeline
# under ~/.local/share/sipdiag/timelines; `sipdiag report TIMELINE.jsonl` summarises it.
# Install: see packaging/README.md ("systemd"). Settings (agent id, SIP URI, registrar) in
# ~/.config/sipdiag/profile.toml; the SIP password, if the watch needs one, in the OS keyring
# (pip install 'sipdiag[keyring]') or in ~/.config/sipdiag/env as SIPDIAG_PASSWORD=...
# (mode 0600): never on the ExecStart line, where `ps` and `systemctl status` show it.
[Unit]
Description=sipdiag watch: the softphone's registration, inbound path, quality and audio devices
Documentation=man:systemd.service(5)
After=pipewire-pulse.service pulseaudio.service

[Service]
Type=exec
EnvironmentFile=-%h/.config/sipdiag/env
ExecStart=@SIPDIAG@ watch --quiet --profile %h/.config/sipdiag/profile.toml --interval 60
# SIGTERM (systemctl --user stop, logout, shutdown) is what stops the watch cleanly: it writes
# the timeline's end line (reason "terminated"), removes a test binding of its own and exits 0.
# Sent to the watch alone (mixed), so it stops its own SIP worker after un-REGISTERing.
KillSignal=SIGTERM
KillMode=mixed
TimeoutStopSec=30
Restart=on-failure
RestartSec=30
# 64: a usage error (a missing or invalid profile) that restarting cannot mend.
RestartPreventExitStatus=64
NoNewPrivileges=yes

[Install]
WantedBy=default.target
UNIT
}

install_watch() {
  command -v systemctl > /dev/null 2>&1 ||
    { echo "sipdiag-mdm: error: -w needs systemd (systemctl not found)" >&2; return 64; }
  exe=$(command -v "$sipdiag") ||
    { echo "sipdiag-mdm: error: -w: no program '$sipdiag'" >&2; return 64; }
  case $exe in /*) ;; *) exe=$(pwd)/$exe ;; esac
  scope=${WATCH_SCOPE:-}
  [ -n "$scope" ] || { [ "$(id -u)" -eq 0 ] && scope=global || scope=user; }
  case $scope in
    global) unit_dir=${WATCH_UNIT_DIR:-/etc/systemd/user} ;;
    user) unit_dir=${WATCH_UNIT_DIR:-${XDG_CONFIG_HOME:-$HOME/.config}/systemd/user} ;;
    *) echo "sipdiag-mdm: error: WATCH_SCOPE must be user or global, got '$scope'" >&2
       return 64 ;;
  esac
  unit=$unit_dir/sipdiag-watch.service
  mkdir -p "$unit_dir" || return 70
  escaped=$(printf '%s\n' "$exe" | sed 's/[#&\\]/\\&/g')  # as sed's replacement text
  watch_unit | sed "s#@SIPDIAG@#$escaped#" > "$unit.tmp.$$" ||
    { rm -f "$unit.tmp.$$"; return 70; }
  if cmp -s "$unit.tmp.$$" "$unit"; then
    rm -f "$unit.tmp.$$"; changed=0
  else
    mv "$unit.tmp.$$" "$unit" || return 70; changed=1
  fi
  if [ "$scope" = global ]; then  # no user manager to talk to: each starts it at login
    systemctl --global enable sipdiag-watch.service || return 70
    return 0
  fi
  [ "$changed" -eq 0 ] || systemctl --user daemon-reload || return 70
  systemctl --user enable sipdiag-watch.service || return 70
  if [ "$changed" -eq 1 ]; then
    systemctl --user restart sipdiag-watch.service || return 70
  else
    systemctl --user start sipdiag-watch.service || return 70  # a no-op while it runs
  fi
}

if [ "$watch" = 1 ]; then
  install_watch || exit $?
fi
mkdir -p "$dir" || exit 70

stamp=$(date -u +%Y%m%dT%H%M%SZ)
out="$dir/sipdiag-$stamp-$$.json"
"$sipdiag" check --quiet --format json --out "$out" "$@" > /dev/null
code=$?

# Keep the newest $keep reports (names sort by time: sipdiag-YYYYmmddTHHMMSSZ-PID.json).
ls -1 "$dir" | grep '^sipdiag-[0-9TZ]*-[0-9]*\.json$' | sort -r | awk -v k="$keep" 'NR > k' |
  while IFS= read -r old; do rm -f "$dir/$old"; done
exit "$code"
