-- id: create_countries
-- description: the table the seed file fills
CREATE TABLE countries (
    code CHAR(2) PRIMARY KEY,
    name VARCHAR(100) NOT NULL,
    population BIGINT
);
