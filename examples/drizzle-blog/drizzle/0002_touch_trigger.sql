-- Custom SQL migration file, put your code below! --
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
