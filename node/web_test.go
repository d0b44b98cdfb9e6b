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
	if resp, body := get("/ui/"); resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "/ui/login") {
		t.Errorf("GET /ui/ without a session: %d %s", resp.StatusCode, body)
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
}
