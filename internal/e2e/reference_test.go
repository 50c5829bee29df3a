package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"mime"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/deviceserver/deviceserver/internal/testserver"
	"github.com/deviceserver/deviceserver/lwm2m/sim"
)

// referencePath is the API reference whose examples TestAPIReference
// replays. server/docs_test.go checks its headings against the router and
// the OpenAPI document; this test checks that what it shows is what a
// running server answers.
const referencePath = "../../docs/api.md"

// exampleHost is the webhook host of the documented subscriptions; the
// replay points it at a local receiver.
const exampleHost = "https://app.example.com"

// refExample is one request block of docs/api.md and the response block
// after it.
type refExample struct {
	Line    int
	Section string // "METHOD /template" of the ### heading above
	Public  bool   // the section says "- Auth: none (public)"

	Method, Target string // request line; Target may hold {placeholders} and a query
	Header         http.Header
	Body           string

	Status   int
	Type     string         // documented Content-Type; "" for no body
	Response map[string]any // documented body
}

func (ex refExample) String() string {
	return fmt.Sprintf("%s:%d %s %s", referencePath, ex.Line, ex.Method, ex.Target)
}

var (
	refHeading     = regexp.MustCompile(`^### (GET|PUT|POST|DELETE|PATCH) (/\S*)$`)
	refPlaceholder = regexp.MustCompile(`\{([a-z_]+)\}`)
	refRequestLine = regexp.MustCompile(`^([A-Z]+) (/\S*)$`)
	refHeaderLine  = regexp.MustCompile(`^([A-Za-z0-9-]+): (.*)$`)
)

// parseReference reads every example of docs/api.md, failing on anything
// that does not follow the format (see the Conventions there).
func parseReference(t *testing.T) []refExample {
	t.Helper()
	raw, err := os.ReadFile(referencePath)
	if err != nil {
		t.Fatal(err)
	}
	var (
		out     []refExample
		section string         // "METHOD /template" of the current ### heading
		public  bool           // the current section is public
		match   *regexp.Regexp // example paths that fit the current section
		pending *refExample    // request block waiting for its response block
		line    int
	)
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	next := func() (string, bool) { ok := sc.Scan(); line++; return sc.Text(), ok }
	errorf := func(at int, format string, args ...any) {
		t.Helper()
		t.Fatalf("%s:%d: "+format, append([]any{referencePath, at}, args...)...)
	}
	readBlock := func(start int) []string {
		var block []string
		for {
			l, ok := next()
			if !ok {
				errorf(start, "unterminated code block")
			}
			if l == "```" {
				return block
			}
			block = append(block, l)
		}
	}
	for {
		l, ok := next()
		if !ok {
			break
		}
		switch {
		case strings.HasPrefix(l, "### "):
			m := refHeading.FindStringSubmatch(l)
			if m == nil {
				errorf(line, "a ### heading must be \"### METHOD /path\": %q", l)
			}
			section, public = m[1]+" "+m[2], false
			// {x} in the template matches a placeholder or a concrete segment.
			match = regexp.MustCompile("^" + strings.Join(quoteParts(refPlaceholder.Split(m[2], -1)), "[^/]+") + "$")
		case strings.HasPrefix(l, "## "):
			section = ""
		case l == "- Auth: none (public)":
			public = true
		case l == "```http":
			start := line
			block := readBlock(start)
			if section == "" || pending != nil || len(block) == 0 {
				errorf(start, "a request block belongs to a route section and is followed by its response block")
			}
			rl := refRequestLine.FindStringSubmatch(block[0])
			if rl == nil {
				errorf(start, "request line %q is not \"METHOD /path\"", block[0])
			}
			ex := refExample{Line: start, Section: section, Public: public, Method: rl[1], Target: rl[2], Header: http.Header{}}
			path, _, _ := strings.Cut(ex.Target, "?")
			if !strings.HasPrefix(section, ex.Method+" ") || !match.MatchString(path) {
				errorf(start, "%s %s does not fit the section %s", ex.Method, ex.Target, section)
			}
			i := 1
			for ; i < len(block) && block[i] != ""; i++ {
				h := refHeaderLine.FindStringSubmatch(block[i])
				if h == nil {
					errorf(start+i, "header line %q is not \"Name: value\"", block[i])
				}
				ex.Header.Add(h[1], h[2])
			}
			if i < len(block) {
				ex.Body = strings.Join(block[i+1:], "\n")
			}
			pending = &ex
		case strings.HasPrefix(l, "```") && strings.Contains(l, " status="):
			start := line
			block := readBlock(start)
			if pending == nil {
				errorf(start, "response block without a request block before it")
			}
			for _, f := range strings.Fields(strings.TrimPrefix(l, "```"))[1:] {
				k, v, _ := strings.Cut(f, "=")
				switch k {
				case "status":
					if pending.Status, err = strconv.Atoi(v); err != nil {
						errorf(start, "status %q", v)
					}
				case "type":
					pending.Type = v
				default:
					errorf(start, "unknown response attribute %q", f)
				}
			}
			body := strings.TrimSpace(strings.Join(block, "\n"))
			if (body == "") != (pending.Type == "") {
				errorf(start, "a response block has a type exactly when it has a body")
			}
			if body != "" {
				if err := json.Unmarshal([]byte(body), &pending.Response); err != nil {
					errorf(start, "the documented body is not a JSON object: %v", err)
				}
			}
			out = append(out, *pending)
			pending = nil
		case strings.HasPrefix(l, "```"):
			readBlock(line) // some other block: prose
		}
	}
	if pending != nil {
		errorf(pending.Line, "request block without a response block")
	}
	if len(out) == 0 {
		t.Fatalf("%s has no examples", referencePath)
	}
	return out
}

func quoteParts(parts []string) []string {
	for i, p := range parts {
		parts[i] = regexp.QuoteMeta(p)
	}
	return parts
}

// fixtureSet holds what the placeholders of the examples stand for.
type fixtureSet struct {
	vals    map[string]string
	missing map[string]string // placeholder → why its fixture could not be made
}

// expand substitutes every {placeholder} of s.
func (f fixtureSet) expand(s string) (string, error) {
	var err error
	out := refPlaceholder.ReplaceAllStringFunc(s, func(p string) string {
		name := p[1 : len(p)-1]
		if v, ok := f.vals[name]; ok {
			return v
		}
		if err == nil {
			if why, ok := f.missing[name]; ok {
				err = fmt.Errorf("fixture %s is unavailable: %s", p, why)
			} else {
				err = fmt.Errorf("unknown placeholder %s", p)
			}
		}
		return p
	})
	return out, err
}

// referenceFixtures makes, through the API, everything the examples refer
// to: main fixtures for every example, and spare ones of the same kinds
// that the DELETE examples destroy.
func referenceFixtures(t *testing.T, srv *testserver.Server, hookURL string) (main, spare fixtureSet) {
	t.Helper()
	main = fixtureSet{vals: map[string]string{"object": "3", "instance": "0", "resource": "0", "metric": "TransactionCount"}, missing: map[string]string{}}

	form := url.Values{"grant_type": {"password"}, "username": {testserver.AdminKey}, "password": {testserver.AdminSecret}}
	resp, err := http.PostForm(srv.URL+"/oauth/token", form)
	if err != nil {
		t.Fatal(err)
	}
	var tok struct {
		Access  string `json:"access_token"`
		Refresh string `json:"refresh_token"`
	}
	err = json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	if err != nil || tok.Access == "" || tok.Refresh == "" {
		t.Fatalf("token: %d %v", resp.StatusCode, err)
	}
	main.vals["token"], main.vals["refresh_token"] = tok.Access, tok.Refresh
	api := testserver.Client{T: t, Token: tok.Access}

	startDevice(t, srv, sim.Config{Endpoint: "sim-1", Light: true})
	startDevice(t, srv, sim.Config{Endpoint: "sim-2", Light: true})
	clientID := func(ep string) string {
		items := testserver.Items(api.Get(srv.URL + "/clients?name=" + ep).Body)
		if len(items) != 1 {
			t.Fatalf("GET /clients?name=%s: %d items", ep, len(items))
		}
		return items[0]["ClientID"].(string)
	}
	main.vals["client"] = clientID("sim-1")

	spare = fixtureSet{vals: maps.Clone(main.vals), missing: map[string]string{}}
	spare.vals["client"] = clientID("sim-2")

	// create POSTs body and records the answer's field as placeholder name.
	create := func(set fixtureSet, name, path, contentType string, body any, field string) map[string]any {
		r := api.Do(http.MethodPost, srv.URL+path, contentType, body)
		v, _ := r.Body[field].(string)
		if r.Status != http.StatusCreated || v == "" {
			set.missing[name] = fmt.Sprintf("POST %s answered %d %s", path, r.Status, bytes.TrimSpace(r.Raw))
			return nil
		}
		set.vals[name] = v
		return r.Body
	}
	const (
		keyType  = "application/vnd.imgtec.accesskey+json"
		defType  = "application/vnd.imgtec.objectdefinition+json"
		certType = "application/vnd.imgtec.certificate+json"
	)
	// The administrator's key creates a tenant with its first key ({key}
	// of the main set); that key adds the spare one to its organisation.
	// Examples about /accesskeys/{key} are sent with the tenant's token,
	// as other organisations' keys are 404.
	if k := create(main, "key", "/accesskeys", keyType, map[string]any{"Name": "reference"}, "Key"); k != nil {
		main.vals["secret"], _ = k["Secret"].(string)
		tenant := testserver.Client{T: t, Token: srv.TokenFor(t, main.vals["key"], main.vals["secret"])}
		main.vals["key_token"], spare.vals["key_token"] = tenant.Token, tenant.Token
		r := tenant.Do(http.MethodPost, srv.URL+"/accesskeys", keyType, map[string]any{"Name": "spare"})
		if v, _ := r.Body["Key"].(string); r.Status == http.StatusCreated && v != "" {
			spare.vals["key"] = v
		} else {
			spare.missing["key"] = fmt.Sprintf("POST /accesskeys answered %d %s", r.Status, bytes.TrimSpace(r.Raw))
		}
	} else {
		spare.missing["key"] = main.missing["key"]
	}
	for _, set := range []fixtureSet{main, spare} {
		create(set, "identity", "/identities/psk", "", nil, "Identity")
		create(set, "certificate", "/identities/certificates", certType, map[string]any{"Subject": "sim-1"}, "ID")
	}
	create(main, "definition", "/objecttypes/definitions", defType, map[string]any{"ObjectID": "20000", "Name": "Gate Sensor",
		"Properties": []any{map[string]any{"PropertyID": "0", "Name": "Open", "DataType": "Boolean", "Access": "Read"}}}, "ID")
	create(spare, "definition", "/objecttypes/definitions", defType, map[string]any{"ObjectID": "20009", "Name": "Spare"}, "ID")
	create(main, "subscription", "/clients/"+main.vals["client"]+"/objecttypes/3303/instances/0/subscriptions", subType,
		map[string]any{"SubscriptionType": "Observation", "Url": hookURL, "Property": "SensorValue", "Attributes": map[string]any{"Pmin": 1, "Pmax": 60}}, "ID")
	create(spare, "subscription", "/subscriptions", subType, map[string]any{"SubscriptionType": "ClientDisconnected", "Url": hookURL}, "ID")
	referenceGroupFixtures(t, srv, api, main, spare)
	referenceM2MFixtures(t, srv, api, hookURL, main, spare)
	for _, set := range []fixtureSet{main, spare} {
		for name, why := range set.missing {
			t.Logf("fixture {%s} unavailable, its examples will fail: %s", name, why)
		}
	}
	return main, spare
}

// replayOrder runs the examples in document order, except DELETE
// examples: they come last, on the spare fixtures, deeper paths first so
// that an instance is deleted before its client.
func replayOrder(exs []refExample) []refExample {
	out := slices.Clone(exs)
	depth := func(ex refExample) int {
		if ex.Method != http.MethodDelete {
			return -1
		}
		return strings.Count(ex.Section, "/")
	}
	sort.SliceStable(out, func(i, j int) bool {
		di, dj := depth(out[i]), depth(out[j])
		if (di < 0) != (dj < 0) {
			return di < 0
		}
		return di > dj
	})
	return out
}

// TestAPIReference replays every example of docs/api.md against a real
// server with simulated devices, and checks status, Content-Type and the
// top-level members of the documented body (values are free).
func TestAPIReference(t *testing.T) {
	examples := parseReference(t)
	srv := testserver.Start(t)
	hooks := testserver.NewReceiver(t)
	main, spare := referenceFixtures(t, srv, hooks.URL)
	client := &http.Client{Timeout: wait}

	var failed []string
	for _, ex := range replayOrder(examples) {
		ok := t.Run(fmt.Sprintf("L%d %s %s", ex.Line, ex.Method, ex.Target), func(t *testing.T) {
			set := main
			if ex.Method == http.MethodDelete {
				set = spare
			}
			target, err := set.expand(ex.Target)
			if err != nil {
				t.Fatalf("%s: %v", ex, err)
			}
			body, err := set.expand(ex.Body)
			if err != nil {
				t.Fatalf("%s: %v", ex, err)
			}
			body = strings.ReplaceAll(body, exampleHost, hooks.URL)
			req, err := http.NewRequest(ex.Method, srv.URL+target, strings.NewReader(body))
			if err != nil {
				t.Fatalf("%s: %v", ex, err)
			}
			for name, values := range ex.Header {
				for _, v := range values {
					v, err := set.expand(v)
					if err != nil {
						t.Fatalf("%s: %v", ex, err)
					}
					req.Header.Add(name, v)
				}
			}
			if !ex.Public && ex.Status != http.StatusUnauthorized && req.Header.Get("Authorization") == "" {
				token := "{token}"
				if strings.Contains(ex.Target, "{key}") {
					token = "{key_token}"
				}
				if token, err = set.expand(token); err != nil {
					t.Fatalf("%s: %v", ex, err)
				}
				req.Header.Set("Authorization", "Bearer "+token)
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatalf("%s: %v", ex, err)
			}
			raw, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatalf("%s: read body: %v", ex, err)
			}
			if resp.StatusCode == http.StatusNotImplemented && ex.Status != http.StatusNotImplemented {
				t.Fatalf("%s: NOT IMPLEMENTED YET: the server answered 501, docs/api.md documents %d: %s", ex, ex.Status, bytes.TrimSpace(raw))
			}
			if resp.StatusCode != ex.Status {
				t.Fatalf("%s: status %d, documented %d: %s", ex, resp.StatusCode, ex.Status, bytes.TrimSpace(raw))
			}
			got, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
			if ex.Type == "" {
				if len(raw) != 0 {
					t.Errorf("%s: documented without a body, got %s %q", ex, got, raw)
				}
				return
			}
			if got != ex.Type {
				t.Errorf("%s: Content-Type %q, documented %q", ex, resp.Header.Get("Content-Type"), ex.Type)
			}
			var actual map[string]any
			if err := json.Unmarshal(raw, &actual); err != nil {
				t.Fatalf("%s: the body is not a JSON object: %v: %s", ex, err, raw)
			}
			for _, name := range slices.Sorted(maps.Keys(ex.Response)) {
				if _, ok := actual[name]; !ok {
					t.Errorf("%s: documented member %q is not in the answer %s", ex, name, bytes.TrimSpace(raw))
				}
			}
		})
		if !ok {
			failed = append(failed, fmt.Sprintf("%s:%d %s %s (documented %d)", referencePath, ex.Line, ex.Method, ex.Target, ex.Status))
		}
	}
	if len(failed) > 0 {
		t.Errorf("%d of %d examples of %s do not match the server:\n  %s", len(failed), len(examples), referencePath, strings.Join(failed, "\n  "))
	}
}
