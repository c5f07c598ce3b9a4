-- +goose Up
ALTER TABLE things ADD COLUMN name TEXT NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE things DROP COLUMN name;
