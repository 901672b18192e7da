// A typical application's knexfile: the connection comes from DATABASE_URL, never from the file.
module.exports = {
  development: {
    client: 'pg',
    connection: process.env.DATABASE_URL,
    migrations: { directory: './migrations' },
  },
  production: {
    client: 'pg',
    connection: process.env.DATABASE_URL,
    pool: { min: 0, max: 2 },
    migrations: { directory: './migrations', tableName: 'knex_migrations' },
  },
};
