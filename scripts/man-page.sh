#!/usr/bin/env bash
# Writes moe-mnist's man page from its --help texts with help2man:
#   scripts/man-page.sh BINARY OUT.1
# help2man reads `moe-mnist --help` and `--version`; every subcommand's --help goes in a COMMANDS section.
set -euo pipefail
[ $# = 2 ] || { echo "usage: $0 BINARY OUT.1" >&2; exit 2; }
bin=$1 out=$2
command -v help2man >/dev/null || { echo "man-page.sh: help2man not found (apt install help2man)" >&2; exit 1; }
mkdir -p "$(dirname "$out")"
include=$(mktemp)
trap 'rm -f "$include"' EXIT
subs=$("$bin" --help | awk 'toupper($0) ~ /^SUBCOMMANDS:/ { on = 1; next } on && /^  [a-z]/ { print $1 }')
[ -n "$subs" ] || { echo "man-page.sh: no Subcommands: section in '$bin --help'" >&2; exit 1; }
{
  echo "[COMMANDS]"
  for s in $subs; do
    echo ".SS \"moe-mnist $s\""
    echo ".nf"
    # roff: a backslash is \e, and a line may not start with a dot or an apostrophe.
    "$bin" "$s" --help | sed -e 's/\\/\\e/g' -e "s/^\([.']\)/\\\\\&\1/"
    echo ".fi"
  done
  echo "[SEE ALSO]"
  echo "/usr/share/doc/moe-mnist/deployment.md"
} > "$include"
help2man --no-info --no-discard-stderr --section 1 \
  --name "train, export and serve a Mixture-of-Experts MNIST classifier" \
  --include "$include" --output "$out.tmp" "$bin"
mv "$out.tmp" "$out"
