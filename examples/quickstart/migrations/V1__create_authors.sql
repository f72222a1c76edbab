-- id: create_authors
-- description: the authors table
CREATE TABLE authors (
    id INTEGER PRIMARY KEY,
    name VARCHAR(200) NOT NULL,
    created_ymdhis BIGINT NOT NULL
);
