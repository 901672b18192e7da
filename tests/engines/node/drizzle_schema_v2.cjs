// Second version: a new table with a foreign key and an index, so drizzle-kit writes several
// statements separated by `--> statement-breakpoint` lines.
const { pgTable, serial, text, integer, timestamp, index } = require("drizzle-orm/pg-core");

exports.users = pgTable("users", {
  id: serial("id").primaryKey(),
  email: text("email").notNull().unique(),
  name: text("name"),
});

exports.posts = pgTable(
  "posts",
  {
    id: serial("id").primaryKey(),
    authorId: integer("author_id")
      .notNull()
      .references(() => exports.users.id),
    title: text("title").notNull(),
    createdAt: timestamp("created_at").defaultNow().notNull(),
  },
  (table) => [index("posts_author_idx").on(table.authorId)],
);
