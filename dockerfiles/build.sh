#!/usr/bin/env bash
# fast-build: the layered image build on the builder VM (run by Azure Run Command).
#
# Every value arrives as an environment variable (Run Command parameters); none is ever
# substituted into this text, and each is validated before anything runs.
#
# Required:
#   FASTBUILD_BUILD_ID            build id: lower-case letters, digits, - (also an image tag)
#   FASTBUILD_SOURCE_URL          https URL of the source archive (read SAS); http only to loopback
#     or FASTBUILD_SOURCE_PLAN_URL  https URL of the source plan (content-addressed source,
#                                 src/core/sourceManifest.ts SourcePlan); exactly one of the two
#   FASTBUILD_SOURCE_DIGEST       sha256:<64 hex> of the archive bytes, or of the plan's manifest text
#   FASTBUILD_REGISTRY            registry host[:port] in lower case, e.g. myreg.azurecr.io
#   FASTBUILD_IMAGE_REPOSITORY    app image repository, e.g. team/app
#   FASTBUILD_BASE_KEY            base image key (16-64 hex), computed by the upload command
#   FASTBUILD_BINARY_NAME         cargo binary to build and package (BINARY_NAME build arg); optional
#                                 only with the project's own Dockerfiles (FASTBUILD_DOCKERFILE_BASE/APP)
#   FASTBUILD_EXTRACTOR_B64       safe_extract.py, base64 (no line breaks): the activity sends it
#                                 with each build, since it runs before the archive is opened and an
#                                 archive must never bring its own extractor. Optional only when
#                                 build.sh is run by hand next to its safe_extract.py.
# Optional:
#   FASTBUILD_SOURCE_MAX_BYTES    archive size limit, or compressed bytes of the packs a plan build
#                                 fetches (default 536870912)
#   FASTBUILD_CONTENT_CACHE_MAX_BYTES  plan builds: bytes of contents the builder keeps between
#                                 builds in $FASTBUILD_WORK_ROOT/content (default in safe_extract.py
#                                 and src/core/extractLimits.ts CONTENT_CACHE_LIMIT: 8 GiB)
#   FASTBUILD_EXTRACT_MAX_BYTES / _MAX_FILES / _MAX_FILE_BYTES / _MAX_PATH_BYTES / _MAX_LINKS /
#   FASTBUILD_EXTRACT_MAX_LINK_DEPTH   extraction limits (safe_extract.py; the activity sends every
#                                 one, from the app's settings: src/core/extractLimits.ts)
#   FASTBUILD_REBUILD_BASE        true|false (default false): build the base even if the registry has it
#   FASTBUILD_COMMIT              git commit (hex), also an image tag commit-<hex>
#   FASTBUILD_BASE_REPOSITORY     base image repository (default <image repository>-base)
#   FASTBUILD_TOOLCHAIN_IMAGE     RUST_IMAGE build arg; FASTBUILD_RUNTIME_IMAGE  RUNTIME_IMAGE build arg
#   FASTBUILD_CARGO_PROFILE (release) / FASTBUILD_CARGO_FEATURES / FASTBUILD_CARGO_TARGET
#   FASTBUILD_CALLBACK_URL + FASTBUILD_CALLBACK_TOKEN   POST heartbeats and the result JSON,
#                                 header x-fastbuild-token; FASTBUILD_HEARTBEAT_SECONDS (30)
#   FASTBUILD_WORK_ROOT           per-build workspaces live under it (default /var/lib/fastbuild)
#   FASTBUILD_DOCKERFILE_BASE + FASTBUILD_DOCKERFILE_APP  the project's own Dockerfiles (fast-build.toml
#                                 [docker] base/app): paths inside the source tree, relative to its root
#                                 (src/core/rules.ts PROJECT_PATH), both or neither; they win over
#                                 FASTBUILD_DOCKERFILES_DIR and the archive's .fastbuild/kit/
#   FASTBUILD_PORT                the port the container listens on (PORT build arg of Dockerfile.app)
#   FASTBUILD_DOCKERFILES_DIR     folder with Dockerfile.base / Dockerfile.app: a machine-level
#                                 override (stand-in Dockerfiles of the local builder and tests).
#                                 Default: the archive's .fastbuild/kit/, the very bytes the upload
#                                 command hashed into the base key.
#   FASTBUILD_READY_MARKER        file cloud-init writes when the builder's tools are installed
#                                 (default /var/lib/fast-build/ready); the build waits for it
#   FASTBUILD_READY_TIMEOUT_SECONDS  how long to wait for it (default 600)
#   FASTBUILD_CONTAINER_CLI       container CLI and its global flags (default docker; the local
#                                 builder's "…/docker-on-buildah.sh --storage-driver vfs --root R
#                                 --runroot R2" is buildah with docker's command line, cache flags too)
#   FASTBUILD_BUILD_EXTRA_ARGS    extra build flags (e.g. "--isolation chroot --tls-verify=false")
#   FASTBUILD_PUSH_EXTRA_ARGS     extra push flags (e.g. "--tls-verify=false")
#   FASTBUILD_REGISTRY_LOGIN      acr-identity (default: az login --identity, ACR token) | none
#   FASTBUILD_IDENTITY_CLIENT_ID  user-assigned identity for acr-identity
#   FASTBUILD_REGISTRY_SCHEME     https (default) | http (loopback registries only)
#   FASTBUILD_KEEP_WORKSPACE      true: keep the extracted tree (debugging)
#   FASTBUILD_REGISTRY_CACHE      true (default) | false: the shared registry cache (below)
#   FASTBUILD_BRANCH              the build's git branch (the API's branch rule): picks the app
#                                 stage's cache tag; absent, the default branch's
#
# The shared registry cache (src/core/rules.ts registryCacheRefs, the same refs): every builder
# reads and writes BuildKit's registry cache in <registry>/<repository>-cache, so a builder that
# never built the project starts from the layers another one pushed. The base stage uses tag
# base-<base key>; the app stage reads app-<branch tag> and then app-main (a new branch starts
# warm) and writes app-<branch tag>. A miss or an unreachable cache never fails a build: a build
# that fails because of the cache is built again without it. The log says what was reused
# ("cache: reused N layers from <ref>").
#
# Exit codes (src/core/buildResult.ts EXIT_CODES): 0 ok (built or skipped), 1 internal,
# 2 usage, 10 download, 11 extract (refused input), 12 login, 13 kit (the archive has no
# Dockerfiles), 14 not-ready (the builder's setup never finished), 20 base build, 21 app build,
# 22 push.
# The last line of output is the result JSON: {"fastbuild":"result","version":1,...}, kept under
# 1 KB (the instance view keeps only the last 4 KB of output); the callback POST of the same
# result also carries the log tail.
set -euo pipefail
umask 022
export LC_ALL=C
# BuildKit is needed for RUN --mount=type=cache (default in current docker; harmless for buildah).
export DOCKER_BUILDKIT=1

readonly EXIT_INTERNAL=1 EXIT_USAGE=2 EXIT_DOWNLOAD=10 EXIT_EXTRACT=11 EXIT_LOGIN=12
readonly EXIT_KIT=13 EXIT_NOT_READY=14 EXIT_BASE=20 EXIT_APP=21 EXIT_PUSH=22
readonly ACR_TOKEN_USER=00000000-0000-0000-0000-000000000000
readonly MANIFEST_ACCEPT="application/vnd.oci.image.index.v1+json,application/vnd.oci.image.manifest.v1+json,application/vnd.docker.distribution.manifest.list.v2+json,application/vnd.docker.distribution.manifest.v2+json"

# Only when run from a file (by hand, tests): Run Command hands bash the text, BASH_SOURCE is empty,
# and the working folder is then no place to look for anything.
SCRIPT_DIR=""
if [ -f "${BASH_SOURCE[0]:-}" ]; then SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd); fi
STARTED_MS=$(date +%s%3N)
STEP=validate
RESULT_SENT=false
PRIVATE_DIR=$(mktemp -d)
chmod 700 "$PRIVATE_DIR"
TIMINGS_FILE="$PRIVATE_DIR/timings"
: >"$TIMINGS_FILE"
STEP_LOG="$PRIVATE_DIR/step.log"
: >"$STEP_LOG"
HEARTBEAT_PID=""
BUILD_DIR=""

log() {
  printf '%s fastbuild[%s] %s\n' "$(date -u +%H:%M:%S)" "$STEP" "$*"
}

# Every curl here runs with --globoff: curl would otherwise read {} and [] in a URL (a SAS, an IPv6
# callback host such as [::1]) as its own URL globs and fetch something else.
post_callback() { # post_callback FILE RETRIES
  curl --globoff --fail --silent --show-error --max-time 15 --retry "$2" --retry-delay 1 \
    -H @"$PRIVATE_DIR/callback-headers" -H 'content-type: application/json' \
    --data-binary @"$1" "$FASTBUILD_CALLBACK_URL" >/dev/null
}

# Heartbeats: best effort, never fail the build.
heartbeat_loop() {
  local every=${FASTBUILD_HEARTBEAT_SECONDS:-30} step
  while sleep "$every"; do
    step=$(cat "$PRIVATE_DIR/current-step" 2>/dev/null || echo unknown)
    printf '{"fastbuild":"heartbeat","version":1,"buildId":"%s","step":"%s","elapsedMs":%s}' \
      "$BUILD_ID" "$step" "$(($(date +%s%3N) - STARTED_MS))" >"$PRIVATE_DIR/heartbeat.json"
    post_callback "$PRIVATE_DIR/heartbeat.json" 0 2>/dev/null || true
  done
}
stop_heartbeat() {
  if [ -n "$HEARTBEAT_PID" ]; then
    kill "$HEARTBEAT_PID" 2>/dev/null || true
    wait "$HEARTBEAT_PID" 2>/dev/null || true
    HEARTBEAT_PID=""
  fi
}

# json_text TEXT: TEXT as a JSON string, for the result line of last resort (no python3).
json_text() {
  local text
  text=$(printf '%s' "$1" | tr -d '\000-\037' | cut -c1-300)
  text=${text//\\/\\\\}
  printf '"%s"' "${text//\"/\\\"}"
}

# finish STATUS REASON CODE [kind:key=value …]: prints the one result line (and posts it), then exits.
# The JSON is built by python3 from argv, so no value needs escaping here. Two forms: the printed
# line stays under 1 KB (the instance view, read when the callback is lost, keeps only the last
# 4 KB of output), so it has no log tail and bounded texts; the callback POST adds the log tail.
finish() {
  local status=$1 reason=$2 code=$3
  shift 3
  RESULT_SENT=true
  printf 'total %s\n' "$(($(date +%s%3N) - STARTED_MS))" >>"$TIMINGS_FILE"
  local json
  json=$(python3 - "$status" "$reason" "$code" "${FASTBUILD_BUILD_ID_SAFE:-}" "$TIMINGS_FILE" \
    "$PRIVATE_DIR/result.json" "$@" <<'PY'
import json, re, sys
status, reason, code, build_id, timings_path, posted_path = sys.argv[1:7]
LINE_LIMIT = 1000
result = {"fastbuild": "result", "version": 1, "buildId": build_id, "status": status,
          "exitReason": reason, "exitCode": int(code), "skipped": False, "timings": {}}
ansi = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
tail = None
for arg in sys.argv[7:]:
    key, _, value = arg.partition("=")
    kind, _, name = key.partition(":")
    if kind == "bool":
        result[name] = value == "true"
    elif kind == "int":
        if value.lstrip("-").isdigit():
            result[name] = int(value)
    elif kind == "tail":
        try:
            with open(value, encoding="utf-8", errors="replace") as f:
                tail = [ansi.sub("", l.rstrip("\n"))[:500] for l in f.readlines()[-40:]]
        except OSError:
            pass
    elif kind == "str":
        if value != "":
            result[name] = value
    elif kind == "list":
        result[name] = [v for v in value.split(",") if v]
with open(timings_path) as f:
    for line in f:
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            result["timings"][parts[0]] = int(parts[1])

def clip(fields, limits):
    for name, limit in limits:
        if len(fields.get(name, "")) > limit:
            fields[name] = fields[name][: limit - 3] + "..."

def size(fields):
    return len(json.dumps(fields, separators=(",", ":")).encode())

posted = dict(result)
clip(posted, [("message", 4000), ("failedInstruction", 500)])
if tail is not None:
    posted["logTail"] = tail
with open(posted_path, "w") as f:
    json.dump(posted, f, separators=(",", ":"))
# The printed line: bounded texts; past the limit the details the log and the callback keep give
# way (image, digest, exit codes and the failed step always stay: the orchestrator needs them).
line = dict(result)
clip(line, [("message", 300), ("failedInstruction", 200), ("failedStep", 40)])
for drop in ("tags", "baseImage", "timings"):
    if size(line) > LINE_LIMIT and drop in line:
        if drop == "timings":
            line["timings"] = {}
        else:
            del line[drop]
if size(line) > LINE_LIMIT:
    clip(line, [("message", 80), ("failedInstruction", 40)])
print(json.dumps(line, separators=(",", ":")))
PY
  ) || {
    # python3 missing or broken (e.g. the builder's setup never finished): a plainer line, still
    # this build's, with the reason.
    local message="" arg
    for arg in "$@"; do [[ $arg != str:message=* ]] || message=${arg#str:message=}; done
    json="{\"fastbuild\":\"result\",\"version\":1,\"buildId\":\"${FASTBUILD_BUILD_ID_SAFE:-}\",\"status\":\"$status\",\"exitReason\":\"$reason\",\"exitCode\":$code,\"skipped\":false,\"timings\":{},\"failedStep\":\"$STEP\",\"message\":$(json_text "$message")}"
    printf '%s' "$json" >"$PRIVATE_DIR/result.json"
  }
  stop_heartbeat
  if [ -n "${FASTBUILD_CALLBACK_URL:-}" ] && [ -n "${CALLBACK_OK:-}" ]; then
    post_callback "$PRIVATE_DIR/result.json" 3 || log "could not post the result to the callback (the output keeps it)"
  fi
  printf '%s\n' "$json"
  exit "$code"
}

fail() { # fail REASON CODE MESSAGE [extra key=value …]
  local reason=$1 code=$2 message=$3
  shift 3
  log "FAILED: $message"
  finish failed "$reason" "$code" "str:failedStep=$STEP" "str:message=$message" "$@"
}

# shellcheck disable=SC2317 # invoked by the EXIT trap
cleanup() {
  local rc=$?
  if [ "$RESULT_SENT" != true ]; then
    # An unexpected failure (a bug, or a command outside the checked paths): still end with a result.
    RESULT_SENT=true
    (fail internal "$EXIT_INTERNAL" "unexpected failure (exit $rc) in step $STEP" "tail:logTail=$STEP_LOG") || true
    rc=$EXIT_INTERNAL
  fi
  stop_heartbeat
  if [ -n "$BUILD_DIR" ] && [ "${FASTBUILD_KEEP_WORKSPACE:-false}" != true ]; then rm -rf "$BUILD_DIR"; fi
  rm -rf "$PRIVATE_DIR"
  exit "$rc"
}
trap cleanup EXIT

begin() { # begin STEP: marks the start of a timed step
  STEP=$1
  STEP_STARTED_MS=$(date +%s%3N)
  printf '%s' "$STEP" >"$PRIVATE_DIR/current-step"
  : >"$STEP_LOG"
  log "begin"
}

end() {
  local ms=$(($(date +%s%3N) - STEP_STARTED_MS))
  printf '%s %s\n' "$STEP" "$ms" >>"$TIMINGS_FILE"
  log "done in ${ms} ms"
}

# run_logged CMD…: runs a command, streaming its output to the log and keeping it for the tail.
run_logged() {
  local rc=0
  "$@" 2>&1 | tee -a "$STEP_LOG" || rc=${PIPESTATUS[0]}
  return "$rc"
}

# ---------------------------------------------------------------- validation
# The patterns of the values the app sends are the ones in src/core/rules.ts (this script travels
# as text through Run Command, so it keeps its own copy); test/dockerfiles/rules.test.ts runs one
# table of values through both, so a value the app accepts is never refused here.
problems=()
need() { # need NAME REGEX WHAT-TO-DO
  local value=${!1:-}
  if [ -z "$value" ]; then
    problems+=("$1 is not set: $3")
  elif ! [[ $value =~ $2 ]]; then
    problems+=("$1 is invalid: $3")
  fi
}
optional() { # optional NAME REGEX WHAT-TO-DO
  local value=${!1:-}
  if [ -n "$value" ] && ! [[ $value =~ $2 ]]; then problems+=("$1 is invalid: $3"); fi
}

# Patterns checked here and again below, where the build id and the callback are used even when
# other inputs are wrong (the usage failure is still reported through them).
readonly BUILD_ID_RE='^[a-z0-9][a-z0-9-]{0,63}$'
readonly HTTP_URL_RE='^https?://[^[:space:]"\\]+$'
readonly CALLBACK_TOKEN_RE='^[A-Za-z0-9._~+/=-]{16,2048}$'

need FASTBUILD_BUILD_ID "$BUILD_ID_RE" "use 1-64 lower-case letters, digits, - (starting with a letter or digit)"
# The source: an archive (FASTBUILD_SOURCE_URL) or a plan of content-addressed packs
# (FASTBUILD_SOURCE_PLAN_URL), exactly one of them.
SOURCE_MODE=""
if [ -n "${FASTBUILD_SOURCE_URL:-}" ] && [ -n "${FASTBUILD_SOURCE_PLAN_URL:-}" ]; then
  problems+=("FASTBUILD_SOURCE_URL and FASTBUILD_SOURCE_PLAN_URL are both set: give the archive's URL or the source plan's, not both")
elif [ -n "${FASTBUILD_SOURCE_PLAN_URL:-}" ]; then
  SOURCE_MODE=plan
  need FASTBUILD_SOURCE_PLAN_URL "$HTTP_URL_RE" "give the source plan's http(s) URL (a read SAS), without spaces, quotes or backslashes"
elif [ -n "${FASTBUILD_SOURCE_URL:-}" ]; then
  SOURCE_MODE=archive
  need FASTBUILD_SOURCE_URL "$HTTP_URL_RE" "give the archive's http(s) URL (a read SAS), without spaces, quotes or backslashes"
else
  problems+=("FASTBUILD_SOURCE_URL is not set: give the archive's http(s) URL (a read SAS), or FASTBUILD_SOURCE_PLAN_URL for a content-addressed source")
fi
need FASTBUILD_SOURCE_DIGEST '^sha256:[0-9a-f]{64}$' "give sha256:<64 lower-case hex> of the archive (or of the plan's manifest)"
need FASTBUILD_REGISTRY '^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]{1,5})?$' "give the registry host[:port] in lower case, e.g. myreg.azurecr.io or 127.0.0.1:5000 (ACR login servers are lower-case)"
need FASTBUILD_IMAGE_REPOSITORY '^[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*$' "give a lower-case repository such as team/app"
need FASTBUILD_BASE_KEY '^[0-9a-f]{16,64}$' "give the base key the upload command computed (16-64 lower-case hex)"
# A project with its own Dockerfiles decides what its image runs; the built-in ones need the binary.
readonly PROJECT_PATH_RE='^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}(/[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}){0,15}$'
optional FASTBUILD_DOCKERFILE_BASE "$PROJECT_PATH_RE" "give the path of the project's Dockerfile.base inside the source tree (letters, digits, _ . -; no leading dot, .. or /)"
optional FASTBUILD_DOCKERFILE_APP "$PROJECT_PATH_RE" "give the path of the project's Dockerfile.app inside the source tree (letters, digits, _ . -; no leading dot, .. or /)"
if [ -n "${FASTBUILD_DOCKERFILE_BASE:-}" ] && [ -z "${FASTBUILD_DOCKERFILE_APP:-}" ]; then
  problems+=("FASTBUILD_DOCKERFILE_APP is not set: the project's own Dockerfiles come as a pair (FASTBUILD_DOCKERFILE_BASE and FASTBUILD_DOCKERFILE_APP)")
elif [ -z "${FASTBUILD_DOCKERFILE_BASE:-}" ] && [ -n "${FASTBUILD_DOCKERFILE_APP:-}" ]; then
  problems+=("FASTBUILD_DOCKERFILE_BASE is not set: the project's own Dockerfiles come as a pair (FASTBUILD_DOCKERFILE_BASE and FASTBUILD_DOCKERFILE_APP)")
fi
if [ -n "${FASTBUILD_DOCKERFILE_APP:-}" ]; then
  optional FASTBUILD_BINARY_NAME '^[A-Za-z0-9_-]{1,64}$' "give the cargo binary name (letters, digits, _ -)"
else
  need FASTBUILD_BINARY_NAME '^[A-Za-z0-9_-]{1,64}$' "give the cargo binary name (letters, digits, _ -)"
fi
optional FASTBUILD_PORT '^[1-9][0-9]{0,4}$' "give the container's port, 1-65535"
if [[ ${FASTBUILD_PORT:-} =~ ^[1-9][0-9]{0,4}$ ]] && [ "$FASTBUILD_PORT" -gt 65535 ]; then
  problems+=("FASTBUILD_PORT is invalid: give the container's port, 1-65535")
fi
optional FASTBUILD_SOURCE_MAX_BYTES '^[1-9][0-9]{0,11}$' "give a positive number of bytes"
optional FASTBUILD_EXTRACT_MAX_BYTES '^[1-9][0-9]{0,12}$' "give a positive number of bytes"
optional FASTBUILD_EXTRACT_MAX_FILES '^[1-9][0-9]{0,8}$' "give a positive number of files"
optional FASTBUILD_EXTRACT_MAX_FILE_BYTES '^[1-9][0-9]{0,12}$' "give a positive number of bytes"
optional FASTBUILD_EXTRACT_MAX_PATH_BYTES '^[1-9][0-9]{0,4}$' "give a positive number of bytes"
optional FASTBUILD_EXTRACT_MAX_LINKS '^[0-9]{1,9}$' "give a number of links"
optional FASTBUILD_EXTRACT_MAX_LINK_DEPTH '^[1-9][0-9]{0,3}$' "give a positive number of links"
optional FASTBUILD_CONTENT_CACHE_MAX_BYTES '^[0-9]{1,13}$' "give a number of bytes"
optional FASTBUILD_REBUILD_BASE '^(true|false|1|0)$' "use true or false"
optional FASTBUILD_COMMIT '^[0-9a-f]{7,64}$' "give the hex commit id"
optional FASTBUILD_BASE_REPOSITORY '^[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*$' "give a lower-case repository"
optional FASTBUILD_TOOLCHAIN_IMAGE '^[A-Za-z0-9][A-Za-z0-9._/:@-]{0,254}$' "give an image reference"
optional FASTBUILD_RUNTIME_IMAGE '^[A-Za-z0-9][A-Za-z0-9._/:@-]{0,254}$' "give an image reference"
optional FASTBUILD_CARGO_PROFILE '^[A-Za-z0-9_-]{1,64}$' "give a cargo profile name"
optional FASTBUILD_CARGO_FEATURES '^[A-Za-z0-9_/,-]{1,500}$' "give comma-separated cargo features"
optional FASTBUILD_CARGO_TARGET '^[A-Za-z0-9_.-]{1,100}$' "give a target triple"
optional FASTBUILD_CALLBACK_URL "$HTTP_URL_RE" "give the callback's http(s) URL"
optional FASTBUILD_CALLBACK_TOKEN "$CALLBACK_TOKEN_RE" "give the callback token (16+ URL-safe characters)"
optional FASTBUILD_HEARTBEAT_SECONDS '^[1-9][0-9]{0,4}$' "give a number of seconds"
optional FASTBUILD_WORK_ROOT '^/[A-Za-z0-9._/-]*$' "give an absolute folder path"
optional FASTBUILD_DOCKERFILES_DIR '^/[A-Za-z0-9._/-]*$' "give an absolute folder path"
optional FASTBUILD_READY_MARKER '^/[A-Za-z0-9._/-]*$' "give an absolute file path"
optional FASTBUILD_READY_TIMEOUT_SECONDS '^[0-9]{1,5}$' "give a number of seconds"
optional FASTBUILD_CONTAINER_CLI '^[A-Za-z0-9_./=:, -]+$' "give the CLI and its flags (no quotes or shell characters)"
optional FASTBUILD_BUILD_EXTRA_ARGS '^[A-Za-z0-9_./=:, -]+$' "give flags without quotes or shell characters"
optional FASTBUILD_PUSH_EXTRA_ARGS '^[A-Za-z0-9_./=:, -]+$' "give flags without quotes or shell characters"
optional FASTBUILD_REGISTRY_LOGIN '^(acr-identity|none)$' "use acr-identity or none"
optional FASTBUILD_IDENTITY_CLIENT_ID '^[0-9a-fA-F-]{36}$' "give the identity's client id (a GUID)"
optional FASTBUILD_REGISTRY_SCHEME '^(https|http)$' "use https or http"
optional FASTBUILD_KEEP_WORKSPACE '^(true|false)$' "use true or false"
optional FASTBUILD_REGISTRY_CACHE '^(true|false)$' "use true or false"
optional FASTBUILD_BRANCH '^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$' "give the git branch: letters, digits and . _ / - only, at most 200"

loopback='^http://(127\.0\.0\.1|localhost|\[::1\])(:[0-9]+)?/'
for variable in FASTBUILD_SOURCE_URL FASTBUILD_SOURCE_PLAN_URL; do
  if [[ ${!variable:-} == http://* ]] && ! [[ ${!variable} =~ $loopback ]]; then
    problems+=("$variable must use https (plain http is accepted for loopback test servers only)")
  fi
done
if [[ ${FASTBUILD_CALLBACK_URL:-} == http://* ]] && ! [[ $FASTBUILD_CALLBACK_URL =~ $loopback ]]; then
  problems+=("FASTBUILD_CALLBACK_URL must use https (plain http is accepted for loopback only)")
fi
if [ -n "${FASTBUILD_CALLBACK_URL:-}" ] && [ -z "${FASTBUILD_CALLBACK_TOKEN:-}" ]; then
  problems+=("FASTBUILD_CALLBACK_TOKEN is not set: a callback URL needs its token")
fi
if [ "${FASTBUILD_REGISTRY_SCHEME:-https}" = http ] && ! [[ ${FASTBUILD_REGISTRY:-} =~ ^(127\.0\.0\.1|localhost)(:[0-9]+)?$ ]]; then
  problems+=("FASTBUILD_REGISTRY_SCHEME=http is accepted for a loopback registry only")
fi
read -r -a CLI <<<"${FASTBUILD_CONTAINER_CLI:-docker}"
read -r -a BUILD_EXTRA <<<"${FASTBUILD_BUILD_EXTRA_ARGS:-}"
read -r -a PUSH_EXTRA <<<"${FASTBUILD_PUSH_EXTRA_ARGS:-}"
if [ "${#CLI[@]}" -eq 0 ]; then
  problems+=("FASTBUILD_CONTAINER_CLI is empty: name the container CLI (docker or buildah)")
fi

# The build kit travels with each build; the VM holds only tools and caches. The Dockerfiles
# come in the archive (after extraction, below) unless the machine overrides them here.
DOCKERFILES_DIR=""
if [[ ${FASTBUILD_DOCKERFILES_DIR:-} =~ ^/ ]]; then
  DOCKERFILES_DIR=$FASTBUILD_DOCKERFILES_DIR
  for file in "$DOCKERFILES_DIR/Dockerfile.base" "$DOCKERFILES_DIR/Dockerfile.app"; do
    [ -f "$file" ] || problems+=("FASTBUILD_DOCKERFILES_DIR: $file is missing: point it at a folder with Dockerfile.base and Dockerfile.app, or unset it to use the archive's")
  done
fi
# The extractor runs before the archive is opened, so it comes with the run command (decoded into
# our private folder), never from the archive; run by hand, the script's own copy serves.
EXTRACTOR=$PRIVATE_DIR/safe_extract.py
if [ -n "${FASTBUILD_EXTRACTOR_B64:-}" ]; then
  if ! [[ $FASTBUILD_EXTRACTOR_B64 =~ ^[A-Za-z0-9+/]+={0,2}$ ]] ||
    ! printf '%s' "$FASTBUILD_EXTRACTOR_B64" | base64 -d >"$EXTRACTOR" 2>/dev/null; then
    problems+=("FASTBUILD_EXTRACTOR_B64 is invalid: give safe_extract.py as base64 without line breaks")
  fi
elif [ -n "$SCRIPT_DIR" ] && [ -f "$SCRIPT_DIR/safe_extract.py" ]; then
  EXTRACTOR=$SCRIPT_DIR/safe_extract.py
else
  problems+=("FASTBUILD_EXTRACTOR_B64 is not set: send safe_extract.py (base64) with the build, or run build.sh next to its safe_extract.py")
fi

if [[ ${FASTBUILD_BUILD_ID:-} =~ $BUILD_ID_RE ]]; then FASTBUILD_BUILD_ID_SAFE=$FASTBUILD_BUILD_ID; fi
# The callback is used (even for a usage failure) only when its own settings are valid.
if [[ ${FASTBUILD_CALLBACK_URL:-} =~ $HTTP_URL_RE ]] && [[ ${FASTBUILD_CALLBACK_TOKEN:-} =~ $CALLBACK_TOKEN_RE ]] &&
  { [[ $FASTBUILD_CALLBACK_URL == https://* ]] || [[ $FASTBUILD_CALLBACK_URL =~ $loopback ]]; }; then
  CALLBACK_OK=1
  # The token goes into a private header file, not onto a command line other users could read.
  printf 'x-fastbuild-token: %s\n' "$FASTBUILD_CALLBACK_TOKEN" >"$PRIVATE_DIR/callback-headers"
fi

if [ "${#problems[@]}" -gt 0 ]; then
  for problem in "${problems[@]}"; do log "invalid input: $problem"; done
  message=$(printf '%s; ' "${problems[@]}")
  fail usage "$EXIT_USAGE" "nothing was run: ${message%; }"
fi

readonly BUILD_ID=$FASTBUILD_BUILD_ID
readonly REGISTRY=$FASTBUILD_REGISTRY
readonly REPOSITORY=$FASTBUILD_IMAGE_REPOSITORY
readonly BASE_REPOSITORY=${FASTBUILD_BASE_REPOSITORY:-$FASTBUILD_IMAGE_REPOSITORY-base}
readonly BASE_KEY=$FASTBUILD_BASE_KEY
readonly SOURCE_HEX=${FASTBUILD_SOURCE_DIGEST#sha256:}
readonly SOURCE_TAG=src-$SOURCE_HEX
readonly MAX_BYTES=${FASTBUILD_SOURCE_MAX_BYTES:-536870912}
# A plan is the manifest (about 150 bytes a file) and where each content is (about 100 bytes a
# content): 128 MiB holds several times the default 200000 files.
readonly PLAN_MAX_BYTES=134217728
readonly WORK_ROOT=${FASTBUILD_WORK_ROOT:-/var/lib/fastbuild}
readonly LOGIN_MODE=${FASTBUILD_REGISTRY_LOGIN:-acr-identity}
readonly SCHEME=${FASTBUILD_REGISTRY_SCHEME:-https}
readonly BASE_IMAGE=$REGISTRY/$BASE_REPOSITORY:$BASE_KEY
readonly READY_MARKER=${FASTBUILD_READY_MARKER:-/var/lib/fast-build/ready}
readonly READY_TIMEOUT=${FASTBUILD_READY_TIMEOUT_SECONDS:-600}
case ${FASTBUILD_REBUILD_BASE:-false} in true | 1) REBUILD_BASE=true ;; *) REBUILD_BASE=false ;; esac
readonly REGISTRY_CACHE=${FASTBUILD_REGISTRY_CACHE:-true}

# ---------------------------------------------------------------- registry cache refs
# branch_cache_tag BRANCH: src/core/rules.ts branchCacheTag (lower case, each run of other
# characters than a-z 0-9 . _ - made one -, no . or - at either end, at most 100 characters).
branch_cache_tag() {
  local tag
  tag=$(printf '%s' "${1,,}" | sed -E 's/[^a-z0-9._-]+/-/g; s/^[.-]+//; s/[.-]+$//')
  printf '%s' "${tag:0:100}" | sed -E 's/^[.-]+//; s/[.-]+$//'
}
readonly DEFAULT_BRANCH=main
readonly CACHE_REPOSITORY=$REGISTRY/$REPOSITORY-cache
own_cache_tag=$(branch_cache_tag "${FASTBUILD_BRANCH:-}")
[ -n "$own_cache_tag" ] || own_cache_tag=$DEFAULT_BRANCH
readonly BASE_CACHE_REF=$CACHE_REPOSITORY:base-$BASE_KEY
readonly APP_CACHE_TO=$CACHE_REPOSITORY:app-$own_cache_tag
APP_CACHE_FROM=("$APP_CACHE_TO")
[ "$own_cache_tag" = "$DEFAULT_BRANCH" ] || APP_CACHE_FROM+=("$CACHE_REPOSITORY:app-$DEFAULT_BRANCH")
if [ "$REGISTRY_CACHE" = true ]; then
  log "cache: base reads and writes $BASE_CACHE_REF; app reads ${APP_CACHE_FROM[*]}, writes $APP_CACHE_TO"
else
  log "cache: the registry cache is off (FASTBUILD_REGISTRY_CACHE=false)"
fi

if [ -n "${CALLBACK_OK:-}" ]; then
  # Away from our stdout/stderr: Run Command (and any pipe reader) sees the script end only when
  # every holder of those pipes is gone, and the loop's pending `sleep` outlives a kill of the loop.
  heartbeat_loop </dev/null >/dev/null 2>&1 &
  HEARTBEAT_PID=$!
fi

# ---------------------------------------------------------------- registry access
# Writes the Authorization header for REPOSITORY (scope pull,push) into the headers file, or
# nothing for a registry without auth.
registry_headers() { # registry_headers REPO
  local headers=$PRIVATE_DIR/registry-headers
  : >"$headers"
  [ "$LOGIN_MODE" = acr-identity ] || return 0
  # ACR's token exchange: the refresh token from `az acr login --expose-token` buys a
  # repository-scoped access token. Form values are read from files to keep them off argv.
  printf '%s' "repository:$1:pull,push" >"$PRIVATE_DIR/scope"
  curl --globoff --fail --silent --show-error --max-time 30 --retry 3 \
    --data-urlencode grant_type=refresh_token --data-urlencode "service=$REGISTRY" \
    --data-urlencode "scope@$PRIVATE_DIR/scope" --data-urlencode "refresh_token@$PRIVATE_DIR/acr-refresh-token" \
    "https://$REGISTRY/oauth2/token" >"$PRIVATE_DIR/access.json" || return 1
  python3 -c 'import json,sys; print("Authorization: Bearer " + json.load(open(sys.argv[1]))["access_token"])' \
    "$PRIVATE_DIR/access.json" >"$headers" || return 1
}

# manifest_digest REPO TAG: prints the manifest digest; exit 0 found, 1 absent, 2 error.
manifest_digest() {
  local code
  registry_headers "$1" || return 2
  code=$(curl --globoff --silent --show-error --max-time 30 --retry 3 --head --output /dev/null \
    --dump-header "$PRIVATE_DIR/manifest-headers" --write-out '%{http_code}' \
    -H @"$PRIVATE_DIR/registry-headers" -H "Accept: $MANIFEST_ACCEPT" \
    "$SCHEME://$REGISTRY/v2/$1/manifests/$2") || return 2
  case $code in
    200) tr -d '\r' <"$PRIVATE_DIR/manifest-headers" | sed -n 's/^[Dd]ocker-[Cc]ontent-[Dd]igest: *//p' | head -n 1 ;;
    404) return 1 ;;
    *)
      log "registry answered HTTP $code for $1:$2" >&2
      return 2
      ;;
  esac
}

# ---------------------------------------------------------------- 0. setup
# A build can arrive before cloud-init has finished installing the tools (a new VM, or one whose
# first boot is still running): cloud-init writes the marker as its last step, once docker, az,
# python3, curl and jq are on PATH. Waiting, bounded, turns "command not found" halfway through
# into a build that starts a little later, or one clear failure that says where to look.
begin setup
if [ ! -f "$READY_MARKER" ]; then
  log "waiting for the builder's setup (cloud-init) to finish: $READY_MARKER (up to ${READY_TIMEOUT} s)"
  ready_deadline=$((SECONDS + READY_TIMEOUT))
  next_note=$((SECONDS + 30))
  until [ -f "$READY_MARKER" ]; do
    if [ "$SECONDS" -ge "$ready_deadline" ]; then
      fail not-ready "$EXIT_NOT_READY" "the builder's setup did not finish within ${READY_TIMEOUT} s ($READY_MARKER is missing): see /var/log/cloud-init-output.log on the VM, or start the build again once cloud-init is done"
    fi
    sleep 1
    if [ "$SECONDS" -ge "$next_note" ]; then
      log "still waiting for the builder's setup ($((SECONDS + READY_TIMEOUT - ready_deadline)) s)"
      next_note=$((SECONDS + 30))
    fi
  done
fi
missing=()
for tool in curl python3 sha256sum "${CLI[0]}"; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ "${#missing[@]}" -gt 0 ]; then
  fail not-ready "$EXIT_NOT_READY" "the builder is set up but lacks ${missing[*]}: install them (cloud-init in infra/), or name another container CLI in FASTBUILD_CONTAINER_CLI"
fi
log "the builder is set up"
end

# ---------------------------------------------------------------- 1. login
begin login
case $LOGIN_MODE in
  acr-identity)
    command -v az >/dev/null 2>&1 || fail login "$EXIT_LOGIN" "the az CLI is not installed on the builder: install it (login mode acr-identity)"
    identity=()
    if [ -n "${FASTBUILD_IDENTITY_CLIENT_ID:-}" ]; then identity=(--username "$FASTBUILD_IDENTITY_CLIENT_ID"); fi
    run_logged az login --identity "${identity[@]}" --output none ||
      fail login "$EXIT_LOGIN" "az login --identity failed: does the VM have a managed identity?" "tail:logTail=$STEP_LOG"
    az acr login --name "${REGISTRY%%.*}" --expose-token --output tsv --query accessToken \
      >"$PRIVATE_DIR/acr-refresh-token" 2>>"$STEP_LOG" ||
      fail login "$EXIT_LOGIN" "could not get an ACR token for $REGISTRY: grant the VM's identity AcrPush on the registry" "tail:logTail=$STEP_LOG"
    run_logged "${CLI[@]}" login --username "$ACR_TOKEN_USER" --password-stdin "$REGISTRY" \
      <"$PRIVATE_DIR/acr-refresh-token" ||
      fail login "$EXIT_LOGIN" "${CLI[0]} login to $REGISTRY failed" "tail:logTail=$STEP_LOG"
    ;;
  none) log "registry $REGISTRY needs no login" ;;
esac
end

# ---------------------------------------------------------------- 2. skip if unchanged
# Checked before the download: an image tagged with this source digest was built from exactly
# these bytes, so neither the download nor the extraction is needed. The src- tag is pushed last,
# so it only exists for a complete image.
begin check
set +e
existing_digest=$(manifest_digest "$REPOSITORY" "$SOURCE_TAG")
found=$?
set -e
case $found in
  0)
    log "the registry already has $REGISTRY/$REPOSITORY:$SOURCE_TAG ($existing_digest): nothing to build"
    end
    finish succeeded ok 0 bool:skipped=true "str:image=$REGISTRY/$REPOSITORY:$SOURCE_TAG" \
      "str:digest=$existing_digest" "str:baseKey=$BASE_KEY" "str:message=source unchanged: image reused"
    ;;
  1) log "no image for this source digest yet" ;;
  *) fail push "$EXIT_PUSH" "could not query registry $REGISTRY (is it reachable, and may this VM read it?)" ;;
esac
end

# ---------------------------------------------------------------- 3. download
# fetch URL FILE LIMIT: curl's exit code (63: larger than LIMIT). The URL (a SAS) goes to curl
# through its config on stdin, not on its command line.
fetch() {
  local rc=0
  printf 'url = "%s"\n' "$1" |
    curl --config - --globoff --fail --silent --show-error --location --retry 5 --retry-all-errors --retry-delay 2 \
      --connect-timeout 20 --max-time 1800 --max-filesize "$3" --output "$2" 2>>"$STEP_LOG" || rc=$?
  return "$rc"
}

begin download
BUILD_DIR=$WORK_ROOT/builds/$BUILD_ID
mkdir -p "$WORK_ROOT/builds"
rm -rf "$BUILD_DIR"
mkdir -p "$BUILD_DIR"
# download_or_fail URL FILE MAX_BYTES WHAT TOO_LARGE_ADVICE
download_or_fail() {
  local rc=0
  fetch "$1" "$2" "$3" || rc=$?
  if [ "$rc" -eq 63 ]; then
    fail download "$EXIT_DOWNLOAD" "the source $4 is larger than $3 bytes: $5"
  elif [ "$rc" -ne 0 ]; then
    fail download "$EXIT_DOWNLOAD" "could not download the source $4 (curl exit $rc): has the upload finished and the SAS not expired?" "tail:logTail=$STEP_LOG"
  fi
}
if [ "$SOURCE_MODE" = plan ]; then
  # The plan only: the packs it names are fetched by the extractor, which knows which contents
  # the builder's cache already has. Its manifest is checked against the digest there.
  plan=$BUILD_DIR/source-plan.json
  download_or_fail "$FASTBUILD_SOURCE_PLAN_URL" "$plan" "$PLAN_MAX_BYTES" plan "the tree has too many files for one build"
  log "downloaded the source plan ($(stat -c %s "$plan") bytes)"
else
  archive=$BUILD_DIR/source.tar.gz
  download_or_fail "$FASTBUILD_SOURCE_URL" "$archive" "$MAX_BYTES" archive "make it smaller (exclude build outputs) or raise the limit"
  size=$(stat -c %s "$archive")
  if [ "$size" -gt "$MAX_BYTES" ]; then
    fail download "$EXIT_DOWNLOAD" "the source archive is $size bytes, over the limit of $MAX_BYTES"
  fi
  actual=sha256:$(sha256sum "$archive" | cut -d' ' -f1)
  if [ "$actual" != "$FASTBUILD_SOURCE_DIGEST" ]; then
    fail download "$EXIT_DOWNLOAD" "the downloaded archive's digest $actual does not match $FASTBUILD_SOURCE_DIGEST: upload it again"
  fi
  log "downloaded $size bytes, digest verified"
fi
end

# ---------------------------------------------------------------- 4. extract
begin extract
src=$BUILD_DIR/src
rc=0
if [ "$SOURCE_MODE" = plan ]; then
  # The contents cache lives beside the builds, on the same disk: copies into a build's tree are
  # local, and it outlives any one build (the plan says where to fetch whatever it lost).
  FASTBUILD_SOURCE_MAX_BYTES=$MAX_BYTES python3 "$EXTRACTOR" --plan "$plan" --cache "$WORK_ROOT/content" \
    --digest "$FASTBUILD_SOURCE_DIGEST" "$src" >"$STEP_LOG" 2>&1 || rc=$?
  what="source plan"
else
  python3 "$EXTRACTOR" "$archive" "$src" >"$STEP_LOG" 2>&1 || rc=$?
  what="source archive"
fi
if [ "$rc" -ne 0 ]; then
  cat "$STEP_LOG"
  # The extractor's one-line reason (`refused: <code>: …`, or `failed: …` for a bug of its own or,
  # exit 4, packs the store would not serve) goes into the result's message, kept short: the
  # printed result line is bounded.
  reason=$(sed -n -E 's/^(refused|failed): //p' "$STEP_LOG" | head -n 1 | cut -c1-240)
  if [ "$rc" -eq 4 ] && [ "$SOURCE_MODE" = plan ]; then
    fail download "$EXIT_DOWNLOAD" "could not fetch the source's contents: ${reason:-the extractor ended with exit $rc}. Nothing was built." "tail:logTail=$STEP_LOG"
  fi
  fail extract "$EXIT_EXTRACT" "the $what was refused: ${reason:-the extractor ended with exit $rc}. Nothing was built."
fi
cat "$STEP_LOG"
rm -f "$BUILD_DIR/source.tar.gz" "$BUILD_DIR/source-plan.json"
# The Dockerfiles the upload command hashed into the base key travel next to the recipe, so the
# base is built from exactly those bytes. Links are not followed: the kit must be the archive's own
# files (safe_extract.py keeps links inside the tree, but a kit is plain files).
# The project's own pair (fast-build.toml [docker]) wins: the upload command hashed that
# Dockerfile.base's bytes into the base key, and the manifest's digest pins them. Plain files
# inside the tree only: a path through a symlink is refused (realpath must be the path itself).
DOCKERFILE_BASE=$DOCKERFILES_DIR/Dockerfile.base
DOCKERFILE_APP=$DOCKERFILES_DIR/Dockerfile.app
if [ -n "${FASTBUILD_DOCKERFILE_BASE:-}" ]; then
  src_real=$(realpath -e "$src")
  for variable in FASTBUILD_DOCKERFILE_BASE FASTBUILD_DOCKERFILE_APP; do
    file=$src/${!variable}
    if [ ! -f "$file" ] || [ -L "$file" ] || [ "$(realpath -e "$file" 2>/dev/null)" != "$src_real/${!variable}" ]; then
      fail kit "$EXIT_KIT" "the project's Dockerfile ${!variable} ($variable) is missing from the source or not a plain file inside it: fix [docker] in fast-build.toml. Nothing was built."
    fi
  done
  DOCKERFILE_BASE=$src/$FASTBUILD_DOCKERFILE_BASE
  DOCKERFILE_APP=$src/$FASTBUILD_DOCKERFILE_APP
  log "using the project's own Dockerfiles: $FASTBUILD_DOCKERFILE_BASE, $FASTBUILD_DOCKERFILE_APP (fast-build.toml)"
elif [ -z "$DOCKERFILES_DIR" ]; then
  DOCKERFILES_DIR=$src/.fastbuild/kit
  DOCKERFILE_BASE=$DOCKERFILES_DIR/Dockerfile.base
  DOCKERFILE_APP=$DOCKERFILES_DIR/Dockerfile.app
  for file in "$DOCKERFILES_DIR/Dockerfile.base" "$DOCKERFILES_DIR/Dockerfile.app"; do
    if [ ! -f "$file" ] || [ -L "$file" ] || [ -L "$DOCKERFILES_DIR" ] || [ -L "$src/.fastbuild" ]; then
      fail kit "$EXIT_KIT" "the archive has no build kit (${file#"$src/"} is missing or not a plain file): upload with a current fast-build, which adds .fastbuild/kit/, or set FASTBUILD_DOCKERFILES_DIR on the builder. Nothing was built."
    fi
  done
  log "using the archive's Dockerfiles (.fastbuild/kit/)"
else
  log "using the builder's Dockerfiles from $DOCKERFILES_DIR (FASTBUILD_DOCKERFILES_DIR)"
fi
end

# ---------------------------------------------------------------- 5. base image
# The key comes from the upload command (src/core/baseKey.ts) and is trusted: it only chooses
# which base the app layer starts from, and the app layer compiles the real sources on top, so a
# wrong key costs a cache miss, never a wrong binary.
build_args=(--build-arg "CARGO_PROFILE=${FASTBUILD_CARGO_PROFILE:-release}")
[ -z "${FASTBUILD_CARGO_FEATURES:-}" ] || build_args+=(--build-arg "CARGO_FEATURES=$FASTBUILD_CARGO_FEATURES")
[ -z "${FASTBUILD_CARGO_TARGET:-}" ] || build_args+=(--build-arg "CARGO_TARGET=$FASTBUILD_CARGO_TARGET")

# step_failure: the Dockerfile instruction that failed and its exit status, from the CLI's log
# (buildah: `[1/2] STEP n/m: RUN …` / `exit status N`; BuildKit: `#9 [build 4/5] RUN …` / `exit code: N`).
step_failure_args() {
  local instruction status
  instruction=$(grep -E '^((\[[0-9]+/[0-9]+\] )?STEP [0-9]+/[0-9]+: |#[0-9]+ \[[^]]+\] )' "$STEP_LOG" |
    tail -n 1 | tr -s ' ' | cut -c1-300 || true)
  status=$(grep -oE '(exit status|exit code:) [0-9]+' "$STEP_LOG" | tail -n 1 | grep -oE '[0-9]+$' || true)
  printf '%s\n' "str:failedInstruction=$instruction" "int:stepExitCode=${status:-$1}"
}

# What makes a build fail because of its cache rather than its Dockerfile (buildah: a cache push
# that failed; docker: a builder that cannot export a registry cache, or BuildKit's import/export).
readonly CACHE_FAILURE_RE='failed pushing cache|[Cc]ache export is not supported|failed to (export|import) cache|failed to configure registry cache'

# cache_report REF…: what the last build took from a cache, from the CLI's log. buildah prints
# `--> Cache pulled from remote REPO:TAG` before `--> Using cache ID` for a layer from the
# registry (and only the latter for one of this builder's own); BuildKit prints `#N CACHED` for a
# step it did not run and `importing cache manifest from REF` for each cache it read.
cache_report() {
  local pulled used cached imported count ref
  pulled=$(grep -E '^--> Cache pulled from remote ' "$STEP_LOG" | sed -E 's/^--> Cache pulled from remote //; s/:[^:/]+$//' | sort | uniq -c || true)
  used=$(grep -cE '^--> Using cache ' "$STEP_LOG" || true)
  cached=$(grep -cE '^#[0-9]+ CACHED' "$STEP_LOG" || true)
  imported=$(grep -oE 'importing cache manifest from [^ ]+' "$STEP_LOG" | sed 's/.* from //' | sort -u | paste -sd, - || true)
  local remote=0
  while read -r count ref; do
    [ -n "$count" ] || continue
    remote=$((remote + count))
    log "cache: reused $count layers from $ref"
  done <<<"$pulled"
  if [ "$((used - remote))" -gt 0 ]; then log "cache: reused $((used - remote)) layers from this builder's own storage"; fi
  [ -n "$imported" ] || imported="this builder's own cache"
  if [ "$cached" -gt 0 ]; then log "cache: reused $cached layers from $imported"; fi
  if [ "$remote" -eq 0 ] && [ "$used" -eq 0 ] && [ "$cached" -eq 0 ]; then
    log "cache: reused 0 layers from $* (nothing cached yet for these inputs: every step ran)"
  fi
}

# cached_build TO FROM… -- BUILD-ARGS…: the CLI's build with the registry cache (docker's flags; the
# local builder's shim gives buildah its own), reporting what it reused. A build that fails
# because of the cache is built again without it: the cache only ever makes a build faster.
cached_build() {
  local to=$1 from=() flags=() ref rc=0
  shift
  while [ "$1" != -- ]; do
    from+=("$1")
    shift
  done
  shift
  if [ "$REGISTRY_CACHE" = true ]; then
    for ref in "${from[@]}"; do flags+=(--cache-from "type=registry,ref=$ref"); done
    # mode=max: every stage's layers, not only the final image's; image-manifest / oci-mediatypes:
    # an OCI image manifest, which registries that refuse BuildKit's older index form store;
    # ignore-error: a failed export warns and the build still succeeds.
    flags+=(--cache-to "type=registry,ref=$to,mode=max,image-manifest=true,oci-mediatypes=true,ignore-error=true")
  fi
  run_logged "${CLI[@]}" build "${BUILD_EXTRA[@]}" "${flags[@]}" "$@" || rc=$?
  if [ "$rc" -ne 0 ] && [ "${#flags[@]}" -gt 0 ] && grep -qE "$CACHE_FAILURE_RE" "$STEP_LOG"; then
    log "cache: the registry cache could not be used ($(grep -oE "$CACHE_FAILURE_RE" "$STEP_LOG" | head -n 1)): building again without it"
    : >"$STEP_LOG"
    rc=0
    run_logged "${CLI[@]}" build "${BUILD_EXTRA[@]}" "$@" || rc=$?
    return "$rc"
  fi
  if [ "$rc" -eq 0 ] && [ "${#flags[@]}" -gt 0 ]; then cache_report "${from[@]}"; fi
  return "$rc"
}

begin base
base_cache_hit=false
set +e
base_digest=$(manifest_digest "$BASE_REPOSITORY" "$BASE_KEY")
found=$?
set -e
if [ "$found" -eq 2 ]; then fail push "$EXIT_PUSH" "could not query registry $REGISTRY for the base image"; fi
if [ "$found" -eq 0 ] && [ "$REBUILD_BASE" = false ]; then
  base_cache_hit=true
  log "reusing base image $BASE_IMAGE ($base_digest)"
else
  if [ "$REBUILD_BASE" = true ]; then log "rebuilding the base image as asked"; else log "no base image for key $BASE_KEY: building it"; fi
  # The recipe (manifests + stub sources, written by the upload command) keeps the base's build
  # context independent of our own sources. Without it the whole tree serves: slower to
  # build, but it compiles the same dependencies.
  base_context=$src/.fastbuild/recipe
  if [ -n "${FASTBUILD_DOCKERFILE_BASE:-}" ] && { [ ! -d "$base_context" ] || [ -L "$base_context" ]; }; then
    # The project's own Dockerfile.base sees exactly what its key covers: the key files (in the
    # recipe folder), or with none of them nothing at all.
    log "fast-build.toml names no base-key-files: the base's build context is empty"
    base_context=$BUILD_DIR/empty-context
    mkdir -p "$base_context"
  elif [ ! -d "$base_context" ] || [ -L "$base_context" ]; then
    log "no .fastbuild/recipe in the archive: building the base from the whole tree"
    base_context=$src
  fi
  base_args=("${build_args[@]}")
  # RUST_IMAGE for the built-in Dockerfile.base; TOOLCHAIN_IMAGE, the same, for a project's own.
  [ -z "${FASTBUILD_TOOLCHAIN_IMAGE:-}" ] || base_args+=(--build-arg "RUST_IMAGE=$FASTBUILD_TOOLCHAIN_IMAGE"
    --build-arg "TOOLCHAIN_IMAGE=$FASTBUILD_TOOLCHAIN_IMAGE")
  # A rebuild asked for trusts no cache (it still writes the registry's, for the next builder).
  base_from=("$BASE_CACHE_REF")
  if [ "$REBUILD_BASE" = true ]; then
    base_from=()
    base_args+=(--no-cache)
  fi
  rc=0
  cached_build "$BASE_CACHE_REF" "${base_from[@]}" -- -f "$DOCKERFILE_BASE" -t "$BASE_IMAGE" \
    "${base_args[@]}" "$base_context" || rc=$?
  if [ "$rc" -ne 0 ]; then
    mapfile -t extra < <(step_failure_args "$rc")
    fail base-build "$EXIT_BASE" "the base image build failed (exit $rc)" "tail:logTail=$STEP_LOG" "${extra[@]}"
  fi
  rc=0
  run_logged "${CLI[@]}" push "${PUSH_EXTRA[@]}" "$BASE_IMAGE" || rc=$?
  [ "$rc" -eq 0 ] || fail push "$EXIT_PUSH" "pushing the base image $BASE_IMAGE failed (exit $rc)" "tail:logTail=$STEP_LOG"
  log "pushed base image $BASE_IMAGE"
fi
end

# ---------------------------------------------------------------- 6. app image
begin app
tags=("$BUILD_ID")
[ -z "${FASTBUILD_COMMIT:-}" ] || tags+=("commit-$FASTBUILD_COMMIT")
# Last, so that its presence means the whole image was pushed (the skip check relies on it).
tags+=("$SOURCE_TAG")
tag_args=()
for tag in "${tags[@]}"; do tag_args+=(-t "$REGISTRY/$REPOSITORY:$tag"); done
app_args=("${build_args[@]}" --build-arg "BASE_IMAGE=$BASE_IMAGE" --build-arg "BASE_KEY=$BASE_KEY")
[ -z "${FASTBUILD_BINARY_NAME:-}" ] || app_args+=(--build-arg "BINARY_NAME=$FASTBUILD_BINARY_NAME")
[ -z "${FASTBUILD_PORT:-}" ] || app_args+=(--build-arg "PORT=$FASTBUILD_PORT")
[ -z "${FASTBUILD_RUNTIME_IMAGE:-}" ] || app_args+=(--build-arg "RUNTIME_IMAGE=$FASTBUILD_RUNTIME_IMAGE")
rc=0
cached_build "$APP_CACHE_TO" "${APP_CACHE_FROM[@]}" -- -f "$DOCKERFILE_APP" "${tag_args[@]}" \
  "${app_args[@]}" "$src" || rc=$?
if [ "$rc" -ne 0 ]; then
  mapfile -t extra < <(step_failure_args "$rc")
  fail app-build "$EXIT_APP" "the app build failed (exit $rc): see the log tail" "tail:logTail=$STEP_LOG" \
    "str:baseKey=$BASE_KEY" "str:baseImage=$BASE_IMAGE" "bool:baseCacheHit=$base_cache_hit" "${extra[@]}"
fi
end

# ---------------------------------------------------------------- 7. push
begin push
for tag in "${tags[@]}"; do
  rc=0
  run_logged "${CLI[@]}" push "${PUSH_EXTRA[@]}" "$REGISTRY/$REPOSITORY:$tag" || rc=$?
  [ "$rc" -eq 0 ] || fail push "$EXIT_PUSH" "pushing $REGISTRY/$REPOSITORY:$tag failed (exit $rc)" "tail:logTail=$STEP_LOG"
done
set +e
digest=$(manifest_digest "$REPOSITORY" "$BUILD_ID")
found=$?
set -e
[ "$found" -eq 0 ] || fail push "$EXIT_PUSH" "the pushed image $REGISTRY/$REPOSITORY:$BUILD_ID is not in the registry"
log "pushed $REGISTRY/$REPOSITORY:$BUILD_ID ($digest)"
end

tag_list=$(
  IFS=,
  printf '%s' "${tags[*]}"
)
finish succeeded ok 0 bool:skipped=false "str:image=$REGISTRY/$REPOSITORY:$BUILD_ID" "str:digest=$digest" \
  "str:baseKey=$BASE_KEY" "str:baseImage=$BASE_IMAGE" "bool:baseCacheHit=$base_cache_hit" "list:tags=$tag_list"
