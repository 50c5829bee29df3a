package e2e

import (
	"context"
	"net/http"
	"net/url"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/deviceserver/deviceserver/internal/testserver"
	"github.com/deviceserver/deviceserver/lwm2m"
	"github.com/deviceserver/deviceserver/lwm2m/sim"
	mt "github.com/deviceserver/deviceserver/mimetypes"
	"github.com/deviceserver/deviceserver/server"
)

// Route templates as (*server.Server).Routes reports them.
const (
	isoClient   = "/clients/{client}"
	isoObject   = isoClient + "/objecttypes/{object:[0-9]+}"
	isoInstance = isoObject + "/instances/{instance:[0-9]+}"
	isoResource = isoInstance + "/resources/{resource:[0-9]+}"
)

// isoRow is one request organisation B makes in the isolation matrix.
// Exactly one of notFound, own and public says what is expected.
type isoRow struct {
	method, route string            // the route template, as the router reports it
	variant       string            // tells rows of one route apart in test names
	vars          map[string]string // path variables replacing the defaults
	query         string
	ctype, body   string
	// notFound: the path names A's resource, so B must get 404 whatever
	// the method (the body is valid, so the tenant is the only reason).
	notFound bool
	// own: the route is scoped by the caller's organisation; B gets its
	// own view, which check inspects for A's data.
	own func(t *testing.T, r testserver.Response)
	// public: why the route is not tenant-scoped (B just gets a 2xx).
	public string
}

var routeVar = regexp.MustCompile(`\{([a-z]+)(:[^}]*)?\}`)

// fill substitutes path variables into a route template.
func fill(t *testing.T, route string, vars map[string]string) string {
	t.Helper()
	return routeVar.ReplaceAllStringFunc(route, func(v string) string {
		name := routeVar.FindStringSubmatch(v)[1]
		val, ok := vars[name]
		if !ok {
			t.Fatalf("route %s: no value for {%s}", route, name)
		}
		return url.PathEscape(val)
	})
}

// itemValues returns field of every item of a list representation.
func itemValues(list map[string]any, field string) []string {
	var out []string
	for _, it := range testserver.Items(list) {
		if v, ok := it[field].(string); ok {
			out = append(out, v)
		}
	}
	return out
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// created checks a 201 and returns its ID field (field names vary by resource).
func created(t *testing.T, what string, r testserver.Response, field string) string {
	t.Helper()
	if r.Status != http.StatusCreated {
		t.Fatalf("%s: %d %s", what, r.Status, r.Raw)
	}
	id, _ := r.Body[field].(string)
	if id == "" {
		t.Fatalf("%s: no %s in %s", what, field, r.Raw)
	}
	return id
}

// TestIsolationMatrix walks every route of the router with organisation B's
// token against organisation A's resources (API.md section 2:
// organisations are tenants) and checks afterwards that A lost nothing.
func TestIsolationMatrix(t *testing.T) {
	srv := testserver.Start(t)
	rcA := testserver.NewReceiver(t)
	rcB := testserver.NewReceiver(t)
	a := testserver.Client{T: t, Token: srv.Token(t)}
	ctx := context.Background()

	var (
		jsonOf    = func(name string) string { return mt.Type(name) + "+json" }
		keyType   = jsonOf(mt.AccessKey)
		defType   = jsonOf(mt.ObjectDefinition)
		certType  = jsonOf(mt.Certificate)
		pskType   = jsonOf(mt.PSKIdentity)
		groupType = jsonOf(mt.Group)
		form      = "application/x-www-form-urlencoded"
		plainJSON = "application/json"
	)

	// Organisation B: the administrator's POST /accesskeys makes a new one.
	r := a.Do(http.MethodPost, srv.URL+"/accesskeys", keyType, map[string]any{"Name": "tenant-b"})
	bKey := created(t, "create organisation B", r, "Key")
	bSecret, _ := r.Body["Secret"].(string)
	b := testserver.Client{T: t, Token: srv.TokenFor(t, bKey, bSecret)}

	// Organisation A (the administrator's): a NoSec device and one of
	// everything a tenant owns. The administrator organisation cannot get
	// a second key through the API (its POST /accesskeys makes new
	// organisations), so A's access key is the administrator key itself.
	const (
		aEndpoint = "iso-a-dev"
		aMaker    = "Tenant A Manufacturing"
		aDefName  = "Tenant A Valve"
		aKeyName  = "administrator"
	)
	dev := startDevice(t, srv, sim.Config{Endpoint: aEndpoint, Lifetime: 300, Light: true, Manufacturer: aMaker})
	aClient, _ := find(t, a.Get(srv.URL+"/clients?name="+aEndpoint).Body, "Name", aEndpoint)["ClientID"].(string)
	if got := a.Get(srv.URL + "/clients/" + aClient + "/objecttypes/3/instances/0").Body["Manufacturer"]; got != aMaker {
		t.Fatalf("A reads its device: Manufacturer %v", got)
	}
	aHook := rcA.URL + "/tenant-a"
	aSubOrg := created(t, "A: organisation subscription", a.Do(http.MethodPost, srv.URL+"/subscriptions", subType,
		map[string]any{"SubscriptionType": "ClientUpdated", "Url": aHook}), "ID")
	aSubClient := created(t, "A: client subscription", a.Do(http.MethodPost, srv.URL+"/clients/"+aClient+"/subscriptions", subType,
		map[string]any{"SubscriptionType": "ClientDisconnected", "Url": aHook}), "ID")
	aSubObs := created(t, "A: observation", a.Do(http.MethodPost, srv.URL+"/clients/"+aClient+"/objecttypes/3303/instances/0/subscriptions", subType,
		map[string]any{"SubscriptionType": "Observation", "Url": aHook, "Property": "SensorValue", "Attributes": map[string]any{"Pmin": 0, "Pmax": 300}}), "ID")
	valve := func(id, name string) map[string]any {
		return map[string]any{"ObjectID": id, "Name": name, "Properties": []map[string]any{
			{"PropertyID": "0", "Name": "Open", "DataType": "Boolean", "Access": "ReadWrite"}}}
	}
	const aDef = "40010"
	created(t, "A: object definition", a.Do(http.MethodPost, srv.URL+"/objecttypes/definitions", defType, valve(aDef, aDefName)), "ID")
	aPSK := created(t, "A: PSK identity", a.Do(http.MethodPost, srv.URL+"/identities/psk", "", nil), "Identity")
	aCert := created(t, "A: certificate", a.Do(http.MethodPost, srv.URL+"/identities/certificates", certType, map[string]any{"Subject": "dev-1"}), "ID")
	aSubs := []string{aSubOrg, aSubClient, aSubObs}
	const aGroupName = "tenant-a-group"
	aGroup := created(t, "A: group", a.Do(http.MethodPost, srv.URL+"/groups", groupType,
		map[string]any{"Name": aGroupName, "Endpoints": []string{aEndpoint}}), "ID")
	aCallback := rcA.URL + "/m2m-a"
	if r := a.Do(http.MethodPut, srv.URL+"/m2m/applications/registration", plainJSON, map[string]any{"url": aCallback}); r.Status != http.StatusOK {
		t.Fatalf("A: callback: %d %s", r.Status, r.Raw)
	}
	r = a.Do(http.MethodPost, srv.URL+"/m2m/subscriptions?type=lifecycleEvents", plainJSON,
		map[string]any{"criteria": map[string]any{"serialNumbers": []string{aEndpoint}}, "events": []string{"update"}})
	aM2M, _ := r.Body["subscriptionId"].(string)
	if r.Status != http.StatusAccepted || aM2M == "" {
		t.Fatalf("A: m2m subscription: %d %s", r.Status, r.Raw)
	}

	// A's data that must never show in any answer to B, unless B itself
	// sent it in that request.
	markers := []string{aEndpoint, aMaker, aDefName, aHook, "dev-1", aClient, aPSK, aCert, aSubOrg, aSubClient, aSubObs, testserver.AdminKey,
		aGroupName, aGroup, aCallback, aM2M}

	defaults := map[string]string{
		"client": aClient, "object": "3303", "instance": "0", "resource": "5700",
		"key": testserver.AdminKey, "definition": aDef, "subscription": aSubOrg,
		"identity": aPSK, "certificate": aCert, "metric": "BytesSent",
		"group": aGroup, "subscriptionid": aM2M,
	}
	bHook := rcB.URL + "/tenant-b"
	subBody := func(typ string) string {
		return `{"SubscriptionType":"` + typ + `","Url":"` + bHook + `"}`
	}
	var bSub, bPSK, bCert, bKey2, bGroup, bM2M string
	bCallback := rcB.URL + "/m2m-b"
	const bDef = "40020"

	// noneOf checks that a list of B's shows none of A's values of field.
	noneOf := func(field string, aValues ...string) func(*testing.T, testserver.Response) {
		return func(t *testing.T, r testserver.Response) {
			t.Helper()
			if r.Status != http.StatusOK {
				t.Fatalf("status %d, want 200: %s", r.Status, r.Raw)
			}
			got := itemValues(r.Body, field)
			for _, v := range aValues {
				if contains(got, v) {
					t.Errorf("B's list shows A's %s %s: %v", field, v, got)
				}
			}
		}
	}
	zeroMetric := func(t *testing.T, r testserver.Response) {
		if r.Status != http.StatusOK || r.Body["Value"] != 0.0 {
			t.Errorf("B's metric: %d %s, want 200 with Value 0", r.Status, r.Raw)
		}
	}
	subVars := func(id string) map[string]string { return map[string]string{"subscription": id} }

	rows := []isoRow{
		// Not tenant-scoped.
		{method: "GET", route: "/", public: "the entry point: the same links for every organisation"},
		{method: "GET", route: "/versions", public: "build information, needs no token"},
		{method: "GET", route: "/openapi.json", public: "the API description, needs no token"},
		{method: "POST", route: "/oauth/token", ctype: form, body: "grant_type=password&username=" + url.QueryEscape(bKey) + "&password=" + url.QueryEscape(bSecret),
			public: "authenticates a key; the token carries that key's own organisation"},
		{method: "GET", route: "/configuration", public: "links only"},
		{method: "GET", route: "/configuration/bootstrap", public: "the server's CoAP URIs, the same for every device"},
		{method: "GET", route: "/identities", public: "links only"},

		// Lists and creations: B's own view, none of A's items.
		{method: "GET", route: "/accesskeys", own: func(t *testing.T, r testserver.Response) {
			noneOf("Key", testserver.AdminKey)(t, r)
			if !contains(itemValues(r.Body, "Key"), bKey) {
				t.Errorf("B's keys %v lack B's own key", itemValues(r.Body, "Key"))
			}
		}},
		{method: "POST", route: "/accesskeys", ctype: keyType, body: `{"Name":"tenant-b-second"}`, own: func(t *testing.T, r testserver.Response) {
			bKey2 = created(t, "B: second key", r, "Key")
		}},
		{method: "GET", route: "/clients", own: func(t *testing.T, r testserver.Response) {
			noneOf("ClientID", aClient)(t, r)
			if n := r.Body["PageInfo"].(map[string]any)["TotalCount"]; n != 0.0 {
				t.Errorf("B sees %v clients, want 0", n)
			}
		}},
		{method: "GET", route: "/objecttypes/definitions", query: "pageSize=1000", own: func(t *testing.T, r testserver.Response) {
			noneOf("Name", aDefName)(t, r)
			ids := itemValues(r.Body, "ObjectID")
			if contains(ids, aDef) || !contains(ids, "3") {
				t.Errorf("B's definitions %v: want the built-in 3 and not A's %s", ids, aDef)
			}
		}},
		{method: "POST", route: "/objecttypes/definitions", ctype: defType, body: `{"ObjectID":"` + bDef + `","Name":"Tenant B Pump"}`,
			own: func(t *testing.T, r testserver.Response) { created(t, "B: definition", r, "ID") }},
		{method: "GET", route: "/subscriptions", own: noneOf("ID", aSubs...)},
		{method: "POST", route: "/subscriptions", ctype: subType, body: subBody("ClientUpdated"), own: func(t *testing.T, r testserver.Response) {
			bSub = created(t, "B: subscription", r, "ID")
		}},
		{method: "GET", route: "/groups", own: noneOf("ID", aGroup)},
		// Group names are per organisation: A's name is free for B (a 409 would tell B it exists).
		{method: "POST", route: "/groups", ctype: groupType, body: `{"Name":"` + aGroupName + `","Endpoints":["` + aEndpoint + `"]}`,
			own: func(t *testing.T, r testserver.Response) { bGroup = created(t, "B: group", r, "ID") }},
		{method: "PUT", route: "/m2m/applications/registration", ctype: plainJSON, body: `{"url":"` + bCallback + `"}`,
			own: func(t *testing.T, r testserver.Response) {
				if r.Status != http.StatusOK {
					t.Errorf("B registers its callback: %d %s", r.Status, r.Raw)
				}
			}},
		{method: "GET", route: "/m2m/applications/registration", own: func(t *testing.T, r testserver.Response) {
			if r.Status != http.StatusOK || r.Body["url"] != bCallback {
				t.Errorf("B's callback: %d %s, want its own %s", r.Status, r.Raw, bCallback)
			}
		}},
		{method: "POST", route: "/m2m/subscriptions", query: "type=lifecycleEvents", ctype: plainJSON, body: `{"events":["registration","update"]}`,
			own: func(t *testing.T, r testserver.Response) {
				bM2M, _ = r.Body["subscriptionId"].(string)
				if r.Status != http.StatusAccepted || bM2M == "" {
					t.Errorf("B's m2m subscription: %d %s", r.Status, r.Raw)
				}
			}},
		// B deletes its own callback; A's stays (checked below).
		{method: "DELETE", route: "/m2m/applications/registration", own: func(t *testing.T, r testserver.Response) {
			if r.Status != http.StatusOK {
				t.Errorf("B deletes its callback: %d %s", r.Status, r.Raw)
			}
		}},
		{method: "GET", route: "/identities/psk", own: noneOf("Identity", aPSK)},
		{method: "POST", route: "/identities/psk", ctype: pskType, body: `{}`, own: func(t *testing.T, r testserver.Response) {
			bPSK = created(t, "B: PSK identity", r, "Identity")
		}},
		{method: "GET", route: "/identities/certificates", own: noneOf("ID", aCert)},
		{method: "POST", route: "/identities/certificates", ctype: certType, body: `{"Subject":"b-dev"}`, own: func(t *testing.T, r testserver.Response) {
			bCert = created(t, "B: certificate", r, "ID")
		}},
		{method: "GET", route: "/metrics", own: func(t *testing.T, r testserver.Response) {
			if r.Status != http.StatusOK {
				t.Fatalf("status %d: %s", r.Status, r.Raw)
			}
			for _, it := range testserver.Items(r.Body) {
				if it["Value"] != 0.0 {
					t.Errorf("B's metric %v = %v, want 0: A's device traffic or clients counted for B", it["Name"], it["Value"])
				}
			}
		}},
		{method: "GET", route: "/metrics/{metric}", vars: map[string]string{"metric": "NumberClients"}, own: zeroMetric},
		{method: "GET", route: "/metrics/{metric}", vars: map[string]string{"metric": "BytesSent"}, own: zeroMetric},
		{method: "GET", route: "/metrics/{metric}", vars: map[string]string{"metric": "BytesReceived"}, own: zeroMetric},
		{method: "GET", route: "/metrics/{metric}", vars: map[string]string{"metric": "TransactionCount"}, own: zeroMetric},

		// A's resources by ID: 404 for B.
		{method: "GET", route: "/accesskeys/{key}", notFound: true},
		{method: "PUT", route: "/accesskeys/{key}", ctype: keyType, body: `{"Name":"renamed-by-b"}`, notFound: true},
		{method: "DELETE", route: "/accesskeys/{key}", notFound: true},
		{method: "GET", route: isoClient, notFound: true},
		{method: "DELETE", route: isoClient, notFound: true},
		{method: "GET", route: isoClient + "/objecttypes", notFound: true},
		{method: "GET", route: isoObject, notFound: true},
		{method: "GET", route: isoObject + "/instances", notFound: true},
		{method: "POST", route: isoObject + "/instances", ctype: tempType, body: `{"InstanceID":"9","ApplicationType":"by-b"}`, notFound: true},
		{method: "GET", route: isoInstance, notFound: true},
		{method: "PUT", route: isoInstance, vars: map[string]string{"object": "3"}, ctype: deviceType, body: `{"UTCOffset":"+09:00"}`, notFound: true},
		{method: "DELETE", route: isoInstance, notFound: true},
		{method: "GET", route: isoResource, notFound: true},
		{method: "PUT", route: isoResource, vars: map[string]string{"object": "3", "resource": "14"}, ctype: deviceType, body: `{"UTCOffset":"+09:00"}`, notFound: true},
		{method: "POST", route: isoResource, vars: map[string]string{"object": "3", "resource": "4"}, ctype: "text/plain", body: "by-b", notFound: true},
		{method: "GET", route: isoClient + "/subscriptions", notFound: true},
		{method: "POST", route: isoClient + "/subscriptions", ctype: subType, body: subBody("ClientConnected"), notFound: true},
		{method: "GET", route: isoInstance + "/subscriptions", notFound: true},
		{method: "POST", route: isoInstance + "/subscriptions", ctype: subType,
			body: `{"SubscriptionType":"Observation","Url":"` + bHook + `","Property":"SensorValue"}`, notFound: true},
		{method: "GET", route: isoClient + "/metrics", notFound: true},
		{method: "GET", route: isoClient + "/metrics/{metric}", notFound: true},
		{method: "GET", route: "/objecttypes/definitions/{definition}", notFound: true},
		{method: "PUT", route: "/objecttypes/definitions/{definition}", ctype: defType,
			body: `{"ObjectID":"` + aDef + `","Name":"Renamed by B"}`, notFound: true},
		{method: "DELETE", route: "/objecttypes/definitions/{definition}", notFound: true},
		{method: "GET", route: "/groups/{group}", notFound: true},
		{method: "PUT", route: "/groups/{group}", ctype: groupType, body: `{"Name":"renamed-by-b","Endpoints":["b-dev"]}`, notFound: true},
		{method: "DELETE", route: "/groups/{group}", notFound: true},
		{method: "GET", route: "/m2m/subscriptions/{subscriptionid}", notFound: true},
		{method: "DELETE", route: "/m2m/subscriptions/{subscriptionid}", notFound: true},
		{method: "GET", route: "/identities/psk/{identity}", notFound: true},
		{method: "DELETE", route: "/identities/psk/{identity}", notFound: true},
		{method: "GET", route: "/identities/certificates/{certificate}", notFound: true},
		{method: "DELETE", route: "/identities/certificates/{certificate}", notFound: true},
	}
	// Every level of A's subscriptions, by ID.
	for i, id := range aSubs {
		level := []string{"organisation", "client", "instance"}[i]
		rows = append(rows,
			isoRow{method: "GET", route: "/subscriptions/{subscription}", variant: level, vars: subVars(id), notFound: true},
			isoRow{method: "PUT", route: "/subscriptions/{subscription}", variant: level, vars: subVars(id), ctype: subType, body: `{"Url":"` + bHook + `"}`, notFound: true},
			isoRow{method: "DELETE", route: "/subscriptions/{subscription}", variant: level, vars: subVars(id), notFound: true},
		)
	}

	// Deletions last, so that one that wrongly succeeds cannot hide what
	// the other rows would find.
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].method != "DELETE" && rows[j].method == "DELETE" })

	// Every route the router serves has a row, and every row is a route.
	served := map[string]bool{}
	for _, rt := range server.New(server.Config{}).Routes() {
		served[rt.Method+" "+rt.Path] = true
	}
	covered := map[string]bool{}
	for _, row := range rows {
		k := row.method + " " + row.route
		covered[k] = true
		if !served[k] {
			t.Errorf("matrix row %s is not a route of the router", k)
		}
	}
	var missing []string
	for k := range served {
		if !covered[k] {
			missing = append(missing, k)
		}
	}
	sort.Strings(missing)
	for _, k := range missing {
		t.Errorf("route %s has no row in the isolation matrix: add one (404 for B, B's own view, or why it is not tenant-scoped)", k)
	}

	for _, row := range rows {
		vars := map[string]string{}
		for k, v := range defaults {
			vars[k] = v
		}
		for k, v := range row.vars {
			vars[k] = v
		}
		u := srv.URL + fill(t, row.route, vars)
		if row.query != "" {
			u += "?" + row.query
		}
		name := row.method + " " + row.route
		if v := row.variant + row.vars["metric"]; v != "" {
			name += " " + v
		}
		t.Run(name, func(t *testing.T) {
			var body any
			if row.body != "" {
				body = row.body
			}
			r := b.Do(row.method, u, row.ctype, body)
			if r.Status >= 500 {
				t.Fatalf("B got %d: %s", r.Status, r.Raw)
			}
			for _, m := range markers {
				if !strings.Contains(u, m) && !strings.Contains(row.body, m) && strings.Contains(string(r.Raw), m) {
					t.Errorf("B's answer shows A's %q: %s", m, r.Raw)
				}
			}
			switch {
			case row.notFound:
				if r.Status != http.StatusNotFound {
					t.Errorf("B got %d, want 404: %s", r.Status, r.Raw)
				}
			case row.own != nil:
				row.own(t, r)
			case row.public != "":
				if r.Status < 200 || r.Status > 299 {
					t.Errorf("B got %d on a public route (%s): %s", r.Status, row.public, r.Raw)
				}
			default:
				t.Fatal("row says nothing about what to expect")
			}
		})
	}

	t.Run("the same object ID in both organisations", func(t *testing.T) {
		// A's 40010 neither blocks B's (a 409 would tell B it exists) nor
		// changes with it.
		created(t, "B: its own "+aDef, b.Do(http.MethodPost, srv.URL+"/objecttypes/definitions", defType, valve(aDef, "Tenant B Valve")), "ID")
		if got := b.Get(srv.URL + "/objecttypes/definitions/" + aDef).Body["Name"]; got != "Tenant B Valve" {
			t.Errorf("B's %s is named %v", aDef, got)
		}
		if r := b.Do(http.MethodDelete, srv.URL+"/objecttypes/definitions/"+aDef, "", nil); r.Status != http.StatusNoContent {
			t.Errorf("B deletes its own %s: %d %s", aDef, r.Status, r.Raw)
		}
	})

	t.Run("lifecycle events of A's device reach only A", func(t *testing.T) {
		if bSub == "" {
			t.Fatal("B's subscription was not created")
		}
		if err := dev.Update(ctx, false); err != nil {
			t.Fatal(err)
		}
		rcA.Wait(t, "ClientUpdated", wait, named(aEndpoint))
		// Both subscriptions match the same event and are queued together,
		// so by now B's would show as pending, delivered or dropped.
		d, _ := b.Get(srv.URL + "/subscriptions/" + bSub).Body["Delivery"].(map[string]any)
		if d["Delivered"] != 0.0 || d["Pending"] != 0.0 || d["Dropped"] != 0.0 {
			t.Errorf("B's ClientUpdated subscription got A's device's event: %v", d)
		}
	})

	t.Run("A is unchanged", func(t *testing.T) {
		a := testserver.Client{T: t, Token: srv.Token(t)} // the key still works
		if got := a.Get(srv.URL + "/accesskeys/" + testserver.AdminKey).Body["Name"]; got != aKeyName {
			t.Errorf("A's key is named %v, want %q", got, aKeyName)
		}
		keys := itemValues(a.Get(srv.URL+"/accesskeys").Body, "Key")
		if contains(keys, bKey) || contains(keys, bKey2) {
			t.Errorf("A's keys %v include B's", keys)
		}
		if got := a.Get(srv.URL + "/clients/" + aClient).Body["Name"]; got != aEndpoint {
			t.Errorf("A's client is named %v", got)
		}
		if got := a.Get(srv.URL + "/clients/" + aClient + "/objecttypes/3/instances/0").Body["Manufacturer"]; got != aMaker {
			t.Errorf("A reads its device: Manufacturer %v", got)
		}
		a.Get(srv.URL + "/clients/" + aClient + "/objecttypes/3303/instances/0")
		if v, _ := dev.Get(lwm2m.ResourcePath(3, 0, 14)); v == "+09:00" {
			t.Error("B's write reached A's device")
		}
		if _, ok := dev.Get(lwm2m.ResourcePath(3303, 9, 5750)); ok {
			t.Error("B's create reached A's device")
		}
		select {
		case ex := <-dev.Executed():
			t.Errorf("B's execute reached A's device: %v", ex)
		default:
		}
		subs := itemValues(a.Get(srv.URL+"/subscriptions").Body, "ID")
		for _, id := range aSubs {
			if !contains(subs, id) {
				t.Errorf("A's subscription %s is gone: %v", id, subs)
			}
			if got := a.Get(srv.URL + "/subscriptions/" + id).Body["Url"]; got != aHook {
				t.Errorf("A's subscription %s has Url %v", id, got)
			}
		}
		if contains(subs, bSub) {
			t.Errorf("A's subscriptions %v include B's %s", subs, bSub)
		}
		if got := a.Get(srv.URL + "/objecttypes/definitions/" + aDef).Body["Name"]; got != aDefName {
			t.Errorf("A's definition %s is named %v", aDef, got)
		}
		a.Get(srv.URL + "/identities/psk/" + aPSK)
		a.Get(srv.URL + "/identities/certificates/" + aCert)
		if n := metricValues(t, a, srv.URL+"/metrics")["NumberClients"]; n != 1 {
			t.Errorf("A's NumberClients = %d, want 1", n)
		}
		if g := a.Get(srv.URL + "/groups/" + aGroup).Body; g["Name"] != aGroupName || !reflect.DeepEqual(g["Endpoints"], []any{aEndpoint}) {
			t.Errorf("A's group: %v", g)
		}
		if got := a.Get(srv.URL + "/clients/" + aClient).Body["Groups"]; !reflect.DeepEqual(got, []any{aGroupName}) {
			t.Errorf("A's client Groups %v: B's group of the same name counted for A", got)
		}
		if got := a.Get(srv.URL + "/m2m/applications/registration").Body["url"]; got != aCallback {
			t.Errorf("A's callback is %v", got)
		}
		if got := a.Get(srv.URL + "/m2m/subscriptions/" + aM2M).Body["subscriptionId"]; got != aM2M {
			t.Errorf("A's m2m subscription: %v", got)
		}
		// And the other way round: B's own things are invisible to A.
		for _, p := range []string{"/subscriptions/" + bSub, "/identities/psk/" + bPSK,
			"/identities/certificates/" + bCert, "/objecttypes/definitions/" + bDef, "/groups/" + bGroup, "/m2m/subscriptions/" + bM2M} {
			if r := a.Do(http.MethodGet, srv.URL+p, "", nil); r.Status != http.StatusNotFound {
				t.Errorf("A GET %s (B's): %d, want 404", p, r.Status)
			}
		}
	})
}
