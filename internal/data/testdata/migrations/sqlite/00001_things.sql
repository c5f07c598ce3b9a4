-- +goose Up
CREATE TABLE things (id TEXT PRIMARY KEY);

-- +goose Down
DROP TABLE things;
