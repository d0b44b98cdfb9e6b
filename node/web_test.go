package node_test

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"

	"github.com/starling-sync/starling/internal/testutil"
	"github.com/starling-sync/starling/node/nodetest"
)

func noRedirect(jar http.CookieJar) *http.Client {
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func TestWebLogin(t *testing.T) {
	defer testutil.FailOnPanic(t)
	dir := t.TempDir()
	nodetest.Init(t, dir, "node1")
	n := nodetest.Open(t, dir)
	base := "http://" + n.APIAddr()
	jar, _ := cookiejar.New(nil)
	hc := noRedirect(jar)
	get := func(path string, hdr ...string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, base+path, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(b)
	}

	// "/" sends the browser to the page, which asks to log in.
	if resp, _ := get("/"); resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/ui/" {
		t.Errorf("GET /: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	// A page without a session redirects to the login page (issue 17: a
	// bare 401 was a dead end); its assets get 401.
	for _, p := range []string{"/ui/", "/ui/index.html"} {
		if resp, body := get(p); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/ui/login" {
			t.Errorf("GET %s without a session: %d %s %s", p, resp.StatusCode, resp.Header.Get("Location"), body)
		}
	}
	if resp, _ := get("/ui/app.js"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET /ui/app.js without a session: %d, want 401", resp.StatusCode)
	}
	if resp, body := get("/ui/login"); resp.StatusCode != http.StatusOK || !strings.Contains(body, `name="token"`) {
		t.Errorf("login page: %d %s", resp.StatusCode, body)
	}

	// A wrong pasted token: 401, no cookie.
	resp, err := hc.PostForm(base+"/ui/login", url.Values{"token": {"nope"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || len(jar.Cookies(resp.Request.URL)) != 0 {
		t.Errorf("wrong token: %d, cookies %v", resp.StatusCode, jar.Cookies(resp.Request.URL))
	}

	// A one-time URL works once.
	u, err := n.Client().WebLoginURL(context.Background())
	if err != nil || !strings.HasPrefix(u, base+"/ui/login?code=") {
		t.Fatalf("login URL %q, %v", u, err)
	}
	path := strings.TrimPrefix(u, base)
	if resp, _ := get(path); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/ui/" {
		t.Fatalf("one-time URL: %d", resp.StatusCode)
	}
	if resp, body := get("/ui/"); resp.StatusCode != http.StatusOK || !strings.Contains(body, "app.js") {
		t.Errorf("page with a session: %d %s", resp.StatusCode, body)
	}
	if resp, body := get("/v1/cluster/status"); resp.StatusCode != http.StatusOK || !strings.Contains(body, `"node_id":"node1"`) {
		t.Errorf("API with a session: %d %s", resp.StatusCode, body)
	}
	fresh, _ := cookiejar.New(nil)
	hc2 := noRedirect(fresh)
	resp, err = hc2.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("one-time URL used twice: %d", resp.StatusCode)
	}

	// A write with the cookie alone (what a cross-site form could send)
	// is refused; with the page's header it passes.
	put := func(hdr bool) int {
		req, _ := http.NewRequest(http.MethodPut, base+"/v1/kv/web/k", strings.NewReader("v"))
		if hdr {
			req.Header.Set("X-Starling-UI", "1") // what the page sends
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if c := put(false); c != http.StatusUnauthorized {
		t.Errorf("cookie-only write: %d, want 401", c)
	}
	if c := put(true); c != http.StatusNoContent {
		t.Errorf("write from the page: %d, want 204", c)
	}

	// Logout revokes the session on the node: the old cookie, replayed,
	// no longer works (issue 17), and the next login gets a new one.
	cookies := jar.Cookies(resp.Request.URL)
	if len(cookies) != 1 {
		t.Fatalf("cookies %v, want the session's", cookies)
	}
	old := cookies[0]
	req, _ := http.NewRequest(http.MethodPost, base+"/ui/logout", nil)
	req.Header.Set("X-Starling-UI", "1")
	if resp, err := hc.Do(req); err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("logout: %v %v", resp, err)
	}
	replay := func(c *http.Cookie) int {
		req, _ := http.NewRequest(http.MethodGet, base+"/v1/cluster/status", nil)
		req.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := replay(old); code != http.StatusUnauthorized {
		t.Errorf("the session cookie still works after logout: %d", code)
	}
	u, err = n.Client().WebLoginURL(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if resp, _ := get(strings.TrimPrefix(u, base)); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("second login: %d", resp.StatusCode)
	}
	cookies = jar.Cookies(resp.Request.URL)
	if len(cookies) != 1 || cookies[0].Value == old.Value || replay(cookies[0]) != http.StatusOK {
		t.Errorf("second login's cookie %v: want a new, working session (old %s)", cookies, old.Value)
	}
}
