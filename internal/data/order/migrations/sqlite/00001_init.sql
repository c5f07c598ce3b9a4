-- The schema the order store created at open before migrations existed,
-- IF NOT EXISTS so that a database file from then is adopted as version 1.
-- Orders keep their insertion sequence so a user's list comes back oldest
-- first; idempotency keys keep theirs as a compact row key the expiry
-- sweep deletes by.

-- +goose Up
CREATE TABLE IF NOT EXISTS orders (
	seq      INTEGER PRIMARY KEY AUTOINCREMENT,
	id       TEXT NOT NULL UNIQUE,
	user_id  TEXT NOT NULL,
	item     TEXT NOT NULL,
	quantity INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS orders_by_user ON orders (user_id, seq);
CREATE TABLE IF NOT EXISTS idempotency_keys (
	seq        INTEGER PRIMARY KEY AUTOINCREMENT,
	key        TEXT NOT NULL UNIQUE,
	order_id   TEXT NOT NULL,
	expires_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS idempotency_keys_by_expiry ON idempotency_keys (expires_at);

-- +goose Down
DROP TABLE idempotency_keys;
DROP TABLE orders;
