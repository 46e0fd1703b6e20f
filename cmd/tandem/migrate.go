package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/tandem-sync/tandem/docstore/postgres"
	"github.com/tandem-sync/tandem/docstore/sqlite"
)

// migrate applies the store's migrations and exits: `tandem migrate`.
func migrate(ctx context.Context, cfg Config, log *slog.Logger) error {
	if cfg.DatabaseURL != "" {
		if err := postgres.Migrate(ctx, cfg.DatabaseURL); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
	} else {
		st, err := sqlite.Open(ctx, cfg.DataDir) // opening migrates
		if err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		if err := st.Close(); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
	}
	log.Info("migrations applied", "store", storeName(cfg))
	return nil
}
