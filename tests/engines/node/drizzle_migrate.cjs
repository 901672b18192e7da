// Applies Drizzle migrations folders with drizzle-orm's own node-postgres migrator, as an
// application calling `migrate(db, { migrationsFolder })` at start-up does.
// Usage: node drizzle_migrate.cjs '<json>' where json is a list of jobs
//   [{"url": "postgresql://...", "folder": "...", "table": "...", "schema": "..."}, ...]
// Jobs run in order (one node start-up for several runs); each job's outcome is printed as one
// JSON line: {"ok": true} or {"ok": false, "error": "...", "code": "..."}.
const { Client } = require("pg");
const { drizzle } = require("drizzle-orm/node-postgres");
const { migrate } = require("drizzle-orm/node-postgres/migrator");

async function main() {
  for (const job of JSON.parse(process.argv[2])) {
    const client = new Client({ connectionString: job.url });
    await client.connect();
    const config = { migrationsFolder: job.folder };
    if (job.table) config.migrationsTable = job.table;
    if (job.schema) config.migrationsSchema = job.schema;
    try {
      await migrate(drizzle(client), config);
      console.log(JSON.stringify({ ok: true }));
    } catch (error) {
      const cause = error.cause ?? error;
      console.log(JSON.stringify({ ok: false, error: String(cause.message), code: cause.code }));
    } finally {
      await client.end();
    }
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
