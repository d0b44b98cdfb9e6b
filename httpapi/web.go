package httpapi

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/starling-sync/starling/api"
)

// The operator's views over HTTP: the cluster admin endpoints, /metrics,
// and the web page (entity browser, cluster, election) served from the
// embedded web/ folder. Everything needs the API token, except the login
// page itself and the redirect of "/" to it.
//
// Login: paste the token into /ui/login (a form POST), or open a
// one-time URL /ui/login?code=... (printed by `starling local` and
// `demo`, or made by `starling web`; never logged, as logs are read by
// more people than the token's holders). Either sets a session cookie:
// HttpOnly, SameSite=Strict, named after the token's hash so that
// several nodes on one host (different ports, same cookie jar) keep
// their own. The cookie holds a random session ID, new at every login,
// that the node keeps for sessionMaxAge and forgets at logout (and at
// restart), so a copied cookie is worthless once its session ended. It
// authorises the same requests the bearer token does; requests that
// change something must also carry the header X-Starling-UI (which a
// cross-site form cannot send), so a session cannot be ridden by
// another site. A page asked for without a session redirects to the
// login page.

// ClusterSource serves the cluster endpoints (the node's monitor).
// Methods are called concurrently from HTTP handlers and must not block
// for long.
type ClusterSource interface {
	ClusterStatus(ctx context.Context) (api.ClusterStatus, error)
	ClusterHistory() api.ClusterHistory
	ClusterEvents() api.ClusterEvents
}

// registerClusterRoutes adds:
//
//	GET /v1/cluster/status    mode, leader, and every node: state, sync health, last seen, writes, heads, lag
//	GET /v1/cluster/history   the last minutes of per-node samples (writes/s, replication latency)
//	GET /v1/cluster/events    recent node-state transitions and leadership changes
//
// Peers are added and removed with POST /v1/peers and DELETE
// /v1/peers/{id} (the CLI's `cluster add` and `cluster remove`).
func (a *server) registerClusterRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/cluster/status", func(w http.ResponseWriter, r *http.Request) {
		cs, err := a.cfg.Cluster.ClusterStatus(r.Context())
		if err != nil {
			a.fail(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, cs)
	})
	mux.HandleFunc("GET /v1/cluster/history", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, a.cfg.Cluster.ClusterHistory())
	})
	mux.HandleFunc("GET /v1/cluster/events", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, a.cfg.Cluster.ClusterEvents())
	})
}

//go:embed web
var webFiles embed.FS

// Web UI settings.
const (
	// LoginCodeTTL is how long a one-time login URL stays valid.
	LoginCodeTTL = 10 * time.Minute
	// sessionMaxAge is the session cookie's lifetime in the browser.
	sessionMaxAge = 12 * time.Hour
	// uiHeader must accompany cookie-authorised requests that change
	// something (see the comment at the top of the file).
	uiHeader = "X-Starling-UI"
	// maxLoginCodes bounds the codes waiting to be used.
	maxLoginCodes = 64
	// maxSessions bounds the live sessions; beyond it the oldest ends.
	maxSessions = 256
)

// WebUI serves the web page and its login. Safe for concurrent use.
type WebUI struct {
	token  string
	cookie string // cookie name
	now    func() time.Time

	mu       sync.Mutex
	codes    map[string]time.Time // one-time code -> expiry
	sessions map[string]time.Time // session ID (the cookie's value) -> expiry
}

// NewWebUI returns the web page of the API with the given token; now is
// its clock (nil: time.Now).
func NewWebUI(token string, now func() time.Time) *WebUI {
	if now == nil {
		now = time.Now
	}
	sum := sha256.Sum256([]byte(token))
	return &WebUI{
		token:    token,
		cookie:   "starling_" + hex.EncodeToString(sum[:6]),
		now:      now,
		codes:    make(map[string]time.Time),
		sessions: make(map[string]time.Time),
	}
}

// LoginCode returns a new one-time login code, valid for LoginCodeTTL.
// The login URL is <api>/ui/login?code=<code>.
func (u *WebUI) LoginCode() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	code := hex.EncodeToString(b)
	now := u.now()
	u.mu.Lock()
	defer u.mu.Unlock()
	for c, exp := range u.codes {
		if !now.Before(exp) {
			delete(u.codes, c)
		}
	}
	for len(u.codes) >= maxLoginCodes { // drop any: the oldest are as good as gone
		for c := range u.codes {
			delete(u.codes, c)
			break
		}
	}
	u.codes[code] = now.Add(LoginCodeTTL)
	return code
}

func (u *WebUI) useCode(code string) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	exp, ok := u.codes[code]
	delete(u.codes, code)
	return ok && u.now().Before(exp)
}

// newSession starts a session and returns its ID (the cookie's value).
func (u *WebUI) newSession() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	id := hex.EncodeToString(b)
	now := u.now()
	u.mu.Lock()
	defer u.mu.Unlock()
	for s, exp := range u.sessions {
		if !now.Before(exp) {
			delete(u.sessions, s)
		}
	}
	for len(u.sessions) >= maxSessions {
		oldest, first := "", time.Time{}
		for s, exp := range u.sessions {
			if oldest == "" || exp.Before(first) {
				oldest, first = s, exp
			}
		}
		delete(u.sessions, oldest)
	}
	u.sessions[id] = now.Add(sessionMaxAge)
	return id
}

// validSession reports whether id is a live session.
func (u *WebUI) validSession(id string) bool {
	if id == "" {
		return false
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	for s, exp := range u.sessions {
		// Compare every one in constant time: the map lookup alone
		// would be a timing oracle on the IDs.
		if subtle.ConstantTimeCompare([]byte(s), []byte(id)) == 1 {
			return u.now().Before(exp)
		}
	}
	return false
}

// endSession revokes a session: its cookie no longer authorises anything.
func (u *WebUI) endSession(id string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	delete(u.sessions, id)
}

// public reports whether r may be served without a token.
func (u *WebUI) public(r *http.Request) bool {
	p := r.URL.Path
	return p == "/ui/login" && (r.Method == http.MethodGet || r.Method == http.MethodPost) ||
		p == "/" && r.Method == http.MethodGet
}

// authorized reports whether r carries a valid session cookie (and, for
// a request that changes something, the UI header).
func (u *WebUI) authorized(r *http.Request) bool {
	c, err := r.Cookie(u.cookie)
	if err != nil || !u.validSession(c.Value) {
		return false
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		return true
	}
	return r.Header.Get(uiHeader) != ""
}

// unauthorized answers a browser's request for a page without a session:
// a page is redirected to the login page, anything else gets 401.
func (u *WebUI) unauthorized(w http.ResponseWriter, r *http.Request) {
	if ext := path.Ext(r.URL.Path); (r.Method == http.MethodGet || r.Method == http.MethodHead) && (ext == "" || ext == ".html") {
		w.Header().Set("Cache-Control", "no-store")
		http.Redirect(w, r, "/ui/login", http.StatusSeeOther)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("WWW-Authenticate", `Bearer realm="starling"`)
	w.WriteHeader(http.StatusUnauthorized)
	fmt.Fprint(w, `<!doctype html><meta charset="utf-8"><title>Starling: log in</title><p>Not logged in. <a href="/ui/login">Log in with the node's API token</a>.`)
}

// setSession starts a new session (a new ID at every login, so one
// that leaked before it is no use) and sets its cookie; over HTTPS the
// cookie is Secure, so the browser never sends it in the clear.
func (u *WebUI) setSession(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: u.cookie, Value: u.newSession(), Path: "/", HttpOnly: true,
		Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode, MaxAge: int(sessionMaxAge / time.Second)})
}

var loginPage = template.Must(template.ParseFS(webFiles, "web/login.html"))

func (u *WebUI) login(w http.ResponseWriter, r *http.Request, code int, msg string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Frame-Options", "DENY")
	w.WriteHeader(code)
	_ = loginPage.Execute(w, struct{ Error string }{msg})
}

// register adds the page's routes to mux.
func (u *WebUI) register(mux *http.ServeMux) {
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/ui/", http.StatusFound)
	})
	mux.HandleFunc("GET /ui/login", func(w http.ResponseWriter, r *http.Request) {
		code := r.URL.Query().Get("code")
		switch {
		case code == "":
			u.login(w, r, http.StatusOK, "")
		case u.useCode(code):
			u.setSession(w, r)
			http.Redirect(w, r, "/ui/", http.StatusSeeOther)
		default:
			u.login(w, r, http.StatusUnauthorized, "This login link was used already or has expired: paste the token, or make a new link with `starling web`.")
		}
	})
	mux.HandleFunc("POST /ui/login", func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
		tok := strings.TrimSpace(r.PostFormValue("token"))
		if tok == "" || subtle.ConstantTimeCompare([]byte(tok), []byte(u.token)) != 1 {
			u.login(w, r, http.StatusUnauthorized, "Wrong token: use the content of the node's api.token file.")
			return
		}
		u.setSession(w, r)
		http.Redirect(w, r, "/ui/", http.StatusSeeOther)
	})
	mux.HandleFunc("POST /ui/logout", func(w http.ResponseWriter, r *http.Request) {
		if c, err := r.Cookie(u.cookie); err == nil {
			u.endSession(c.Value)
		}
		http.SetCookie(w, &http.Cookie{Name: u.cookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode})
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /v1/web/login-codes", func(w http.ResponseWriter, r *http.Request) {
		code := u.LoginCode()
		writeJSON(w, http.StatusCreated, api.LoginCodeResponse{Code: code, Path: api.LoginPath(code), Expires: u.now().Add(LoginCodeTTL)})
	})
	static, _ := fs.Sub(webFiles, "web")
	mux.HandleFunc("GET /ui/{file...}", func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("file")
		if name == "" {
			name = "index.html"
		}
		if name == "login.html" || path.Clean(name) != name {
			http.NotFound(w, r)
			return
		}
		b, err := fs.ReadFile(static, name)
		if err != nil {
			writeError(w, http.StatusNotFound, fmt.Sprintf("no such page: /ui/%s", name))
			return
		}
		ct := "text/html; charset=utf-8"
		switch path.Ext(name) {
		case ".js":
			ct = "text/javascript; charset=utf-8"
		case ".css":
			ct = "text/css; charset=utf-8"
		case ".svg":
			ct = "image/svg+xml"
		}
		h := w.Header()
		h.Set("Content-Type", ct)
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		// Everything is same-origin: no CDN, no inline script.
		h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'")
		_, _ = w.Write(b)
	})
}
