#!/usr/bin/env bash
# Installs the real Bicep compiler from its NuGet package (Azure.Bicep.CommandLine.linux-x64) into
# .tools/bicep/, through `dotnet restore` of a throwaway project: this machine reaches NuGet but no
# other download site. Idempotent; prints the path of the binary.
set -euo pipefail
version="${BICEP_VERSION:-0.49.2}"
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="$root/.tools/bicep"
bin="$dest/bicep"
if [ -x "$bin" ] && "$bin" --version 2>/dev/null | grep -q "$version"; then
  echo "$bin"
  exit 0
fi
command -v dotnet >/dev/null || { echo "install-bicep: the .NET SDK (dotnet) is required" >&2; exit 1; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cat >"$work/fetch.csproj" <<'XML'
<Project Sdk="Microsoft.NET.Sdk">
  <PropertyGroup>
    <TargetFramework>net10.0</TargetFramework>
  </PropertyGroup>
  <ItemGroup>
    <PackageDownload Include="Azure.Bicep.CommandLine.linux-x64" Version="[$(BicepVersion)]" />
  </ItemGroup>
</Project>
XML
dotnet restore "$work/fetch.csproj" -p:BicepVersion="$version" --packages "$work/packages" >&2
found="$(find "$work/packages" -type f -name bicep | head -n 1)"
[ -n "$found" ] || { echo "install-bicep: no bicep binary in the package" >&2; exit 1; }
mkdir -p "$dest"
cp "$found" "$bin"
chmod +x "$bin"
"$bin" --version >&2
echo "$bin"
