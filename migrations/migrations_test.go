package migrations

import (
	"io/fs"
	"testing"
	"testing/fstest"
)

func TestSQLiteFilesParse(t *testing.T) { checkFiles(t, "SQLite", SQLite()) }

func TestPostgresFilesParse(t *testing.T) { checkFiles(t, "Postgres", Postgres()) }

func checkFiles(t *testing.T, dialect string, fsys fs.FS) {
	t.Helper()
	ms, err := Parse(fsys)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) == 0 {
		t.Fatalf("no %s migrations embedded", dialect)
	}
	for i, m := range ms {
		if m.Version != int64(i+1) {
			t.Errorf("migration %d is %s (version %d); versions must be 1, 2, 3, ... without gaps", i, m.Name, m.Version)
		}
		if m.SQL == "" {
			t.Errorf("%s is empty", m.Name)
		}
	}
}

func TestParse(t *testing.T) {
	fsys := fstest.MapFS{
		"0010_later.sql": {Data: []byte("SELECT 10;")},
		"0002_b.sql":     {Data: []byte("SELECT 2;")},
		"0001_a.sql":     {Data: []byte("SELECT 1;")},
		"README.md":      {Data: []byte("ignored")},
	}
	ms, err := Parse(fsys)
	if err != nil {
		t.Fatal(err)
	}
	var got []int64
	for _, m := range ms {
		got = append(got, m.Version)
	}
	if len(got) != 3 || got[0] != 1 || got[1] != 2 || got[2] != 10 {
		t.Fatalf("versions = %v, want [1 2 10]", got)
	}
	if ms[2].Name != "0010_later.sql" || ms[2].SQL != "SELECT 10;" {
		t.Errorf("last = %+v", ms[2])
	}

	for name, fsys := range map[string]fstest.MapFS{
		"no number":    {"init.sql": {}},
		"no separator": {"0001.sql": {}},
		"zero":         {"0000_zero.sql": {}},
		"duplicate":    {"0001_a.sql": {}, "001_b.sql": {}},
	} {
		if _, err := Parse(fsys); err == nil {
			t.Errorf("%s: Parse succeeded, want an error", name)
		}
	}
}
