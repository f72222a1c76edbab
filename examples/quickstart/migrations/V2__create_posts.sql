-- id: create_posts
-- depends_on: [create_authors]
-- description: posts written by authors
CREATE TABLE posts (
    id INTEGER PRIMARY KEY,
    author_id INTEGER NOT NULL,
    title VARCHAR(300) NOT NULL,
    body TEXT
);
CREATE INDEX idx_posts_author ON posts (author_id);
