#!/usr/bin/env bash
# Installs what the integration tests run against (DESIGN.md §9), as root on Debian bookworm:
#   - from bookworm, system-wide: docker-registry, buildah, skopeo 1.9, htpasswd, openssl, curl;
#   - from trixie, into the git-ignored tools dir only: cosign 2.x, skopeo 1.18 and oras, with wrappers in
#     tools/bin. The system's apt state is not touched: apt runs on a private sources.list, lists and cache.
# Idempotent: a second run finds everything in place, downloads nothing and only prints the versions.
# IMAGEPIPE_TOOLS_DIR overrides the tools dir (default: <repo>/tools).
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tools_dir=${IMAGEPIPE_TOOLS_DIR:-$repo_root/tools}

system_packages=(docker-registry buildah skopeo apache2-utils openssl ca-certificates curl time)
# skopeo 1.18 needs trixie's glibc (>= 2.38) and links libgpgme and libsqlite3 (checked with readelf -d);
# libgpgme in turn links libassuan and libgpg-error. cosign and oras link only libc.
trixie_packages=(cosign skopeo oras libc6 libgpgme11t64 libassuan9 libgpg-error0 libsqlite3-0)

# Validators from PyPI: check-jsonschema checks our files against the committed schemas (and, later, the
# generated GitHub and Azure YAML against their official schemas).
python_packages=(check-jsonschema==0.39.0)

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
apt_state=$tools_dir/apt-state
stamp=$trixie_root/.packages

trixie_tools_present() {
    [[ -f $stamp && $(cut -d' ' -f1 "$stamp" | xargs) == "${trixie_packages[*]}" ]] &&
        [[ -x $tools_dir/bin/cosign && -x $tools_dir/bin/skopeo-1.18 && -x $tools_dir/bin/oras ]]
}

fetch_trixie_tools() {
    local mirror
    mirror=$(system_debian_mirror)
    # The mirror comes from this machine's own apt sources only: no host name is written here.
    if [[ -z $mirror ]]; then
        log "no Debian archive found in /etc/apt/sources.list or /etc/apt/sources.list.d; cannot fetch trixie tools"
        return 1
    fi
    log "fetching ${trixie_packages[*]} from trixie at $mirror into $tools_dir"

    mkdir -p "$apt_state/lists/partial" "$apt_state/cache/archives/partial" "$apt_state/debs" \
        "$apt_state/sources.list.d" "$apt_state/preferences.d"
    : >"$apt_state/status"
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror trixie main" \
        >"$apt_state/sources.list"
    # Every piece of state apt reads or writes points into $apt_state; the system's apt.conf.d is still
    # read, so proxy settings apply. An empty dpkg status keeps installed bookworm packages out of the way.
    local apt_options=(
        -o "Dir::Etc::SourceList=$apt_state/sources.list"
        -o "Dir::Etc::SourceParts=$apt_state/sources.list.d"
        -o "Dir::Etc::Preferences=$apt_state/preferences"
        -o "Dir::Etc::PreferencesParts=$apt_state/preferences.d"
        -o "Dir::State::Lists=$apt_state/lists"
        -o "Dir::State::status=$apt_state/status"
        -o "Dir::Cache=$apt_state/cache"
        -o APT::Sandbox::User=root
        -o Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false
    )
    apt-get "${apt_options[@]}" -qq update

    rm -f "$apt_state/debs/"*.deb
    (cd "$apt_state/debs" && apt-get "${apt_options[@]}" -qq download "${trixie_packages[@]}")

    local staging=$trixie_root.new deb
    rm -rf "$staging"
    mkdir -p "$staging"
    local package
    for package in "${trixie_packages[@]}"; do
        deb=$(echo "$apt_state/debs/${package}_"*.deb)
        dpkg-deb -x "$deb" "$staging"
        dpkg-deb -f "$deb" Package Version | cut -d' ' -f2 | xargs >>"$staging/.packages.pending"
    done
    rm -f "$apt_state/debs/"*.deb
    rm -rf "$trixie_root"
    mv "$staging" "$trixie_root"

    write_wrappers
    # The stamp ("package version" lines) comes last: it says the tree and the wrappers are complete.
    mv "$trixie_root/.packages.pending" "$stamp"
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
    [[ $cosign_version == 2.* ]] || { log "expected cosign 2.x"; return 1; }
    [[ $skopeo_version == "skopeo version 1.18."* ]] || { log "expected skopeo 1.18"; return 1; }
    [[ -n $oras_version ]] || { log "oras did not report a version"; return 1; }
}

install_python_packages() {
    if command -v check-jsonschema >/dev/null 2>&1; then
        log "python packages already installed"
        return
    fi
    log "installing ${python_packages[*]}"
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore "${python_packages[@]}"
    # pyenv finds new console scripts only after a rehash.
    if command -v pyenv >/dev/null 2>&1; then pyenv rehash; fi
    command -v check-jsonschema >/dev/null 2>&1 || { log "check-jsonschema is not on PATH after install"; return 1; }
}

install_system_packages
install_python_packages
if trixie_tools_present; then
    log "trixie tools already in $tools_dir"
else
    fetch_trixie_tools
fi
check_versions
