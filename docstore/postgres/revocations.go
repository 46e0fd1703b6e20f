package postgres

import (
	"context"
	"fmt"
	"time"
)

// RevokeToken records a revoked access token (api.Revocations). Records
// whose token has expired are dropped on the way.
func (p *Store) RevokeToken(ctx context.Context, jti string, expires time.Time) error {
	err := p.do(ctx, func(ctx context.Context) error {
		if _, err := p.pool.Exec(ctx, `INSERT INTO revocations (jti, expires_at) VALUES ($1, $2)
			ON CONFLICT (jti) DO UPDATE SET expires_at = greatest(revocations.expires_at, excluded.expires_at)`,
			jti, expires); err != nil {
			return err
		}
		_, err := p.pool.Exec(ctx, `DELETE FROM revocations WHERE expires_at < now()`)
		return err
	})
	if err != nil {
		return fmt.Errorf("postgres: revoke token: %w", err)
	}
	return nil
}

// TokenRevoked reports whether a token was revoked (api.Revocations).
func (p *Store) TokenRevoked(ctx context.Context, jti string) (bool, error) {
	var revoked bool
	err := p.do(ctx, func(ctx context.Context) error {
		return p.pool.QueryRow(ctx, `SELECT exists (SELECT 1 FROM revocations WHERE jti = $1)`, jti).Scan(&revoked)
	})
	if err != nil {
		return false, fmt.Errorf("postgres: token revoked: %w", err)
	}
	return revoked, nil
}
