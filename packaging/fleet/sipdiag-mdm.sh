#!/bin/sh
# MDM wrapper (Jamf, Intune for Linux/macOS, cron): run `sipdiag check`, keep the last N JSON
# reports in a directory, and return sipdiag's exit code (0 ok, 1 checks failed, 64 usage,
# 70 internal, 130 interrupted).
#
# Usage: sipdiag-mdm.sh [-k KEEP] [-d DIR] [-b SIPDIAG] [-- CHECK-ARGS...]
#   -k KEEP     reports to keep (default 10)
#   -d DIR      where reports go (default: $HOME/sipdiag-reports)
#   -b SIPDIAG  the sipdiag program (default: sipdiag on PATH)
#   CHECK-ARGS  passed to `sipdiag check`, e.g. --profile /etc/sipdiag/profile.toml
set -u
keep=10
dir=${HOME:-/tmp}/sipdiag-reports
sipdiag=sipdiag
while [ $# -gt 0 ]; do
  case $1 in
    -k) keep=$2; shift 2 ;;
    -d) dir=$2; shift 2 ;;
    -b) sipdiag=$2; shift 2 ;;
    --) shift; break ;;
    *) break ;;
  esac
done
case $keep in
  ''|*[!0-9]*|0) echo "sipdiag-mdm: error: -k needs a positive number, got '$keep'" >&2; exit 64 ;;
esac
mkdir -p "$dir" || exit 70

stamp=$(date -u +%Y%m%dT%H%M%SZ)
out="$dir/sipdiag-$stamp-$$.json"
"$sipdiag" check --quiet --format json --out "$out" "$@" > /dev/null
code=$?

# Keep the newest $keep reports (names sort by time: sipdiag-YYYYmmddTHHMMSSZ-PID.json).
ls -1 "$dir" | grep '^sipdiag-[0-9TZ]*-[0-9]*\.json$' | sort -r | awk -v k="$keep" 'NR > k' |
  while IFS= read -r old; do rm -f "$dir/$old"; done
exit "$code"
