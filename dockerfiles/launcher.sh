#!/bin/sh
# fast-build: the action Run Command's script (hybrid profile), run by /bin/sh (dash on Ubuntu).
#
# The Linux extension puts each parameter in front of this text as an unquoted `export NAME=value`
# line and writes the result to a file it runs with /bin/sh: a value with a space, `&` or `;` (a
# SAS URL) would be cut or run as a command. So every value arrives base64url-encoded (padded;
# only A-Z a-z 0-9 - _ =, which survive unquoted) as FASTBUILD_B64_<NAME>, and build.sh itself as
# FASTBUILD_BUILD_SCRIPT_B64. Nothing is ever substituted into this text or build.sh's.
#
# 1. remove this file (it holds the prelude, with the secrets); 2. decode the values into the
# environment and drop the encoded copies; 3. run build.sh with bash; its exit status is ours.
set -eu

# 1. The extension runs <download dir>/script.sh; only ever remove an absolute path that is a file.
case "$0" in
  /*) if [ -f "$0" ]; then rm -f -- "$0"; fi ;;
esac

decode() {
  # A trailing x keeps trailing newlines through the command substitution.
  printf '%s' "$1" | tr -- '-_' '+/' | base64 -d
  printf x
}

work=$(mktemp -d)
chmod 700 "$work"
trap 'rm -rf -- "$work"' EXIT

# 2. Encoded values never hold a newline, so each is one line of `env`.
env | grep '^FASTBUILD_B64_[A-Z0-9_]*=' >"$work/encoded" || true
while IFS= read -r line; do
  encoded_name=${line%%=*}
  name=${encoded_name#FASTBUILD_B64_}
  value=$(decode "${line#*=}")
  unset "$encoded_name"
  case "$name" in
    '' | [0-9]* | *[!A-Z0-9_]*) continue ;;
  esac
  export "$name=${value%x}"
done <"$work/encoded"
rm -f -- "$work/encoded"

script=$(decode "${FASTBUILD_BUILD_SCRIPT_B64:-}")
unset FASTBUILD_BUILD_SCRIPT_B64
printf '%s' "${script%x}" >"$work/build.sh"

# 3. Not exec: the trap removes the decoded script when bash is done.
status=0
bash "$work/build.sh" || status=$?
exit "$status"
