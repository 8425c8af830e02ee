#!/bin/sh
# Smoke-test dist/sipdiag from a directory with no source tree and no venv, with a bare
# environment: --version, a host check whose JSON validates against the schema, explain 403,
# and a REGISTER attempt that proves the frozen SIP worker loads pjsua2 (nothing listens on the
# registrar port, so the check fails, but it must not skip or crash).
# Usage: packaging/smoke-onefile.sh [BINARY]   (needs python3 with jsonschema for validation)
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
binary=$(cd "$(dirname "${1:-$here/dist/sipdiag}")" && pwd)/$(basename "${1:-dist/sipdiag}")
validator=${SIPDIAG_VALIDATOR_PYTHON:-$here/.venv/bin/python}
case $validator in /*) ;; */*) validator=$PWD/$validator ;; esac  # still valid after the cd below
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$binary" "$work/sipdiag"
cd "$work"
run() { env -i PATH=/usr/bin:/bin HOME="$work" XDG_DATA_HOME="$work/data" ./sipdiag "$@"; }

run --version | grep -qx "sipdiag [0-9][0-9.]*"
run schema > schema.json
run check --only host --format json > report.json
"$validator" -c 'import json, sys, jsonschema
jsonschema.validate(json.load(open(sys.argv[1])), json.load(open(sys.argv[2])))' report.json schema.json
run explain 403 | grep -q "SIP 403"
run report --out report.html && grep -q "<!doctype html>" report.html

# The frozen SIP worker: pjsua2 loads and answers (port 9 on loopback: refused or silent).
set +e
env -i PATH=/usr/bin:/bin HOME="$work" XDG_DATA_HOME="$work/data" SIPDIAG_PASSWORD=smoke \
  ./sipdiag check --only sip.register --registrar 127.0.0.1:9 --user smoke --timeout 4 \
  --format json > sip.json
set -e
"$validator" -c 'import json, sys
c = json.load(open(sys.argv[1]))["checks"][0]
assert c["id"] == "sip.register" and c["status"] == "fail", c
assert c["details"]["attempts"][0]["outcome"] in ("timeout", "refused"), c' sip.json
echo "smoke: one-file binary OK ($(run --version)) from $work without source or venv"
