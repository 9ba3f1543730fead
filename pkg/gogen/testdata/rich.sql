-- The tables of rich.schema.yml: 40 items, every third with no optional
-- value, no brand and no related rows, so both a value and null reach each
-- field.
CREATE TABLE brands (id bigint PRIMARY KEY, name text NOT NULL);
CREATE TABLE groups (id bigint PRIMARY KEY, name text NOT NULL);
CREATE TABLE items (
  id bigint PRIMARY KEY,
  name text NOT NULL,
  sku text, email text, kind text, priority text, ref uuid,
  active boolean, rank smallint, stock integer, views bigint,
  ratio real, score double precision, price numeric(10, 2),
  released date, updated_at timestamp, seen_at timestamptz,
  thumbnail bytea, attrs jsonb, lat double precision, lon double precision,
  spot text, weight double precision, carrier text, labels jsonb,
  brand_id bigint REFERENCES brands
);
CREATE TABLE manuals (id bigint PRIMARY KEY, item_id bigint NOT NULL REFERENCES items, url text);
CREATE TABLE variants (id bigint PRIMARY KEY, item_id bigint NOT NULL REFERENCES items, state text, price numeric(10, 2));
CREATE TABLE reviews (id bigint PRIMARY KEY, variant_id bigint NOT NULL REFERENCES variants, item_id bigint NOT NULL REFERENCES items, stars smallint, body text, at timestamp);
CREATE TABLE item_groups (item_id bigint REFERENCES items, group_id bigint REFERENCES groups, PRIMARY KEY (item_id, group_id));

INSERT INTO brands SELECT i, 'Brand ' || i FROM generate_series(1, 4) i;
INSERT INTO groups SELECT i, (ARRAY['garden', 'kitchen', 'tools', 'toys'])[i] FROM generate_series(1, 4) i;
INSERT INTO items
SELECT i, 'Item ' || i || (ARRAY[' espresso maker', ' garden hose', ' hammer', ''])[i % 4 + 1],
  'SK-' || lpad(i::text, 4, '0'), ' Item' || i || '@Example.com ', (ARRAY['new', 'used'])[i % 2 + 1],
  (ARRAY['low', 'medium', 'high', 'urgent'])[i % 4 + 1], md5(i::text)::uuid,
  i % 2 = 0, i, i * 10, i::bigint * 1000000000, i / 8.0, i / 3.0, i * 1.25,
  date '2024-01-01' + i, timestamp '2024-01-01 10:00:00.5' + i * interval '1 hour',
  timestamptz '2024-01-01 10:00:00+02' + i * interval '1 minute',
  decode(lpad(to_hex(i), 6, '0'), 'hex'), jsonb_build_object('n', i, 'tags', jsonb_build_array('a', 'b' || i)),
  45 + i / 100.0, 9 + i / 100.0, round(45 + i / 10.0, 1) || ',' || round(7 + i / 10.0, 1),
  i * 0.5, (ARRAY['ups', 'dhl'])[i % 2 + 1], jsonb_build_object('color', (ARRAY['red', 'blue'])[i % 2 + 1]),
  i % 4 + 1
FROM generate_series(1, 40) i WHERE i % 3 <> 0;
INSERT INTO items (id, name) SELECT i, 'Bare item ' || i FROM generate_series(1, 40) i WHERE i % 3 = 0;
INSERT INTO manuals SELECT i, i, 'https://example.com/manual/' || i FROM generate_series(1, 40) i WHERE i % 3 <> 0;
INSERT INTO variants SELECT i * 10 + v, i, (ARRAY['draft', 'live'])[v], i + v * 0.5
  FROM generate_series(1, 40) i, generate_series(1, 2) v WHERE i % 3 <> 0;
INSERT INTO reviews SELECT i * 100 + v, i * 10 + v, i, (i + v) % 5 + 1, 'Review ' || i || ' ' || v, timestamp '2024-02-01' + (i * 10 + v) * interval '1 day'
  FROM generate_series(1, 40) i, generate_series(1, 2) v WHERE i % 3 <> 0;
INSERT INTO item_groups SELECT i, i % 4 + 1 FROM generate_series(1, 40) i WHERE i % 3 <> 0;
INSERT INTO item_groups SELECT i, (i + 1) % 4 + 1 FROM generate_series(1, 40) i WHERE i % 5 = 0 AND i % 3 <> 0;
