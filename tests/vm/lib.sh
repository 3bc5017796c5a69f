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
# toolchain (natively, or cross for another guest architecture): the row's
# toolchain is the host's release and its kernel comes from that release.
# A -backports kernel's headers depend on its image, which has no place on
# the host: those build in a chroot of the toolchain suite, as every other
# toolchain does.
uses_host_toolchain() {
	[[ $K_TOOLCHAIN == "$(host_codename)" && $K_SUITE != *-backports ]]
}

# suite_dist SUITE: the archive's name of a matrix suite. "<release>-point"
# is the release's own suite as its last point release left it, without
# -updates and -security: the kernel a machine installed from the release's
# media runs until it sees those suites.
suite_dist() {
	printf '%s\n' "${1%-point}"
}

# True when the loaded kernel's architecture is not the host's: its modules
# are cross-compiled.
is_cross() {
	[[ $K_ARCH != "$(host_arch)" ]]
}

# gnu_type ARCH: the GNU triplet of a Debian architecture (the prefix of its
# cross tools): arm64 -> aarch64-linux-gnu.
gnu_type() {
	ensure_packages dpkg-dev # dpkg-architecture
	dpkg-architecture -a "$1" -qDEB_HOST_GNU_TYPE 2>/dev/null
}

# gnu_cpu ARCH: what uname -m says on it: arm64 -> aarch64.
gnu_cpu() {
	ensure_packages dpkg-dev # dpkg-architecture
	dpkg-architecture -a "$1" -qDEB_HOST_GNU_CPU 2>/dev/null
}

# kbuild_arch ARCH: the kernel's name of a Debian architecture (ARCH=).
kbuild_arch() {
	case $1 in
	amd64) printf 'x86\n' ;;
	arm64) printf 'arm64\n' ;;
	*) die "no Kbuild ARCH known for Debian architecture $1" ;;
	esac
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
	host_apt_install "${missing[@]}"
}

readonly HOST_APT_LOCK=/run/lock/dontunmap-apt.lock

# host_apt_install PACKAGE[:ARCH][=VERSION]...: apt-get install on the host,
# its package lists updated first when they do not know one of them. One
# at a time: tests/check provisions rows while its lanes boot guests, and
# either may find a package missing.
host_apt_install() {
	(
		TC_ROOT=''
		hold_lock "$HOST_APT_LOCK"
		tc_apt_install "$@"
	)
}

# What building libdontunmap, its tests, the guest programs and the demo with
# cmake needs on the host (tests/check, tests/demo, make lib); and, per guest
# architecture other than the host's, what its cross build adds (GoogleTest
# is compiled there from Debian's sources, package googletest). pkgconf: the
# host install test builds a consumer with `pkg-config --cflags --libs`.
readonly HOST_BUILD_PACKAGES='cmake g++ make libgtest-dev libgmock-dev pkgconf'
declare -rA CROSS_BUILD_PACKAGES=([arm64]='gcc-aarch64-linux-gnu g++-aarch64-linux-gnu googletest')

# ensure_build_packages [ARCH...]: HOST_BUILD_PACKAGES, and the cross build
# packages of each ARCH that is not the host's (none known: nothing added).
ensure_build_packages() {
	local arch host wanted=()
	host=$(host_arch)
	# shellcheck disable=SC2206  # lists of package names
	wanted=($HOST_BUILD_PACKAGES)
	for arch in "$@"; do
		# shellcheck disable=SC2206
		[[ $arch == "$host" ]] || wanted+=(${CROSS_BUILD_PACKAGES[$arch]:-})
	done
	ensure_packages "${wanted[@]}"
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
# its meta-packages resolve to the kernel its users run (unstable and
# experimental have neither); a -backports suite stands alone, or the
# release's own kernel would win, and so does a -point
# suite (suite_dist).
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
			"$arch" "$DEBIAN_KEYRING" "$mirror" "$(suite_dist "$suite")"
		if [[ $suite != *-* && $suite != unstable && $suite != sid && $suite != experimental ]]; then
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

# apt_private_update SUITE ARCH: the package lists of (SUITE, ARCH), fetched
# unless another process fetched them in the last half hour: tests/check
# prepares rows side by side, and two rows of one suite would otherwise
# update its lists at once, one of them under the other's readers.
apt_private_update() {
	local stamp
	stamp=$(apt_private_dir "$1" "$2")/updated
	(
		hold_lock "$stamp.lock"
		[[ -z $(find "$stamp" -mmin -30 2>/dev/null) ]] || exit 0
		apt_private_setup "$1" "$2"
		log "updating package lists of $1/$2"
		apt_private "$1" "$2" apt-get update -q >&2
		touch "$stamp"
	)
}

# downloaded_deb DEST PACKAGE VERSION ARCH: the .deb of that version in DEST,
# named for ARCH or, for Architecture: all packages (linux-source-*), for
# "all"; nothing when DEST has neither.
downloaded_deb() {
	local dest=$1 pkg=$2 version=$3 arch=$4 a deb
	for a in "$arch" all; do
		deb="$dest/${pkg}_${version//:/%3a}_$a.deb"
		if [[ -s $deb ]]; then
			printf '%s\n' "$deb"
			return
		fi
	done
}

# apt_private_download SUITE ARCH DEST PACKAGE VERSION: prints the .deb path,
# downloading it only when DEST lacks it.
apt_private_download() {
	local suite=$1 arch=$2 dest=$3 pkg=$4 version=$5 deb
	deb=$(downloaded_deb "$dest" "$pkg" "$version" "$arch")
	if [[ -z $deb ]]; then
		# Two preparers may want one package (the 7.3 debug kernel and the
		# upstream selftests share linux-source-7.3): one downloads, the
		# other finds it done.
		mkdir -p "$dest"
		(
			hold_lock "$dest/.download.lock"
			[[ -z $(downloaded_deb "$dest" "$pkg" "$version" "$arch") ]] || exit 0
			log "downloading $pkg $version ($suite/$arch)"
			cd "$dest" && apt_private "$suite" "$arch" apt-get download -q "$pkg=$version" >&2
		)
		deb=$(downloaded_deb "$dest" "$pkg" "$version" "$arch")
	fi
	[[ -n $deb ]] || deb=$(find "$dest" -maxdepth 1 -name "${pkg}_*_$arch.deb" | sort | tail -n 1)
	[[ -s $deb ]] || die "download of $pkg $version gave no .deb in $dest"
	printf '%s\n' "$deb"
}

# apt_private_field SUITE ARCH PACKAGE FIELD: one field of the candidate.
apt_private_field() {
	apt_private "$1" "$2" apt-cache show --no-all-versions "$3" 2>/dev/null |
		awk -v f="$4:" '$1 == f { sub(/^[^:]*:[ \t]*/, ""); print; exit }'
}

# depends_with_prefix PREFIX: the first package of a Depends field (on
# stdin) whose name starts with PREFIX.
depends_with_prefix() {
	tr ',' '\n' | sed 's/^[[:space:]]*//; s/[[:space:](|:].*//' |
		awk -v p="$1" 'index($0, p) == 1 { print; exit }'
}

# kernel_members: the vmlinuz and config members of a list of .deb members
# (on stdin), old layout (/boot) and new (/usr/lib/modules/<release>/).
kernel_members() {
	grep -E '^\./(boot/(vmlinu[xz]|config)-[^/]+|usr/lib/modules/[^/]+/(vmlinu[xz]|config))$' || true
}

# release_of_vmlinuz MEMBER: the kernel release a vmlinuz member names.
release_of_vmlinuz() {
	case $1 in
	./boot/vmlinu[xz]-*) printf '%s\n' "${1#./boot/vmlinu[xz]-}" ;;
	./usr/lib/modules/*/vmlinu[xz]) local r=${1#./usr/lib/modules/}; printf '%s\n' "${r%/*}" ;;
	*) return 1 ;;
	esac
}

# ---- Toolchains: the host, or a debootstrap chroot of another suite --------

# What every toolchain chroot holds for DKMS builds (the kernel headers come
# per kernel, with their compiler): DKMS, make, the suite's default gcc and
# libc headers, kmod, pahole for BTF, libelf and bc for Kbuild's checks.
readonly CHROOT_PACKAGES='dkms make gcc libc6-dev kmod dwarves libelf-dev bc'

# chroot_dir SUITE: where the toolchain chroot of SUITE lives.
chroot_dir() {
	printf '%s/chroots/%s-%s\n' "$(cache_dir)" "$1" "$(host_arch)"
}

# load_toolchain: sets TC_ROOT, the root directory of the loaded kernel's
# toolchain: empty for the host, else the chroot of K_TOOLCHAIN.
load_toolchain() {
	if uses_host_toolchain; then
		TC_ROOT=''
	else
		TC_ROOT=$(chroot_dir "$K_TOOLCHAIN")
	fi
}

# tc_path PATH: the host's name of PATH in the toolchain.
tc_path() {
	printf '%s%s\n' "$TC_ROOT" "$1"
}

# tc_run COMMAND...: COMMAND in the toolchain.
tc_run() {
	if [[ -z $TC_ROOT ]]; then
		"$@"
	else
		chroot_run "$TC_ROOT" "$@"
	fi
}

# tree_files DIR: the files of a source tree, NUL-separated and relative to
# DIR: a git tree's tracked and unignored files, else every file but .git's.
tree_files() {
	if git -C "$1" rev-parse --show-toplevel 2>/dev/null | grep -qxF "$1"; then
		git -C "$1" ls-files -z --cached --others --exclude-standard
	else
		(cd "$1" && find . -path ./.git -prune -o ! -type d -printf '%P\0')
	fi
}

# hold_lock FILE: waits for and holds an exclusive flock on FILE until the
# (sub)shell exits.
hold_lock() {
	local fd
	mkdir -p "$(dirname "$1")"
	exec {fd}>>"$1"
	flock "$fd"
}

# toolchain_lock: serialises the users of the loaded kernel's toolchain
# (DKMS state, dpkg, the chroot's configuration) until the script exits.
toolchain_lock() {
	local file=/run/lock/dontunmap-build-module.lock
	[[ -z $TC_ROOT ]] || file=$TC_ROOT.lock
	hold_lock "$file"
}

# chroot_run ROOT COMMAND...: COMMAND chrooted into ROOT with a clean
# environment and /proc, /sys and /dev mounted. The mounts are made in a
# private mount namespace of their own, so they never show on the host and
# vanish with the command however it ends (an unmount trap that cannot miss).
chroot_run() {
	local root=$1 var env=(PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8
		DEBIAN_FRONTEND=noninteractive)
	shift
	for var in http_proxy https_proxy no_proxy; do
		[[ -z ${!var:-} ]] || env+=("$var=${!var}")
	done
	# shellcheck disable=SC2016  # expanded by the inner shell
	unshare --mount --propagation private -- bash -euc '
		root=$1
		shift
		mount -t proc proc "$root/proc"
		mount --rbind /sys "$root/sys"
		mount --rbind /dev "$root/dev"
		exec chroot "$root" "$@"' chroot_run "$root" /usr/bin/env -i "${env[@]}" "$@"
}

# chroot_foreign_arches SUITE: the guest architectures of the matrix's rows
# built by this toolchain, other than the host's (dpkg's foreign ones).
chroot_foreign_arches() {
	kernel_rows | awk -v t="$1" -v h="$(host_arch)" '$5 == t && $3 != h { print $3 }'
}

# stamp_field FILE KEY: the words after "KEY:" in a chroot's stamp, one a line.
stamp_field() {
	[[ -f $1 ]] || return 0
	awk -v k="$2:" '$1 == k { for (i = 2; i <= NF; i++) print $i }' "$1"
}

# words: stdin's words, sorted and unique, on one line.
words() {
	tr ' ' '\n' | sed '/^$/d' | sort -u | tr '\n' ' ' | sed 's/ $//'
}

# chroot_want SUITE: the configuration the chroot of SUITE must have, as its
# stamp keeps it. Apt suites: SUITE with its -updates and -security, as on a
# user's machine, and every other suite a row of the matrix built by this
# toolchain comes from (trixie-backports: trixie's gcc builds its kernels).
# Foreign architectures: those of such rows. Suites and architectures the
# chroot has already stay, so that runs with different matrices do not undo
# each other's work.
chroot_want() {
	local suite=$1 stamp
	stamp=$(chroot_dir "$suite")/etc/dontunmap-chroot
	chroot_want_lines "$suite" "$stamp" | sed 's/[[:space:]]*$//'
}

chroot_want_lines() {
	local suite=$1 stamp=$2
	printf 'mirror: %s\n' "$(debian_mirror)"
	printf 'security: %s\n' "$(debian_security_mirror)"
	printf 'suites: %s\n' "$({
		printf '%s\n' "$suite" "$suite-updates" "$suite-security"
		kernel_rows | awk -v t="$suite" '$5 == t { print $2 }' |
			while read -r row_suite; do suite_dist "$row_suite"; done
		stamp_field "$stamp" suites
	} | words)"
	printf 'foreign: %s\n' "$({
		chroot_foreign_arches "$suite"
		stamp_field "$stamp" foreign
	} | words)"
	printf 'packages: %s\n' "$CHROOT_PACKAGES"
}

# chroot_sources CONFIG_FILE: the sources.list of a chroot configuration.
chroot_sources() {
	local mirror security suite
	mirror=$(stamp_field "$1" mirror)
	security=$(stamp_field "$1" security)
	for suite in $(stamp_field "$1" suites); do
		if [[ $suite == *-security ]]; then
			[[ -z $security ]] || printf 'deb %s %s main\n' "$security" "$suite"
		else
			printf 'deb %s %s main\n' "$mirror" "$suite"
		fi
	done
}

# chroot_ensure SUITE: the toolchain chroot of SUITE, created once and
# configured as chroot_want says; a matching stamp means nothing to do.
# The caller holds the toolchain lock.
chroot_ensure() {
	local suite=$1 root want stamp
	root=$(chroot_dir "$suite")
	stamp=$root/etc/dontunmap-chroot
	want=$(chroot_want "$suite")
	[[ -f $stamp && $(cat "$stamp") == "$want" ]] && return 0
	[[ -f $root/etc/dontunmap-debootstrap ]] || chroot_create "$suite" "$root"
	printf '%s\n' "$want" >"$stamp.new"
	chroot_configure "$suite" "$root" "$stamp.new"
	mv "$stamp.new" "$stamp"
}

# chroot_create SUITE ROOT: debootstrap (minbase) of SUITE for the host's
# architecture, in ROOT.new first so that ROOT is always complete.
chroot_create() {
	local suite=$1 root=$2 new=$2.new start=$SECONDS
	ensure_packages debootstrap debian-archive-keyring
	log "creating the $suite toolchain chroot $root (debootstrap, about a minute)"
	# No mount of ours lives outside a private namespace, so nothing is
	# mounted below ROOT here.
	rm -rf "$new"
	mkdir -p "${root%/*}"
	# debootstrap mounts /proc and /sys in the target itself: in a private
	# namespace too, so that a failed run leaves nothing mounted.
	if ! unshare --mount --propagation private -- debootstrap --variant=minbase \
		--keyring="$DEBIAN_KEYRING" --arch="$(host_arch)" \
		"$suite" "$new" "$(debian_mirror)" >"$root.debootstrap.log" 2>&1; then
		tail -n 20 "$root.debootstrap.log" >&2
		die "debootstrap of $suite failed (log: $root.debootstrap.log)"
	fi
	: >"$new/etc/dontunmap-debootstrap"
	rm -rf "$root"
	mv "$new" "$root"
	log "$suite chroot bootstrapped in $((SECONDS - start)) s"
}

# chroot_configure SUITE ROOT CONFIG_FILE: apt sources, dpkg and apt
# settings for quick unattended installs, foreign architectures, then
# CHROOT_PACKAGES.
chroot_configure() {
	local suite=$1 root=$2 config=$3 arch start=$SECONDS
	chroot_sources "$config" >"$root/etc/apt/sources.list"
	cat >"$root/etc/apt/apt.conf.d/90dontunmap" <<-'EOF'
		APT::Install-Recommends "false";
		APT::Install-Suggests "false";
		Acquire::Languages "none";
	EOF
	cat >"$root/etc/dpkg/dpkg.cfg.d/90dontunmap" <<-'EOF'
		force-unsafe-io
		path-exclude=/usr/share/doc/*
		path-exclude=/usr/share/man/*
		path-exclude=/usr/share/locale/*
		path-exclude=/usr/share/info/*
	EOF
	printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
	chmod 755 "$root/usr/sbin/policy-rc.d"
	# A toolchain chroot never boots: a kernel image installed into it (the
	# headers of bookworm-backports' 6.12 depend on theirs) needs no
	# initramfs, whose build would be most of that install's time.
	chroot_run "$root" dpkg-divert --local --rename --add /usr/sbin/update-initramfs >/dev/null
	printf '#!/bin/sh\nexit 0\n' >"$root/usr/sbin/update-initramfs"
	chmod 755 "$root/usr/sbin/update-initramfs"
	for arch in $(stamp_field "$config" foreign); do
		chroot_run "$root" dpkg --add-architecture "$arch"
	done
	log "installing in the $suite chroot: $CHROOT_PACKAGES"
	chroot_run "$root" apt-get update -q >&2
	# shellcheck disable=SC2086  # a list of package names
	chroot_run "$root" apt-get install -y -q $CHROOT_PACKAGES >&2
	log "$suite chroot configured in $((SECONDS - start)) s"
}

# toolchain_apt_install PACKAGE[:ARCH][=VERSION]...: apt-get install in the
# toolchain (a user's plain apt), its package lists updated first when they
# do not know one of them; on the host, under the host's apt lock.
toolchain_apt_install() {
	if [[ -z $TC_ROOT ]]; then
		host_apt_install "$@"
	else
		tc_apt_install "$@"
	fi
}

# tc_apt_install PACKAGE...: toolchain_apt_install without the lock.
tc_apt_install() {
	local spec
	for spec in "$@"; do
		tc_run apt-cache show "$spec" >/dev/null 2>&1 && continue
		tc_run apt-get update -q >&2
		break
	done
	DEBIAN_FRONTEND=noninteractive tc_run apt-get install -y -q --no-install-recommends "$@" >&2
}
