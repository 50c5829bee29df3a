package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/deviceserver/deviceserver/hypermedia"
	"github.com/deviceserver/deviceserver/lwm2m"
	"github.com/deviceserver/deviceserver/lwm2m/model"
	"github.com/deviceserver/deviceserver/server"
	"github.com/deviceserver/deviceserver/storage"
	"github.com/deviceserver/deviceserver/storage/sqlite"
	"github.com/deviceserver/deviceserver/subscriptions"
)

// The administrator of every test environment. Its secret is hashed with
// bcrypt's minimum cost so that token requests stay cheap.
const (
	adminOrg    = "org-admin"
	adminKey    = "admin-key"
	adminSecret = "admin-secret"
	// otherOrg is a second tenant seeded by some tests.
	otherOrg    = "org-other"
	otherKey    = "other-key"
	otherSecret = "other-secret"
)

var tokenKey = []byte("0123456789abcdef0123456789abcdef")

// clock is the server's Config.Now, moved by tests.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	c.now = t
	c.mu.Unlock()
}

// devCall is one call the handlers made on the device side.
type devCall struct {
	Op      string // read, write, execute, create, delete, writeattributes, observe, cancelobserve
	Client  string
	Path    string
	Recs    []lwm2m.Record
	Replace bool
	Args    string
}

func (c devCall) String() string {
	return fmt.Sprintf("%s %s %s recs=%v replace=%v args=%q", c.Op, c.Client, c.Path, c.Recs, c.Replace, c.Args)
}

// fakeDevices implements server.Devices and subscriptions.Device with
// canned records, so that handlers are tested without CoAP (the real
// device side is covered end to end in internal/e2e).
type fakeDevices struct {
	mu    sync.Mutex
	calls []devCall
	err   error          // returned by every operation when set
	recs  []lwm2m.Record // what the devices hold, for Read and Observe
}

var _ server.Devices = (*fakeDevices)(nil)
var _ subscriptions.Device = (*fakeDevices)(nil)

func (f *fakeDevices) record(c devCall) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, c)
	return f.err
}

// under returns the canned records within p.
func (f *fakeDevices) under(p lwm2m.Path) []lwm2m.Record {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []lwm2m.Record
	for _, r := range f.recs {
		if p.Contains(r.Path) {
			out = append(out, r)
		}
	}
	return out
}

func (f *fakeDevices) Read(_ context.Context, id string, p lwm2m.Path) ([]lwm2m.Record, error) {
	if err := f.record(devCall{Op: "read", Client: id, Path: p.String()}); err != nil {
		return nil, err
	}
	return f.under(p), nil
}

func (f *fakeDevices) Write(_ context.Context, id string, p lwm2m.Path, recs []lwm2m.Record, replace bool) error {
	return f.record(devCall{Op: "write", Client: id, Path: p.String(), Recs: recs, Replace: replace})
}

func (f *fakeDevices) Execute(_ context.Context, id string, p lwm2m.Path, args string) error {
	return f.record(devCall{Op: "execute", Client: id, Path: p.String(), Args: args})
}

func (f *fakeDevices) Create(_ context.Context, id string, object lwm2m.Path, recs []lwm2m.Record) (lwm2m.Path, error) {
	if err := f.record(devCall{Op: "create", Client: id, Path: object.String(), Recs: recs}); err != nil {
		return lwm2m.Path{}, err
	}
	inst := uint16(42)
	if len(recs) > 0 {
		inst = recs[0].Path.Instance
	}
	return lwm2m.InstancePath(object.Object, inst), nil
}

func (f *fakeDevices) Delete(_ context.Context, id string, p lwm2m.Path) error {
	return f.record(devCall{Op: "delete", Client: id, Path: p.String()})
}

func (f *fakeDevices) WriteAttributes(_ context.Context, id string, p lwm2m.Path, a lwm2m.Attributes) error {
	return f.record(devCall{Op: "writeattributes", Client: id, Path: p.String(), Args: strings.Join(a.Query(), "&")})
}

func (f *fakeDevices) Observe(_ context.Context, id string, p lwm2m.Path) ([]lwm2m.Record, error) {
	if err := f.record(devCall{Op: "observe", Client: id, Path: p.String()}); err != nil {
		return nil, err
	}
	return f.under(p), nil
}

func (f *fakeDevices) CancelObserve(_ context.Context, id string, p lwm2m.Path) error {
	return f.record(devCall{Op: "cancelobserve", Client: id, Path: p.String()})
}

func (f *fakeDevices) SetDeviceInfo(_ context.Context, id string, info lwm2m.DeviceInfo) (lwm2m.Registration, error) {
	return lwm2m.Registration{ID: id, Device: &info}, f.record(devCall{Op: "setdeviceinfo", Client: id})
}

// take returns the calls made since the last take.
func (f *fakeDevices) take() []devCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.calls
	f.calls = nil
	return c
}

func (f *fakeDevices) setErr(err error) {
	f.mu.Lock()
	f.err = err
	f.mu.Unlock()
}

// canned device content of client c-01: a Device and two Temperature instances.
var cannedRecords = []lwm2m.Record{
	{Path: lwm2m.ResourcePath(3, 0, 0), Value: "Acme"},
	{Path: lwm2m.ResourcePath(3, 0, 1), Value: "X-1"},
	{Path: lwm2m.ResourceInstancePath(3, 0, 6, 0), Value: int64(1)},
	{Path: lwm2m.ResourceInstancePath(3, 0, 6, 1), Value: int64(5)},
	{Path: lwm2m.ResourcePath(3, 0, 9), Value: int64(87)},
	{Path: lwm2m.ResourceInstancePath(3, 0, 11, 3), Value: int64(2)},
	{Path: lwm2m.ResourcePath(3, 0, 13), Value: time.Date(2026, 11, 22, 4, 5, 6, 0, time.UTC)},
	{Path: lwm2m.ResourcePath(3303, 0, 5700), Value: 21.5},
	{Path: lwm2m.ResourcePath(3303, 0, 5701), Value: "Cel"},
	{Path: lwm2m.ResourcePath(3303, 1, 5700), Value: -4.0},
}

// env is a running REST API on a real SQLite store, a real model registry
// and a real subscription engine, with fake devices.
type env struct {
	URL     string
	handler http.Handler
	store   *sqlite.Store
	models  *model.Registry
	dev     *fakeDevices
	clock   *clock
	admin   string // an administrator access token
	start   time.Time
}

func newEnv(t testing.TB, opts ...func(*server.Config)) *env {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, t.TempDir(), sqlite.Options{})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { _ = st.Close() })
	builtins, err := model.Builtins()
	if err != nil {
		t.Fatal(err)
	}
	models := model.NewRegistry(builtins)
	start := time.Date(2026, 11, 22, 4, 0, 0, 0, time.UTC)
	e := &env{store: st, models: models, dev: &fakeDevices{recs: cannedRecords}, clock: &clock{now: start}, start: start}
	seedOrg(t, st, storage.Organisation{ID: adminOrg, Name: "administrator", Admin: true, CreatedAt: start}, adminKey, adminSecret)
	engine := subscriptions.New(subscriptions.Config{Store: st, Device: e.dev, Render: hypermedia.NotificationValue(models), RetryMax: -1, Now: e.clock.Now})
	if err := engine.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = engine.Close() })
	cfg := server.Config{Store: st, Models: models, Devices: e.dev, Subscriptions: engine, TokenKey: tokenKey, HashCost: bcrypt.MinCost,
		Now: e.clock.Now, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	for _, o := range opts {
		o(&cfg)
	}
	e.handler = server.New(cfg)
	srv := httptest.NewServer(e.handler)
	t.Cleanup(srv.Close)
	e.URL = srv.URL
	e.admin = e.token(t, adminKey, adminSecret).AccessToken
	return e
}

// seedOrg creates an organisation with one key directly in the store.
func seedOrg(t testing.TB, st storage.Store, o storage.Organisation, key, secret string) {
	t.Helper()
	ctx := context.Background()
	hash, err := bcrypt.GenerateFromPassword([]byte(secret), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.CreateOrganisation(ctx, o); err != nil {
		t.Fatalf("seed organisation: %v", err)
	}
	if err := st.CreateAccessKey(ctx, storage.AccessKey{Key: key, Name: key, OrganisationID: o.ID, SecretHash: hash, CreatedAt: o.CreatedAt}); err != nil {
		t.Fatalf("seed key: %v", err)
	}
}

// other seeds the second tenant and returns its access token.
func (e *env) other(t testing.TB) string {
	t.Helper()
	seedOrg(t, e.store, storage.Organisation{ID: otherOrg, Name: "other", CreatedAt: e.start}, otherKey, otherSecret)
	return e.token(t, otherKey, otherSecret).AccessToken
}

// register seeds a registration of org; online registrations expire in a minute.
func (e *env) register(t testing.TB, org, id, endpoint string, online bool) lwm2m.Registration {
	t.Helper()
	now := e.clock.Now()
	exp := now.Add(time.Minute)
	if !online {
		exp = now.Add(-time.Second)
	}
	reg := lwm2m.Registration{ID: id, Organisation: org, Endpoint: endpoint, Lifetime: 60, Version: "1.1", Binding: "U",
		RootPath: "/", Address: "192.0.2.1:5683", Transport: "udp", RegisteredAt: now.Add(-time.Minute), LastUpdate: now.Add(-time.Minute), ExpiresAt: exp,
		Objects: []lwm2m.LinkedObject{
			{Path: lwm2m.ObjectPath(1), Version: "1.1"},
			{Path: lwm2m.InstancePath(3, 0)},
			{Path: lwm2m.InstancePath(3303, 0)},
			{Path: lwm2m.InstancePath(3303, 1)},
			{Path: lwm2m.InstancePath(42424, 0)},
		}}
	if err := e.store.PutRegistration(context.Background(), reg); err != nil {
		t.Fatalf("seed registration: %v", err)
	}
	return reg
}

type tokenResp struct {
	Status       int
	Error        string `json:"error"`
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int    `json:"expires_in"`
	RefreshToken string `json:"refresh_token"`
	Header       http.Header
}

// tokenForm posts a token request.
func (e *env) tokenForm(t testing.TB, form url.Values) tokenResp {
	t.Helper()
	r := e.do(t, "", http.MethodPost, "/oauth/token", "application/x-www-form-urlencoded", form.Encode())
	var tr tokenResp
	if err := json.Unmarshal(r.Raw, &tr); err != nil {
		t.Fatalf("token answer %d %q: %v", r.Status, r.Raw, err)
	}
	tr.Status, tr.Header = r.Status, r.Header
	return tr
}

// token gets tokens with the password grant, failing the test otherwise.
func (e *env) token(t testing.TB, key, secret string) tokenResp {
	t.Helper()
	tr := e.tokenForm(t, url.Values{"grant_type": {"password"}, "username": {key}, "password": {secret}})
	if tr.Status != http.StatusOK || tr.AccessToken == "" {
		t.Fatalf("token for %s: %d %+v", key, tr.Status, tr)
	}
	return tr
}

// resp is an API answer.
type resp struct {
	Status int
	Header http.Header
	Raw    []byte
	Body   map[string]any
}

// vendorJSON is what every response body's Content-Type must be.
var vendorJSON = regexp.MustCompile(`^application/vnd\.(imgtec|oma\.lwm2m)\.[a-z0-9.]+(-v[0-9]+)?\+(json|xml)$`)

// do sends a request (target relative to the server or absolute); extra
// holds header name/value pairs. Every answer is checked for what holds
// for all of them: a body has an exact vendor +json Content-Type (the OAuth
// token errors excepted: RFC 6749 makes those application/json), a 204 has
// none, and X-Client-RequestId is echoed. The compatibility API (/m2m/)
// answers plain application/json.
func (e *env) do(t testing.TB, token, method, target, contentType, body string, extra ...string) resp {
	t.Helper()
	if !strings.HasPrefix(target, "http") {
		target = e.URL + target
	}
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, target, rd)
	if err != nil {
		t.Fatalf("request: %v", err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(extra); i += 2 {
		req.Header.Set(extra[i], extra[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, target, err)
	}
	out := resp{Status: res.StatusCode, Header: res.Header, Raw: raw}
	ct := res.Header.Get("Content-Type")
	switch {
	case res.StatusCode == http.StatusNoContent:
		if len(raw) > 0 {
			t.Errorf("%s %s: 204 with a body %q", method, target, raw)
		}
	case len(raw) == 0:
		t.Errorf("%s %s: %d without a body", method, target, res.StatusCode)
	case strings.HasSuffix(req.URL.Path, "/oauth/token") && res.StatusCode == http.StatusBadRequest:
		if ct != "application/json" {
			t.Errorf("%s %s: OAuth error Content-Type %q, want application/json (RFC 6749)", method, target, ct)
		}
	case strings.HasPrefix(req.URL.Path, "/m2m/"):
		if ct != "application/json" {
			t.Errorf("%s %s: compatibility API Content-Type %q, want application/json", method, target, ct)
		}
	case !vendorJSON.MatchString(ct):
		t.Errorf("%s %s: %d Content-Type %q is not a vendor +json/+xml type", method, target, res.StatusCode, ct)
	}
	if len(raw) > 0 && strings.Contains(ct, "json") {
		if err := json.Unmarshal(raw, &out.Body); err != nil {
			t.Errorf("%s %s: body %q is not a JSON object: %v", method, target, raw, err)
		}
	}
	if res.StatusCode >= 500 && res.StatusCode != http.StatusBadGateway && res.StatusCode != http.StatusGatewayTimeout {
		t.Errorf("%s %s: server error %d %s", method, target, res.StatusCode, raw)
	}
	if id := req.Header.Get("X-Client-RequestId"); id != "" && res.Header.Get("X-Client-RequestId") != id {
		t.Errorf("%s %s: X-Client-RequestId %q not echoed (got %q)", method, target, id, res.Header.Get("X-Client-RequestId"))
	}
	return out
}

// get sends an authenticated GET and requires 200.
func (e *env) get(t testing.TB, token, target string) map[string]any {
	t.Helper()
	r := e.do(t, token, http.MethodGet, target, "", "")
	if r.Status != http.StatusOK {
		t.Fatalf("GET %s: %d %s", target, r.Status, r.Raw)
	}
	return r.Body
}

// link returns the href of the first link with rel in rep, failing the test when there is none.
func link(t testing.TB, rep any, rel string) string {
	t.Helper()
	h, ok := findLink(rep, rel)
	if !ok {
		t.Fatalf("no %q link in %v", rel, rep)
	}
	return h
}

func findLink(rep any, rel string) (string, bool) {
	m, _ := rep.(map[string]any)
	for _, l := range asList(m["Links"]) {
		if lm, _ := l.(map[string]any); lm["rel"] == rel {
			h, _ := lm["href"].(string)
			return h, true
		}
	}
	return "", false
}

// rels lists the rels of a representation's links, in order.
func rels(rep any) []string {
	m, _ := rep.(map[string]any)
	var out []string
	for _, l := range asList(m["Links"]) {
		if lm, ok := l.(map[string]any); ok {
			out = append(out, fmt.Sprint(lm["rel"]))
		}
	}
	return out
}

func asList(v any) []any { l, _ := v.([]any); return l }

// items returns the Items of a list representation.
func items(rep map[string]any) []map[string]any {
	var out []map[string]any
	for _, it := range asList(rep["Items"]) {
		if m, ok := it.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}

// pageInfo returns a list's PageInfo.
func pageInfo(rep map[string]any) map[string]any { m, _ := rep["PageInfo"].(map[string]any); return m }

// invalidFields returns the InvalidFields of a BadRequest body.
func invalidFields(r resp) []string {
	var out []string
	for _, f := range asList(r.Body["InvalidFields"]) {
		out = append(out, fmt.Sprint(f))
	}
	return out
}

// wantBadRequest checks a 400 BadRequest body naming exactly fields (in any order).
func wantBadRequest(t testing.TB, r resp, fields ...string) {
	t.Helper()
	if r.Status != http.StatusBadRequest {
		t.Fatalf("status %d %s, want 400", r.Status, r.Raw)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/vnd.imgtec.badrequest+json" {
		t.Errorf("400 Content-Type %q", ct)
	}
	if _, ok := r.Body["ErrorCode"].(float64); !ok {
		t.Errorf("400 body without a numeric ErrorCode: %s", r.Raw)
	}
	if msg, _ := r.Body["ErrorMessage"].(string); msg == "" {
		t.Errorf("400 body without an ErrorMessage: %s", r.Raw)
	}
	got := invalidFields(r)
	slices.Sort(got)
	want := slices.Clone(fields)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("InvalidFields %v, want %v (%s)", got, want, r.Raw)
	}
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}
