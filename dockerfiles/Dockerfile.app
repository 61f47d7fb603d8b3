# syntax=docker/dockerfile:1.7
# The app layer: the real sources compiled on top of the base image for this dependency recipe
# (tag = base key). Only our own crates compile here; the dependencies are already in the base.
ARG BASE_IMAGE
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${BASE_IMAGE} AS build
ARG BINARY_NAME
ARG BASE_KEY=unknown
ARG CARGO_PROFILE=release
ARG CARGO_FEATURES=
ARG CARGO_TARGET=
WORKDIR /src
COPY . .
# One target folder per base key lives in a cache mount (the VM is persistent), seeded once from
# the base image's compiled dependencies; only the three most recently used are kept.
# Every source file is touched first: COPY keeps the mtimes of extraction, which can be OLDER
# than the base's stub artifacts built a moment later, and cargo judges path crates by mtime, so
# without this it could ship the stub `fn main() {}`.
# The binary is copied out in the same step because the mount is gone after it.
RUN --mount=type=cache,id=fastbuild-cargo-registry,target=/usr/local/cargo/registry \
    --mount=type=cache,id=fastbuild-cargo-git,target=/usr/local/cargo/git \
    --mount=type=cache,id=fastbuild-target,target=/cache/target \
    set -eu; \
    test -n "$BINARY_NAME" || { echo "the BINARY_NAME build arg is required" >&2; exit 64; }; \
    dir="/cache/target/$BASE_KEY"; \
    if [ ! -e "$dir/.seeded" ]; then \
      rm -rf "$dir" && mkdir -p "$dir" && cp -a /opt/fastbuild/target/. "$dir/" && touch "$dir/.seeded"; \
    fi; \
    touch "$dir"; \
    ls -1dt /cache/target/*/ | tail -n +4 | xargs -r rm -rf; \
    find /src -type f -exec touch -c {} +; \
    CARGO_TARGET_DIR="$dir" cargo build --profile "$CARGO_PROFILE" --bin "$BINARY_NAME" \
      ${CARGO_TARGET:+--target "$CARGO_TARGET"} ${CARGO_FEATURES:+--features "$CARGO_FEATURES"}; \
    case "$CARGO_PROFILE" in dev|test) out=debug ;; bench) out=release ;; *) out="$CARGO_PROFILE" ;; esac; \
    mkdir -p /out; \
    cp "$dir/${CARGO_TARGET:+$CARGO_TARGET/}$out/$BINARY_NAME" /out/app

FROM ${RUNTIME_IMAGE}
# fast-build.toml's [container] port (metadata only: the Container App's ingress targetPort is what
# Azure routes to; 8080 when the project names none).
ARG PORT=8080
EXPOSE ${PORT}
COPY --from=build /out/app /usr/local/bin/app
ENTRYPOINT ["/usr/local/bin/app"]
