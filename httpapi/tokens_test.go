package httpapi

import (
	"net/http/httptest"
	"testing"
)

func TestRoleFor(t *testing.T) {
	for _, c := range []struct {
		method, path string
		want         Role
	}{
		{"GET", "/v1/status", RoleRead},
		{"GET", "/metrics", RoleRead},
		{"GET", "/v1/watch", RoleRead},
		{"GET", "/v1/store/backup", RoleAdmin},
		{"PUT", "/v1/kv/a/b", RoleWrite},
		{"DELETE", "/v1/entities", RoleWrite},
		{"POST", "/v1/entities/restore", RoleWrite},
		{"POST", "/v1/fields/batch", RoleWrite},
		{"PUT", "/v1/schemas", RoleWrite},
		{"POST", "/v1/election/groups/db/candidates", RoleWrite},
		{"POST", "/v1/peers", RoleAdmin},
		{"DELETE", "/v1/peers/x", RoleAdmin},
		{"POST", "/v1/sync/resync", RoleAdmin},
		{"POST", "/v1/store/compact", RoleAdmin},
		{"POST", "/v1/web/login-codes", RoleAdmin},
		{"POST", "/v1/kvx", RoleAdmin}, // unknown: the most
	} {
		if got := roleFor(httptest.NewRequest(c.method, c.path, nil)); got != c.want {
			t.Errorf("%s %s needs %s, want %s", c.method, c.path, got, c.want)
		}
	}
}

func TestTokensFile(t *testing.T) {
	dir := t.TempDir()
	tok, ti, err := AddToken(dir, "", RoleRead)
	if err != nil || ti.Name != "read-"+ti.ID || ti.SHA256 == tok {
		t.Fatalf("AddToken: %+v, %v", ti, err)
	}
	if _, _, err := AddToken(dir, ti.Name, RoleWrite); err == nil {
		t.Error("a second token of the same name was made")
	}
	f := NewFileTokens(dir)
	if got, ok := f.Lookup(tok); !ok || got.Role != RoleRead {
		t.Errorf("Lookup = %+v, %v", got, ok)
	}
	if _, ok := f.Lookup(tok + "0"); ok {
		t.Error("a wrong token was found")
	}
	if _, err := RemoveToken(dir, ti.ID); err != nil {
		t.Fatal(err)
	}
	f.checked = f.checked.Add(-2e9) // past the once-a-second check
	if _, ok := f.Lookup(tok); ok {
		t.Error("a removed token still works")
	}
}
