#!/bin/sh
# Regenerates tests/engines/fixtures/drizzle/generated with the real drizzle-kit, offline:
# two schema versions give two generated migrations, then a custom (hand-written) one.
# Run from anywhere; it needs the npm tools in tools/node. The output is committed, so the tests
# do not depend on generation time (`when` in the journal is the time of generation).
# Usage: generate_drizzle_fixture.sh [OUT], OUT relative to the repository root; a test writes
# a fresh copy elsewhere to check that the committed one is still what drizzle-kit writes.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
# drizzle-kit resolves --out against the working directory, so it must be relative.
cd "$root"
out="${1:-tests/engines/fixtures/drizzle/generated}"
kit="$root/tools/node/node_modules/drizzle-kit/bin.cjs"
export NODE_PATH="$root/tools/node/node_modules"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rm -rf "$out"
cp "$here/drizzle_schema_v1.cjs" "$work/schema.cjs"
node "$kit" generate --dialect postgresql --schema "$work/schema.cjs" --out "$out" --name init
cp "$here/drizzle_schema_v2.cjs" "$work/schema.cjs"
node "$kit" generate --dialect postgresql --schema "$work/schema.cjs" --out "$out" --name posts
node "$kit" generate --dialect postgresql --schema "$work/schema.cjs" --out "$out" --custom \
  --name touch_trigger
# The custom migration's body: a trigger function whose dollar-quoted body contains semicolons,
# with statement breakpoints only between whole statements, as drizzle-kit's docs advise.
# drizzle-kit leaves the file without a final newline after its comment line.
cat >>"$out/0002_touch_trigger.sql" <<'SQL'

ALTER TABLE "posts" ADD COLUMN "updated_at" timestamp DEFAULT now() NOT NULL;
--> statement-breakpoint
CREATE FUNCTION posts_touch() RETURNS trigger AS $$
BEGIN
  NEW.updated_at := now();
  RETURN NEW;
END;
$$ LANGUAGE plpgsql;
--> statement-breakpoint
CREATE TRIGGER posts_touch BEFORE UPDATE ON "posts"
  FOR EACH ROW EXECUTE FUNCTION posts_touch();
SQL
