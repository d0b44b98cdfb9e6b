package httpapi

import (
	"testing"
	"time"
)

func TestWebLoginCodeExpires(t *testing.T) {
	now := time.Unix(1000, 0)
	u := NewWebUI("tok", func() time.Time { return now })
	c := u.LoginCode()
	now = now.Add(LoginCodeTTL)
	if u.useCode(c) {
		t.Error("expired code accepted")
	}
	c = u.LoginCode()
	if !u.useCode(c) || u.useCode(c) {
		t.Error("a code must work exactly once")
	}
	if NewWebUI("a", nil).cookie == NewWebUI("b", nil).cookie {
		t.Error("two nodes share a cookie name")
	}
}
