#!/usr/bin/env bash
# `make demo`: the example shop's migrations on an embedded SQLite database, step by step.
# Everything happens in a temporary folder that is removed at the end.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
stagecraft="${STAGECRAFT:-$here/../.venv/bin/stagecraft}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp -r "$here/shop" "$work/shop"
export DATABASE_URL="sqlite:///$work/shop.db"
cd "$work/shop"

step() { printf '\n\033[1m== %s\033[0m\n' "$1"; }
# Print the command as a reader would type it, then run it.
show() { printf '$ stagecraft %s\n' "${*:2}"; "$@"; }

step "1. What would run? (plan changes nothing)"
show "$stagecraft" migrate plan --config stagecraft.yml

step "2. Apply: each migration commits together with its tracking row"
show "$stagecraft" migrate run --config stagecraft.yml

step "3. Run again: nothing to do"
show "$stagecraft" migrate run --config stagecraft.yml

step "4. A new migration with a mistake: the error names file, line and column; nothing is recorded"
cat > migrations/20260104090000_add_loyalty_points.sql <<'SQL'
ALTER TABLE customers ADD COLUMN loyalty_points integer NOT NULL DEFAULT 0;
UPDATE customers SET loyalty_points = 10 WHERE emial LIKE '%@example.com';
SQL
set +e
show "$stagecraft" migrate run --config stagecraft.yml
code=$?
set -e
echo "(exit code $code: a migration failed)"
show "$stagecraft" migrate status --config stagecraft.yml

step "5. Fix the typo and run again"
sed -i 's/emial/email/' migrations/20260104090000_add_loyalty_points.sql
show "$stagecraft" migrate run --config stagecraft.yml
show "$stagecraft" migrate status --config stagecraft.yml
