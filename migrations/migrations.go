// Package migrations holds Tandem's numbered SQL schema migrations, embedded
// into the binary, one directory per SQL dialect.
//
// A migration file is named NNNN_description.sql, where NNNN is its version
// (a positive decimal number, zero-padded so that name order is version
// order). A runner applies each file not yet recorded in the database's
// schema_migrations table, in version order, each in its own transaction, so
// a file must not contain BEGIN or COMMIT itself. Files are never edited once
// released; a schema change is a new file.
package migrations

import (
	"embed"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
)

//go:embed sqlite/*.sql postgres/*.sql
var files embed.FS

// SQLite returns the migrations for the embedded SQLite store: a file system
// whose root holds the numbered .sql files (fs.ReadDir lists them in name
// order).
func SQLite() fs.FS {
	sub, err := fs.Sub(files, "sqlite")
	if err != nil {
		panic(err) // "sqlite" is a valid path; fs.Sub cannot fail
	}
	return sub
}

// Postgres returns the migrations for the PostgreSQL store, laid out like
// SQLite's: the numbered .sql files at the root of the file system.
func Postgres() fs.FS {
	sub, err := fs.Sub(files, "postgres")
	if err != nil {
		panic(err) // "postgres" is a valid path; fs.Sub cannot fail
	}
	return sub
}

// Migration is one numbered migration file.
type Migration struct {
	// Version is the file's number, e.g. 1 for 0001_init.sql.
	Version int64
	// Name is the file name, e.g. "0001_init.sql".
	Name string
	// SQL is the file's content: one or more statements.
	SQL string
}

// Parse reads the .sql files at the root of fsys (other files are ignored)
// and returns them ordered by version. It fails if a name does not start
// with a positive version number followed by '_', or if two files share a
// version.
func Parse(fsys fs.FS) ([]Migration, error) {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("migrations: %w", err)
	}
	var out []Migration
	seen := make(map[int64]string)
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || path.Ext(name) != ".sql" {
			continue
		}
		num, _, ok := strings.Cut(name, "_")
		v, err := strconv.ParseInt(num, 10, 64)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("migrations: %q is not named NNNN_description.sql", name)
		}
		if prev, dup := seen[v]; dup {
			return nil, fmt.Errorf("migrations: %q and %q have the same version %d", prev, name, v)
		}
		seen[v] = name
		b, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, fmt.Errorf("migrations: %w", err)
		}
		out = append(out, Migration{Version: v, Name: name, SQL: string(b)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	return out, nil
}
