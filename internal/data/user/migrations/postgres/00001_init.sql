-- +goose Up
CREATE TABLE users (
	id    TEXT PRIMARY KEY,
	name  TEXT NOT NULL,
	email TEXT NOT NULL
);

-- +goose Down
DROP TABLE users;
