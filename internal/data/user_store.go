package data

import (
	"context"
	"sync"

	"github.com/google/uuid"

	"github.com/rampart-go/rampart/internal/biz"
)

// UserStore keeps users in memory; it is the embedded default behind
// biz.UserRepo and loses its contents when the process exits.
type UserStore struct {
	mu    sync.RWMutex
	users map[string]biz.User
}

var _ biz.UserRepo = (*UserStore)(nil)

// NewUserStore returns an empty store.
func NewUserStore() *UserStore {
	return &UserStore{users: make(map[string]biz.User)}
}

// Create assigns an ID and stores a copy of u.
func (s *UserStore) Create(_ context.Context, u *biz.User) (*biz.User, error) {
	stored := *u
	stored.ID = uuid.NewString()
	s.mu.Lock()
	s.users[stored.ID] = stored
	s.mu.Unlock()
	out := stored
	return &out, nil
}

// Get returns a copy of the user, or biz.ErrUserNotFound.
func (s *UserStore) Get(_ context.Context, id string) (*biz.User, error) {
	s.mu.RLock()
	u, ok := s.users[id]
	s.mu.RUnlock()
	if !ok {
		return nil, biz.ErrUserNotFound
	}
	return &u, nil
}
