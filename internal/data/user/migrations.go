package user

import (
	"embed"

	"github.com/rampart-go/rampart/internal/data"
)

//go:embed migrations
var migrations embed.FS

// Schema is the user store's versioned migrations (migrations/sqlite and
// migrations/postgres), for the start-up migration and `user migrate`.
var Schema = data.Schema{Name: "user", FS: migrations}
