#!/usr/bin/env bash
# The lab's single entry point on a fresh Debian 12 machine (run as root):
#   ./nsslab.sh run [ARGS]    install what is needed, then `nsslab run ARGS` (default: the built-in demo)
#   ./nsslab.sh test [ARGS]   install what is needed, then the lab's own test suite (pytest ARGS),
#                             real VMs and root filesystems included (vagrant/libvirt/qemu/debootstrap)
#   ./nsslab.sh reproduce     install what is needed, then `nsslab reproduce stns`
#   ./nsslab.sh test-vm       only the VM suite
#   ./nsslab.sh box [PLATFORM...]   build the offline Vagrant boxes (nsslab box build)
#   ./nsslab.sh setup         only install
# It installs Debian packages (once), a venv in .venv with the lab, and the modules are built
# by the lab itself from their manifests.
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")"

# gdb + libc6-dbg: backtraces with glibc frame names; strace: `nsslab reproduce stns` step 1;
# debootstrap: the root filesystems of --target rootfs; openssh-client: --target ssh://.
PACKAGES=(golang-go gcc make libc6-dev bash bash-completion python3 python3-venv util-linux mount procps gdb libc6-dbg strace debootstrap openssh-client)
# Only for VM targets: Vagrant with libvirt, qemu (KVM or TCG) and the offline box builder.
VM_PACKAGES=(vagrant vagrant-libvirt libvirt-daemon-system libvirt-clients qemu-system-x86 qemu-utils dnsmasq-base e2fsprogs)
# Only for the test suite: the HTML report tests open the page in a real headless browser, and
# Selenium is given Debian's driver so it never downloads one (a run of the lab needs neither).
TEST_PACKAGES=(chromium chromium-driver)

log() { printf 'nsslab.sh: %s\n' "$*" >&2; }

install_packages() {
    local missing=()
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return
    if [ "$(id -u)" -ne 0 ]; then
        log "missing Debian packages: ${missing[*]} (run as root, or install them first)"; exit 1
    fi
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    timeout 900 apt-get update -qq
    timeout 1800 apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

install_venv() {
    # The venv uses Debian's interpreter, the same one the probe runs with in the sandbox.
    local stamp=.venv/.installed
    if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ]; then return; fi
    log "creating .venv and installing the lab"
    /usr/bin/python3 -m venv .venv
    timeout 900 .venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
    touch "$stamp"
}

command=${1:-run}
[ $# -gt 0 ] && shift
case "$command" in test|test-vm|box) PACKAGES+=("${VM_PACKAGES[@]}") ;; esac
case "$command" in test) PACKAGES+=("${TEST_PACKAGES[@]}") ;; esac
install_packages
install_venv
export GOPROXY=off HOME=${HOME:-/root}  # the sample Go module needs nothing from the network
case "$command" in
    run) exec .venv/bin/nsslab run "$@" ;;
    reproduce) exec .venv/bin/nsslab reproduce "${@:-stns}" ;;
    test) exec .venv/bin/python -m pytest "$@" ;;
    test-vm) exec .venv/bin/python -m pytest -m vagrant tests/vm "$@" ;;
    box) exec .venv/bin/nsslab box build "$@" ;;
    setup) log "ready: .venv/bin/nsslab" ;;
    *) log "usage: ./nsslab.sh run|test|test-vm|box|reproduce|setup [ARGS]"; exit 2 ;;
esac
