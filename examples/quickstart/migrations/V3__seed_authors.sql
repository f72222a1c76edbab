-- id: seed_authors
-- depends_on: [create_authors]
-- description: the first two authors; a string with a semicolon; stays one statement
INSERT INTO authors (id, name, created_ymdhis) VALUES (1, 'Captain Wolfie', 20260101000000);
INSERT INTO authors (id, name, created_ymdhis) VALUES (2, 'Ada; the second', 20260102000000);
-- lupo:down
DELETE FROM authors WHERE id IN (1, 2);
