#!/usr/bin/env bash
# Prepares a Debian 12 machine for containers the hard way. Vagrant and Lima
# run it twice, as root and then as the default user; you can run it the
# same way on any Debian 12 machine (sudo bash provision.sh, then
# bash provision.sh as yourself). Running it again changes nothing.
#
# As root: installs the Debian packages the labs use (the list in
# xtask/src/setup.rs, plus build tools, git, and a few programs the book
# uses), then Rust for root. As any other user: Rust for that user.
#
# Rust comes from rustup, with the toolchain pinned in rust-toolchain.toml
# when the script can find that file (RUST_TOOLCHAIN overrides it); if not,
# stable, and rustup installs the pinned one the first time cargo runs in
# the repository.
#
# Not changed, because Debian 12 already has it right or the labs do it
# themselves: the cgroup hierarchy (Debian 12 boots with cgroup v2 only),
# unprivileged user namespaces (allowed), and net.ipv4.ip_forward (lab 04
# turns it on when it needs it). QEMU and a second kernel, which
# `cargo xtask test` uses to run the kernel tests in a VM, are left to that
# command, which installs them the first time it runs.
set -euo pipefail

PACKAGES=(
    # building the course: a C linker for rustc, and what rustup needs
    build-essential ca-certificates curl git
    # what the labs and their tests use (xtask/src/setup.rs)
    busybox-static iproute2 nftables util-linux procps psmisc e2fsprogs
    # what the book shows or berth doctor looks for
    iptables file strace
)

# The pinned toolchain: $RUST_TOOLCHAIN, else the channel in the first
# rust-toolchain.toml found, else stable.
toolchain() {
    if [ -n "${RUST_TOOLCHAIN:-}" ]; then
        echo "$RUST_TOOLCHAIN"
        return
    fi
    local here file
    here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
    for file in "$here/../../rust-toolchain.toml" /vagrant/rust-toolchain.toml; do
        if [ -f "$file" ]; then
            sed -n 's/^channel *= *"\(.*\)"/\1/p' "$file"
            return
        fi
    done
    echo stable
}

install_packages() {
    local missing=() pkg
    for pkg in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" ||
            missing+=("$pkg")
    done
    if [ "${#missing[@]}" -eq 0 ]; then
        echo "==> packages: all installed"
        return
    fi
    echo "==> installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # busybox-static replaces the dynamically linked busybox if it is there.
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

install_rust() {
    local channel rustup="$HOME/.cargo/bin/rustup"
    channel=$(toolchain)
    if [ ! -x "$rustup" ]; then
        echo "==> installing rustup and Rust $channel for $(id -un)"
        curl --proto '=https' --tlsv1.2 -sSf https://static.rust-lang.org/rustup/rustup-init.sh |
            sh -s -- -y --no-modify-path --profile minimal --default-toolchain "$channel" \
                --component rustfmt --component clippy
    elif "$rustup" toolchain list | grep -q "^$channel"; then
        echo "==> Rust $channel for $(id -un): installed"
    else
        echo "==> installing Rust $channel for $(id -un)"
        "$rustup" toolchain install --profile minimal \
            --component rustfmt --component clippy "$channel"
        "$rustup" default "$channel"
    fi
    # Put ~/.cargo/bin on PATH in login and interactive shells, once. The
    # line goes into the file as written, $HOME and all.
    # shellcheck disable=SC2016
    local rc line='. "$HOME/.cargo/env"'
    for rc in "$HOME/.profile" "$HOME/.bashrc"; do
        grep -qxF "$line" "$rc" 2>/dev/null || echo "$line" >>"$rc"
    done
}

# Provisioners do not always set HOME to the user's own home directory.
HOME=$(getent passwd "$(id -u)" | cut -d: -f6)
export HOME

if [ "$(id -u)" -eq 0 ]; then
    install_packages
fi
install_rust
echo "==> ready: $(uname -sr), cgroup $(stat -fc %T /sys/fs/cgroup), $("$HOME/.cargo/bin/rustc" --version)"
