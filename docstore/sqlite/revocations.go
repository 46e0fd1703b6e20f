package sqlite

import (
	"context"
	"fmt"
	"time"
)

// RevokeToken records a revoked access token (api.Revocations). Records
// whose token has expired are dropped on the way.
func (s *Store) RevokeToken(ctx context.Context, jti string, expires time.Time) error {
	now := s.now().UnixMilli()
	_, err := s.db.ExecContext(ctx, `INSERT INTO revocations (jti, expires_at, revoked_at) VALUES (?, ?, ?)
		ON CONFLICT (jti) DO UPDATE SET expires_at = max(expires_at, excluded.expires_at)`,
		jti, expires.UnixMilli(), now)
	if err != nil {
		return fmt.Errorf("sqlite: revoke token: %w", err)
	}
	if _, err := s.db.ExecContext(ctx, `DELETE FROM revocations WHERE expires_at < ?`, now); err != nil {
		return fmt.Errorf("sqlite: prune revocations: %w", err)
	}
	return nil
}

// TokenRevoked reports whether a token was revoked (api.Revocations).
func (s *Store) TokenRevoked(ctx context.Context, jti string) (bool, error) {
	var n int
	if err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM revocations WHERE jti = ?`, jti).Scan(&n); err != nil {
		return false, fmt.Errorf("sqlite: token revoked: %w", err)
	}
	return n > 0, nil
}
