package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/deviceserver/deviceserver/internal/testserver"
	"github.com/deviceserver/deviceserver/lwm2m"
	"github.com/deviceserver/deviceserver/lwm2m/sim"
)

const plainJSON = "application/json"

// referenceM2MFixtures registers the organisation's callback and makes the
// {compat_subscription} of the docs/api.md examples, in both sets.
func referenceM2MFixtures(t *testing.T, srv *testserver.Server, api testserver.Client, hookURL string, main, spare fixtureSet) {
	t.Helper()
	r := api.Do(http.MethodPut, srv.URL+"/m2m/applications/registration", plainJSON, map[string]any{"url": hookURL + "/m2m"})
	for _, set := range []fixtureSet{main, spare} {
		if r.Status != http.StatusOK {
			set.missing["compat_subscription"] = fmt.Sprintf("PUT /m2m/applications/registration answered %d %s", r.Status, bytes.TrimSpace(r.Raw))
			continue
		}
		c := api.Do(http.MethodPost, srv.URL+"/m2m/subscriptions?type=lifecycleEvents", plainJSON, map[string]any{
			"criteria": map[string]any{"serialNumbers": []string{"sim-1"}}, "events": []string{"registration", "deregistration"}})
		if id, _ := c.Body["subscriptionId"].(string); c.Status == http.StatusAccepted && id != "" {
			set.vals["compat_subscription"] = id
		} else {
			set.missing["compat_subscription"] = fmt.Sprintf("POST /m2m/subscriptions answered %d %s", c.Status, bytes.TrimSpace(c.Raw))
		}
	}
}

// callbackDelivery is one webhook POST to a callbackReceiver.
type callbackDelivery struct {
	Path   string
	Header http.Header
	Items  []map[string]any
}

// callbackReceiver records webhook POSTs with their paths and headers
// (testserver.Receiver keeps neither), answering 204.
type callbackReceiver struct {
	URL string
	got chan callbackDelivery
}

func newCallbackReceiver(t *testing.T) *callbackReceiver {
	rc := &callbackReceiver{got: make(chan callbackDelivery, 1024)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Items []map[string]any `json:"Items"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusNoContent)
		rc.got <- callbackDelivery{Path: r.URL.Path, Header: r.Header.Clone(), Items: body.Items}
	}))
	t.Cleanup(srv.Close)
	rc.URL = srv.URL
	return rc
}

// wait returns the next delivery holding an item of type typ that match
// accepts (nil: any), and that item; it fails after wait.
func (rc *callbackReceiver) wait(t *testing.T, typ string, match func(callbackDelivery, map[string]any) bool) (callbackDelivery, map[string]any) {
	t.Helper()
	deadline := time.After(wait)
	for {
		select {
		case d := <-rc.got:
			for _, it := range d.Items {
				if it["SubscriptionType"] == typ && (match == nil || match(d, it)) {
					return d, it
				}
			}
		case <-deadline:
			t.Fatalf("no %s notification within %s", typ, wait)
			return callbackDelivery{}, nil
		}
	}
}

// TestM2MEndToEnd drives the compatibility API with a real device and a
// real callback: lifecycle events and resources arrive at the registered
// callback with its headers, follow a new callback, and stop with DELETE.
func TestM2MEndToEnd(t *testing.T) {
	srv := testserver.Start(t)
	rc := newCallbackReceiver(t)
	api := testserver.Client{T: t, Token: srv.Token(t)}
	ctx := context.Background()
	m2m := func(method, path string, body any) testserver.Response {
		t.Helper()
		ct := ""
		if body != nil {
			ct = plainJSON
		}
		r := api.Do(method, srv.URL+path, ct, body)
		if ct := r.Header.Get("Content-Type"); ct != plainJSON {
			t.Errorf("%s %s: Content-Type %q", method, path, ct)
		}
		return r
	}
	ok := func(r testserver.Response, status int) {
		t.Helper()
		if r.Status != status || r.Body["code"] != 1000.0 {
			t.Fatalf("%d %s, want %d with code 1000", r.Status, r.Raw, status)
		}
	}

	ok(m2m(http.MethodPut, "/m2m/applications/registration", map[string]any{"url": rc.URL + "/first", "headers": map[string]string{"X-Tenant": "a"}}), http.StatusOK)
	r := m2m(http.MethodPost, "/m2m/subscriptions?type=lifecycleEvents", map[string]any{
		"criteria": map[string]any{"serialNumbers": []string{"m2m-dev"}}, "events": []string{"registration", "update", "deregistration"}, "deletionPolicy": 1})
	ok(r, http.StatusAccepted)
	lifecycle, _ := r.Body["subscriptionId"].(string)

	dev := startDevice(t, srv, sim.Config{Endpoint: "m2m-dev", Lifetime: 300, Light: true})
	startDevice(t, srv, sim.Config{Endpoint: "m2m-other", Lifetime: 300, Light: true})
	named := func(ep string) func(callbackDelivery, map[string]any) bool {
		return func(_ callbackDelivery, it map[string]any) bool { return it["Name"] == ep }
	}

	t.Run("lifecycle events reach the callback with its headers", func(t *testing.T) {
		d, _ := rc.wait(t, "ClientConnected", named("m2m-dev"))
		if d.Path != "/first" || d.Header.Get("X-Tenant") != "a" {
			t.Errorf("delivered to %s with X-Tenant %q", d.Path, d.Header.Get("X-Tenant"))
		}
	})

	t.Run("a new callback moves the subscriptions", func(t *testing.T) {
		ok(m2m(http.MethodPut, "/m2m/applications/registration", map[string]any{"url": rc.URL + "/second", "headers": map[string]string{"X-Tenant": "b"}}), http.StatusOK)
		if err := dev.Update(ctx, false); err != nil {
			t.Fatal(err)
		}
		d, _ := rc.wait(t, "ClientUpdated", named("m2m-dev"))
		if d.Path != "/second" || d.Header.Get("X-Tenant") != "b" {
			t.Errorf("delivered to %s with X-Tenant %q after the new callback", d.Path, d.Header.Get("X-Tenant"))
		}
	})

	client := testserver.Link(t, find(t, api.Get(srv.URL+"/clients?name=m2m-dev").Body, "Name", "m2m-dev"), "self")
	about := func(inst uint16, value any) func(callbackDelivery, map[string]any) bool {
		object := fmt.Sprintf("%s/objecttypes/3303/instances/%d", client, inst)
		return func(_ callbackDelivery, it map[string]any) bool {
			v, _ := it["Value"].(map[string]any)
			return testserver.Link(t, it, "object") == object && (value == nil || v["SensorValue"] == value)
		}
	}

	var resources string
	t.Run("resources with needNotification apply at once", func(t *testing.T) {
		r := m2m(http.MethodPost, "/m2m/subscriptions?type=resources", map[string]any{
			"criteria":  map[string]any{"serialNumbers": []string{"m2m-dev"}},
			"resources": []any{map[string]any{"resourcePath": "/3303/0/5700", "conditions": map[string]any{"pmin": 0, "pmax": 1}}}, "needNotification": true})
		ok(r, http.StatusAccepted)
		resources, _ = r.Body["subscriptionId"].(string)
		rc.wait(t, "Observation", about(0, nil)) // observed without waiting for an update
		dev.Set(lwm2m.ResourcePath(3303, 0, 5700), 31.5)
		rc.wait(t, "Observation", about(0, 31.5))
	})

	t.Run("resources without needNotification apply at the next update", func(t *testing.T) {
		ok(m2m(http.MethodPost, "/m2m/subscriptions?type=resources", map[string]any{
			"resources": []any{map[string]any{"resourcePath": "3/0/9", "conditions": map[string]any{"pmin": "0", "pmax": "1"}}}}), http.StatusAccepted)
		if err := dev.Update(ctx, false); err != nil {
			t.Fatal(err)
		}
		device := client + "/objecttypes/3/instances/0"
		rc.wait(t, "Observation", func(_ callbackDelivery, it map[string]any) bool {
			return testserver.Link(t, it, "object") == device
		})
	})

	t.Run("GET shows the request", func(t *testing.T) {
		got := m2m(http.MethodGet, "/m2m/subscriptions/"+resources, nil).Body
		res, _ := got["resources"].([]any)
		if got["subscriptionId"] != resources || got["type"] != "resources" || got["needNotification"] != true || len(res) != 1 {
			t.Errorf("GET %v", got)
		}
		// Its parts are subscriptions of the REST API too.
		n := 0
		for _, it := range testserver.Items(api.Get(srv.URL + "/subscriptions?pageSize=100").Body) {
			if it["ResourcePath"] == "/3303/0/5700" && it["Url"] == rc.URL+"/second" {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%d REST subscriptions of /3303/0/5700 at the callback, want 1", n)
		}
	})

	t.Run("delete", func(t *testing.T) {
		for _, id := range []string{lifecycle, resources} {
			ok(m2m(http.MethodDelete, "/m2m/subscriptions/"+id, nil), http.StatusOK)
			if r := m2m(http.MethodGet, "/m2m/subscriptions/"+id, nil); r.Status != http.StatusNotFound || r.Body["code"] != 1002.0 {
				t.Errorf("GET after delete: %d %s", r.Status, r.Raw)
			}
		}
		for _, it := range testserver.Items(api.Get(srv.URL + "/subscriptions?pageSize=100").Body) {
			if strings.Contains(fmt.Sprint(it["Criteria"]), "m2m-dev") {
				t.Errorf("a part of a deleted compatibility subscription is left: %v", it)
			}
		}
	})
}
