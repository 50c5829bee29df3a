package server_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/deviceserver/deviceserver/server"
)

// These tests keep docs/api.md and server/openapi.json in step with the
// router: a route added, removed or changed without its documentation
// fails here. internal/e2e/reference_test.go replays the examples of
// docs/api.md against a running server.

const (
	docsPath    = "../docs/api.md"
	openAPIPath = "openapi.json"
)

// docSection is one "### METHOD /path" section of docs/api.md.
type docSection struct {
	Method, Path string
	Line         int
	Public       bool // "- Auth: none (public)"
	Examples     []docExample
}

// docExample is one request block and the response block after it.
type docExample struct {
	Line         int
	Method, Path string // request line; Path without the query
	Status       int
	Type         string // documented Content-Type, "" for a response without body
}

var (
	docHeading = regexp.MustCompile(`^### (GET|PUT|POST|DELETE|PATCH) (/\S*)$`)
	muxVar     = regexp.MustCompile(`\{([a-z_]+)(:[^}]*)?\}`)
)

// routeKey renders a route as the docs and OpenAPI write it: mux
// variables lose their patterns ({object:[0-9]+} → {object}).
func routeKey(method, path string) string {
	return method + " " + muxVar.ReplaceAllString(path, "{$1}")
}

// templateMatcher turns a path template into a regexp matching example
// paths, whose segments are placeholders or concrete values.
func templateMatcher(tpl string) *regexp.Regexp {
	parts := muxVar.Split(tpl, -1)
	for i, p := range parts {
		parts[i] = regexp.QuoteMeta(p)
	}
	return regexp.MustCompile("^" + strings.Join(parts, "[^/]+") + "$")
}

// parseDocs reads the sections and examples of docs/api.md, failing on
// anything that does not follow the format the replay relies on.
func parseDocs(t *testing.T) []*docSection {
	t.Helper()
	raw, err := os.ReadFile(docsPath)
	if err != nil {
		t.Fatal(err)
	}
	var (
		sections []*docSection
		cur      *docSection
		pending  *docExample
	)
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	line := 0
	next := func() (string, bool) {
		if !sc.Scan() {
			return "", false
		}
		line++
		return sc.Text(), true
	}
	for {
		l, ok := next()
		if !ok {
			break
		}
		switch {
		case strings.HasPrefix(l, "### "):
			m := docHeading.FindStringSubmatch(l)
			if m == nil {
				t.Fatalf("%s:%d: a ### heading must be \"### METHOD /path\": %q", docsPath, line, l)
			}
			if pending != nil {
				t.Fatalf("%s:%d: request without a response block", docsPath, pending.Line)
			}
			cur = &docSection{Method: m[1], Path: m[2], Line: line}
			sections = append(sections, cur)
		case strings.HasPrefix(l, "## "):
			cur = nil
		case strings.HasPrefix(l, "- Auth: ") && cur != nil:
			switch strings.TrimPrefix(l, "- Auth: ") {
			case "none (public)":
				cur.Public = true
			case "bearer token":
			default:
				t.Errorf("%s:%d: Auth must be \"none (public)\" or \"bearer token\": %q", docsPath, line, l)
			}
		case strings.HasPrefix(l, "```"):
			info := strings.TrimPrefix(l, "```")
			start := line
			var block []string
			for {
				b, ok := next()
				if !ok {
					t.Fatalf("%s:%d: unterminated code block", docsPath, start)
				}
				if b == "```" {
					break
				}
				block = append(block, b)
			}
			switch {
			case info == "http":
				if cur == nil || pending != nil || len(block) == 0 {
					t.Fatalf("%s:%d: a request block belongs to a route section and is followed by its response", docsPath, start)
				}
				method, target, _ := strings.Cut(block[0], " ")
				path, _, _ := strings.Cut(target, "?")
				pending = &docExample{Line: start, Method: method, Path: path}
			case strings.Contains(info, "status="):
				if pending == nil {
					t.Fatalf("%s:%d: response block without a request block before it", docsPath, start)
				}
				for _, f := range strings.Fields(info) {
					k, v, _ := strings.Cut(f, "=")
					switch k {
					case "status":
						pending.Status, err = strconv.Atoi(v)
						if err != nil {
							t.Fatalf("%s:%d: status %q", docsPath, start, v)
						}
					case "type":
						pending.Type = v
					}
				}
				body := strings.TrimSpace(strings.Join(block, "\n"))
				if (body == "") != (pending.Type == "") {
					t.Errorf("%s:%d: a response has a type exactly when it has a body", docsPath, start)
				}
				if body != "" && !json.Valid([]byte(body)) {
					t.Errorf("%s:%d: the response body is not valid JSON", docsPath, start)
				}
				cur.Examples = append(cur.Examples, *pending)
				pending = nil
			}
		}
	}
	if pending != nil {
		t.Fatalf("%s:%d: request without a response block", docsPath, pending.Line)
	}
	return sections
}

func routeKeys(t *testing.T) []string {
	t.Helper()
	var keys []string
	for _, r := range server.New(server.Config{}).Routes() {
		keys = append(keys, routeKey(r.Method, r.Path))
	}
	if len(keys) == 0 {
		t.Fatal("the router lists no routes")
	}
	return keys
}

// TestDocsCoverRoutes: every route has exactly one section in docs/api.md,
// every section is a route, and every section has examples that fit it.
func TestDocsCoverRoutes(t *testing.T) {
	sections := parseDocs(t)
	documented := map[string]*docSection{}
	for _, s := range sections {
		k := s.Method + " " + s.Path
		if documented[k] != nil {
			t.Errorf("%s:%d: %s is documented twice", docsPath, s.Line, k)
		}
		documented[k] = s
	}
	routes := routeKeys(t)
	for _, k := range routes {
		if documented[k] == nil {
			t.Errorf("route %s has no \"### %s\" section in %s", k, k, docsPath)
		}
	}
	for k, s := range documented {
		if !slices.Contains(routes, k) {
			t.Errorf("%s:%d: %s is documented but the router does not serve it", docsPath, s.Line, k)
		}
	}
	seen := map[int]bool{}
	for _, s := range sections {
		if len(s.Examples) == 0 {
			t.Errorf("%s:%d: %s %s has no example", docsPath, s.Line, s.Method, s.Path)
		}
		match := templateMatcher(s.Path)
		for _, ex := range s.Examples {
			seen[ex.Status] = true
			if ex.Method != s.Method || !match.MatchString(ex.Path) {
				t.Errorf("%s:%d: example %s %s does not fit the section %s %s", docsPath, ex.Line, ex.Method, ex.Path, s.Method, s.Path)
			}
		}
	}
	for _, status := range []int{200, 201, 204, 400, 401, 404, 406, 415} {
		if !seen[status] {
			t.Errorf("%s has no example answering %d", docsPath, status)
		}
	}
}

// TestDocsPublicRoutes: the routes documented as public answer without a
// token, and every other route answers 401 without one.
func TestDocsPublicRoutes(t *testing.T) {
	srv := server.New(server.Config{TokenKey: []byte("0123456789abcdef0123456789abcdef")})
	for _, s := range parseDocs(t) {
		t.Run(s.Method+" "+s.Path, func(t *testing.T) {
			path := muxVar.ReplaceAllString(s.Path, "1")
			rec := httptest.NewRecorder()
			srv.ServeHTTP(rec, httptest.NewRequest(s.Method, path, nil))
			if got := rec.Code == http.StatusUnauthorized; got == s.Public {
				t.Errorf("%s %s without a token: %d, but docs/api.md says public=%v", s.Method, path, rec.Code, s.Public)
			}
			if !s.Public && !strings.HasPrefix(rec.Header().Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("401 without WWW-Authenticate: Bearer: %q", rec.Header().Get("WWW-Authenticate"))
			}
		})
	}
}

// openAPIDoc is the part of an OpenAPI 3.0 document the tests look at.
type openAPIDoc struct {
	OpenAPI string `json:"openapi"`
	Info    struct {
		Title, Version string
	} `json:"info"`
	Security   []map[string][]string                 `json:"security"`
	Paths      map[string]map[string]json.RawMessage `json:"paths"`
	Components struct {
		SecuritySchemes map[string]struct {
			Type, Scheme string
		} `json:"securitySchemes"`
		Parameters map[string]openAPIParam    `json:"parameters"`
		Responses  map[string]openAPIResponse `json:"responses"`
		Schemas    map[string]json.RawMessage `json:"schemas"`
	} `json:"components"`
}

type openAPIParam struct {
	Ref      string `json:"$ref"`
	Name, In string
	Required bool
}

type openAPIResponse struct {
	Ref     string                     `json:"$ref"`
	Content map[string]json.RawMessage `json:"content"`
}

type openAPIOperation struct {
	OperationID string                     `json:"operationId"`
	Security    *[]map[string][]string     `json:"security"`
	Parameters  []openAPIParam             `json:"parameters"`
	RequestBody *json.RawMessage           `json:"requestBody"`
	Responses   map[string]openAPIResponse `json:"responses"`
}

// loadOpenAPI fetches the document the way clients do and checks that it
// is the embedded file.
func loadOpenAPI(t *testing.T) (openAPIDoc, []byte) {
	t.Helper()
	file, err := os.ReadFile(openAPIPath)
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	server.New(server.Config{}).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/openapi.json", nil))
	if rec.Code != http.StatusOK || !bytes.Equal(rec.Body.Bytes(), file) {
		t.Fatalf("GET /openapi.json: %d, %d bytes; want 200 with the %d bytes of %s", rec.Code, rec.Body.Len(), len(file), openAPIPath)
	}
	var doc openAPIDoc
	dec := json.NewDecoder(bytes.NewReader(file))
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("%s: %v", openAPIPath, err)
	}
	return doc, file
}

var httpMethods = map[string]bool{"get": true, "put": true, "post": true, "delete": true, "patch": true, "head": true, "options": true, "trace": true}

func operations(t *testing.T, doc openAPIDoc) map[string]openAPIOperation {
	t.Helper()
	ops := map[string]openAPIOperation{}
	for path, item := range doc.Paths {
		for method, raw := range item {
			if !httpMethods[method] {
				continue // parameters, summary, ...
			}
			var op openAPIOperation
			if err := json.Unmarshal(raw, &op); err != nil {
				t.Fatalf("%s %s: %v", method, path, err)
			}
			ops[strings.ToUpper(method)+" "+path] = op
		}
	}
	return ops
}

// TestOpenAPIDocument checks the document's shape and that its operations
// are exactly the router's routes.
func TestOpenAPIDocument(t *testing.T) {
	doc, raw := loadOpenAPI(t)
	if !strings.HasPrefix(doc.OpenAPI, "3.") || doc.Info.Title == "" || doc.Info.Version == "" {
		t.Errorf("openapi %q, info %+v: want an OpenAPI 3.x document with title and version", doc.OpenAPI, doc.Info)
	}
	if bs := doc.Components.SecuritySchemes["bearerAuth"]; bs.Type != "http" || bs.Scheme != "bearer" {
		t.Errorf("securitySchemes.bearerAuth = %+v, want http bearer", bs)
	}
	if len(doc.Security) != 1 || doc.Security[0]["bearerAuth"] == nil {
		t.Errorf("security = %v, want bearerAuth by default", doc.Security)
	}
	for _, name := range []string{"Client", "Subscription", "ObjectDefinition", "BadRequest", "List", "PageInfo", "Link", "Error", "AccessKey", "Instance", "ResourceCreated"} {
		if doc.Components.Schemas[name] == nil {
			t.Errorf("components.schemas has no %s", name)
		}
	}
	// Every $ref points at a component that exists.
	var all map[string]any
	if err := json.Unmarshal(raw, &all); err != nil {
		t.Fatal(err)
	}
	for _, r := range regexp.MustCompile(`"\$ref":\s*"([^"]*)"`).FindAllStringSubmatch(string(raw), -1) {
		var node any = all
		for _, part := range strings.Split(strings.TrimPrefix(r[1], "#/"), "/") {
			m, _ := node.(map[string]any)
			node = m[part]
		}
		if node == nil || !strings.HasPrefix(r[1], "#/components/") {
			t.Errorf("$ref %s does not resolve", r[1])
		}
	}

	ops := operations(t, doc)
	routes := routeKeys(t)
	for _, k := range routes {
		if _, ok := ops[k]; !ok {
			t.Errorf("route %s is not in %s", k, openAPIPath)
		}
	}
	ids := map[string]string{}
	for k, op := range ops {
		if !slices.Contains(routes, k) {
			t.Errorf("%s describes %s, which the router does not serve", openAPIPath, k)
		}
		if op.OperationID == "" || ids[op.OperationID] != "" {
			t.Errorf("%s: operationId %q missing or not unique (also %s)", k, op.OperationID, ids[op.OperationID])
		}
		ids[op.OperationID] = k
		if len(op.Responses) == 0 {
			t.Errorf("%s: no responses", k)
		}
		// Path parameters are exactly the template's variables.
		var want, got []string
		for _, m := range muxVar.FindAllStringSubmatch(k, -1) {
			want = append(want, m[1])
		}
		for _, p := range op.Parameters {
			if p.Ref != "" {
				p = doc.Components.Parameters[strings.TrimPrefix(p.Ref, "#/components/parameters/")]
			}
			if p.In == "path" {
				got = append(got, p.Name)
				if !p.Required {
					t.Errorf("%s: path parameter %s must be required", k, p.Name)
				}
			}
		}
		slices.Sort(want)
		slices.Sort(got)
		if !slices.Equal(want, got) {
			t.Errorf("%s: path parameters %v, want %v", k, got, want)
		}
		for status, r := range op.Responses {
			if r.Ref != "" {
				r = doc.Components.Responses[strings.TrimPrefix(r.Ref, "#/components/responses/")]
			}
			n, err := strconv.Atoi(status)
			if err != nil || n < 100 || n > 599 {
				t.Errorf("%s: response key %q is not a status code", k, status)
			}
			if (n == http.StatusNoContent) != (len(r.Content) == 0) {
				t.Errorf("%s: response %s: content %v (only 204 has none)", k, status, r.Content)
			}
		}
	}
}

// mediaTypeIn reports whether typ is one of the content keys, which may be
// ranges such as application/*.
func mediaTypeIn(typ string, content map[string]json.RawMessage) bool {
	for k := range content {
		if k == typ || k == "*/*" || (strings.HasSuffix(k, "/*") && strings.HasPrefix(typ, strings.TrimSuffix(k, "*"))) {
			return true
		}
	}
	return false
}

// TestOpenAPIMatchesDocs: the statuses and media types of the examples in
// docs/api.md are declared by the OpenAPI operation, and public routes
// need no security there.
func TestOpenAPIMatchesDocs(t *testing.T) {
	doc, _ := loadOpenAPI(t)
	ops := operations(t, doc)
	for _, s := range parseDocs(t) {
		k := s.Method + " " + s.Path
		op, ok := ops[k]
		if !ok {
			continue // TestOpenAPIDocument reports it
		}
		if public := op.Security != nil && len(*op.Security) == 0; public != s.Public {
			t.Errorf("%s: public in %s = %v, in %s = %v", k, openAPIPath, public, docsPath, s.Public)
		}
		for _, ex := range s.Examples {
			r, ok := op.Responses[strconv.Itoa(ex.Status)]
			if r.Ref != "" {
				r = doc.Components.Responses[strings.TrimPrefix(r.Ref, "#/components/responses/")]
			}
			switch {
			case !ok:
				t.Errorf("%s:%d: %s answers %d, which %s does not declare", docsPath, ex.Line, k, ex.Status, openAPIPath)
			case ex.Type != "" && !mediaTypeIn(ex.Type, r.Content):
				t.Errorf("%s:%d: %s %d is %s; %s declares %v", docsPath, ex.Line, k, ex.Status, ex.Type, openAPIPath, mapKeys(r.Content))
			}
		}
	}
}

func mapKeys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// TestOpenAPINegotiation: the document is JSON under its own media type.
func TestOpenAPINegotiation(t *testing.T) {
	srv := server.New(server.Config{})
	tests := []struct {
		accept string
		status int
		typ    string // "": not checked (errors follow the Accept preference)
	}{
		{"", http.StatusOK, "application/vnd.oai.openapi+json"},
		{"application/json", http.StatusOK, "application/vnd.oai.openapi+json"},
		{"*/*", http.StatusOK, "application/vnd.oai.openapi+json"},
		{"application/vnd.oai.openapi+json", http.StatusOK, "application/vnd.oai.openapi+json"},
		{"application/vnd.oai.openapi", http.StatusOK, "application/vnd.oai.openapi+json"},
		{"application/xml", http.StatusNotAcceptable, ""},
		{"application/vnd.oai.openapi+xml", http.StatusNotAcceptable, ""},
		{"text/html", http.StatusNotAcceptable, "application/vnd.imgtec.error+json"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("Accept %q", tt.accept), func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, "/openapi.json", nil)
			if tt.accept != "" {
				req.Header.Set("Accept", tt.accept)
			}
			rec := httptest.NewRecorder()
			srv.ServeHTTP(rec, req)
			typ, _, _ := mime.ParseMediaType(rec.Header().Get("Content-Type"))
			if rec.Code != tt.status || (tt.typ != "" && typ != tt.typ) {
				t.Errorf("GET /openapi.json Accept %q: %d %s, want %d %s", tt.accept, rec.Code, typ, tt.status, tt.typ)
			}
		})
	}
}
