-- id: add_post_status
-- depends_on: [create_posts]
ALTER TABLE posts ADD COLUMN status VARCHAR(20) NOT NULL DEFAULT 'draft';
