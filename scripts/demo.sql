-- The demo's orders: 100 users with 5 orders each, deterministic.
SET client_min_messages = warning;
CREATE TABLE orders (
    id           bigint        PRIMARY KEY,
    user_id      integer       NOT NULL,
    product_name text          NOT NULL,
    quantity     integer       NOT NULL,
    price        numeric(10,2) NOT NULL,
    order_date   timestamptz   NOT NULL
);
INSERT INTO orders (id, user_id, product_name, quantity, price, order_date)
SELECT (u - 1) * 5 + k, u,
       (ARRAY['Widget','Gadget','Gizmo','Sprocket','Flange'])[1 + (u + k) % 5],
       1 + (u * 7 + k) % 4,
       round(1 + ((u * 37 + k * 101) % 5000) / 100.0, 2),
       timestamptz '2026-01-01 00:00:00+00' + ((u * 7919 + k * 104729) % 525600) * interval '1 minute'
FROM generate_series(1, 100) AS u, generate_series(1, 5) AS k;
CREATE INDEX orders_user_id_order_date ON orders (user_id, order_date);
-- The products the orders name, with their catalogue prices (the "home" screen's one query
-- for the products of a user's latest orders: WHERE name = ANY($1::text[])).
CREATE TABLE products (
    name       text          PRIMARY KEY,
    unit_price numeric(10,2) NOT NULL,
    in_stock   boolean       NOT NULL
);
INSERT INTO products VALUES
    ('Widget', 12.50, true), ('Gadget', 24.00, true), ('Gizmo', 7.25, false),
    ('Sprocket', 3.10, true), ('Flange', 41.00, true);
