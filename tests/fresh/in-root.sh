#!/usr/bin/env bash
# Runs the README's two commands the way a newcomer does, on a fresh minimal
# Debian root: tests/fresh/in-root.sh bookworm|trixie [COMMIT]
#
#   1. a minimal root from debootstrap (nothing but git and ca-certificates;
#      its tarball is cached in $TS_FRESH_CACHE, default /var/cache/tillside-fresh),
#      unpacked anew for every run;
#   2. the machine's CA certificates trusted inside it (package registries may
#      be reached through a proxy that re-signs TLS) and npm pointed at the
#      system bundle;
#   3. a clone of COMMIT (default: HEAD of this checkout) in /root/tillside;
#   4. as root inside the root: `./run test`; `./run presets` (every preset
#      with -Werror on the release's gcc and clang); then `./run demo` in the
#      background until the associate page and /api/v1/status answer, SIGINT
#      to it, and a check that nothing the demo started is still running.
#
# TS_FRESH_STEPS (default "test presets demo") runs only some steps, e.g.
# "demo" to check that ./run demo alone sets up a fresh machine.
# The Debian mirror is read from this machine's own apt sources. Downloaded
# .debs are kept between runs (apt's archive cache only; every package is
# installed anew). Needs root, debootstrap and util-linux's mount.
set -euo pipefail
SUITE="${1:?usage: in-root.sh bookworm|trixie [COMMIT]}"
case "$SUITE" in bookworm | trixie) ;; *) echo "in-root.sh: unknown suite $SUITE" >&2; exit 2 ;; esac
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
COMMIT="${2:-$(git -C "$HERE" rev-parse HEAD)}"
CACHE="${TS_FRESH_CACHE:-/var/cache/tillside-fresh}"
WORK="${TS_FRESH_WORK:-/var/tmp}"
DEMO_TIMEOUT="${TS_FRESH_DEMO_TIMEOUT:-900}"
STEPS=" ${TS_FRESH_STEPS:-test presets demo} "

log() { printf '\033[1m==> [%s] %s\033[0m\n' "$SUITE" "$*" >&2; }
die() { printf 'in-root.sh [%s]: %s\n' "$SUITE" "$*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "needs root (debootstrap, chroot, mounts)"
command -v debootstrap >/dev/null || die "needs debootstrap (apt-get install debootstrap)"

# The first Debian archive URI in this machine's apt sources (deb822 or
# one-line format), and the security archive's if there is one.
apt_uris() {
    local f
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [ -r "$f" ] || continue
        case "$f" in
        *.sources) awk '/^URIs:/ { for (i = 2; i <= NF; i++) print $i }' "$f" ;;
        *) awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; break } }' "$f" ;;
        esac
    done
}
MIRROR="${TS_FRESH_MIRROR:-$(apt_uris | grep -E '/debian/?$' | head -1)}"
SECURITY="$(apt_uris | grep -E '/debian-security/?$' | head -1 || true)"
[ -n "$MIRROR" ] || die "no Debian archive found in /etc/apt/sources*; set TS_FRESH_MIRROR"

BASE="$CACHE/$SUITE-base.tar"
mkdir -p "$CACHE/$SUITE-debs/partial"
if [ ! -s "$BASE" ]; then
    log "building the base root with debootstrap from $MIRROR (cached in $BASE)"
    tmp="$(mktemp -d "$WORK/ts-base-$SUITE.XXXXXX")"
    chmod 755 "$tmp"
    debootstrap --variant=minbase --include=git,ca-certificates "$SUITE" "$tmp" "$MIRROR" \
        >"$CACHE/$SUITE-debootstrap.log" 2>&1 || { tail -30 "$CACHE/$SUITE-debootstrap.log" >&2; rm -rf "$tmp"; die "debootstrap failed"; }
    {
        echo "deb $MIRROR $SUITE main"
        echo "deb $MIRROR $SUITE-updates main"
        [ -n "$SECURITY" ] && echo "deb $SECURITY $SUITE-security main"
    } >"$tmp/etc/apt/sources.list"
    rm -rf "$tmp/var/cache/apt/archives/"*.deb "$tmp/var/lib/apt/lists/"*
    tar -C "$tmp" -cf "$BASE.part" . && mv "$BASE.part" "$BASE"
    rm -rf "$tmp"
fi

[ "${TS_FRESH_BASE_ONLY:-0}" = 1 ] && { log "base root ready: $BASE"; exit 0; }

ROOTDIR="$(mktemp -d "$WORK/ts-fresh-$SUITE.XXXXXX")"
MOUNTS=()
cleanup() {
    local rc=$?
    # Anything still running inside the root is killed before unmounting.
    for p in /proc/[0-9]*; do
        [ "$(readlink "$p/root" 2>/dev/null)" = "$ROOTDIR" ] && kill -9 "${p#/proc/}" 2>/dev/null
    done
    local i
    for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do umount -l "${MOUNTS[i]}" 2>/dev/null || true; done
    [ "${TS_FRESH_KEEP:-0}" = 1 ] && log "kept $ROOTDIR" || rm -rf --one-file-system "$ROOTDIR"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "unpacking a fresh root in $ROOTDIR"
tar -C "$ROOTDIR" -xf "$BASE"
chmod 755 "$ROOTDIR" # it is /: every user inside (postgres, nobody) must be able to walk it
mnt() { # mnt SRC DEST [mount options...]
    local src="$1" dst="$ROOTDIR$2"; shift 2
    mkdir -p "$dst"
    mount "$@" "$src" "$dst"
    MOUNTS+=("$dst")
}
mnt proc /proc -t proc
mnt sysfs /sys -t sysfs
mnt /dev /dev --bind
mnt devpts /dev/pts -t devpts -o newinstance,ptmxmode=0666
mount --bind "$ROOTDIR/dev/pts/ptmx" "$ROOTDIR/dev/ptmx"; MOUNTS+=("$ROOTDIR/dev/ptmx")
mnt tmpfs /dev/shm -t tmpfs -o mode=1777
mnt tmpfs /run -t tmpfs -o mode=755
mnt "$CACHE/$SUITE-debs" /var/cache/apt/archives --bind
cp -L /etc/resolv.conf "$ROOTDIR/etc/resolv.conf"
cp -L /etc/hosts "$ROOTDIR/etc/hosts"

# The machine's CA certificates (a TLS-re-signing proxy's among them).
shopt -s nullglob
certs=(/usr/local/share/ca-certificates/*.crt)
shopt -u nullglob
if [ ${#certs[@]} -gt 0 ]; then
    cp "${certs[@]}" "$ROOTDIR/usr/local/share/ca-certificates/"
fi
chroot "$ROOTDIR" update-ca-certificates >/dev/null
# npm and Node use the system bundle (the proxy's CA included).
printf 'cafile=/etc/ssl/certs/ca-certificates.crt\n' >"$ROOTDIR/etc/npmrc"

log "cloning $COMMIT"
git clone -q --no-hardlinks "$HERE" "$ROOTDIR/root/tillside"
git -C "$ROOTDIR/root/tillside" -c advice.detachedHead=false checkout -q "$COMMIT"
chown -R 0:0 "$ROOTDIR/root/tillside"

inroot() { # inroot COMMAND...: as root in the fresh root, a clean environment
    chroot "$ROOTDIR" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM=dumb \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        CI="${CI:-}" NPM_CONFIG_CAFILE=/etc/ssl/certs/ca-certificates.crt \
        NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt "$@"
}
in_root_pids() {
    local p
    for p in /proc/[0-9]*; do
        [ "$(readlink "$p/root" 2>/dev/null)" = "$ROOTDIR" ] && echo "${p#/proc/}"
    done
    return 0
}

. "$ROOTDIR/etc/os-release"
log "inside: $PRETTY_NAME"
if [[ "$STEPS" == *" test "* ]]; then
    log "./run test"
    t0=$SECONDS
    inroot bash -c 'cd /root/tillside && ./run test' || die "./run test failed (after $((SECONDS - t0)) s)"
    log "./run test passed in $((SECONDS - t0)) s"
    left="$(in_root_pids)"
    [ -z "$left" ] || die "processes left running after ./run test: $(ps -o pid=,args= -p ${left//$'\n'/,})"
fi

if [[ "$STEPS" == *" presets "* ]]; then
    log "./run presets: every preset with -Werror on this release's gcc and clang"
    inroot bash -c 'cd /root/tillside && ./run presets' || die "./run presets failed"
fi

[[ "$STEPS" == *" demo "* ]] || { log "done: $STEPS"; exit 0; }
log "./run demo (in the background)"
t0=$SECONDS
inroot bash -c 'cd /root/tillside && exec setsid ./run demo </dev/null' >"$ROOTDIR/root/demo.out" 2>&1 &
demo=$!
ok=0
while [ $((SECONDS - t0)) -lt "$DEMO_TIMEOUT" ]; do
    kill -0 "$demo" 2>/dev/null || break
    if grep -q 'Associate page:' "$ROOTDIR/root/demo.out" 2>/dev/null &&
        inroot curl -fsS -o /root/page.html http://127.0.0.1:8765/ 2>/dev/null &&
        inroot curl -fsS -o /root/status.json http://127.0.0.1:8765/api/v1/status 2>/dev/null; then
        ok=1
        break
    fi
    sleep 2
done
if [ $ok -ne 1 ]; then
    tail -40 "$ROOTDIR/root/demo.out" >&2
    die "the demo did not serve its page and status within $DEMO_TIMEOUT s"
fi
log "demo up after $((SECONDS - t0)) s: page $(wc -c <"$ROOTDIR/root/page.html") bytes, status $(head -c 200 "$ROOTDIR/root/status.json")"
grep -qi '<html' "$ROOTDIR/root/page.html" || die "the associate page is not HTML"
sed -n '/replaying scans/,$p' "$ROOTDIR/root/demo.out" | sed 's/^/    demo| /' >&2
# Ctrl-C: SIGINT to the demo's process group, as a terminal sends it.
leader=""
for p in $(in_root_pids); do
    if tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -q 'tools/demo.py'; then
        leader="$p"
        break
    fi
done
[ -n "$leader" ] || die "no demo.py process found"
kill -INT -- "-$(ps -o pgid= -p "$leader" | tr -d ' ')"
for _ in $(seq 1 60); do
    kill -0 "$demo" 2>/dev/null || break
    sleep 0.5
done
kill -0 "$demo" 2>/dev/null && die "the demo did not stop within 30 s of SIGINT"
wait "$demo" && rc=0 || rc=$?
log "demo stopped by SIGINT (exit $rc)"
sleep 1
left="$(in_root_pids)"
[ -z "$left" ] || die "processes left running after the demo stopped: $(ps -o pid=,args= -p ${left//$'\n'/,})"
log "nothing left running; $SUITE passed"
