package server_test

import (
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/deviceserver/deviceserver/lwm2m"
)

const subType = "application/vnd.oma.lwm2m.subscription+json"

func TestSubscriptions(t *testing.T) {
	e := newEnv(t)
	e.register(t, adminOrg, "c-01", "ep-01", true)
	e.register(t, adminOrg, "c-02", "ep-02", true)
	other := e.other(t)
	e.register(t, otherOrg, "c-other", "ep-other", true)
	hook := "http://127.0.0.1:9/hook"
	inst := "/clients/c-01/objecttypes/3303/instances/0"

	create := func(t *testing.T, token, path, body string) string {
		t.Helper()
		r := e.do(t, token, http.MethodPost, path, subType, body)
		if r.Status != http.StatusCreated {
			t.Fatalf("POST %s: %d %s", path, r.Status, r.Raw)
		}
		if ct := r.Header.Get("Content-Type"); ct != "application/vnd.imgtec.resourcecreated+json" {
			t.Errorf("Content-Type %q", ct)
		}
		id, _ := r.Body["ID"].(string)
		self := e.URL + "/subscriptions/" + id
		if id == "" || link(t, r.Body, "self") != self || r.Header.Get("Location") != self {
			t.Errorf("created %s, Location %q", r.Raw, r.Header.Get("Location"))
		}
		return self
	}

	var orgSub, clientSub, obsSub string
	t.Run("create at every level", func(t *testing.T) {
		orgSub = create(t, e.admin, "/subscriptions", `{"SubscriptionType":"ClientConnected","Url":"`+hook+`","Secret":"s3cret","DeletionPolicy":1}`)
		clientSub = create(t, e.admin, "/clients/c-01/subscriptions", `{"SubscriptionType":"ClientUpdated","Url":"`+hook+`"}`)
		obsSub = create(t, e.admin, inst+"/subscriptions",
			`{"SubscriptionType":"Observation","Url":"`+hook+`","Property":"SensorValue","Attributes":{"Pmin":"5","Pmax":60,"Step":0.5},"Secret":"k"}`)
		calls := e.dev.take()
		var ops []string
		for _, c := range calls {
			if c.Client != "c-01" || c.Path != "/3303/0/5700" {
				t.Errorf("device call %v", c)
			}
			ops = append(ops, c.Op)
		}
		if strings.Join(ops, ",") != "writeattributes,observe" || calls[0].Args != "pmin=5&pmax=60&st=0.5" {
			t.Errorf("device calls %v, want Write-Attributes pmin=5&pmax=60&st=0.5 then Observe", calls)
		}
		create(t, e.admin, inst+"/subscriptions", `{"SubscriptionType":"Observation","Url":"`+hook+`"}`)
		if calls := e.dev.take(); len(calls) != 1 || calls[0].Op != "observe" || calls[0].Path != "/3303/0" {
			t.Errorf("instance observation device calls %v", calls)
		}
	})

	t.Run("representations", func(t *testing.T) {
		tests := []struct {
			href  string
			want  map[string]any
			links []string
		}{
			{orgSub, map[string]any{"SubscriptionType": "ClientConnected", "Url": hook, "DeletionPolicy": 1.0}, []string{"self", "update", "remove"}},
			{clientSub, map[string]any{"SubscriptionType": "ClientUpdated", "Url": hook, "DeletionPolicy": 0.0}, []string{"self", "update", "remove", "client"}},
			{obsSub, map[string]any{"SubscriptionType": "Observation", "Property": "SensorValue",
				"Attributes": map[string]any{"Pmin": 5.0, "Pmax": 60.0, "Step": 0.5}}, []string{"self", "update", "remove", "client", "object"}},
		}
		for _, tt := range tests {
			r := e.do(t, e.admin, http.MethodGet, tt.href, "", "")
			if r.Status != http.StatusOK || r.Header.Get("Content-Type") != subType {
				t.Fatalf("GET %s: %d %q", tt.href, r.Status, r.Header.Get("Content-Type"))
			}
			for k, v := range tt.want {
				if !reflect.DeepEqual(r.Body[k], v) {
					t.Errorf("%s: %s = %v, want %v", tt.href, k, r.Body[k], v)
				}
			}
			if got := rels(r.Body); !reflect.DeepEqual(got, tt.links) {
				t.Errorf("%s: links %v, want %v", tt.href, got, tt.links)
			}
			if strings.Contains(string(r.Raw), "s3cret") || strings.Contains(strings.ToLower(string(r.Raw)), `"secret"`) {
				t.Errorf("%s: the secret is shown: %s", tt.href, r.Raw)
			}
			if _, ok := r.Body["Delivery"].(map[string]any); !ok {
				t.Errorf("%s: no Delivery state: %s", tt.href, r.Raw)
			}
		}
		if h := link(t, e.get(t, e.admin, obsSub), "object"); h != e.URL+inst {
			t.Errorf("object link %q", h)
		}
	})

	t.Run("lists", func(t *testing.T) {
		tests := []struct {
			token, path string
			total       float64
		}{
			{e.admin, "/subscriptions", 4},
			{e.admin, "/clients/c-01/subscriptions", 3},
			{e.admin, "/clients/c-02/subscriptions", 0},
			{e.admin, inst + "/subscriptions", 2},
			{e.admin, "/clients/c-01/objecttypes/3303/instances/1/subscriptions", 0},
			{other, "/subscriptions", 0},
		}
		for _, tt := range tests {
			list := e.get(t, tt.token, tt.path)
			if pageInfo(list)["TotalCount"] != tt.total {
				t.Errorf("GET %s: TotalCount %v, want %v", tt.path, pageInfo(list)["TotalCount"], tt.total)
			}
			if link(t, list, "add") != e.URL+tt.path {
				t.Errorf("GET %s: add link %v", tt.path, list["Links"])
			}
			if strings.Contains(string(mustJSON(list)), "s3cret") {
				t.Errorf("GET %s shows a secret", tt.path)
			}
		}
	})

	t.Run("other tenants' subscriptions are 404", func(t *testing.T) {
		for _, m := range []string{http.MethodGet, http.MethodDelete, http.MethodPut} {
			body, ct := "", ""
			if m == http.MethodPut {
				body, ct = `{"Url":"http://evil/"}`, subType
			}
			if r := e.do(t, other, m, orgSub, ct, body); r.Status != http.StatusNotFound {
				t.Errorf("%s %s by another tenant: %d", m, orgSub, r.Status)
			}
		}
		if r := e.do(t, other, http.MethodPost, "/clients/c-01/subscriptions", subType, `{"SubscriptionType":"ClientUpdated","Url":"`+hook+`"}`); r.Status != http.StatusNotFound {
			t.Errorf("subscribe to another tenant's client: %d", r.Status)
		}
		if r := e.do(t, other, http.MethodPost, inst+"/subscriptions", subType, `{"SubscriptionType":"Observation","Url":"`+hook+`"}`); r.Status != http.StatusNotFound {
			t.Errorf("observe another tenant's client: %d", r.Status)
		}
		if calls := e.dev.take(); len(calls) != 0 {
			t.Errorf("device calls %v", calls)
		}
	})

	t.Run("invalid subscriptions", func(t *testing.T) {
		tests := []struct {
			name, path, body string
			fields           []string
		}{
			{"Pmax < Pmin", inst + "/subscriptions", `{"SubscriptionType":"Observation","Url":"` + hook + `","Attributes":{"Pmin":60,"Pmax":5}}`, []string{"Attributes"}},
			{"negative Pmin", inst + "/subscriptions", `{"SubscriptionType":"Observation","Url":"` + hook + `","Attributes":{"Pmin":"-5"}}`, []string{"Attributes.Pmin"}},
			{"fractional Pmax", inst + "/subscriptions", `{"SubscriptionType":"Observation","Url":"` + hook + `","Attributes":{"Pmax":1.5}}`, []string{"Attributes.Pmax"}},
			{"non-numeric Step", inst + "/subscriptions", `{"SubscriptionType":"Observation","Url":"` + hook + `","Attributes":{"Step":"big"}}`, []string{"Attributes.Step"}},
			{"LessThan above GreaterThan", inst + "/subscriptions", `{"SubscriptionType":"Observation","Url":"` + hook + `","Attributes":{"LessThan":50,"GreaterThan":10}}`, []string{"Attributes"}},
			{"unknown attribute", inst + "/subscriptions", `{"SubscriptionType":"Observation","Url":"` + hook + `","Attributes":{"Epmin":1}}`, []string{"Epmin"}},
			{"no Url", "/subscriptions", `{"SubscriptionType":"ClientConnected"}`, []string{"Url"}},
			{"relative Url", "/subscriptions", `{"SubscriptionType":"ClientConnected","Url":"/hook"}`, []string{"Url"}},
			{"ftp Url", "/subscriptions", `{"SubscriptionType":"ClientConnected","Url":"ftp://host/hook"}`, []string{"Url"}},
			{"not a Url", "/subscriptions", `{"SubscriptionType":"ClientConnected","Url":"http://[::1"}`, []string{"Url"}},
			{"unknown SubscriptionType", "/subscriptions", `{"SubscriptionType":"Sometimes","Url":"` + hook + `"}`, []string{"SubscriptionType"}},
			{"no SubscriptionType and no Url", "/subscriptions", `{}`, []string{"SubscriptionType", "Url"}},
			{"Observation of the organisation without ResourcePath", "/subscriptions", `{"SubscriptionType":"Observation","Url":"` + hook + `"}`, []string{"ResourcePath"}},
			{"lifecycle on an instance", inst + "/subscriptions", `{"SubscriptionType":"ClientConnected","Url":"` + hook + `"}`, []string{"SubscriptionType"}},
			{"attributes on lifecycle", "/subscriptions", `{"SubscriptionType":"ClientConnected","Url":"` + hook + `","Attributes":{"Pmin":1}}`, []string{"Attributes"}},
			{"Property on the organisation", "/subscriptions", `{"SubscriptionType":"ClientConnected","Url":"` + hook + `","Property":"x"}`, []string{"Property"}},
			{"Property on a client", "/clients/c-01/subscriptions", `{"SubscriptionType":"ClientConnected","Url":"` + hook + `","Property":"x"}`, []string{"Property"}},
			{"unknown Property", inst + "/subscriptions", `{"SubscriptionType":"Observation","Url":"` + hook + `","Property":"Colour"}`, []string{"Property"}},
			{"DeletionPolicy 7", "/subscriptions", `{"SubscriptionType":"ClientConnected","Url":"` + hook + `","DeletionPolicy":7}`, []string{"DeletionPolicy"}},
			{"AcceptContentType html", "/subscriptions", `{"SubscriptionType":"ClientConnected","Url":"` + hook + `","AcceptContentType":"text/html"}`, []string{"AcceptContentType"}},
			{"unknown field", "/subscriptions", `{"SubscriptionType":"ClientConnected","Url":"` + hook + `","Colour":"red"}`, []string{"Colour"}},
			{"wrong type", "/subscriptions", `{"SubscriptionType":"ClientConnected","Url":42}`, []string{"Url"}},
			{"malformed", "/subscriptions", `{"SubscriptionType":`, nil},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				wantBadRequest(t, e.do(t, e.admin, http.MethodPost, tt.path, subType, tt.body), tt.fields...)
			})
		}
		if calls := e.dev.take(); len(calls) != 0 {
			t.Errorf("device calls for invalid subscriptions: %v", calls)
		}
		if n := pageInfo(e.get(t, e.admin, "/subscriptions"))["TotalCount"]; n != 4.0 {
			t.Errorf("%v subscriptions after invalid requests, want 4", n)
		}
	})

	t.Run("observation and the device", func(t *testing.T) {
		e.register(t, adminOrg, "c-off", "ep-off", false)
		off := create(t, e.admin, "/clients/c-off/objecttypes/3303/instances/0/subscriptions",
			`{"SubscriptionType":"Observation","Url":"`+hook+`","Property":"5700"}`)
		if calls := e.dev.take(); len(calls) != 0 {
			t.Errorf("device calls for an offline client: %v", calls)
		}
		if r := e.do(t, e.admin, http.MethodDelete, off, "", ""); r.Status != http.StatusNoContent {
			t.Fatalf("delete: %d", r.Status)
		}
		tests := []struct {
			name   string
			err    error
			status int
		}{
			{"timeout", fmt.Errorf("observe: %w", lwm2m.ErrTimeout), 504},
			{"4.04", &lwm2m.DeviceError{Op: "observe", Code: 4<<5 | 4}, 404},
			{"4.05", &lwm2m.DeviceError{Op: "observe", Code: 4<<5 | 5}, 405},
			{"5.00", &lwm2m.DeviceError{Op: "observe", Code: 5 << 5}, 502},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				e.dev.setErr(tt.err)
				defer e.dev.setErr(nil)
				r := e.do(t, e.admin, http.MethodPost, "/clients/c-01/objecttypes/3303/instances/1/subscriptions", subType,
					`{"SubscriptionType":"Observation","Url":"`+hook+`","Property":"SensorValue"}`)
				if r.Status != tt.status {
					t.Errorf("status %d %s, want %d", r.Status, r.Raw, tt.status)
				}
				e.dev.take()
			})
		}
		if n := pageInfo(e.get(t, e.admin, "/clients/c-01/objecttypes/3303/instances/1/subscriptions"))["TotalCount"]; n != 0.0 {
			t.Errorf("%v subscriptions stored although the device refused, want 0", n)
		}
	})

	t.Run("update", func(t *testing.T) {
		tests := []struct {
			name, href, body string
			status           int
			fields           []string
		}{
			{"Url", orgSub, `{"Url":"https://example.com/new"}`, 204, nil},
			{"Secret", orgSub, `{"Secret":"n3w-secret"}`, 204, nil},
			{"AcceptContentType and DeletionPolicy", orgSub, `{"AcceptContentType":"application/xml","DeletionPolicy":0}`, 204, nil},
			{"Attributes", obsSub, `{"Attributes":{"Pmin":10,"Pmax":"120"}}`, 204, nil},
			{"SubscriptionType", orgSub, `{"SubscriptionType":"ClientUpdated"}`, 400, []string{"SubscriptionType"}},
			{"Property", obsSub, `{"Property":"MinMeasuredValue"}`, 400, []string{"Property"}},
			{"ID", orgSub, `{"ID":"other"}`, 400, []string{"ID"}},
			{"bad Url", orgSub, `{"Url":"nope"}`, 400, []string{"Url"}},
			{"Pmax < Pmin", obsSub, `{"Attributes":{"Pmin":10,"Pmax":5}}`, 400, []string{"Attributes"}},
			{"attributes on lifecycle", orgSub, `{"Attributes":{"Pmin":10}}`, 400, []string{"Attributes"}},
			{"DeletionPolicy 2", orgSub, `{"DeletionPolicy":2}`, 400, []string{"DeletionPolicy"}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				r := e.do(t, e.admin, http.MethodPut, tt.href, subType, tt.body)
				if tt.status == http.StatusBadRequest {
					wantBadRequest(t, r, tt.fields...)
				} else if r.Status != tt.status {
					t.Fatalf("status %d %s, want %d", r.Status, r.Raw, tt.status)
				}
			})
		}
		got := e.get(t, e.admin, orgSub)
		want := map[string]any{"Url": "https://example.com/new", "AcceptContentType": "application/xml", "DeletionPolicy": 0.0, "SubscriptionType": "ClientConnected"}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("after updates %s = %v, want %v", k, got[k], v)
			}
		}
		if s := mustJSON(got); strings.Contains(s, "n3w-secret") || strings.Contains(s, "s3cret") {
			t.Errorf("the secret is shown after an update: %s", s)
		}
		if a := e.get(t, e.admin, obsSub)["Attributes"]; !reflect.DeepEqual(a, map[string]any{"Pmin": 10.0, "Pmax": 120.0}) {
			t.Errorf("attributes after update %v", a)
		}
		var wrote bool
		for _, c := range e.dev.take() {
			wrote = wrote || (c.Op == "writeattributes" && c.Path == "/3303/0/5700" && strings.Contains(c.Args, "pmin=10"))
		}
		if !wrote {
			t.Error("changed attributes were not written to the device")
		}
	})

	t.Run("delete", func(t *testing.T) {
		for _, href := range []string{orgSub, clientSub, obsSub} {
			if r := e.do(t, e.admin, http.MethodDelete, href, "", ""); r.Status != http.StatusNoContent {
				t.Fatalf("DELETE %s: %d %s", href, r.Status, r.Raw)
			}
			if r := e.do(t, e.admin, http.MethodGet, href, "", ""); r.Status != http.StatusNotFound {
				t.Errorf("GET deleted %s: %d", href, r.Status)
			}
		}
		if n := pageInfo(e.get(t, e.admin, "/subscriptions"))["TotalCount"]; n != 1.0 {
			t.Errorf("%v subscriptions left, want 1", n)
		}
	})
}

// TestPreSubscriptions: organisation-level subscriptions with Criteria and
// Observation pre-subscriptions with a ResourcePath (API.md section 5).
func TestPreSubscriptions(t *testing.T) {
	e := newEnv(t)
	e.register(t, adminOrg, "c-01", "ep-01", true)
	hook := "http://127.0.0.1:9/hook"
	inst := "/clients/c-01/objecttypes/3303/instances/0"

	t.Run("valid", func(t *testing.T) {
		tests := []struct {
			name, ctype, body string
			want              map[string]any // members of the representation; nil: must be absent
			links             []string
		}{
			{"lifecycle of a group", subType,
				`{"SubscriptionType":"ClientConnected","Url":"` + hook + `","Criteria":{"Group":"tenant-a"}}`,
				map[string]any{"Criteria": map[string]any{"Group": "tenant-a"}, "ResourcePath": nil}, []string{"self", "update", "remove"}},
			{"lifecycle of endpoints", subType,
				`{"SubscriptionType":"ClientUpdated","Url":"` + hook + `","Criteria":{"Endpoints":["ep-01","ep-02"]}}`,
				map[string]any{"Criteria": map[string]any{"Endpoints": []any{"ep-01", "ep-02"}}}, []string{"self", "update", "remove"}},
			{"observation by manufacturer", subType,
				`{"SubscriptionType":"Observation","Url":"` + hook + `","ResourcePath":"/3303/0/5700","Attributes":{"Pmin":120,"Pmax":180},` +
					`"Criteria":{"Group":"tenant-a","Manufacturer":{"Make":"Nokia","Model":"LwM2M Client","FirmwareVersion":"2.2"}}}`,
				map[string]any{"ResourcePath": "/3303/0/5700", "Attributes": map[string]any{"Pmin": 120.0, "Pmax": 180.0},
					"Criteria": map[string]any{"Group": "tenant-a", "Manufacturer": map[string]any{"Make": "Nokia", "Model": "LwM2M Client", "FirmwareVersion": "2.2"}},
					"Property": nil}, []string{"self", "update", "remove"}},
			{"observation of an instance of every client", subType,
				`{"SubscriptionType":"Observation","Url":"` + hook + `","ResourcePath":"3303/0"}`,
				map[string]any{"ResourcePath": "/3303/0", "Criteria": nil}, []string{"self", "update", "remove"}},
			{"empty criteria are none", subType,
				`{"SubscriptionType":"ClientConnected","Url":"` + hook + `","Criteria":{}}`,
				map[string]any{"Criteria": nil}, []string{"self", "update", "remove"}},
			{"XML body", "application/vnd.oma.lwm2m.subscription+xml",
				`<Subscription><SubscriptionType>Observation</SubscriptionType><Url>` + hook + `</Url><ResourcePath>/3303/1/5700</ResourcePath>` +
					`<Criteria><Endpoints><Endpoint>ep-01</Endpoint><Endpoint>ep-09</Endpoint></Endpoints></Criteria></Subscription>`,
				map[string]any{"ResourcePath": "/3303/1/5700", "Criteria": map[string]any{"Endpoints": []any{"ep-01", "ep-09"}}}, []string{"self", "update", "remove"}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				r := e.do(t, e.admin, http.MethodPost, "/subscriptions", tt.ctype, tt.body)
				if r.Status != http.StatusCreated {
					t.Fatalf("POST: %d %s", r.Status, r.Raw)
				}
				got := e.get(t, e.admin, link(t, r.Body, "self"))
				for k, v := range tt.want {
					if g, ok := got[k]; (v == nil && ok) || (v != nil && !reflect.DeepEqual(g, v)) {
						t.Errorf("%s = %v, want %v", k, g, v)
					}
				}
				if l := rels(got); !reflect.DeepEqual(l, tt.links) {
					t.Errorf("links %v, want %v", l, tt.links)
				}
			})
		}
	})

	t.Run("invalid", func(t *testing.T) {
		obs := func(extra string) string {
			return `{"SubscriptionType":"Observation","Url":"` + hook + `"` + extra + `}`
		}
		life := func(extra string) string {
			return `{"SubscriptionType":"ClientConnected","Url":"` + hook + `"` + extra + `}`
		}
		tests := []struct {
			name, path, body string
			fields           []string
		}{
			{"ResourcePath on a lifecycle type", "/subscriptions", life(`,"ResourcePath":"/3303/0/5700"`), []string{"ResourcePath"}},
			{"Observation without ResourcePath", "/subscriptions", obs(``), []string{"ResourcePath"}},
			{"object ResourcePath", "/subscriptions", obs(`,"ResourcePath":"/3303"`), []string{"ResourcePath"}},
			{"resource instance ResourcePath", "/subscriptions", obs(`,"ResourcePath":"/3303/0/5700/1"`), []string{"ResourcePath"}},
			{"non-numeric ResourcePath", "/subscriptions", obs(`,"ResourcePath":"/temperature/0"`), []string{"ResourcePath"}},
			{"ResourcePath not a string", "/subscriptions", obs(`,"ResourcePath":3303`), []string{"ResourcePath"}},
			{"Property with ResourcePath", "/subscriptions", obs(`,"ResourcePath":"/3303/0","Property":"SensorValue"`), []string{"Property"}},
			{"Criteria not an object", "/subscriptions", life(`,"Criteria":"tenant-a"`), []string{"Criteria"}},
			{"unknown criterion", "/subscriptions", life(`,"Criteria":{"Colour":"red"}`), []string{"Colour"}},
			{"Criteria on a client", "/clients/c-01/subscriptions", life(`,"Criteria":{"Group":"g"}`), []string{"Criteria"}},
			{"ResourcePath on a client", "/clients/c-01/subscriptions", life(`,"ResourcePath":"/3303/0"`), []string{"ResourcePath"}},
			{"Criteria on an instance", inst + "/subscriptions", obs(`,"Criteria":{"Group":"g"}`), []string{"Criteria"}},
			{"both on an instance", inst + "/subscriptions", obs(`,"Criteria":{"Group":"g"},"ResourcePath":"/3303/0"`), []string{"Criteria", "ResourcePath"}},
			{"Model without Make", "/subscriptions", life(`,"Criteria":{"Manufacturer":{"Model":"X-1"}}`), []string{"Criteria"}},
			{"FirmwareVersion without Model", "/subscriptions", obs(`,"ResourcePath":"/3/0","Criteria":{"Manufacturer":{"Make":"Acme","FirmwareVersion":"1"}}`), []string{"Criteria"}},
			{"Endpoints and Manufacturer", "/subscriptions", life(`,"Criteria":{"Endpoints":["ep-01"],"Manufacturer":{"Make":"Acme"}}`), []string{"Criteria"}},
			{"Pmax < Pmin", "/subscriptions", obs(`,"ResourcePath":"/3303/0/5700","Attributes":{"Pmin":60,"Pmax":5}`), []string{"Attributes"}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				wantBadRequest(t, e.do(t, e.admin, http.MethodPost, tt.path, subType, tt.body), tt.fields...)
			})
		}
		if n := pageInfo(e.get(t, e.admin, "/subscriptions"))["TotalCount"]; n != 6.0 {
			t.Errorf("%v subscriptions after invalid requests, want the 6 valid ones", n)
		}
	})

	t.Run("PUT cannot change Criteria or ResourcePath", func(t *testing.T) {
		r := e.do(t, e.admin, http.MethodPost, "/subscriptions", subType,
			`{"SubscriptionType":"Observation","Url":"`+hook+`","ResourcePath":"/3303/0/5700","Criteria":{"Group":"tenant-a"}}`)
		if r.Status != http.StatusCreated {
			t.Fatalf("POST: %d %s", r.Status, r.Raw)
		}
		self := link(t, r.Body, "self")
		tests := []struct {
			name, body string
			fields     []string
		}{
			{"Criteria", `{"Criteria":{"Group":"tenant-b"}}`, []string{"Criteria"}},
			{"the same Criteria", `{"Criteria":{"Group":"tenant-a"}}`, []string{"Criteria"}},
			{"ResourcePath", `{"ResourcePath":"/3303/0/5701"}`, []string{"ResourcePath"}},
			{"both with Url", `{"Url":"https://example.com/new","Criteria":{},"ResourcePath":"/3303/0"}`, []string{"Criteria", "ResourcePath"}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				wantBadRequest(t, e.do(t, e.admin, http.MethodPut, self, subType, tt.body), tt.fields...)
			})
		}
		if r := e.do(t, e.admin, http.MethodPut, self, subType, `{"Url":"https://example.com/new","Attributes":{"Pmin":1}}`); r.Status != http.StatusNoContent {
			t.Fatalf("PUT Url and Attributes: %d %s", r.Status, r.Raw)
		}
		got := e.get(t, e.admin, self)
		if got["Url"] != "https://example.com/new" || got["ResourcePath"] != "/3303/0/5700" ||
			!reflect.DeepEqual(got["Criteria"], map[string]any{"Group": "tenant-a"}) || !reflect.DeepEqual(got["Attributes"], map[string]any{"Pmin": 1.0}) {
			t.Errorf("after PUT: %s", mustJSON(got))
		}
	})
}
