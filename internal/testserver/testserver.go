// Package testserver starts a whole device server on loopback ports with a
// store in a temporary directory, and gives end-to-end tests what they
// need to drive it like a user: a token, link following and a webhook receiver.
package testserver

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/deviceserver/deviceserver/internal/deviceserver"
)

// Administrator credentials every test server starts with.
const (
	AdminKey    = "test-admin"
	AdminSecret = "test-admin-secret"
)

// Server is a running device server.
type Server struct {
	*deviceserver.Instance
	URL string // http://127.0.0.1:port
	Dir string
	cfg deviceserver.Config
}

// Option changes the configuration before start.
type Option func(*deviceserver.Config)

// Start runs a server with its store in a new temporary directory and
// stops it when the test ends.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	cfg := deviceserver.Config{
		HTTPAddr: "127.0.0.1:0", CoAPAddr: "127.0.0.1:0", DataDir: t.TempDir(), Synchronous: "NORMAL",
		AdminKey: AdminKey, AdminSecret: AdminSecret, RequestTimeout: 2 * time.Second,
		ExpiryInterval: 100 * time.Millisecond, WebhookRetryMax: 1,
		// The default bcrypt cost is for production; under -race it makes
		// every token request take most of a second.
		SecretHashCost: bcrypt.MinCost,
		Logger:         slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	for _, o := range opts {
		o(&cfg)
	}
	s := &Server{Dir: cfg.DataDir, cfg: cfg}
	s.start(t)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func (s *Server) start(t testing.TB) {
	t.Helper()
	inst, err := deviceserver.Start(context.Background(), s.cfg)
	if err != nil {
		t.Fatalf("start server: %v", err)
	}
	s.Instance = inst
	s.URL = "http://" + inst.HTTPAddr.String()
	// Later starts must reuse the same ports so devices find the server again.
	s.cfg.HTTPAddr = inst.HTTPAddr.String()
	s.cfg.CoAPAddr = inst.CoAPAddr.String()
}

// Restart stops the server gracefully and starts it again on the same
// store and ports.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatalf("stop server: %v", err)
	}
	s.start(t)
}

// Token gets an access token with the administrator key.
func (s *Server) Token(t testing.TB) string {
	t.Helper()
	return s.TokenFor(t, AdminKey, AdminSecret)
}

// TokenFor gets an access token with any key.
func (s *Server) TokenFor(t testing.TB, key, secret string) string {
	t.Helper()
	return token(t, s.URL, key, secret)
}

// token gets an access token from the server at base with the password grant.
func token(t testing.TB, base, key, secret string) string {
	t.Helper()
	resp, err := http.PostForm(base+"/oauth/token", url.Values{"grant_type": {"password"}, "username": {key}, "password": {secret}})
	if err != nil {
		t.Fatalf("token: %v", err)
	}
	defer resp.Body.Close()
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&tok) != nil || tok.AccessToken == "" {
		t.Fatalf("token: status %d", resp.StatusCode)
	}
	return tok.AccessToken
}

// Client is an API client holding a token.
type Client struct {
	T     testing.TB
	Token string
}

// Response is a decoded API answer.
type Response struct {
	Status int
	Header http.Header
	Body   map[string]any
	Raw    []byte
}

// Do sends a request; body is JSON-encoded unless it is a string or nil.
func (c Client) Do(method, u, contentType string, body any) Response {
	c.T.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			c.T.Fatalf("encode body: %v", err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		c.T.Fatalf("request: %v", err)
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.T.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	out := Response{Status: resp.StatusCode, Header: resp.Header, Raw: raw}
	if len(raw) > 0 && strings.Contains(resp.Header.Get("Content-Type"), "json") {
		if err := json.Unmarshal(raw, &out.Body); err != nil {
			c.T.Fatalf("%s %s: decode %q: %v", method, u, raw, err)
		}
	}
	return out
}

// Get fetches u and fails the test unless it answers 200.
func (c Client) Get(u string) Response {
	c.T.Helper()
	r := c.Do(http.MethodGet, u, "", nil)
	if r.Status != http.StatusOK {
		c.T.Fatalf("GET %s: status %d: %s", u, r.Status, r.Raw)
	}
	return r
}

// Link returns the href of the first link with rel (and title, when given)
// in a representation, failing the test when there is none.
func Link(t testing.TB, rep map[string]any, rel string, title ...string) string {
	t.Helper()
	links, _ := rep["Links"].([]any)
	for _, l := range links {
		m, _ := l.(map[string]any)
		if m["rel"] == rel && (len(title) == 0 || m["title"] == title[0]) {
			return m["href"].(string)
		}
	}
	t.Fatalf("no link %q %v in %v", rel, title, rep["Links"])
	return ""
}

// Items returns the Items of a list representation.
func Items(rep map[string]any) []map[string]any {
	var out []map[string]any
	items, _ := rep["Items"].([]any)
	for _, it := range items {
		if m, ok := it.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}

// Delivery is one webhook POST a Receiver got.
type Delivery struct {
	Header http.Header
	Items  []map[string]any
}

// Receiver is a real HTTP webhook receiver on loopback.
type Receiver struct {
	URL    string
	srv    *httptest.Server
	mu     sync.Mutex
	status int
	got    chan Delivery
}

// NewReceiver starts a receiver that answers 204 and records every POST.
func NewReceiver(t testing.TB) *Receiver {
	rc := &Receiver{status: http.StatusNoContent, got: make(chan Delivery, 1024)}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Items []map[string]any `json:"Items"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		rc.mu.Lock()
		status := rc.status
		rc.mu.Unlock()
		w.WriteHeader(status)
		if status < 300 {
			rc.got <- Delivery{Header: r.Header.Clone(), Items: body.Items}
		}
	}))
	rc.URL = rc.srv.URL
	t.Cleanup(rc.srv.Close)
	return rc
}

// SetStatus changes what the receiver answers.
func (rc *Receiver) SetStatus(code int) {
	rc.mu.Lock()
	rc.status = code
	rc.mu.Unlock()
}

// Wait returns the next item whose SubscriptionType is typ and that match
// accepts (nil accepts all), skipping others, or fails after timeout.
func (rc *Receiver) Wait(t testing.TB, typ string, timeout time.Duration, match func(map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case d := <-rc.got:
			for _, it := range d.Items {
				if it["SubscriptionType"] == typ && (match == nil || match(it)) {
					return it
				}
			}
		case <-deadline:
			t.Fatalf("no %s notification within %s", typ, timeout)
			return nil
		}
	}
}

// String describes the receiver for failure messages.
func (rc *Receiver) String() string { return fmt.Sprintf("receiver %s", rc.URL) }
