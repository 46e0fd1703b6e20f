package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// testDatabaseURL is the Postgres the tests use: TANDEM_TEST_DATABASE_URL,
// or the local server's test database. Tests fail, never skip, when it
// cannot be reached.
func testDatabaseURL() string {
	if u := os.Getenv("TANDEM_TEST_DATABASE_URL"); u != "" {
		return u
	}
	return "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
}

// freshDatabase creates an empty database for one test, dropped at its end,
// and returns its URL.
func freshDatabase(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	base := testDatabaseURL()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("Postgres for tests (%s) is not reachable: %v; start it or set TANDEM_TEST_DATABASE_URL", base, err)
	}
	defer conn.Close(ctx)
	name := fmt.Sprintf("tandem_cmd_%d_%d", time.Now().UnixNano(), rand.IntN(1000))
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, base)
		if err != nil {
			t.Errorf("drop database %s: %v", name, err)
			return
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	return u.String()
}
