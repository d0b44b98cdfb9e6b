package node

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/starling-sync/starling/entity"
)

func noRedirect(jar http.CookieJar) *http.Client {
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func TestWebLogin(t *testing.T) {
	defer failOnPanic(t)
	dir := t.TempDir()
	initTestNode(t, dir, "node1")
	n := openTestNode(t, dir)
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
			req.Header.Set(uiHeader, "1")
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

// artifactsDir is where the browser test saves its screenshots:
// $STARLING_ARTIFACTS/web, else chaos-artifacts/web at the repository
// root (CI keeps that folder).
func artifactsDir(t *testing.T) string {
	dir := os.Getenv("STARLING_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join("..", "chaos-artifacts")
	}
	dir = filepath.Join(dir, "web")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// chromium finds a headless-capable Chromium, or skips (fails when
// CHAOS_REQUIRED=1 or CI=true).
func chromium(t *testing.T) string {
	if p := os.Getenv("STARLING_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	msg := "no chromium on PATH (Debian: apt-get install chromium; or set STARLING_CHROMIUM)"
	if os.Getenv("CHAOS_REQUIRED") == "1" || os.Getenv("CI") == "true" {
		t.Fatal(msg + ": the browser test is required here (CI=true or CHAOS_REQUIRED=1)")
	}
	t.Skip(msg + ": skipping the browser test")
	return ""
}

// TestWebBrowserEndToEnd loads the page in headless Chromium, writes a
// field through the API, and sees it appear without a reload; a schema
// error shows inline when a bad value is typed into the page.
func TestWebBrowserEndToEnd(t *testing.T) {
	defer failOnPanic(t)
	exe := chromium(t)
	dir := t.TempDir()
	initTestNode(t, dir, "node1")
	n := openTestNode(t, dir)
	ctx := context.Background()
	es := n.Entities()
	min, max := 0.0, 100.0
	if _, err := es.Update(ctx, func(tx *entity.Tx) error {
		return tx.PutSchema(entity.Schema{Type: "Line", Fields: map[string]entity.FieldSpec{
			"temp": {Type: entity.KindInt, Min: &min, Max: &max, Unit: "C"}}})
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := es.Create(ctx, "/", "Site", "Plant"); err != nil {
		t.Fatal(err)
	}
	if _, err := es.Create(ctx, "/Plant", "Line", "Line1"); err != nil {
		t.Fatal(err)
	}
	if _, err := es.Set(ctx, "/Plant/Line1", "temp", entity.Int(21)); err != nil {
		t.Fatal(err)
	}

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(exe), chromedp.NoSandbox,
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.WindowSize(1280, 900))
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(actx, chromedp.WithErrorf(t.Logf))
	defer cancelBrowser()
	bctx, cancel := context.WithTimeout(bctx, 120*time.Second)
	defer cancel()

	shots := artifactsDir(t)
	shot := func(name string) {
		png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Errorf("screenshot %s: %v", name, err)
			return
		}
		p := filepath.Join(shots, name)
		if err := os.WriteFile(p, png, 0o644); err != nil {
			t.Error(err)
			return
		}
		t.Logf("screenshot: %s", p)
	}
	// eval polls a JavaScript expression until it returns want.
	eval := func(what, expr, want string) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			got, err := chromedp.Run(bctx, chromedp.Evaluate[string](expr))
			if err == nil && got == want {
				return
			}
			if time.Now().After(deadline) {
				shot("web-failure.png")
				t.Fatalf("page: waiting for %s: %s = %q (err %v), want %q", what, expr, got, err, want)
			}
			time.Sleep(50 * time.Millisecond) // polling a browser: no event to wait on
		}
	}

	login, err := n.Client().WebLoginURL(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(bctx, chromedp.Navigate(login)); err != nil {
		t.Fatalf("open %s: %v", login, err)
	}
	eval("the tree", `String(!!document.querySelector('#tree a[data-path="/Plant/Line1"]'))`, "true")
	eval("the live stream", `document.querySelector('#live').textContent`, "live")
	if err := chromedp.Do(bctx, chromedp.Click(chromedp.CSS(`#tree a[data-path="/Plant/Line1"]`))); err != nil {
		t.Fatal(err)
	}
	cell := `(document.querySelector('#fields tr[data-field="temp"] .v') || {}).textContent || ''`
	eval("temp = 21", cell, "21")

	// A write through the API appears without a reload.
	if _, err := chromedp.Run(bctx, chromedp.Evaluate[string](`window.__marker = 'same page'`)); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Client().SetField(ctx, "/Plant/Line1", "temp", entity.Int(42)); err != nil {
		t.Fatal(err)
	}
	eval("temp = 42 after the write", cell, "42")
	eval("no reload", `String(window.__marker)`, "same page")
	eval("the writer", `document.querySelector('#fields tr[data-field="temp"] .writer').textContent`, "node1")
	shot("web-entities.png")

	// Editing in the page: a value outside the schema shows the error inline.
	if err := chromedp.Do(bctx,
		chromedp.Click(chromedp.CSS(`#fields tr[data-field="temp"] button.edit`)),
		chromedp.SetValue(chromedp.CSS(`#fields tr[data-field="temp"] input.value`), "500"),
		chromedp.Click(chromedp.CSS(`#fields tr[data-field="temp"] .val button`)),
	); err != nil {
		t.Fatal(err)
	}
	eval("the inline schema error", `String(/max|100|schema/.test((document.querySelector('#fields tr[data-field="temp"] .field-error') || {}).textContent || ''))`, "true")
	shot("web-edit-error.png")
	if err := chromedp.Do(bctx,
		chromedp.SetValue(chromedp.CSS(`#fields tr[data-field="temp"] input.value`), "55"),
		chromedp.Click(chromedp.CSS(`#fields tr[data-field="temp"] .val button`)),
	); err != nil {
		t.Fatal(err)
	}
	eval("temp = 55 saved from the page", cell, "55")
	if f, err := es.GetField("/Plant/Line1", "temp"); err != nil || f.Value.Int != 55 {
		t.Errorf("page write: %+v, %v", f, err)
	}

	// The cluster and election pages render.
	if err := chromedp.Do(bctx, chromedp.Navigate(strings.TrimSuffix(login[:strings.Index(login, "/ui/")], "/")+"/ui/#cluster")); err != nil {
		t.Fatal(err)
	}
	eval("the cluster table", `String(!!document.querySelector('#nodes tr[data-node="node1"] .state-ACTIVE'))`, "true")
	eval("the mode card", `(document.querySelector('#card-mode .value') || {}).textContent || ''`, "standalone")
	shot("web-cluster.png")
	if _, err := chromedp.Run(bctx, chromedp.Evaluate[string](`location.hash = 'election'`)); err != nil {
		t.Fatal(err)
	}
	eval("the election group", `String(!!document.querySelector('#groups [data-group="cluster"]'))`, "true")
	eval("the cluster's first election in the recent changes", `String(/cluster: none → node1/.test(document.querySelector('#changes').textContent))`, "true")
	shot("web-election.png")
}
