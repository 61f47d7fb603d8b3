# The local cloud's stand-in for `cargo build` (packages/local-cloud/src/builder/dockerfiles/Dockerfile.app runs it):
# no Rust toolchain image can be pulled there, so the "binary" is a shell script that prints what
# src/main.rs prints. On Azure the real Dockerfiles run cargo and this file is not used.
set -eu
message=$(sed -n 's/.*println!("\(.*\)");.*/\1/p' src/main.rs | head -n 1)
printf '#!/bin/sh\necho "%s"\n' "$message" > "$1"
chmod +x "$1"
