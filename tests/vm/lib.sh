# shellcheck shell=bash disable=SC2034  # some variables serve the sourcing scripts only
# Helpers shared by the tests/vm scripts: the kernel matrix, the cache, the
# host's packages and a private apt configuration per (suite, arch).
# Sourced, never run, by scripts that `set -euo pipefail`.

PROG=$(basename "$0")

VM_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$VM_DIR/../.." && pwd)
KERNELS_FILE=${DONTUNMAP_KERNELS:-$VM_DIR/kernels}
DEBIAN_KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
APT_ETC=/etc/apt # the machine's apt configuration (tests point it elsewhere)

log() {
	printf '%s: %s\n' "${PROG:-vm}" "$*" >&2
}

# die MESSAGE [EXIT_CODE]
die() {
	log "error: $1"
	exit "${2:-1}"
}

cache_dir() {
	printf '%s/dontunmap\n' "${XDG_CACHE_HOME:-${HOME:?HOME is not set}/.cache}"
}

kernel_dir() {
	printf '%s/kernels/%s\n' "$(cache_dir)" "$1"
}

host_codename() {
	# shellcheck disable=SC1091
	(. /etc/os-release && printf '%s\n' "${VERSION_CODENAME:?no VERSION_CODENAME in /etc/os-release}")
}

host_arch() {
	dpkg --print-architecture
}

# The rows of the matrix without comments: NAME SUITE ARCH FLAVOUR TOOLCHAIN.
kernel_rows() {
	awk '{ sub(/#.*/, "") } NF { print }' "$KERNELS_FILE"
}

# load_kernel NAME: sets K_NAME K_SUITE K_ARCH K_FLAVOUR K_TOOLCHAIN.
load_kernel() {
	local row
	row=$(kernel_rows | awk -v n="$1" '$1 == n')
	[[ -n $row ]] || die "no kernel '$1' in $KERNELS_FILE (have: $(kernel_rows | awk '{ printf "%s ", $1 }'))" 64
	read -r K_NAME K_SUITE K_ARCH K_FLAVOUR K_TOOLCHAIN extra <<<"$row"
	[[ -n ${K_TOOLCHAIN:-} && -z ${extra:-} ]] ||
		die "malformed row in $KERNELS_FILE: '$row' (want: name suite arch flavour toolchain)"
}

# True when modules for the loaded kernel build with the host's own
# toolchain; otherwise they need a chroot of the toolchain suite.
uses_host_toolchain() {
	[[ $K_TOOLCHAIN == "$(host_codename)" && $K_ARCH == "$(host_arch)" ]]
}

# The uname -r recorded by provision, or nothing.
provisioned_release() {
	local file
	file="$(kernel_dir "$1")/release"
	[[ -s $file ]] && cat "$file"
}

# ensure_packages PKG...: installs the missing ones with apt-get.
ensure_packages() {
	local pkg missing=()
	for pkg in "$@"; do
		dpkg-query -W -f='${Status}\n' "$pkg" 2>/dev/null | grep -q '^install ok installed$' ||
			missing+=("$pkg")
	done
	((${#missing[@]} == 0)) && return 0
	log "installing ${missing[*]}"
	host_apt_update_once
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
}

HOST_APT_UPDATED=
host_apt_update_once() {
	[[ -n $HOST_APT_UPDATED ]] && return 0
	apt-get update -q >&2
	HOST_APT_UPDATED=1
}

# Every "URI SUITE" pair of the enabled deb entries in the machine's apt
# sources, one-line and deb822 formats alike.
apt_source_pairs() {
	local lists=() deb822=() f
	for f in "$APT_ETC/sources.list" "$APT_ETC"/sources.list.d/*.list; do
		[[ -f $f ]] && lists+=("$f")
	done
	for f in "$APT_ETC"/sources.list.d/*.sources; do
		[[ -f $f ]] && deb822+=("$f")
	done
	if ((${#lists[@]})); then
		awk '{ sub(/#.*/, "") }
			$1 == "deb" {
				i = 2
				if ($i ~ /^\[/) { while ($i !~ /\]$/ && i < NF) i++; i++ }
				print $i, $(i + 1)
			}' "${lists[@]}"
	fi
	if ((${#deb822[@]})); then
		awk 'BEGIN { RS = ""; FS = "\n" }
			{
				types = uris = suites = ""; enabled = "yes"
				for (i = 1; i <= NF; i++) {
					line = $i
					if (line ~ /^#/) continue
					key = tolower(line); sub(/:.*/, "", key)
					val = line; sub(/^[^:]*:[ \t]*/, "", val)
					if (key == "types") types = val
					else if (key == "uris") uris = val
					else if (key == "suites") suites = val
					else if (key == "enabled") enabled = tolower(val)
				}
				if (enabled == "no" || (" " types " ") !~ / deb /) next
				nu = split(uris, u, /[ \t]+/); ns = split(suites, s, /[ \t]+/)
				for (a = 1; a <= nu; a++) for (b = 1; b <= ns; b++)
					if (u[a] != "" && s[b] != "") print u[a], s[b]
			}' "${deb822[@]}"
	fi
}

# The URI of the Debian main archive, as the machine's apt knows it: the entry
# serving the host's own release (not -security, not -updates). Never written
# into the repository; DONTUNMAP_MIRROR overrides it.
debian_mirror() {
	if [[ -n ${DONTUNMAP_MIRROR:-} ]]; then
		printf '%s\n' "${DONTUNMAP_MIRROR%/}"
		return 0
	fi
	local codename uri
	codename=$(host_codename)
	uri=$(apt_source_pairs | awk -v c="$codename" '$2 == c { print $1; exit }')
	[[ -n $uri ]] ||
		die "no apt source serves suite '$codename'; set DONTUNMAP_MIRROR to the Debian archive URI"
	printf '%s\n' "${uri%/}"
}

apt_private_dir() {
	printf '%s/apt/%s-%s\n' "$(cache_dir)" "$1" "$2"
}

# The URI of Debian's security archive as the machine's apt knows it (the
# entry serving <host release>-security), or nothing.
debian_security_mirror() {
	apt_source_pairs | awk -v s="$(host_codename)-security" '$2 == s { print $1; exit }' |
		sed 's|/$||'
}

# apt_private_setup SUITE ARCH: a sources.list naming only that suite's main
# component for that architecture, and empty state, so the host's own apt
# configuration (sources, pins, dpkg status) plays no part. A release suite
# comes with its -updates and -security suites, as on a user's machine, so
# its meta-packages resolve to the kernel its users run; a -backports suite
# stands alone, or the release's own kernel would win.
apt_private_setup() {
	local dir suite=$1 arch=$2 mirror security
	dir=$(apt_private_dir "$suite" "$arch")
	mkdir -p "$dir/sources.list.d" "$dir/preferences.d" "$dir/lists/partial" \
		"$dir/cache/archives/partial"
	: >>"$dir/status"
	mirror=$(debian_mirror)
	security=$(debian_security_mirror)
	{
		printf 'deb [arch=%s signed-by=%s] %s %s main\n' \
			"$arch" "$DEBIAN_KEYRING" "$mirror" "$suite"
		if [[ $suite != *-* ]]; then
			printf 'deb [arch=%s signed-by=%s] %s %s-updates main\n' \
				"$arch" "$DEBIAN_KEYRING" "$mirror" "$suite"
			[[ -z $security ]] ||
				printf 'deb [arch=%s signed-by=%s] %s %s-security main\n' \
					"$arch" "$DEBIAN_KEYRING" "$security" "$suite"
		fi
	} >"$dir/sources.list"
}

# apt_private SUITE ARCH COMMAND [ARGS...]: runs apt-get or apt-cache on the
# private configuration of (SUITE, ARCH).
apt_private() {
	local suite=$1 arch=$2 cmd=$3 dir
	shift 3
	dir=$(apt_private_dir "$suite" "$arch")
	"$cmd" \
		-o Dir::Etc::SourceList="$dir/sources.list" \
		-o Dir::Etc::SourceParts="$dir/sources.list.d" \
		-o Dir::Etc::Preferences="$dir/preferences" \
		-o Dir::Etc::PreferencesParts="$dir/preferences.d" \
		-o Dir::State::Lists="$dir/lists" \
		-o Dir::State::status="$dir/status" \
		-o Dir::Cache="$dir/cache" \
		-o APT::Architecture="$arch" \
		-o APT::Architectures="$arch" \
		-o APT::Sandbox::User=root \
		"$@"
}

apt_private_update() {
	apt_private_setup "$1" "$2"
	log "updating package lists of $1/$2"
	apt_private "$1" "$2" apt-get update -q >&2
}

# apt_private_download SUITE ARCH DEST PACKAGE VERSION: prints the .deb path,
# downloading it only when DEST lacks it.
apt_private_download() {
	local suite=$1 arch=$2 dest=$3 pkg=$4 version=$5 deb
	deb="$dest/${pkg}_${version//:/%3a}_$arch.deb"
	if [[ ! -s $deb ]]; then
		mkdir -p "$dest"
		log "downloading $pkg $version ($suite/$arch)"
		(cd "$dest" && apt_private "$suite" "$arch" apt-get download -q "$pkg=$version" >&2)
	fi
	[[ -s $deb ]] || deb=$(find "$dest" -maxdepth 1 -name "${pkg}_*_$arch.deb" | sort | tail -n 1)
	[[ -s $deb ]] || die "download of $pkg $version gave no .deb in $dest"
	printf '%s\n' "$deb"
}

# apt_private_field SUITE ARCH PACKAGE FIELD: one field of the candidate.
apt_private_field() {
	apt_private "$1" "$2" apt-cache show --no-all-versions "$3" 2>/dev/null |
		awk -v f="$4:" '$1 == f { sub(/^[^:]*:[ \t]*/, ""); print; exit }'
}
