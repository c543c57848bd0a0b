#!/usr/bin/env bash
# Build Agent Phone as a self-contained Linux app (docs/packaging.md):
#
#   bash packaging/build.sh          -> dist/agent-phone/agent-phone (one folder, one executable)
#   bash packaging/build.sh --deb    -> also dist/agent-phone_VERSION_ARCH.deb
#   bash packaging/build.sh --clean  -> rebuild from scratch (drops PyInstaller's cache in build/)
#
# Steps: make sure .venv exists with the GUI extras (./dev setup) and PyInstaller
# (pip install into .venv), and that Debian's libportaudio2 and the shared
# libpython are installed (as root they are apt-get installed; otherwise the
# command is printed); then run PyInstaller on packaging/agent-phone.spec, and
# check the result: every bundled library resolves, and the executable starts
# (--version, platform/caller --help, selfcheck offscreen). Last, it touches the
# executable: tests/test_packaging.py reuses a bundle newer than the sources.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"
DIST="$ROOT/dist"
BUNDLE="$DIST/agent-phone"
WORK="$ROOT/build/pyinstaller"
PYINSTALLER_REQ='pyinstaller>=6,<7'

say() { printf 'build: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

deb=0
clean=()
for arg in "$@"; do
    case "$arg" in
        --deb) deb=1 ;;
        --clean) clean=(--clean) ;;
        -h|--help) sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option $arg (try --help)" ;;
    esac
done

[[ "$(uname -s)" == Linux ]] \
    || die "this script builds the Linux app; on Windows/macOS run: pyinstaller --noconfirm packaging/agent-phone.spec"

start=$SECONDS

# 1. The virtualenv, with the project and its GUI extras.
if [[ ! -x "$PY" ]]; then
    say ".venv is missing: running ./dev setup"
    ./dev setup
fi
"$PY" -c 'import PySide6.QtWidgets, qasync, keyring, sounddevice, aiortc' 2>/dev/null \
    || die ".venv lacks the app or its GUI extras (PySide6, qasync, keyring): run ./dev setup"

# 2. PyInstaller, in the same venv (it freezes what that venv has installed).
if ! "$PY" -c 'import PyInstaller, sys; sys.exit(int(PyInstaller.__version__.split(".")[0]) != 6)' 2>/dev/null; then
    say "installing PyInstaller into .venv: pip install '$PYINSTALLER_REQ'"
    PIP_DISABLE_PIP_VERSION_CHECK=1 "$PY" -m pip install -q "$PYINSTALLER_REQ" \
        || die "could not install PyInstaller"
fi

# 3. The libraries PyInstaller copies from the system: PortAudio, and the
#    shared libpython it needs (Debian's python3 links it statically).
need_debs=()
if ! /sbin/ldconfig -p | grep -q 'libportaudio\.so\.2 '; then
    need_debs+=(libportaudio2)
fi
if ! "$PY" - <<'PY' 2>/dev/null; then
import ctypes, sysconfig
ctypes.CDLL(sysconfig.get_config_var("INSTSONAME"))
PY
    need_debs+=("lib$("$PY" -c 'import sys; print("python%d.%d" % sys.version_info[:2])')")
fi
if (( ${#need_debs[@]} )); then
    if [[ "$(id -u)" -eq 0 ]] && command -v apt-get >/dev/null; then
        say "installing Debian packages: ${need_debs[*]}"
        apt=(apt-get -q -o DPkg::Lock::Timeout=300)
        export DEBIAN_FRONTEND=noninteractive
        "${apt[@]}" install -y --no-install-recommends "${need_debs[@]}" >/dev/null 2>&1 \
            || { "${apt[@]}" update >/dev/null \
                 && "${apt[@]}" install -y --no-install-recommends "${need_debs[@]}" >/dev/null; } \
            || die "apt-get install ${need_debs[*]} failed"
    else
        die "missing Debian packages: ${need_debs[*]}; install them with:
    sudo apt-get install -y --no-install-recommends ${need_debs[*]}"
    fi
fi

# 4. PyInstaller.
say "running PyInstaller ($("$PY" -c 'import PyInstaller; print(PyInstaller.__version__)')); log: build/pyinstaller.log"
mkdir -p "$ROOT/build"
rm -rf "$BUNDLE"
t0=$SECONDS
if ! "$PY" -m PyInstaller --noconfirm "${clean[@]}" --log-level WARN \
        --distpath "$DIST" --workpath "$WORK" packaging/agent-phone.spec \
        >"$ROOT/build/pyinstaller.log" 2>&1; then
    tail -n 40 "$ROOT/build/pyinstaller.log" | sed 's/^/    /' >&2
    die "PyInstaller failed (full log: build/pyinstaller.log)"
fi
say "PyInstaller took $((SECONDS - t0)) s"

# 5. Checks: every bundled ELF file finds its libraries (in the bundle or on
#    this system), and the executable runs.
exe="$BUNDLE/agent-phone"
[[ -x "$exe" ]] || die "$exe was not made"
# (libwayland-* are left to the system by PyInstaller: only Qt's Wayland
# plugin needs them, and every Wayland desktop has them.)
missing="$(find "$BUNDLE" -type f \( -name '*.so*' -o -name agent-phone \) -print0 \
    | xargs -0 -n 50 ldd 2>/dev/null | grep 'not found' | grep -v 'libwayland-' | sort -u || true)"
if [[ -n "$missing" ]]; then
    say "warning: bundled libraries that need libraries this system lacks:"
    printf '%s\n' "$missing" | sed 's/^/    /' >&2
fi
[[ -f "$BUNDLE/_internal/libportaudio.so.2" ]] || die "PortAudio was not bundled"
for plugin in libqxcb.so libqoffscreen.so; do
    find "$BUNDLE" -name "$plugin" | grep -q . || die "the Qt platform plugin $plugin was not bundled"
done
run() { (cd / && env -u PYTHONPATH -u AGENT_PHONE_RESOURCES "$@"); }
version="$(run "$exe" --version)" || die "$exe --version failed"
run "$exe" caller --help >/dev/null || die "$exe caller --help failed"
run "$exe" platform --help >/dev/null || die "$exe platform --help failed"
# Resources, Qt's offscreen plugin and SVG icon engine (PortAudio is checked by
# tests/test_packaging.py, which has a sound server to offer).
check="$(run env QT_QPA_PLATFORM=offscreen "$exe" selfcheck --no-audio 2>&1)" \
    || die "$exe selfcheck failed:
$check"
# Marks the bundle complete and checked: tests/test_packaging.py reuses a
# bundle whose executable is newer than every source file.
touch "$exe"
say "built $version: $exe ($(du -sh "$BUNDLE" | cut -f1))"

# 6. Optionally a .deb: the folder in /opt/agent-phone, a command on PATH, the menu entry.
if (( deb )); then
    arch="$(dpkg --print-architecture)"
    ver="${version##* }"
    stage="$ROOT/build/deb/agent-phone_${ver}_${arch}"
    rm -rf "$stage"
    mkdir -p "$stage/DEBIAN" "$stage/opt" "$stage/usr/bin" \
        "$stage/usr/share/applications" "$stage/usr/share/icons/hicolor/scalable/apps"
    cp -a "$BUNDLE" "$stage/opt/agent-phone"
    rm -f "$stage/opt/agent-phone/install-desktop-entry.sh"
    ln -s /opt/agent-phone/agent-phone "$stage/usr/bin/agent-phone"
    cp "$BUNDLE/share/applications/agent-phone.desktop" "$stage/usr/share/applications/"
    if [[ -f "$BUNDLE/share/icons/hicolor/scalable/apps/agent-phone.svg" ]]; then
        cp "$BUNDLE/share/icons/hicolor/scalable/apps/agent-phone.svg" \
            "$stage/usr/share/icons/hicolor/scalable/apps/"
    fi
    # Depends: the Debian packages of the libraries the bundle takes from this
    # system (the spec's SYSTEM_LIBS, glibc, the OpenGL/X11 libraries PyInstaller
    # never bundles), found as the app finds them: ldd with the bootloader's
    # LD_LIBRARY_PATH. Qt's Wayland plugin's libraries only go to Recommends.
    mapfile -t sys_pkgs < <(
        find "$BUNDLE" -type f -name '*.so*' -print0 \
            | LD_LIBRARY_PATH="$BUNDLE/_internal" xargs -0 -n 50 ldd 2>/dev/null \
            | awk '/=> \// {print $3}' | grep -v "^$BUNDLE/" | sort -u \
            | while read -r lib; do
                dpkg -S "$(readlink -f "$lib")" 2>/dev/null || dpkg -S "$lib" 2>/dev/null || true
            done | cut -d: -f1 | sort -u | grep -v -e '^libwayland' -e '^libc6$'
    )
    glibc="$(dpkg-query -W -f='${Version}' libc6 | sed 's/-.*//')"
    depends="libc6 (>= $glibc)$(printf ', %s' "${sys_pkgs[@]}")"
    cat >"$stage/DEBIAN/control" <<EOF
Package: agent-phone
Version: $ver
Architecture: $arch
Maintainer: Agent Phone developers <agent-phone@localhost>
Section: comm
Priority: optional
Installed-Size: $(du -sk "$stage" | cut -f1)
Depends: $depends
Recommends: libasound2-plugins, pulseaudio | pipewire-pulse, libwayland-client0, libwayland-cursor0, libwayland-egl1
Description: Desktop WebRTC softphone for contact-center agents
 Agent Phone takes contact-center calls over WebRTC and keeps a persistent
 media connection to the platform between calls. This package also carries
 the platform (agent-phone platform) and a caller tool (agent-phone caller).
EOF
    t0=$SECONDS
    # zstd -9: 108 MB in ~16 s here; xz -6 would be 87 MB in ~180 s. (dpkg reads
    # zstd since 1.21.18, Debian 12; Ubuntu's since 21.10.)
    dpkg-deb --root-owner-group -Zzstd -z9 --threads-max=0 --build "$stage" "$DIST/" >/dev/null \
        || die "dpkg-deb failed"
    say "built $DIST/agent-phone_${ver}_${arch}.deb ($(du -h "$DIST/agent-phone_${ver}_${arch}.deb" | cut -f1), $((SECONDS - t0)) s)"
fi

say "done in $((SECONDS - start)) s"
