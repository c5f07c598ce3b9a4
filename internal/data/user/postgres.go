package user

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	userbiz "github.com/rampart-go/rampart/internal/biz/user"
	"github.com/rampart-go/rampart/internal/data"
)

// PGStore keeps users in PostgreSQL, one database shared by every user
// instance on every host.
type PGStore struct {
	pool *pgxpool.Pool
}

var _ userbiz.Repo = (*PGStore)(nil)

// NewPGStore returns a store on pool, whose schema the caller has migrated
// (data.OpenPostgres with Schema).
func NewPGStore(pool *pgxpool.Pool) *PGStore { return &PGStore{pool: pool} }

// Create assigns an ID and inserts u.
func (s *PGStore) Create(ctx context.Context, u *userbiz.User) (*userbiz.User, error) {
	stored := *u
	stored.ID = uuid.NewString()
	if _, err := s.pool.Exec(ctx, `INSERT INTO users (id, name, email) VALUES ($1, $2, $3)`,
		stored.ID, stored.Name, stored.Email); err != nil {
		return nil, data.DatabaseError(ctx, fmt.Errorf("insert user: %w", err))
	}
	return &stored, nil
}

// Get returns the user, or userbiz.ErrNotFound.
func (s *PGStore) Get(ctx context.Context, id string) (*userbiz.User, error) {
	u := userbiz.User{ID: id}
	err := s.pool.QueryRow(ctx, `SELECT name, email FROM users WHERE id = $1`, id).Scan(&u.Name, &u.Email)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, userbiz.ErrNotFound
	}
	if err != nil {
		return nil, data.DatabaseError(ctx, fmt.Errorf("select user: %w", err))
	}
	return &u, nil
}
