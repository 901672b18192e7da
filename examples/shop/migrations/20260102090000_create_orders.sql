CREATE TABLE orders (
    id           integer PRIMARY KEY,
    customer_id  integer NOT NULL REFERENCES customers (id),
    total_cents  integer NOT NULL CHECK (total_cents >= 0),
    placed_at    text NOT NULL
);
CREATE INDEX orders_by_customer ON orders (customer_id);
