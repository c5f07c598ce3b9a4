package data

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/google/uuid"

	"github.com/rampart-go/rampart/internal/biz"
)

const userSchema = `
CREATE TABLE IF NOT EXISTS users (
	id    TEXT PRIMARY KEY,
	name  TEXT NOT NULL,
	email TEXT NOT NULL
);`

// SQLUserStore keeps users in a SQLite file shared by every user instance
// on the host, so a user created through one instance is found by all.
type SQLUserStore struct {
	db     *sql.DB
	writes writeGate
}

var _ biz.UserRepo = (*SQLUserStore)(nil)

// NewSQLUserStore opens path, creating the file and schema if needed; the
// cleanup closes the database.
func NewSQLUserStore(ctx context.Context, path string) (*SQLUserStore, func(), error) {
	db, cleanup, err := openSQLite(ctx, path, userSchema)
	if err != nil {
		return nil, nil, err
	}
	return &SQLUserStore{db: db, writes: newWriteGate()}, cleanup, nil
}

// Create assigns an ID and inserts u.
func (s *SQLUserStore) Create(ctx context.Context, u *biz.User) (*biz.User, error) {
	stored := *u
	stored.ID = uuid.NewString()
	if err := s.writes.acquire(ctx); err != nil {
		return nil, err
	}
	defer s.writes.release()
	if _, err := s.db.ExecContext(ctx, `INSERT INTO users (id, name, email) VALUES (?, ?, ?)`,
		stored.ID, stored.Name, stored.Email); err != nil {
		return nil, fmt.Errorf("insert user: %w", err)
	}
	return &stored, nil
}

// Get returns the user, or biz.ErrUserNotFound.
func (s *SQLUserStore) Get(ctx context.Context, id string) (*biz.User, error) {
	u := biz.User{ID: id}
	err := s.db.QueryRowContext(ctx, `SELECT name, email FROM users WHERE id = ?`, id).Scan(&u.Name, &u.Email)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, biz.ErrUserNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("select user: %w", err)
	}
	return &u, nil
}
