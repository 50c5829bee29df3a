package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/deviceserver/deviceserver/lwm2m"
	"github.com/deviceserver/deviceserver/lwm2m/model"
	"github.com/deviceserver/deviceserver/storage"
)

var fuzzMethods = []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch}

// fuzzPaths are real routes with IDs that exist in the fuzz environment
// (and some that do not), plus query strings the handlers read.
var fuzzPaths = []string{
	"/",
	"/versions",
	"/oauth/token",
	"/accesskeys",
	"/accesskeys?startIndex=1&pageSize=1",
	"/accesskeys/" + adminKey,
	"/accesskeys/fuzz-key",
	"/accesskeys/nokey",
	"/clients",
	"/clients?name=ep-01&online=true&pageSize=5&startIndex=0",
	"/clients?online=maybe&pageSize=100000&startIndex=-1",
	"/clients?startIndex=9223372036854775807",
	"/clients/c-01",
	"/clients/c-fuzz",
	"/clients/nobody",
	"/clients/c-01/objecttypes",
	"/clients/c-01/objecttypes/3",
	"/clients/c-01/objecttypes/3/instances",
	"/clients/c-01/objecttypes/3/instances/0",
	"/clients/c-01/objecttypes/3/instances/0?replace=true",
	"/clients/c-01/objecttypes/3/instances/0/resources/0",
	"/clients/c-01/objecttypes/3/instances/0/resources/4",
	"/clients/c-01/objecttypes/3/instances/0/resources/6",
	"/clients/c-01/objecttypes/3/instances/0/resources/13",
	"/clients/c-01/objecttypes/3/instances/0/resources/14",
	"/clients/c-01/objecttypes/3/instances/0/subscriptions",
	"/clients/c-01/objecttypes/3303/instances",
	"/clients/c-01/objecttypes/3303/instances?pageSize=1&startIndex=1",
	"/clients/c-01/objecttypes/3303/instances/0",
	"/clients/c-01/objecttypes/3303/instances/0/resources/5700",
	"/clients/c-01/objecttypes/3303/instances/0/subscriptions",
	"/clients/c-01/objecttypes/42424/instances",
	"/clients/c-01/objecttypes/42424/instances/0",
	"/clients/c-01/objecttypes/42424/instances/0/resources/7",
	"/clients/c-01/objecttypes/20000/instances/0",
	"/clients/c-01/objecttypes/20000/instances/0/resources/1",
	"/clients/c-01/objecttypes/1/instances/0",
	"/clients/c-01/objecttypes/3/instances/65535",
	"/clients/c-01/subscriptions",
	"/objecttypes/definitions",
	"/objecttypes/definitions?pageSize=1000",
	"/objecttypes/definitions/3",
	"/objecttypes/definitions/20000",
	"/objecttypes/definitions/20001",
	"/objecttypes/definitions/65535",
	"/subscriptions",
	"/subscriptions/fuzz-sub",
	"/subscriptions/fuzz-obs",
	"/subscriptions/nosub",
	"/groups",
	"/groups?pageSize=1&startIndex=1",
	"/groups/fuzz-group",
	"/groups/nogroup",
	"/clients?group=fuzz",
	"/m2m/applications/registration",
	"/m2m/subscriptions?type=lifecycleEvents",
	"/m2m/subscriptions?type=resources",
	"/m2m/subscriptions?type=bogus",
	"/m2m/subscriptions/nosub",
	"/m2m/nothing",
}

// fuzzWidget is a custom definition of the fuzz environment.
var fuzzWidget = &model.Object{ID: 20000, Name: "Widget", MIMEType: "application/vnd.oma.lwm2m.widget", SerialisationName: "Widget",
	MultipleInstances: true, Version: "1.0", Resources: []*model.Resource{
		{ID: 0, Name: "Level", SerialisationName: "Level", Operations: "RW", Type: lwm2m.TypeInteger},
		{ID: 1, Name: "Blob", SerialisationName: "Blob", Operations: "RW", Type: lwm2m.TypeOpaque, Multiple: true},
		{ID: 2, Name: "Go", SerialisationName: "Go", Operations: "E"},
	}}

// reseed puts back what earlier fuzz inputs changed or deleted, so that
// every input meets the same resources and a crasher reproduces alone.
func (e *env) reseed(t testing.TB) {
	t.Helper()
	ctx := context.Background()
	for _, id := range []string{"c-01", "c-fuzz"} {
		if _, err := e.store.GetRegistration(ctx, id); err != nil {
			e.register(t, adminOrg, id, strings.Replace(id, "c-", "ep-", 1), id == "c-01")
		}
	}
	key := storage.AccessKey{Key: "fuzz-key", Name: "fuzz", OrganisationID: adminOrg, SecretHash: []byte("x"), CreatedAt: e.start}
	if k, err := e.store.GetAccessKey(ctx, key.Key); err != nil {
		if err := e.store.CreateAccessKey(ctx, key); err != nil {
			t.Fatal(err)
		}
	} else if k.Name != key.Name {
		if err := e.store.UpdateAccessKey(ctx, key); err != nil {
			t.Fatal(err)
		}
	}
	for _, want := range fuzzSubscriptions(e.start) {
		got, err := e.store.GetSubscription(ctx, want.ID)
		switch {
		case err != nil:
			err = e.store.CreateSubscription(ctx, want)
		case !reflect.DeepEqual(got, want):
			err = e.store.UpdateSubscription(ctx, want)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	group := storage.Group{ID: "fuzz-group", OrganisationID: adminOrg, Name: "fuzz", Endpoints: []string{"ep-01"}, CreatedAt: e.start}
	if got, err := e.store.GetGroup(ctx, group.ID); err != nil {
		if err := e.store.CreateGroup(ctx, group); err != nil && !errors.Is(err, storage.ErrConflict) {
			t.Fatal(err)
		}
	} else if !reflect.DeepEqual(got, group) {
		if err := e.store.UpdateGroup(ctx, group); err != nil && !errors.Is(err, storage.ErrConflict) {
			t.Fatal(err)
		}
	}
	for _, o := range e.models.List(adminOrg) {
		if e.models.Custom(adminOrg, o.ID) && o != fuzzWidget {
			e.models.Delete(adminOrg, o.ID)
		}
	}
	if o, _ := e.models.Lookup(adminOrg, fuzzWidget.ID); o != fuzzWidget {
		e.models.Put(adminOrg, fuzzWidget)
		fuzzWidget, _ = e.models.Lookup(adminOrg, fuzzWidget.ID)
	}
}

func fuzzSubscriptions(at time.Time) []storage.Subscription {
	return []storage.Subscription{
		{ID: "fuzz-sub", OrganisationID: adminOrg, Type: "ClientConnected", URL: "http://127.0.0.1:9/hook", Secret: "s", BaseURL: "http://h", CreatedAt: at},
		{ID: "fuzz-obs", OrganisationID: adminOrg, ClientID: "c-01", Type: "Observation", Path: "/3303/0/5700", URL: "http://127.0.0.1:9/hook", BaseURL: "http://h", CreatedAt: at},
	}
}

// FuzzHandlers sends arbitrary requests on real routes with a valid token:
// whatever the method, Content-Type, body and Accept, the server must not
// panic nor answer 5xx, and every body it sends is a vendor +json type.
func FuzzHandlers(f *testing.F) {
	e := newEnv(f)
	e.reseed(f)
	f.Add(uint8(0), uint8(18), "", []byte(nil), "")
	f.Add(uint8(2), uint8(18), "application/vnd.oma.lwm2m.device+json", []byte(`{"UTCOffset":"Z"}`), "*/*")
	f.Fuzz(func(t *testing.T, method, path uint8, contentType string, body []byte, accept string) {
		e.reseed(t)
		m := fuzzMethods[int(method)%len(fuzzMethods)]
		p := fuzzPaths[int(path)%len(fuzzPaths)]
		r := httptest.NewRequest(m, p, bytes.NewReader(body))
		r.Header.Set("Authorization", "Bearer "+e.admin)
		if contentType != "" {
			r.Header.Set("Content-Type", contentType)
		}
		if accept != "" {
			r.Header.Set("Accept", accept)
		}
		r.Header.Set("X-Client-RequestId", "fuzz")
		w := httptest.NewRecorder()
		e.handler.ServeHTTP(w, r)
		res := w.Result()
		if res.StatusCode >= 500 {
			t.Fatalf("%s %s (Content-Type %q, Accept %q, body %q): %d %s", m, p, contentType, accept, body, res.StatusCode, w.Body.Bytes())
		}
		ct := res.Header.Get("Content-Type")
		switch {
		case res.StatusCode == http.StatusNoContent:
			if w.Body.Len() > 0 {
				t.Fatalf("%s %s: 204 with a body", m, p)
			}
		case strings.HasSuffix(p, "/oauth/token") && res.StatusCode == http.StatusBadRequest:
			if ct != "application/json" {
				t.Fatalf("%s %s: OAuth error as %q", m, p, ct)
			}
		case strings.HasPrefix(p, "/m2m/"):
			// The compatibility API answers plain JSON, {"msg","code"} at least.
			var doc struct {
				Code *int `json:"code"`
			}
			if ct != "application/json" || json.Unmarshal(w.Body.Bytes(), &doc) != nil || (doc.Code == nil && res.StatusCode != http.StatusOK) {
				t.Fatalf("%s %s (Content-Type %q, body %q): %d answered %q: %s", m, p, contentType, body, res.StatusCode, ct, w.Body.Bytes())
			}
		case !vendorJSON.MatchString(ct) || w.Body.Len() == 0:
			t.Fatalf("%s %s (Content-Type %q, Accept %q, body %q): %d answered %q with %d bytes", m, p, contentType, accept, body, res.StatusCode, ct, w.Body.Len())
		}
		if res.Header.Get("X-Client-RequestId") != "fuzz" {
			t.Fatalf("%s %s: X-Client-RequestId not echoed", m, p)
		}
	})
}
