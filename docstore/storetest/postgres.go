package storetest

import (
	"context"
	"encoding/hex"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// DefaultTestDatabaseURL is the server the Postgres tests use unless
// TANDEM_TEST_DATABASE_URL names another. They fail, never skip, when it
// cannot be reached.
const DefaultTestDatabaseURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// PostgresServerURL returns the URL of the Postgres server for tests.
func PostgresServerURL() string {
	if u := os.Getenv("TANDEM_TEST_DATABASE_URL"); u != "" {
		return u
	}
	return DefaultTestDatabaseURL
}

// NewPostgresDatabase creates an empty database for t on the test server
// (PostgresServerURL) and returns its URL; it fails t, never skips it, if
// the server cannot be reached. The database is dropped (WITH (FORCE),
// disconnecting whatever is left) when t ends, so tests can run in parallel
// and leave nothing behind.
func NewPostgresDatabase(t testing.TB) string {
	t.Helper()
	base := PostgresServerURL()
	name := "tandem_test_" + hex.EncodeToString(RandomBytes(8))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("the Postgres tests need a server: cannot connect to %s (set TANDEM_TEST_DATABASE_URL): %v",
			redactURL(base), err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create test database %s on %s: %v", name, redactURL(base), err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, base)
		if err == nil {
			_, err = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
			conn.Close(ctx)
		}
		if err != nil {
			t.Errorf("drop test database %s: %v", name, err)
		}
	})
	if u, err := url.Parse(base); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		u.Path = "/" + name
		return u.String()
	}
	return base + " dbname=" + name // key=value form: the last setting wins
}

func redactURL(s string) string {
	if u, err := url.Parse(s); err == nil && u.Scheme != "" {
		return u.Redacted()
	}
	return "TANDEM_TEST_DATABASE_URL"
}
