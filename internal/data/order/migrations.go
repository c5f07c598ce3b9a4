package order

import (
	"embed"

	"github.com/rampart-go/rampart/internal/data"
)

//go:embed migrations
var migrations embed.FS

// Schema is the order store's versioned migrations (migrations/sqlite and
// migrations/postgres), for the start-up migration and `order migrate`.
var Schema = data.Schema{Name: "order", FS: migrations}
