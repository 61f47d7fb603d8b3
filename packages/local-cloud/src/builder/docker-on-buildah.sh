#!/usr/bin/env bash
# docker's command line on buildah: the local builder's `docker` (FASTBUILD_CONTAINER_CLI), so
# dockerfiles/build.sh runs here with the very flags it gives docker on an Azure builder.
#
#   docker-on-buildah.sh [buildah global flags…] COMMAND [ARGS…]
#
# Every command but `build` goes to buildah as it is (push, login and build's -f/-t/--build-arg
# read the same). For `build`, docker's registry cache flags become buildah's:
#   --cache-from type=registry,ref=R[:TAG][,…]   ->  --layers --cache-from R
#   --cache-to   type=registry,ref=R[:TAG][,…]   ->  --layers --cache-to R
# buildah keeps its cache as one image per layer in a repository, each tagged with that layer's
# own cache key (a hash of its instruction and parent), so the tag of docker's ref (base-<key>,
# app-<branch>) names nothing buildah needs: every ref of one cache repository is the same buildah
# repository, and the first --cache-from serves (buildah 1.28, Debian 12's, takes one). BuildKit's
# other options (mode, image-manifest, oci-mediatypes, ignore-error) have no buildah counterpart;
# build.sh builds again without the cache when a cache push fails, which is what ignore-error buys.
set -euo pipefail

global=()
while [ $# -gt 0 ]; do
  case $1 in
    --storage-driver | --root | --runroot | --storage-opt)
      [ $# -ge 2 ] || { echo "docker-on-buildah: $1 needs a value" >&2; exit 2; }
      global+=("$1" "$2")
      shift 2
      ;;
    -*)
      global+=("$1")
      shift
      ;;
    *) break ;;
  esac
done
[ $# -gt 0 ] || { echo "docker-on-buildah: give a command (build, push, login, …)" >&2; exit 2; }
command=$1
shift
[ "$command" = build ] || exec buildah "${global[@]}" "$command" "$@"

# cache_repository SPEC: the repository of a docker cache spec (type=registry,ref=R[:TAG][,…]).
cache_repository() {
  local spec=$1 part ref=""
  local -a parts
  IFS=, read -r -a parts <<<"$spec"
  for part in "${parts[@]}"; do
    case $part in
      type=registry) ;;
      type=*) echo "docker-on-buildah: only registry caches are supported here, not $part" >&2; exit 2 ;;
      ref=*) ref=${part#ref=} ;;
    esac
  done
  [ -n "$ref" ] || { echo "docker-on-buildah: the cache spec $spec names no ref=" >&2; exit 2; }
  ref=${ref%@*}
  # A tag is a : in the last path segment (one in the first is the registry's port).
  if [[ ${ref##*/} == *:* ]]; then ref=${ref%:*}; fi
  printf '%s' "$ref"
}

args=()
from=""
to=""
while [ $# -gt 0 ]; do
  case $1 in
    --cache-from | --cache-to)
      [ $# -ge 2 ] || { echo "docker-on-buildah: $1 needs a value" >&2; exit 2; }
      repository=$(cache_repository "$2")
      if [ "$1" = --cache-to ]; then to=$repository; elif [ -z "$from" ]; then from=$repository; fi
      shift 2
      ;;
    *)
      args+=("$1")
      shift
      ;;
  esac
done
cache=()
if [ -n "$from$to" ]; then cache+=(--layers); fi
if [ -n "$from" ]; then cache+=(--cache-from "$from"); fi
if [ -n "$to" ]; then cache+=(--cache-to "$to"); fi
exec buildah "${global[@]}" build "${cache[@]}" "${args[@]}"
