package server_test

import (
	"context"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/deviceserver/deviceserver/storage"
)

const jsonType = "application/json"

// wantM2M checks a compatibility-API answer: status, application/json and
// the {"msg","code"} shape with code.
func wantM2M(t *testing.T, r resp, status, code int) {
	t.Helper()
	if r.Status != status {
		t.Fatalf("status %d %s, want %d", r.Status, r.Raw, status)
	}
	if c, _ := r.Body["code"].(float64); int(c) != code {
		t.Errorf("code %v, want %d: %s", r.Body["code"], code, r.Raw)
	}
	if msg, _ := r.Body["msg"].(string); msg == "" {
		t.Errorf("no msg: %s", r.Raw)
	}
}

// compatSubs lists the store's subscriptions of org made through the
// compatibility API, those of compatID or of all ("*").
func compatSubs(t *testing.T, e *env, org, compatID string) []storage.Subscription {
	t.Helper()
	subs, err := e.store.ListSubscriptions(context.Background(), storage.SubscriptionFilter{OrganisationID: org, CompatID: compatID})
	if err != nil {
		t.Fatal(err)
	}
	var out []storage.Subscription
	for _, s := range subs {
		if s.CompatID != "" && (compatID == "*" || s.CompatID == compatID) {
			out = append(out, s)
		}
	}
	return out
}

func TestM2MCallback(t *testing.T) {
	e := newEnv(t)
	other := e.other(t)
	const reg = "/m2m/applications/registration"
	hook := "http://127.0.0.1:9/callback"

	t.Run("none registered", func(t *testing.T) {
		wantM2M(t, e.do(t, e.admin, http.MethodGet, reg, "", ""), http.StatusNotFound, 1004)
		wantM2M(t, e.do(t, e.admin, http.MethodDelete, reg, "", ""), http.StatusNotFound, 1004)
		wantM2M(t, e.do(t, e.admin, http.MethodPost, "/m2m/subscriptions?type=lifecycleEvents", jsonType, `{"events":["registration"]}`),
			http.StatusBadRequest, 1004)
	})

	t.Run("invalid", func(t *testing.T) {
		tests := []struct {
			name, ctype, body string
			extra             []string
			status            int
		}{
			{"no url", jsonType, `{"headers":{"A":"b"}}`, nil, 400},
			{"ftp url", jsonType, `{"url":"ftp://example.com/cb"}`, nil, 400},
			{"relative url", jsonType, `{"url":"/cb"}`, nil, 400},
			{"header name with a space", jsonType, `{"url":"` + hook + `","headers":{"Bad Name":"x"}}`, nil, 400},
			{"header value with a newline", jsonType, `{"url":"` + hook + `","headers":{"X-Key":"a\r\nHost: evil"}}`, nil, 400},
			{"header the server sets", jsonType, `{"url":"` + hook + `","headers":{"content-type":"text/plain"}}`, nil, 400},
			{"header twice", jsonType, `{"url":"` + hook + `","headers":{"x-key":"a","X-Key":"b"}}`, nil, 400},
			{"headers not an object", jsonType, `{"url":"` + hook + `","headers":["a"]}`, nil, 400},
			{"unknown field", jsonType, `{"url":"` + hook + `","colour":"red"}`, nil, 400},
			{"malformed", jsonType, `{"url":`, nil, 400},
			{"not JSON", "text/plain", hook, nil, 415},
			{"XML asked for", jsonType, `{"url":"` + hook + `"}`, []string{"Accept", "application/xml"}, 406},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				wantM2M(t, e.do(t, e.admin, http.MethodPut, reg, tt.ctype, tt.body, tt.extra...), tt.status, 1001)
			})
		}
		wantM2M(t, e.do(t, e.admin, http.MethodGet, reg, "", ""), http.StatusNotFound, 1004)
	})

	t.Run("register and read back", func(t *testing.T) {
		wantM2M(t, e.do(t, e.admin, http.MethodPut, reg, "application/json; charset=utf-8",
			`{"url":"`+hook+`","headers":{"authorization":"Bearer s3cret","X-Tenant":"a"}}`), http.StatusOK, 1000)
		got := e.get(t, e.admin, reg)
		want := map[string]any{"url": hook, "headers": map[string]any{"Authorization": "********", "X-Tenant": "********"}}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("GET %v, want %v", got, want)
		}
		// Another organisation has its own callback.
		wantM2M(t, e.do(t, other, http.MethodGet, reg, "", ""), http.StatusNotFound, 1004)
		wantM2M(t, e.do(t, other, http.MethodPut, reg, jsonType, `{"url":"http://127.0.0.1:9/other"}`), http.StatusOK, 1000)
		if got := e.get(t, e.admin, reg)["url"]; got != hook {
			t.Errorf("after another organisation's PUT the url is %v", got)
		}
	})

	t.Run("a new callback re-targets the compatibility subscriptions", func(t *testing.T) {
		r := e.do(t, e.admin, http.MethodPost, "/m2m/subscriptions?type=lifecycleEvents", jsonType, `{"events":["registration","expiration"]}`)
		wantM2M(t, r, http.StatusAccepted, 1000)
		id, _ := r.Body["subscriptionId"].(string)
		plain := e.do(t, e.admin, http.MethodPost, "/subscriptions", subType, `{"SubscriptionType":"ClientConnected","Url":"`+hook+`"}`)
		if plain.Status != http.StatusCreated {
			t.Fatalf("plain subscription: %d %s", plain.Status, plain.Raw)
		}
		otherID, _ := e.do(t, other, http.MethodPost, "/m2m/subscriptions?type=lifecycleEvents", jsonType, `{"events":["update"]}`).Body["subscriptionId"].(string)

		moved := "http://127.0.0.1:9/moved"
		wantM2M(t, e.do(t, e.admin, http.MethodPut, reg, jsonType, `{"url":"`+moved+`","headers":{"X-Tenant":"b"}}`), http.StatusOK, 1000)
		subs := compatSubs(t, e, adminOrg, id)
		if len(subs) != 2 {
			t.Fatalf("%d engine subscriptions, want 2", len(subs))
		}
		for _, s := range subs {
			if s.URL != moved || !reflect.DeepEqual(s.Headers, map[string]string{"X-Tenant": "b"}) {
				t.Errorf("subscription %s: Url %s, Headers %v after the new callback", s.ID, s.URL, s.Headers)
			}
		}
		if got := e.get(t, e.admin, link(t, plain.Body, "self"))["Url"]; got != hook {
			t.Errorf("a subscription of the REST API moved to %v", got)
		}
		for _, s := range compatSubs(t, e, otherOrg, otherID) {
			if s.URL != "http://127.0.0.1:9/other" {
				t.Errorf("another organisation's subscription moved to %s", s.URL)
			}
		}
	})

	t.Run("delete", func(t *testing.T) {
		wantM2M(t, e.do(t, e.admin, http.MethodDelete, reg, "", ""), http.StatusOK, 1000)
		wantM2M(t, e.do(t, e.admin, http.MethodGet, reg, "", ""), http.StatusNotFound, 1004)
		// Existing subscriptions keep delivering to the callback they have.
		for _, s := range compatSubs(t, e, adminOrg, "*") {
			if s.URL != "http://127.0.0.1:9/moved" {
				t.Errorf("subscription %s: Url %s after the callback was deleted", s.ID, s.URL)
			}
		}
		if got := e.get(t, other, reg)["url"]; got != "http://127.0.0.1:9/other" {
			t.Errorf("another organisation's callback is %v", got)
		}
	})
}

func TestM2MSubscriptions(t *testing.T) {
	e := newEnv(t)
	e.register(t, adminOrg, "c-01", "ep-01", true)
	other := e.other(t)
	hook := "http://127.0.0.1:9/callback"
	const post = "/m2m/subscriptions?type="
	wantM2M(t, e.do(t, e.admin, http.MethodPut, "/m2m/applications/registration", jsonType,
		`{"url":"`+hook+`","headers":{"Authorization":"Bearer abc"}}`), http.StatusOK, 1000)

	create := func(t *testing.T, typ, body string) string {
		t.Helper()
		r := e.do(t, e.admin, http.MethodPost, post+typ, jsonType, body)
		wantM2M(t, r, http.StatusAccepted, 1000)
		if r.Body["msg"] != "Success" {
			t.Errorf("msg %v", r.Body["msg"])
		}
		id, _ := r.Body["subscriptionId"].(string)
		if id == "" || r.Header.Get("Location") != e.URL+"/m2m/subscriptions/"+id {
			t.Fatalf("answer %s, Location %q", r.Raw, r.Header.Get("Location"))
		}
		return id
	}

	var lifecycle, resources string
	t.Run("lifecycle events", func(t *testing.T) {
		lifecycle = create(t, "lifecycleEvents",
			`{"criteria":{"serialNumbers":["ep-01","ep-02"]},"events":["registration","Update","registration","deregistration"],"deletionPolicy":1}`)
		subs := compatSubs(t, e, adminOrg, lifecycle)
		var types []string
		for _, s := range subs {
			types = append(types, s.Type)
			if s.URL != hook || s.Headers["Authorization"] != "Bearer abc" || s.DeletionPolicy != 1 || s.ClientID != "" ||
				s.Criteria == nil || !slices.Equal(s.Criteria.Endpoints, []string{"ep-01", "ep-02"}) {
				t.Errorf("engine subscription %+v", s)
			}
		}
		slices.Sort(types)
		if !slices.Equal(types, []string{"ClientConnected", "ClientDisconnected", "ClientUpdated"}) {
			t.Errorf("engine subscription types %v", types)
		}
		got := e.get(t, e.admin, "/m2m/subscriptions/"+lifecycle)
		want := map[string]any{"subscriptionId": lifecycle, "type": "lifecycleEvents",
			"criteria": map[string]any{"serialNumbers": []any{"ep-01", "ep-02"}},
			"events":   []any{"registration", "update", "deregistration"}, "deletionPolicy": 1.0, "needNotification": false}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("GET %v\nwant %v", got, want)
		}
	})

	t.Run("resources", func(t *testing.T) {
		resources = create(t, "resources", `{"groupName":"tenant-a","criteria":{"manufacturerData":{"make":"Acme","model":"X-1","firmwareVersion":"2.2"}},`+
			`"resources":[{"resourcePath":"3303/0/5700","conditions":{"gt":30,"lt":"10","pmin":5,"pmax":"60","steps":0.5}},{"resourcePath":"/3/0"}]}`)
		if calls := e.dev.take(); len(calls) != 0 {
			t.Errorf("needNotification absent, yet the device was contacted at once: %v", calls)
		}
		subs := compatSubs(t, e, adminOrg, resources)
		if len(subs) != 2 {
			t.Fatalf("%d engine subscriptions, want 2", len(subs))
		}
		byPath := map[string]storage.Subscription{}
		for _, s := range subs {
			byPath[s.Path] = s
			want := storage.Criteria{Group: "tenant-a", Make: "Acme", Model: "X-1", FirmwareVersion: "2.2"}
			if s.Type != "Observation" || s.ClientID != "" || s.URL != hook || s.Criteria == nil || !reflect.DeepEqual(*s.Criteria, want) {
				t.Errorf("engine subscription %+v", s)
			}
		}
		a := byPath["/3303/0/5700"].Attributes
		if a.Gt == nil || *a.Gt != 30 || a.Lt == nil || *a.Lt != 10 || a.Pmin == nil || *a.Pmin != 5 || a.Pmax == nil || *a.Pmax != 60 || a.St == nil || *a.St != 0.5 {
			t.Errorf("attributes of /3303/0/5700: %v", a.Query())
		}
		if !byPath["/3/0"].Attributes.IsZero() {
			t.Errorf("attributes of /3/0: %v", byPath["/3/0"].Attributes.Query())
		}
		got := e.get(t, e.admin, "/m2m/subscriptions/"+resources)
		if got["type"] != "resources" || got["groupName"] != "tenant-a" || got["needNotification"] != false || got["deletionPolicy"] != 0.0 {
			t.Errorf("GET %v", got)
		}
		res, _ := got["resources"].([]any)
		if len(res) != 2 || res[0].(map[string]any)["resourcePath"] != "/3303/0/5700" || res[1].(map[string]any)["resourcePath"] != "/3/0" {
			t.Errorf("resources %v", got["resources"])
		}
		// The compatibility subscriptions are subscriptions of the REST API too.
		r := e.get(t, e.admin, "/subscriptions")
		if n := pageInfo(r)["TotalCount"]; n != 5.0 {
			t.Errorf("GET /subscriptions: %v, want the 5 engine subscriptions", n)
		}
	})

	t.Run("needNotification", func(t *testing.T) {
		id := create(t, "resources", `{"resources":[{"resourcePath":"/3303/1/5700"}],"needNotification":true}`)
		if got := e.get(t, e.admin, "/m2m/subscriptions/"+id)["needNotification"]; got != true {
			t.Errorf("needNotification %v", got)
		}
		e.dev.take()
		wantM2M(t, e.do(t, e.admin, http.MethodDelete, "/m2m/subscriptions/"+id, "", ""), http.StatusOK, 1000)
	})

	t.Run("invalid", func(t *testing.T) {
		before := len(compatSubs(t, e, adminOrg, "*"))
		tests := []struct {
			name, typ, ctype, body string
			extra                  []string
			status                 int
		}{
			{"no type", "", jsonType, `{"events":["registration"]}`, nil, 400},
			{"unknown type", "everything", jsonType, `{"events":["registration"]}`, nil, 400},
			{"malformed", "lifecycleEvents", jsonType, `{"events":`, nil, 400},
			{"not an object", "lifecycleEvents", jsonType, `["registration"]`, nil, 400},
			{"unknown field", "lifecycleEvents", jsonType, `{"events":["registration"],"colour":"red"}`, nil, 400},
			{"no events", "lifecycleEvents", jsonType, `{}`, nil, 400},
			{"unknown event", "lifecycleEvents", jsonType, `{"events":["registration","reboot"]}`, nil, 400},
			{"resources with lifecycleEvents", "lifecycleEvents", jsonType, `{"events":["update"],"resources":[{"resourcePath":"/3/0"}]}`, nil, 400},
			{"no resources", "resources", jsonType, `{"resources":[]}`, nil, 400},
			{"events with resources", "resources", jsonType, `{"events":["update"],"resources":[{"resourcePath":"/3/0"}]}`, nil, 400},
			{"object path", "resources", jsonType, `{"resources":[{"resourcePath":"/3303"}]}`, nil, 400},
			{"named path", "resources", jsonType, `{"resources":[{"resourcePath":"/temperature/0/value"}]}`, nil, 400},
			{"fractional pmin", "resources", jsonType, `{"resources":[{"resourcePath":"/3/0/9","conditions":{"pmin":1.5}}]}`, nil, 400},
			{"non-numeric gt", "resources", jsonType, `{"resources":[{"resourcePath":"/3/0/9","conditions":{"gt":"hot"}}]}`, nil, 400},
			{"pmax < pmin", "resources", jsonType, `{"resources":[{"resourcePath":"/3/0/9","conditions":{"pmin":60,"pmax":5}}]}`, nil, 400},
			{"model without make", "lifecycleEvents", jsonType, `{"events":["update"],"criteria":{"manufacturerData":{"model":"X-1"}}}`, nil, 400},
			{"serial numbers and manufacturer", "lifecycleEvents", jsonType,
				`{"events":["update"],"criteria":{"serialNumbers":["ep-01"],"manufacturerData":{"make":"Acme"}}}`, nil, 400},
			{"deletionPolicy 2", "lifecycleEvents", jsonType, `{"events":["update"],"deletionPolicy":2}`, nil, 400},
			// The first resource is valid, the second is not: nothing stays.
			{"second resource invalid", "resources", jsonType,
				`{"resources":[{"resourcePath":"/3/0/9","conditions":{"pmin":5}},{"resourcePath":"/3303/0/5700","conditions":{"lt":50,"gt":10}}]}`, nil, 400},
			{"not JSON", "lifecycleEvents", "text/plain", `{"events":["update"]}`, nil, 415},
			{"XML asked for", "lifecycleEvents", jsonType, `{"events":["update"]}`, []string{"Accept", "application/xml"}, 406},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				wantM2M(t, e.do(t, e.admin, http.MethodPost, post+tt.typ, tt.ctype, tt.body, tt.extra...), tt.status, 1001)
			})
		}
		if after := len(compatSubs(t, e, adminOrg, "*")); after != before {
			t.Errorf("%d engine subscriptions after invalid requests, want %d", after, before)
		}
		if calls := e.dev.take(); len(calls) != 0 {
			t.Errorf("device calls for invalid requests: %v", calls)
		}
	})

	t.Run("other tenants' subscriptions are 404", func(t *testing.T) {
		for _, m := range []string{http.MethodGet, http.MethodDelete} {
			wantM2M(t, e.do(t, other, m, "/m2m/subscriptions/"+lifecycle, "", ""), http.StatusNotFound, 1002)
		}
		if n := len(compatSubs(t, e, adminOrg, lifecycle)); n != 3 {
			t.Errorf("%d engine subscriptions after another tenant's DELETE, want 3", n)
		}
		// Without its own callback, another organisation cannot create one.
		wantM2M(t, e.do(t, other, http.MethodPost, post+"lifecycleEvents", jsonType, `{"events":["update"]}`), http.StatusBadRequest, 1004)
	})

	t.Run("errors keep the shape", func(t *testing.T) {
		tests := []struct {
			name, method, path, token string
			status, code              int
		}{
			{"no token", http.MethodGet, "/m2m/subscriptions/" + lifecycle, "", 401, 1003},
			{"invalid token", http.MethodPost, post + "resources", "not-a-token", 401, 1003},
			{"unknown subscription", http.MethodGet, "/m2m/subscriptions/nope", e.admin, 404, 1002},
			{"unknown route", http.MethodGet, "/m2m/nowhere", e.admin, 404, 1002},
			{"method", http.MethodPatch, "/m2m/subscriptions/" + lifecycle, e.admin, 405, 1001},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				r := e.do(t, tt.token, tt.method, tt.path, "", "")
				wantM2M(t, r, tt.status, tt.code)
				if tt.status == http.StatusUnauthorized && !strings.HasPrefix(r.Header.Get("WWW-Authenticate"), "Bearer") {
					t.Errorf("WWW-Authenticate %q", r.Header.Get("WWW-Authenticate"))
				}
			})
		}
	})

	t.Run("delete", func(t *testing.T) {
		for _, id := range []string{lifecycle, resources} {
			wantM2M(t, e.do(t, e.admin, http.MethodDelete, "/m2m/subscriptions/"+id, "", ""), http.StatusOK, 1000)
			if n := len(compatSubs(t, e, adminOrg, id)); n != 0 {
				t.Errorf("%d engine subscriptions of %s left", n, id)
			}
			wantM2M(t, e.do(t, e.admin, http.MethodGet, "/m2m/subscriptions/"+id, "", ""), http.StatusNotFound, 1002)
			wantM2M(t, e.do(t, e.admin, http.MethodDelete, "/m2m/subscriptions/"+id, "", ""), http.StatusNotFound, 1002)
		}
		if n := pageInfo(e.get(t, e.admin, "/subscriptions"))["TotalCount"]; n != 0.0 {
			t.Errorf("%v subscriptions left", n)
		}
	})
}
