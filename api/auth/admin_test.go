package auth

import "testing"

func TestAdminKeyMatches(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name                  string
		configured, presented string
		want                  bool
	}{
		{"match", "s3cret-admin-key", "s3cret-admin-key", true},
		{"mismatch", "s3cret-admin-key", "s3cret-admin-kez", false},
		{"prefix", "s3cret-admin-key", "s3cret", false},
		{"longer", "s3cret", "s3cret-admin-key", false},
		{"case matters", "Key", "key", false},
		{"empty presented", "s3cret", "", false},
		{"nothing configured", "", "", false},
		{"nothing configured, something presented", "", "anything", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := AdminKeyMatches(tt.configured, tt.presented); got != tt.want {
				t.Errorf("AdminKeyMatches(%q, %q) = %v, want %v", tt.configured, tt.presented, got, tt.want)
			}
		})
	}
}

func TestBearerToken(t *testing.T) {
	t.Parallel()
	tests := []struct {
		header string
		want   string
		ok     bool
	}{
		{"Bearer abc.def.ghi", "abc.def.ghi", true},
		{"bearer abc", "abc", true},
		{"BEARER abc", "abc", true},
		{"bEaReR abc", "abc", true},
		{"  Bearer   abc  ", "abc", true},
		{"Bearer", "", false},
		{"Bearer ", "", false},
		{"Bearer    ", "", false},
		{"Bearerabc", "", false},
		{"Basic dXNlcjpwYXNz", "", false},
		{"Token abc", "", false},
		{"Bearer abc def", "", false},
		{"Bearer abc\tdef", "", false},
		{"abc", "", false},
		{"", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.header, func(t *testing.T) {
			t.Parallel()
			got, ok := BearerToken(tt.header)
			if got != tt.want || ok != tt.ok {
				t.Errorf("BearerToken(%q) = %q, %v; want %q, %v", tt.header, got, ok, tt.want, tt.ok)
			}
		})
	}
}
