-- workload.sql — a scripted sqlite3 workload for the real-program tests: a table, inserts
-- in a transaction, indexes and aggregate queries. The tests run it with and without
-- swmalloc preloaded and compare the output.
CREATE TABLE items (id INTEGER PRIMARY KEY, grp INTEGER, name TEXT, price REAL, note TEXT);
BEGIN;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 50000)
INSERT INTO items (grp, name, price, note)
SELECT i % 97, 'item-' || i, (i * 7919 % 10007) / 100.0, substr(hex(randomblob(0)) || printf('%0*d', i % 200, 0), 1, 200)
FROM n;
COMMIT;
CREATE INDEX items_grp ON items (grp);
CREATE INDEX items_name ON items (name);
CREATE TABLE groups AS SELECT grp, count(*) AS n, sum(price) AS total FROM items GROUP BY grp;
SELECT count(*), sum(price), min(name), max(name) FROM items;
SELECT grp, n, printf('%.2f', total) FROM groups ORDER BY total DESC LIMIT 10;
SELECT grp, count(*), printf('%.2f', avg(price)) FROM items WHERE grp BETWEEN 10 AND 20 GROUP BY grp;
SELECT name FROM items WHERE name LIKE 'item-4999%' ORDER BY name;
UPDATE items SET price = price * 2 WHERE grp % 3 = 0;
DELETE FROM items WHERE id % 5 = 0;
SELECT count(*), printf('%.2f', sum(price)), group_concat(DISTINCT length(note)) FROM items;
SELECT i.grp, count(*), printf('%.2f', sum(i.price) / g.n) FROM items i JOIN groups g ON g.grp = i.grp GROUP BY i.grp ORDER BY i.grp LIMIT 5;
VACUUM;
PRAGMA integrity_check;
