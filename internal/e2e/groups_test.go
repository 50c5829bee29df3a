package e2e

import (
	"bytes"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"testing"

	"github.com/deviceserver/deviceserver/internal/testserver"
	"github.com/deviceserver/deviceserver/lwm2m"
	"github.com/deviceserver/deviceserver/lwm2m/sim"
)

const groupType = "application/vnd.imgtec.group+json"

// referenceGroupFixtures makes the {group} of the docs/api.md examples: the
// main set's group "tenant-a" holds sim-1 (GET /clients?group=tenant-a and
// the 409 example rely on it); the spare one is for the DELETE example.
func referenceGroupFixtures(t *testing.T, srv *testserver.Server, api testserver.Client, main, spare fixtureSet) {
	t.Helper()
	for _, f := range []struct {
		set  fixtureSet
		body map[string]any
	}{
		{main, map[string]any{"Name": "tenant-a", "Endpoints": []string{"sim-1"}}},
		{spare, map[string]any{"Name": "spare", "Endpoints": []string{}}},
	} {
		r := api.Do(http.MethodPost, srv.URL+"/groups", groupType, f.body)
		if id, _ := r.Body["ID"].(string); r.Status == http.StatusCreated && id != "" {
			f.set.vals["group"] = id
		} else {
			f.set.missing["group"] = fmt.Sprintf("POST /groups answered %d %s", r.Status, bytes.TrimSpace(r.Raw))
		}
	}
}

// groupNames returns the Groups of a client representation.
func groupNames(rep map[string]any) []string {
	out := []string{}
	gs, _ := rep["Groups"].([]any)
	for _, g := range gs {
		out = append(out, fmt.Sprint(g))
	}
	return out
}

// TestGroupsEndToEnd: a group made before its devices register selects
// them for lifecycle and Observation pre-subscriptions, shows on the
// clients and filters them, with real devices and a real webhook receiver.
func TestGroupsEndToEnd(t *testing.T) {
	srv := testserver.Start(t)
	rc := testserver.NewReceiver(t)
	api := testserver.Client{T: t, Token: srv.Token(t)}
	root := api.Get(srv.URL + "/").Body

	// The group exists before any of its devices registers.
	groups := api.Get(testserver.Link(t, root, "groups")).Body
	r := api.Do(http.MethodPost, testserver.Link(t, groups, "add"), groupType,
		map[string]any{"Name": "building-7", "Endpoints": []string{"grp-in", "grp-later"}})
	group := testserver.Link(t, r.Body, "self")
	if r.Status != http.StatusCreated {
		t.Fatalf("create group: %d %s", r.Status, r.Raw)
	}
	subscribe := func(body map[string]any) string {
		t.Helper()
		r := api.Do(http.MethodPost, testserver.Link(t, root, "subscriptions"), subType, body)
		if r.Status != http.StatusCreated {
			t.Fatalf("subscribe %v: %d %s", body, r.Status, r.Raw)
		}
		return testserver.Link(t, r.Body, "self")
	}
	inGroup := subscribe(map[string]any{"SubscriptionType": "ClientConnected", "Url": rc.URL + "/group", "Criteria": map[string]any{"Group": "building-7"}})
	// Every client: the barrier that tells when the group's subscription
	// has seen an event too (both match the same event at once).
	everyone := subscribe(map[string]any{"SubscriptionType": "ClientConnected", "Url": rc.URL + "/all"})
	// Pmax 1: a notification at least every second once observed, which
	// tells the test that the pre-subscription reached the device.
	subscribe(map[string]any{"SubscriptionType": "Observation", "Url": rc.URL + "/temp", "ResourcePath": "/3303/0/5700",
		"Criteria": map[string]any{"Group": "building-7"}, "Attributes": map[string]any{"Pmin": 0, "Pmax": 1}})

	in := startDevice(t, srv, sim.Config{Endpoint: "grp-in", Lifetime: 300, Light: true})
	startDevice(t, srv, sim.Config{Endpoint: "grp-out", Lifetime: 300, Light: true})
	inClient := testserver.Link(t, find(t, api.Get(srv.URL+"/clients?name=grp-in").Body, "Name", "grp-in"), "self")

	t.Run("lifecycle subscriptions match the group at the event", func(t *testing.T) {
		// Wait discards what it does not return, so one wait collects every
		// event: grp-in's through the group's subscription, and grp-out's
		// through the subscription of every client — by then the group's
		// subscription has decided about grp-out too.
		seen := map[string]bool{}
		rc.Wait(t, "ClientConnected", wait, func(it map[string]any) bool {
			seen[fmt.Sprint(it["Name"])+" "+testserver.Link(t, it, "subscription")] = true
			return seen["grp-in "+inGroup] && seen["grp-out "+everyone]
		})
		if seen["grp-out "+inGroup] {
			t.Error("the group's subscription notified grp-out, which is not in the group")
		}
		d, _ := api.Get(inGroup).Body["Delivery"].(map[string]any)
		if n := d["Delivered"].(float64) + d["Pending"].(float64) + d["Dropped"].(float64); n != 1 {
			t.Errorf("the group's subscription handled %v events, want only grp-in's: %v", n, d)
		}
	})

	t.Run("Observation pre-subscriptions apply at registration", func(t *testing.T) {
		about := func(client string, value any) func(map[string]any) bool {
			return func(it map[string]any) bool {
				v, _ := it["Value"].(map[string]any)
				return testserver.Link(t, it, "client") == client && (value == nil || v["SensorValue"] == value)
			}
		}
		rc.Wait(t, "Observation", wait, about(inClient, nil)) // observed
		in.Set(lwm2m.ResourcePath(3303, 0, 5700), 27.5)
		rc.Wait(t, "Observation", wait, about(inClient, 27.5))
	})

	t.Run("clients show and filter by group", func(t *testing.T) {
		g := api.Get(group).Body
		members := api.Get(testserver.Link(t, g, "clients")).Body
		var eps []string
		for _, it := range testserver.Items(members) {
			eps = append(eps, it["Name"].(string))
			if got := groupNames(it); !slices.Equal(got, []string{"building-7"}) {
				t.Errorf("%s Groups %v", it["Name"], got)
			}
		}
		if !slices.Equal(eps, []string{"grp-in"}) {
			t.Errorf("members %v, want the registered grp-in only", eps)
		}
		out := find(t, api.Get(srv.URL+"/clients?name=grp-out").Body, "Name", "grp-out")
		if got := groupNames(out); len(got) != 0 {
			t.Errorf("grp-out Groups %v", got)
		}
	})

	t.Run("membership follows a PUT", func(t *testing.T) {
		if r := api.Do(http.MethodPut, group, groupType, map[string]any{"Name": "building-7", "Endpoints": []string{"grp-out"}}); r.Status != http.StatusNoContent {
			t.Fatalf("PUT: %d %s", r.Status, r.Raw)
		}
		for ep, want := range map[string][]string{"grp-in": {}, "grp-out": {"building-7"}} {
			if got := groupNames(find(t, api.Get(srv.URL+"/clients?name="+ep).Body, "Name", ep)); !reflect.DeepEqual(got, want) {
				t.Errorf("%s Groups %v, want %v", ep, got, want)
			}
		}
		if got := testserver.Items(api.Get(srv.URL + "/clients?group=building-7").Body); len(got) != 1 || got[0]["Name"] != "grp-out" {
			t.Errorf("members after the PUT: %v", got)
		}
	})

	t.Run("delete", func(t *testing.T) {
		if r := api.Do(http.MethodDelete, group, "", nil); r.Status != http.StatusNoContent {
			t.Fatalf("DELETE: %d %s", r.Status, r.Raw)
		}
		if r := api.Do(http.MethodGet, group, "", nil); r.Status != http.StatusNotFound {
			t.Errorf("GET after delete: %d", r.Status)
		}
		if got := testserver.Items(api.Get(srv.URL + "/clients?group=building-7").Body); len(got) != 0 {
			t.Errorf("members of a deleted group: %v", got)
		}
		// The subscription naming the group stays.
		if got := api.Get(inGroup).Body["Criteria"]; !reflect.DeepEqual(got, map[string]any{"Group": "building-7"}) {
			t.Errorf("Criteria after the group was deleted: %v", got)
		}
	})
}
