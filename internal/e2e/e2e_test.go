// Package e2e drives the whole device server the way a user does: a
// simulated device over real UDP, an application over real HTTP following
// links from GET /, and a real webhook receiver.
package e2e

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/deviceserver/deviceserver/internal/testserver"
	"github.com/deviceserver/deviceserver/lwm2m"
	"github.com/deviceserver/deviceserver/lwm2m/sim"
)

const (
	subType    = "application/vnd.oma.lwm2m.subscription+json"
	deviceType = "application/vnd.oma.lwm2m.device+json"
	tempType   = "application/vnd.oma.lwm2m.temperature+json"
	wait       = 10 * time.Second
)

// named matches notification items about one endpoint.
func named(ep string) func(map[string]any) bool {
	return func(it map[string]any) bool { return it["Name"] == ep }
}

// find returns the list item whose field has value, failing the test otherwise.
func find(t *testing.T, list map[string]any, field, value string) map[string]any {
	t.Helper()
	for _, it := range testserver.Items(list) {
		if it[field] == value {
			return it
		}
	}
	t.Fatalf("no item with %s=%s in %v", field, value, list["Items"])
	return nil
}

func startDevice(t *testing.T, srv *testserver.Server, cfg sim.Config) *sim.Device {
	t.Helper()
	cfg.Server = srv.CoAPAddr.String()
	dev := sim.New(cfg)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := dev.Start(ctx); err != nil {
		t.Fatalf("device %s: start: %v", cfg.Endpoint, err)
	}
	t.Cleanup(func() { _ = dev.Close() })
	return dev
}

func TestDeviceAndApplicationEndToEnd(t *testing.T) {
	srv := testserver.Start(t)
	rc := testserver.NewReceiver(t)
	api := testserver.Client{T: t, Token: srv.Token(t)}
	ctx := context.Background()

	root := api.Get(srv.URL + "/").Body
	for _, typ := range []string{"ClientConnected", "ClientUpdated", "ClientDisconnected", "ClientConnectionExpired"} {
		r := api.Do(http.MethodPost, testserver.Link(t, root, "subscriptions"), subType, map[string]any{"SubscriptionType": typ, "Url": rc.URL})
		if r.Status != http.StatusCreated {
			t.Fatalf("subscribe %s: %d %s", typ, r.Status, r.Raw)
		}
	}

	dev := startDevice(t, srv, sim.Config{Endpoint: "e2e-dev", Lifetime: 60, Manufacturer: "Acme Sensors"})
	connected := rc.Wait(t, "ClientConnected", wait, named("e2e-dev"))
	clientHref := testserver.Link(t, connected, "client")

	// Follow links from the root to the device, as an application would.
	clients := api.Get(testserver.Link(t, root, "clients") + "?name=e2e-dev").Body
	client := find(t, clients, "Name", "e2e-dev")
	if self := testserver.Link(t, client, "self"); self != clientHref {
		t.Errorf("notification client link %s, client self %s", clientHref, self)
	}
	types := api.Get(testserver.Link(t, client, "objecttypes")).Body
	deviceInstances := api.Get(testserver.Link(t, find(t, types, "ObjectTypeID", "3"), "instances")).Body
	dev0 := find(t, deviceInstances, "InstanceID", "0")
	if dev0["Manufacturer"] != "Acme Sensors" {
		t.Errorf("read /3/0 Manufacturer = %v, want the device's value", dev0["Manufacturer"])
	}
	if ps, _ := dev0["AvailablePowerSources"].([]any); len(ps) == 0 {
		t.Errorf("read /3/0: multiple resource AvailablePowerSources missing: %v", dev0)
	}

	t.Run("write and read back", func(t *testing.T) {
		r := api.Do(http.MethodPut, testserver.Link(t, dev0, "update"), deviceType, map[string]any{"UTCOffset": "+05:00"})
		if r.Status != http.StatusNoContent {
			t.Fatalf("write: %d %s", r.Status, r.Raw)
		}
		if v, _ := dev.Get(lwm2m.ResourcePath(3, 0, 14)); v != "+05:00" {
			t.Errorf("device holds UTCOffset %v after the write", v)
		}
		if got := api.Get(testserver.Link(t, dev0, "self")).Body["UTCOffset"]; got != "+05:00" {
			t.Errorf("read back UTCOffset = %v", got)
		}
	})

	t.Run("execute", func(t *testing.T) {
		r := api.Do(http.MethodPost, testserver.Link(t, dev0, "execute", "Reboot"), "text/plain", "now")
		if r.Status != http.StatusNoContent {
			t.Fatalf("execute: %d %s", r.Status, r.Raw)
		}
		select {
		case ex := <-dev.Executed():
			if ex.Path != lwm2m.ResourcePath(3, 0, 4) || ex.Args != "now" {
				t.Errorf("device executed %v with %q", ex.Path, ex.Args)
			}
		case <-time.After(wait):
			t.Fatal("the device saw no Execute")
		}
	})

	temps := api.Get(testserver.Link(t, find(t, types, "ObjectTypeID", "3303"), "instances")).Body
	t.Run("create and delete an instance", func(t *testing.T) {
		r := api.Do(http.MethodPost, testserver.Link(t, temps, "add"), tempType, map[string]any{"InstanceID": "7", "ApplicationType": "probe"})
		if r.Status != http.StatusCreated || r.Body["ID"] != "7" {
			t.Fatalf("create: %d %s", r.Status, r.Raw)
		}
		self := testserver.Link(t, r.Body, "self")
		if got := api.Get(self).Body["ApplicationType"]; got != "probe" {
			t.Errorf("created instance ApplicationType = %v", got)
		}
		if r := api.Do(http.MethodDelete, self, "", nil); r.Status != http.StatusNoContent {
			t.Fatalf("delete: %d %s", r.Status, r.Raw)
		}
		if r := api.Do(http.MethodGet, self, "", nil); r.Status != http.StatusNotFound {
			t.Errorf("read after delete: %d, want 404", r.Status)
		}
	})

	t.Run("observation", func(t *testing.T) {
		temp0 := find(t, temps, "InstanceID", "0")
		r := api.Do(http.MethodPost, testserver.Link(t, temp0, "subscriptions"), subType, map[string]any{
			"SubscriptionType": "Observation", "Url": rc.URL, "Property": "SensorValue",
			"Attributes": map[string]any{"Pmin": 0, "Pmax": 300, "Step": "1"}})
		if r.Status != http.StatusCreated {
			t.Fatalf("subscribe: %d %s", r.Status, r.Raw)
		}
		value := func(want float64) func(map[string]any) bool {
			return func(it map[string]any) bool {
				v, _ := it["Value"].(map[string]any)
				return v["SensorValue"] == want
			}
		}
		sensor := lwm2m.ResourcePath(3303, 0, 5700)
		dev.Set(sensor, 30.5)
		rc.Wait(t, "Observation", wait, value(30.5))
		// 30.7 is within Step of 30.5: the next delivered value must be 35.
		dev.Set(sensor, 30.7)
		dev.Set(sensor, 35.0)
		it := rc.Wait(t, "Observation", wait, nil)
		if v := it["Value"].(map[string]any)["SensorValue"]; v != 35.0 {
			t.Errorf("after a change smaller than Step, got %v, want 35", v)
		}
	})

	t.Run("update", func(t *testing.T) {
		if err := dev.Update(ctx, false); err != nil {
			t.Fatal(err)
		}
		rc.Wait(t, "ClientUpdated", wait, named("e2e-dev"))
	})

	t.Run("restart keeps registrations and subscriptions", func(t *testing.T) {
		before := api.Get(srv.URL + "/subscriptions").Body["PageInfo"].(map[string]any)["TotalCount"]
		srv.Restart(t)
		if r := api.Do(http.MethodGet, clientHref, "", nil); r.Status != http.StatusOK || r.Body["Name"] != "e2e-dev" {
			t.Fatalf("client after restart: %d %s", r.Status, r.Raw)
		}
		after := api.Get(srv.URL + "/subscriptions").Body["PageInfo"].(map[string]any)["TotalCount"]
		if before != after || after.(float64) != 5 {
			t.Errorf("subscriptions before restart %v, after %v; want 5", before, after)
		}
		// The device keeps its registration: its Update is accepted.
		if err := dev.Update(ctx, false); err != nil {
			t.Fatalf("update after restart: %v", err)
		}
		rc.Wait(t, "ClientUpdated", wait, named("e2e-dev"))
		if got := api.Get(testserver.Link(t, dev0, "self")).Body["Manufacturer"]; got != "Acme Sensors" {
			t.Errorf("read after restart: Manufacturer %v", got)
		}
	})

	t.Run("deregister", func(t *testing.T) {
		if err := dev.Deregister(ctx); err != nil {
			t.Fatal(err)
		}
		rc.Wait(t, "ClientDisconnected", wait, named("e2e-dev"))
		if r := api.Do(http.MethodGet, clientHref, "", nil); r.Status != http.StatusNotFound {
			t.Errorf("client after de-register: %d, want 404", r.Status)
		}
	})

	t.Run("lifetime expiry", func(t *testing.T) {
		startDevice(t, srv, sim.Config{Endpoint: "e2e-short", Lifetime: 1, Light: true})
		it := rc.Wait(t, "ClientConnectionExpired", wait, named("e2e-short"))
		if !strings.HasPrefix(testserver.Link(t, it, "subscription"), srv.URL+"/subscriptions/") {
			t.Errorf("expiry notification links: %v", it["Links"])
		}
	})
}

// TestDeleteClientForgetsTheDevice: after DELETE /clients/{id} the device's
// next Update is refused (so it registers again) instead of reviving the
// deleted registration.
func TestDeleteClientForgetsTheDevice(t *testing.T) {
	srv := testserver.Start(t)
	api := testserver.Client{T: t, Token: srv.Token(t)}
	dev := startDevice(t, srv, sim.Config{Endpoint: "to-forget", Lifetime: 60, Light: true})
	client := find(t, api.Get(srv.URL+"/clients?name=to-forget").Body, "Name", "to-forget")
	self := testserver.Link(t, client, "self")
	if r := api.Do(http.MethodDelete, testserver.Link(t, client, "remove"), "", nil); r.Status != http.StatusNoContent {
		t.Fatalf("delete: %d %s", r.Status, r.Raw)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := dev.Update(ctx, false); err == nil {
		t.Error("the device's Update after the delete was accepted")
	}
	if r := api.Do(http.MethodGet, self, "", nil); r.Status != http.StatusNotFound {
		t.Errorf("client after delete and update: %d, want 404", r.Status)
	}
}
