// Prisma CLI 6.19.3 offline: its WebAssembly schema engine through a driver adapter that runs
// each migration.sql as one query (whole_script_adapter.cjs). Copied next to the schema and the
// migrations folder by the tests and the fixture script; DATABASE_URL comes from the environment.
const { adapter } = require(process.env.STAGECRAFT_PRISMA_ADAPTER as string);

export default {
  experimental: { adapter: true },
  engine: "js",
  schema: "schema.prisma",
  migrations: { path: "migrations" },
  adapter: async () => adapter(process.env.DATABASE_URL),
};
