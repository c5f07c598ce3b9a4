package user

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/google/uuid"

	userbiz "github.com/rampart-go/rampart/internal/biz/user"
	"github.com/rampart-go/rampart/internal/data"
)

// SQLStore keeps users in a SQLite file shared by every user instance on
// the host, so a user created through one instance is found by all.
type SQLStore struct {
	db     *sql.DB
	writes data.WriteGate
}

var _ userbiz.Repo = (*SQLStore)(nil)

// NewSQLStore opens path, creating the file if needed and migrating its
// schema up (see Schema); the cleanup closes the database.
func NewSQLStore(ctx context.Context, path string) (*SQLStore, func(), error) {
	db, cleanup, err := data.OpenSQLite(ctx, path, Schema)
	if err != nil {
		return nil, nil, err
	}
	return &SQLStore{db: db, writes: data.NewWriteGate()}, cleanup, nil
}

// Create assigns an ID and inserts u.
func (s *SQLStore) Create(ctx context.Context, u *userbiz.User) (*userbiz.User, error) {
	stored := *u
	stored.ID = uuid.NewString()
	if err := s.writes.Acquire(ctx); err != nil {
		return nil, err
	}
	defer s.writes.Release()
	if _, err := s.db.ExecContext(ctx, `INSERT INTO users (id, name, email) VALUES (?, ?, ?)`,
		stored.ID, stored.Name, stored.Email); err != nil {
		return nil, fmt.Errorf("insert user: %w", err)
	}
	return &stored, nil
}

// Get returns the user, or userbiz.ErrNotFound.
func (s *SQLStore) Get(ctx context.Context, id string) (*userbiz.User, error) {
	u := userbiz.User{ID: id}
	err := s.db.QueryRowContext(ctx, `SELECT name, email FROM users WHERE id = ?`, id).Scan(&u.Name, &u.Email)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, userbiz.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("select user: %w", err)
	}
	return &u, nil
}
