package user

import (
	"context"
	"sync"

	"github.com/google/uuid"

	userbiz "github.com/rampart-go/rampart/internal/biz/user"
)

// Store keeps users in memory; it is the embedded default behind
// userbiz.Repo and loses its contents when the process exits.
type Store struct {
	mu    sync.RWMutex
	users map[string]userbiz.User
}

var _ userbiz.Repo = (*Store)(nil)

// NewStore returns an empty store.
func NewStore() *Store {
	return &Store{users: make(map[string]userbiz.User)}
}

// Create assigns an ID and stores a copy of u.
func (s *Store) Create(_ context.Context, u *userbiz.User) (*userbiz.User, error) {
	stored := *u
	stored.ID = uuid.NewString()
	s.mu.Lock()
	s.users[stored.ID] = stored
	s.mu.Unlock()
	out := stored
	return &out, nil
}

// Get returns a copy of the user, or userbiz.ErrNotFound.
func (s *Store) Get(_ context.Context, id string) (*userbiz.User, error) {
	s.mu.RLock()
	u, ok := s.users[id]
	s.mu.RUnlock()
	if !ok {
		return nil, userbiz.ErrNotFound
	}
	return &u, nil
}
