exports.up = async (knex) => {
  await knex('users').insert({ email: 'admin@example.com' });
};

exports.down = (knex) => knex('users').where({ email: 'admin@example.com' }).del();
