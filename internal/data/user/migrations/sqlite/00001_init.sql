-- The schema the user store created at open before migrations existed,
-- IF NOT EXISTS so that a database file from then is adopted as version 1.

-- +goose Up
CREATE TABLE IF NOT EXISTS users (
	id    TEXT PRIMARY KEY,
	name  TEXT NOT NULL,
	email TEXT NOT NULL
);

-- +goose Down
DROP TABLE users;
