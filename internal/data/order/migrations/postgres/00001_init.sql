-- Orders keep their insertion sequence: a user's list comes back in seq
-- order, and (user_id, seq) is the key a page of it continues from.
-- An idempotency key points at the order it created; the reference is
-- checked at commit, since CreateOnce claims the key before it inserts the
-- order, in one transaction. Keys expire by expires_at (a background sweep
-- deletes them); there is no cap on how many are held.

-- +goose Up
CREATE TABLE orders (
	seq      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	id       TEXT NOT NULL UNIQUE,
	user_id  TEXT NOT NULL,
	item     TEXT NOT NULL,
	quantity INTEGER NOT NULL
);
CREATE INDEX orders_by_user ON orders (user_id, seq);
CREATE TABLE idempotency_keys (
	key        TEXT PRIMARY KEY,
	order_id   TEXT NOT NULL REFERENCES orders (id) DEFERRABLE INITIALLY DEFERRED,
	expires_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX idempotency_keys_by_expiry ON idempotency_keys (expires_at);

-- +goose Down
DROP TABLE idempotency_keys;
DROP TABLE orders;
