#!/usr/bin/env bash
# A new user's path, checked: the README's two commands (scripts/run.sh and
# scripts/test.sh) in a freshly debootstrapped Debian with this machine's
# Rust toolchain bound in read-only, from a clean clone of this checkout's
# HEAD. For maintainers (needs root, debootstrap and bubblewrap on the
# host); CI does not run it.
#
#   sudo scripts/fresh-root-check.sh [ROOT]        # ROOT: default /var/tmp/metareason-fresh-root
#
# The root is entered with bwrap (a root of its own, by pivot_root), not
# chroot: the kernel refuses new user namespaces to a chrooted process,
# and the sandbox for model-written programs needs them.
set -euo pipefail
root=${1:-/var/tmp/metareason-fresh-root}
repo=$(cd "$(dirname "$0")/.." && pwd)
rustup_home=${RUSTUP_HOME:-$HOME/.rustup}
cargo_bin=${CARGO_HOME:-$HOME/.cargo}/bin
for tool in debootstrap bwrap git; do
  command -v "$tool" >/dev/null || { echo "fresh-root-check: install $tool first" >&2; exit 1; }
done
[ "$(id -u)" -eq 0 ] || { echo "fresh-root-check: run as root (debootstrap and apt inside the root need it)" >&2; exit 1; }

if [ ! -x "$root/usr/bin/apt-get" ]; then
  debootstrap --variant=minbase bookworm "$root" http://deb.debian.org/debian
fi
cp /etc/resolv.conf "$root/etc/resolv.conf"
# A machine behind a proxy with its own CA: give the root the same trust
# (what the host trusts is environment, not the project's set-up).
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
  mkdir -p "$root/usr/local/share/ca-certificates"
  cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
  [ -f /etc/pip.conf ] && cp /etc/pip.conf "$root/etc/pip.conf"
  chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin bash -c \
    'command -v update-ca-certificates >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ca-certificates >/dev/null); update-ca-certificates >/dev/null'
fi
mkdir -p "$root/root/.rustup" "$root/root/.cargo/bin"
cp -a "$cargo_bin/." "$root/root/.cargo/bin/"
rm -rf "$root/root/metareason"
git clone -q "$repo" "$root/root/metareason"

bwrap --bind "$root" / --dev-bind /dev /dev --bind /proc /proc --bind /sys /sys \
  --ro-bind "$rustup_home" /root/.rustup --die-with-parent \
  /usr/bin/env -i HOME=/root TERM=dumb RUSTUP_HOME=/root/.rustup CARGO_HOME=/root/.cargo \
  PATH=/root/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  bash -c 'cd /root/metareason && git log --oneline -1 2>/dev/null || true
    scripts/run.sh solve "A farmer has 17 sheep and buys 5 more. How many sheep does he have?"; run=$?
    scripts/test.sh; test=$?
    echo "fresh-root-check: scripts/run.sh exit $run, scripts/test.sh exit $test"
    [ $run -eq 0 ] && [ $test -eq 0 ]'
