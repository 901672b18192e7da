// CREATE INDEX CONCURRENTLY cannot run inside a transaction block.
exports.config = { transaction: false };

exports.up = (knex) => knex.raw('CREATE INDEX CONCURRENTLY posts_user_id ON posts (user_id)');

exports.down = (knex) => knex.raw('DROP INDEX CONCURRENTLY posts_user_id');
