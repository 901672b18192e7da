exports.up = (knex) =>
  knex.schema.createTable('posts', (table) => {
    table.increments('id');
    table.integer('user_id').references('users.id');
    table.text('body');
  });

exports.down = (knex) => knex.schema.dropTable('posts');
