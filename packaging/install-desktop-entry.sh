#!/bin/sh
# Put Agent Phone in the current user's application menu, run from this folder:
#   ./install-desktop-entry.sh            install (~/.local/share/applications, icons)
#   ./install-desktop-entry.sh --remove   remove both again
# The entry starts this folder's agent-phone; move the folder, run it again.
# (The .deb from packaging/build.sh --deb installs system-wide instead.)
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
data="${XDG_DATA_HOME:-$HOME/.local/share}"
entry="$data/applications/agent-phone.desktop"
icon="$data/icons/hicolor/scalable/apps/agent-phone.svg"
if [ "${1:-}" = "--remove" ]; then
    rm -f "$entry" "$icon"
    echo "removed $entry"
    exit 0
fi
mkdir -p "$(dirname "$entry")" "$(dirname "$icon")"
# Exec and TryExec get this folder's absolute path. Exec is quoted by the
# Desktop Entry rules: \ " ` $ escaped inside "...", each backslash doubled again
# because the value itself is an escaped string.
exe="$here/agent-phone"
quoted="\"$(printf '%s' "$exe" | sed -e 's/\\/\\\\\\\\/g' -e 's/["`$]/\\\\&/g')\""
while IFS= read -r line; do
    case "$line" in
        Exec=*) printf 'Exec=%s\n' "$quoted" ;;
        TryExec=*) printf 'TryExec=%s\n' "$exe" ;;
        *) printf '%s\n' "$line" ;;
    esac
done <"$here/share/applications/agent-phone.desktop" >"$entry"
if [ -f "$here/share/icons/hicolor/scalable/apps/agent-phone.svg" ]; then
    cp "$here/share/icons/hicolor/scalable/apps/agent-phone.svg" "$icon"
fi
command -v update-desktop-database >/dev/null 2>&1 \
    && update-desktop-database "$data/applications" >/dev/null 2>&1 || true
echo "installed $entry (starts $exe)"
