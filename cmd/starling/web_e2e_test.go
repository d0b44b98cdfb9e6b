package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/starling-sync/starling/entity"
	"github.com/starling-sync/starling/internal/testutil"
)

// artifactsDir is where the browser test saves its screenshots:
// $STARLING_ARTIFACTS/web, else chaos-artifacts/web at the repository
// root (CI keeps that folder).
func artifactsDir(t *testing.T) string {
	dir := os.Getenv("STARLING_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join("..", "..", "chaos-artifacts") // the repository root
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
// field with `starling field set`, and sees it appear without a reload; a schema
// error shows inline when a bad value is typed into the page.
func TestWebBrowserEndToEnd(t *testing.T) {
	defer testutil.FailOnPanic(t)
	exe := chromium(t)
	dir, n := startEntityNode(t, "node1")
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
	// A parent with more children than the page shows at once.
	if _, err := es.Create(ctx, "/", "Site", "Big"); err != nil {
		t.Fatal(err)
	}
	if _, err := es.Update(ctx, func(tx *entity.Tx) error {
		for i := range 130 {
			if _, err := tx.Create("/Big", "Cell", fmt.Sprintf("C%03d", i)); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(exe), chromedp.NoSandbox,
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.WindowSize(1280, 900))
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(actx, chromedp.WithErrorf(t.Logf))
	defer cancelBrowser()
	bctx, cancel := context.WithTimeout(bctx, 180*time.Second)
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

	// A write through the CLI appears without a reload.
	if _, err := chromedp.Run(bctx, chromedp.Evaluate[string](`window.__marker = 'same page'`)); err != nil {
		t.Fatal(err)
	}
	if r := runApp(t, "", "field", "set", "--data", dir, "/Plant/Line1", "temp", "42"); r.code != 0 {
		t.Fatalf("starling field set: exit %d: %s", r.code, r.stderr)
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

	// The tree pages a parent's children: 100 first, then the rest.
	bigKids := `String(document.querySelectorAll('#tree li[data-id] > a[data-path^="/Big/"]').length)`
	// The root's few children open by themselves, /Big among them.
	if err := chromedp.Do(bctx, chromedp.Click(chromedp.CSS(`#tree a[data-path="/Big"]`))); err != nil {
		t.Fatal(err)
	}
	eval("the first page of /Big", bigKids, "100")
	eval("the more button", `(document.querySelector('#tree li.more button') || {}).textContent || ''`, "show 30 more (30 of 130 not shown)")
	shot("web-paging.png")
	if err := chromedp.Do(bctx, chromedp.Click(chromedp.CSS(`#tree li.more button`))); err != nil {
		t.Fatal(err)
	}
	eval("all of /Big", bigKids, "130")

	// Search finds by path or type.
	if err := chromedp.Do(bctx, chromedp.SendKeys(chromedp.CSS(`#search`), "line1")); err != nil {
		t.Fatal(err)
	}
	eval("the search result", `Array.from(document.querySelectorAll('#search-results a')).map(a => a.dataset.path).join(',')`, "/Plant/Line1")
	shot("web-search.png")
	if err := chromedp.Do(bctx, chromedp.Click(chromedp.CSS(`#search-results a[data-path="/Plant/Line1"]`))); err != nil {
		t.Fatal(err)
	}
	eval("the entity chosen from the search", `document.querySelector('#entity-path').textContent`, "/Plant/Line1")

	// Create, rename, delete and restore from the page.
	act := func(action string, inputs map[string]string) {
		t.Helper()
		acts := []chromedp.Action[chromedp.Void]{chromedp.Click(chromedp.CSS(`#entity-actions button[data-action="` + action + `"]`))}
		for name, v := range inputs {
			acts = append(acts, chromedp.SetValue(chromedp.CSS(`#entity-form input[name="`+name+`"]`), v))
		}
		acts = append(acts, chromedp.Click(chromedp.CSS(`#entity-form button[type="submit"]`)))
		if err := chromedp.Do(bctx, acts...); err != nil {
			t.Fatalf("%s: %v", action, err)
		}
	}
	act("create", map[string]string{"type": "Cell", "name": "C1"})
	eval("the created entity selected", `document.querySelector('#entity-path').textContent`, "/Plant/Line1/C1")
	eval("the created entity in the tree", `String(!!document.querySelector('#tree a[data-path="/Plant/Line1/C1"]'))`, "true")
	act("rename", map[string]string{"name": "C2"})
	eval("the renamed entity", `document.querySelector('#entity-path').textContent`, "/Plant/Line1/C2")
	shot("web-entity-actions.png")
	act("move", map[string]string{"parent": "/Plant/Line1/C2/nope"})
	eval("a bad move's error inline", `String(/no such entity|nope/.test(document.querySelector('#entity-form-error').textContent))`, "true")
	act("delete", nil)
	eval("the deleted entity in Recently deleted", `String(/\/Plant\/Line1\/C2/.test(document.querySelector('#deleted').textContent))`, "true")
	if _, err := es.Get("/Plant/Line1/C2"); err == nil {
		t.Error("the page's delete left /Plant/Line1/C2")
	}
	if err := chromedp.Do(bctx, chromedp.Click(chromedp.CSS(`#deleted button.restore`))); err != nil {
		t.Fatal(err)
	}
	eval("the restored entity", `document.querySelector('#entity-path').textContent`, "/Plant/Line1/C2")
	// The page shows the entity once the API answered; the in-process
	// read after it failed once with the machine busy (not explained:
	// left for a closer look), so it waits.
	testutil.Eventuallyf(t, 10*time.Second, func() bool {
		_, err := es.Get("/Plant/Line1/C2")
		return err == nil
	}, "after restore from the page: /Plant/Line1/C2 not on the node")

	// The cluster and election pages render.
	if err := chromedp.Do(bctx, chromedp.Navigate(strings.TrimSuffix(login[:strings.Index(login, "/ui/")], "/")+"/ui/#cluster")); err != nil {
		t.Fatal(err)
	}
	eval("the cluster table", `String(!!document.querySelector('#nodes tr[data-node="node1"] .state-ACTIVE'))`, "true")
	eval("the mode card", `(document.querySelector('#card-mode .value') || {}).textContent || ''`, "standalone")
	eval("one plot per unit", `Array.from(document.querySelectorAll('[data-chart="node1"] .plot-title')).map(e => e.textContent).join('|')`,
		"writes applied (writes/s)|replication latency (ms)")
	shot("web-cluster.png")
	if _, err := chromedp.Run(bctx, chromedp.Evaluate[string](`location.hash = 'election'`)); err != nil {
		t.Fatal(err)
	}
	eval("the election group", `String(!!document.querySelector('#groups [data-group="cluster"]'))`, "true")
	eval("the cluster's first election in the recent changes", `String(/cluster: none → node1/.test(document.querySelector('#changes').textContent))`, "true")
	shot("web-election.png")
}
