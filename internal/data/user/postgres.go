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
	pool   *pgxpool.Pool
	schema *data.SchemaState
}

var _ userbiz.Repo = (*PGStore)(nil)

// NewPGStore returns a store on db (data.OpenPostgres with Schema). Until
// db's schema is migrated every call fails at once with a
// biz.DependencyError for the database.
func NewPGStore(db *data.Postgres) *PGStore { return &PGStore{pool: db.Pool, schema: db.Schema} }

// Create assigns an ID and inserts u.
func (s *PGStore) Create(ctx context.Context, u *userbiz.User) (*userbiz.User, error) {
	if err := s.schema.Err(); err != nil {
		return nil, err
	}
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
	if err := s.schema.Err(); err != nil {
		return nil, err
	}
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
