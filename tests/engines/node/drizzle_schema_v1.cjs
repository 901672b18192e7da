// First version of the small schema that `generate_drizzle_fixture.sh` feeds to drizzle-kit.
const { pgTable, serial, text } = require("drizzle-orm/pg-core");

exports.users = pgTable("users", {
  id: serial("id").primaryKey(),
  email: text("email").notNull().unique(),
  name: text("name"),
});
