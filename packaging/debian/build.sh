#!/bin/sh
# Build hwcache-exporter_<version>_<arch>.deb with dpkg-deb (`make deb` runs this).
#
# The package carries a ready venv in /usr/lib/hwcache-exporter/venv, built here with
# Debian's own python3.11 from the project wheel and dependency wheels fetched with pip;
# see README "Install with apt" for why. Environment:
#   DEB_VERSION     package version (default: <upstream version>-1)
#   DEB_OUTDIR      where the .deb goes (default: dist)
#   DEB_PYTHON      the target's interpreter (default: /usr/bin/python3.11)
#   DEB_MAINTAINER  Maintainer: field
#   DEB_COMPRESSION dpkg-deb -Z (default xz; the tests use gzip, three times faster)
set -eu

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
python=${DEB_PYTHON:-/usr/bin/python3.11}
outdir=${DEB_OUTDIR:-dist}
maintainer=${DEB_MAINTAINER:-hwcache-exporter maintainers <hwcache-exporter@packages.invalid>}
prefix=/usr/lib/hwcache-exporter
venv=$prefix/venv

[ -x "$python" ] || { echo "build.sh: $python missing (apt-get install python3.11-venv)" >&2; exit 1; }
pyver=$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
arch=$(dpkg --print-architecture)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
stage=$work/stage

# 1. Wheels: the project and every dependency (binary wheels preferred).
"$python" -m venv "$work/build-venv"
"$work/build-venv/bin/pip" install --quiet --upgrade pip
"$work/build-venv/bin/pip" wheel --quiet --prefer-binary --wheel-dir "$work/wheels" "$repo"
upstream=$(cd "$work/wheels" && ls hwcache_exporter-*.whl | sed -E 's/^hwcache_exporter-([^-]+)-.*/\1/')
version=${DEB_VERSION:-$upstream-1}
case $version in "$upstream"-*) ;; *)
    echo "build.sh: DEB_VERSION=$version must be $upstream-<revision>" >&2; exit 1 ;;
esac

# 2. The venv at its final path inside the staging tree, without pip (nothing installs
#    into it later), then every staging path rewritten to the installed one.
pip="$work/build-venv/bin/pip --python $stage$venv/bin/python"
"$python" -m venv --without-pip "$stage$venv"
$pip install --quiet --no-index --find-links "$work/wheels" hwcache-exporter
$pip freeze > "$work/bundled.txt"
find "$stage$venv" -name __pycache__ -prune -exec rm -rf {} +
grep -rlF "$stage" "$stage$venv" | xargs -r sed -i "s|$stage||g"
# Bytecode compiled now (hash-checked, recorded with the installed paths): the unit runs
# with PYTHONDONTWRITEBYTECODE=1 on a read-only /usr, so nothing is written at run time.
"$python" -m compileall -q -j 0 --invalidation-mode checked-hash -s "$stage" -p / \
    "$stage$venv/lib"
if grep -rlF "$stage" "$stage"; then echo "build.sh: staging path left in files" >&2; exit 1; fi

# 3. Service files: the repository's unit with the package's binary, the sysusers.d file,
#    the env template as a conffile, the tested drop-ins as examples.
install -d "$stage/usr/bin" "$stage/lib/systemd/system" "$stage/usr/lib/sysusers.d" \
    "$stage/etc/default" "$stage/usr/share/doc/hwcache-exporter/examples/drop-ins"
ln -s "../lib/hwcache-exporter/venv/bin/hwcache-exporter" "$stage/usr/bin/hwcache-exporter"
unit=$stage/lib/systemd/system/hwcache-exporter.service
sed 's|^ExecStart=/usr/local/bin/hwcache-exporter |ExecStart=/usr/bin/hwcache-exporter |' \
    "$repo/systemd/hwcache-exporter.service" > "$unit"
if [ "$(grep -c '^ExecStart=/usr/bin/hwcache-exporter ' "$unit")" != 1 ] || grep -q /usr/local "$unit"; then
    echo "build.sh: the unit's ExecStart is not the one this script rewrites" >&2; exit 1
fi
install -m 0644 "$repo/systemd/sysusers.d/hwcache-exporter.conf" "$stage/usr/lib/sysusers.d/"
install -m 0644 "$repo/systemd/hwcache-exporter.env" "$stage/etc/default/hwcache-exporter"
install -m 0644 "$repo/systemd/drop-ins/"*.conf "$stage/usr/share/doc/hwcache-exporter/examples/drop-ins/"
install -m 0644 "$here/copyright" "$work/bundled.txt" "$stage/usr/share/doc/hwcache-exporter/"
printf 'hwcache-exporter (%s) unstable; urgency=medium\n\n  * Package of upstream %s.\n\n -- %s  %s\n' \
    "$version" "$upstream" "$maintainer" "$(date -R -d "@${SOURCE_DATE_EPOCH:-$(git -C "$repo" log -1 --format=%ct 2>/dev/null || date +%s)}")" \
    | gzip -9n > "$stage/usr/share/doc/hwcache-exporter/changelog.Debian.gz"

# 4. Control files. glibc: the highest manylinux_X_Y among the bundled binary wheels.
glibc=$(cd "$work/wheels" && ls ./*.whl | grep -oE 'manylinux_[0-9]+_[0-9]+' \
    | sed -E 's/manylinux_([0-9]+)_([0-9]+)/\1.\2/' | sort -V | tail -n 1)
glibc=${glibc:-2.17}
install -d "$stage/DEBIAN"
install -m 0755 "$here/postinst" "$here/prerm" "$here/postrm" "$stage/DEBIAN/"
echo /etc/default/hwcache-exporter > "$stage/DEBIAN/conffiles"
(cd "$stage" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z \
    | xargs -0 md5sum) > "$stage/DEBIAN/md5sums"
size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
sed -e "s|@VERSION@|$version|" -e "s|@ARCH@|$arch|" -e "s|@MAINTAINER@|$maintainer|" \
    -e "s|@SIZE@|$size|" -e "s|@GLIBC@|$glibc|" \
    -e "s|@PYTHON@|python$pyver|" \
    "$here/control.in" > "$stage/DEBIAN/control"

mkdir -p "$outdir"
dpkg-deb --root-owner-group "-Z${DEB_COMPRESSION:-xz}" --build "$stage" "$outdir/hwcache-exporter_${version}_${arch}.deb" >/dev/null
echo "$outdir/hwcache-exporter_${version}_${arch}.deb"
