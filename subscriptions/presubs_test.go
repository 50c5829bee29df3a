package subscriptions

import (
	"context"
	"testing"

	"github.com/deviceserver/deviceserver/lwm2m"
	"github.com/deviceserver/deviceserver/storage"
)

// identity is what a fake device answers to a Read of /3/0.
func identity(make, model, serial, firmware string) []lwm2m.Record {
	return []lwm2m.Record{
		{Path: lwm2m.ResourcePath(3, 0, 0), Value: make},
		{Path: lwm2m.ResourcePath(3, 0, 1), Value: model},
		{Path: lwm2m.ResourcePath(3, 0, 2), Value: serial},
		{Path: lwm2m.ResourcePath(3, 0, 3), Value: firmware},
	}
}

func TestMatch(t *testing.T) {
	e := New(Config{})
	e.groups.put(storage.Group{ID: "g1", OrganisationID: "org1", Name: "tenant-a", Endpoints: []string{"ep1"}})
	dev := &lwm2m.DeviceInfo{Manufacturer: "Nokia", ModelNumber: "LwM2M Client", SerialNumber: "SN-1", FirmwareVersion: "2.2"}
	known := lwm2m.Registration{ID: "c1", Organisation: "org1", Endpoint: "ep1", Device: dev}
	unknown := lwm2m.Registration{ID: "c1", Organisation: "org1", Endpoint: "ep1"}
	other := lwm2m.Registration{ID: "c2", Organisation: "org1", Endpoint: "ep2", Device: dev}
	sub := func(c *storage.Criteria) storage.Subscription {
		return storage.Subscription{OrganisationID: "org1", Type: TypeClientConnected, Criteria: c}
	}
	cases := []struct {
		name string
		sub  storage.Subscription
		reg  lwm2m.Registration
		want matchResult
	}{
		{"no criteria: every client", sub(nil), other, matches},
		{"other organisation", storage.Subscription{OrganisationID: "org2", Type: TypeClientConnected}, known, noMatch},
		{"client level, its client", storage.Subscription{OrganisationID: "org1", ClientID: "c1"}, known, matches},
		{"client level, another client", storage.Subscription{OrganisationID: "org1", ClientID: "c1"}, other, noMatch},
		{"group member", sub(&storage.Criteria{Group: "tenant-a"}), known, matches},
		{"not a group member", sub(&storage.Criteria{Group: "tenant-a"}), other, noMatch},
		{"unknown group", sub(&storage.Criteria{Group: "tenant-b"}), known, noMatch},
		{"endpoint by name", sub(&storage.Criteria{Endpoints: []string{"ep1"}}), unknown, matches},
		{"endpoint by serial number", sub(&storage.Criteria{Endpoints: []string{"SN-1"}}), other, matches},
		{"endpoint list without it", sub(&storage.Criteria{Endpoints: []string{"ep9"}}), other, noMatch},
		{"serial number not read yet", sub(&storage.Criteria{Endpoints: []string{"SN-1"}}), lwm2m.Registration{Organisation: "org1", Endpoint: "ep2"}, needsInfo},
		{"make", sub(&storage.Criteria{Make: "Nokia"}), known, matches},
		{"make differs", sub(&storage.Criteria{Make: "Acme"}), known, noMatch},
		{"make and model", sub(&storage.Criteria{Make: "Nokia", Model: "LwM2M Client"}), known, matches},
		{"model differs", sub(&storage.Criteria{Make: "Nokia", Model: "Other"}), known, noMatch},
		{"make, model and firmware", sub(&storage.Criteria{Make: "Nokia", Model: "LwM2M Client", FirmwareVersion: "2.2"}), known, matches},
		{"firmware differs", sub(&storage.Criteria{Make: "Nokia", Model: "LwM2M Client", FirmwareVersion: "2.3"}), known, noMatch},
		{"make not read yet", sub(&storage.Criteria{Make: "Nokia"}), unknown, needsInfo},
		{"group and make", sub(&storage.Criteria{Group: "tenant-a", Make: "Nokia"}), known, matches},
		{"group decides before the identity is read", sub(&storage.Criteria{Group: "tenant-a", Make: "Nokia"}), lwm2m.Registration{Organisation: "org1", Endpoint: "ep2"}, noMatch},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := e.match(tc.sub, tc.reg); got != tc.want {
				t.Fatalf("match = %d, want %d", got, tc.want)
			}
		})
	}
	// Without reading object 3, criteria that need it never match.
	skip := New(Config{SkipDeviceInfo: true})
	if got := skip.match(sub(&storage.Criteria{Make: "Nokia"}), unknown); got != noMatch {
		t.Fatalf("SkipDeviceInfo: match = %d, want noMatch", got)
	}
}

// A ClientConnected pre-subscription by manufacturer waits for the server's
// read of object 3 and notifies only for the devices that match; the
// identity is recorded on the registration.
func TestPreSubscriptionByManufacturer(t *testing.T) {
	env := newEnv(t, Config{})
	ctx := context.Background()
	rc := newReceiver(t, nil)
	env.create(storage.Subscription{Type: TypeClientConnected, URL: rc.URL,
		Criteria: &storage.Criteria{Make: "Acme", Model: "M1"}})
	env.dev.values["a /3/0"] = identity("Other", "M1", "SN-A", "1.0")
	env.dev.values["b /3/0"] = identity("Acme", "M1", "SN-B", "1.0")
	env.eng.ClientRegistered(ctx, env.register("a", "org1", "ep-a"))
	env.eng.background.Wait()
	env.eng.ClientRegistered(ctx, env.register("b", "org1", "ep-b"))
	env.eng.background.Wait()
	// Both events go through the subscription's one worker in order, so
	// a wrong match of "a" would arrive first.
	if name := next(t, rc.accepted, "notification").items(t)[0]["Name"]; name != "ep-b" {
		t.Fatalf("first notification for %v, want ep-b", name)
	}
	reg, err := env.store.GetRegistration(ctx, "b")
	if err != nil || reg.Device == nil || reg.Device.Manufacturer != "Acme" || reg.Device.SerialNumber != "SN-B" || reg.Device.FirmwareVersion != "1.0" {
		t.Fatalf("registration identity %+v, %v", reg.Device, err)
	}
}

// An Observation pre-subscription by group is applied at once to the
// members online, to endpoints that join the group later, and notifies
// with each client's links; leaving the group cancels the observation.
func TestPreSubscriptionObservationByGroup(t *testing.T) {
	env := newEnv(t, Config{Render: testRender})
	ctx := context.Background()
	rc := newReceiver(t, nil)
	r1 := env.register("c1", "org1", "ep1")
	r2 := env.register("c2", "org1", "ep2")
	env.dev.values[tempKey] = temperature(20)
	env.dev.values["c2 /3303/0/5700"] = temperature(20)
	g, err := env.eng.CreateGroup(ctx, storage.Group{OrganisationID: "org1", Name: "tenant-a", Endpoints: []string{"ep1"}})
	if err != nil {
		t.Fatal(err)
	}
	s := env.create(storage.Subscription{Type: TypeObservation, URL: rc.URL, Path: "/3303/0/5700",
		Criteria: &storage.Criteria{Group: "tenant-a"}, Attributes: lwm2m.Attributes{St: f64(1)}})
	if got := next(t, env.dev.observed, "Observe of the online member"); got != tempKey {
		t.Fatalf("observed %s, want %s", got, tempKey)
	}
	env.eng.background.Wait()
	if w, _ := env.dev.lastWrite(); w.client != "c1" || !sameAttributes(w.attrs, lwm2m.Attributes{St: f64(1)}) {
		t.Fatalf("attributes written %+v", w)
	}
	if got := env.eng.GroupsOf("org1", "ep1"); len(got) != 1 || got[0] != "tenant-a" {
		t.Fatalf("GroupsOf = %v", got)
	}

	g.Endpoints = []string{"ep1", "ep2"}
	if err := env.eng.UpdateGroup(ctx, g); err != nil {
		t.Fatal(err)
	}
	if got := next(t, env.dev.observed, "Observe of the new member"); got != "c2 /3303/0/5700" {
		t.Fatalf("observed %s", got)
	}
	env.eng.background.Wait()

	env.eng.Notify(ctx, r1, tempPath, temperature(20.5), env.clock.Now()) // below the step
	env.eng.Notify(ctx, r2, tempPath, temperature(25), env.clock.Now())
	r := next(t, rc.accepted, "notification of c2")
	item := r.items(t)[0]
	if v := item["Value"].(map[string]any)["Temperature"]; v != 25.0 {
		t.Fatalf("value %v", v)
	}
	if links := item["Links"].([]any); links[1].(map[string]any)["href"] != "https://ds.example/clients/c2" {
		t.Fatalf("client link %v", links[1])
	}

	g.Endpoints = []string{"ep2"}
	if err := env.eng.UpdateGroup(ctx, g); err != nil {
		t.Fatal(err)
	}
	env.eng.background.Wait()
	if _, c := env.dev.counts(tempKey); c != 1 {
		t.Fatalf("%d cancels of c1's observation after it left the group, want 1", c)
	}
	if err := env.eng.Delete(ctx, s.ID); err != nil {
		t.Fatal(err)
	}
	env.eng.background.Wait()
	if _, c := env.dev.counts("c2 /3303/0/5700"); c != 1 {
		t.Fatalf("%d cancels of c2's observation after the delete, want 1", c)
	}
}

// A pre-subscription by firmware version follows the device's firmware:
// an update after a firmware change re-reads it and detaches or attaches.
func TestPreSubscriptionFirmwareChange(t *testing.T) {
	env := newEnv(t, Config{Render: testRender})
	ctx := context.Background()
	rc := newReceiver(t, nil)
	env.create(storage.Subscription{Type: TypeObservation, URL: rc.URL, Path: "/3303/0/5700",
		Criteria: &storage.Criteria{Make: "Acme", Model: "M1", FirmwareVersion: "1.0"}})
	env.dev.values["c1 /3/0"] = identity("Acme", "M1", "SN", "1.0")
	env.dev.values[tempKey] = temperature(20)
	env.eng.ClientRegistered(ctx, env.register("c1", "org1", "ep1"))
	next(t, env.dev.observed, "Observe after registration")
	env.eng.background.Wait()

	env.dev.mu.Lock()
	env.dev.values["c1 /3/0/3"] = []lwm2m.Record{{Path: firmwarePath, Value: "2.0"}}
	env.dev.mu.Unlock()
	reg, _ := env.store.GetRegistration(ctx, "c1")
	env.eng.ClientUpdated(ctx, reg)
	env.eng.background.Wait()
	if _, c := env.dev.counts(tempKey); c != 1 {
		t.Fatalf("%d cancels after the firmware changed, want 1", c)
	}
	if reg, _ := env.store.GetRegistration(ctx, "c1"); reg.Device == nil || reg.Device.FirmwareVersion != "2.0" {
		t.Fatalf("identity after update %+v", reg.Device)
	}

	env.dev.mu.Lock()
	env.dev.values["c1 /3/0/3"] = []lwm2m.Record{{Path: firmwarePath, Value: "1.0"}}
	env.dev.mu.Unlock()
	reg, _ = env.store.GetRegistration(ctx, "c1")
	env.eng.ClientUpdated(ctx, reg)
	next(t, env.dev.observed, "Observe after the firmware went back")
}

// ApplyLater leaves online devices alone until their next update; after a
// restart the pre-subscription is still attached and routes notifications
// without observing again.
func TestPreSubscriptionApplyLaterAndRestart(t *testing.T) {
	env := newEnv(t, Config{Render: testRender})
	ctx := context.Background()
	rc := newReceiver(t, nil)
	reg := env.register("c1", "org1", "ep1")
	env.dev.values[tempKey] = temperature(20)
	env.dev.values["c1 /3/0"] = identity("Acme", "M1", "SN", "1.0")
	s, err := env.eng.Create(ctx, storage.Subscription{OrganisationID: "org1", BaseURL: "https://ds.example", Type: TypeObservation,
		URL: rc.URL, Path: "/3303/0/5700", Criteria: &storage.Criteria{Endpoints: []string{"ep1"}}}, ApplyLater())
	if err != nil {
		t.Fatal(err)
	}
	env.eng.background.Wait()
	if n, _ := env.dev.counts(tempKey); n != 0 {
		t.Fatalf("ApplyLater observed at once")
	}
	env.eng.ClientUpdated(ctx, reg)
	next(t, env.dev.observed, "Observe at the next update")
	env.eng.background.Wait()

	if err := env.eng.Close(); err != nil {
		t.Fatal(err)
	}
	env.start(Config{Render: testRender})
	if err := env.eng.Start(ctx); err != nil {
		t.Fatal(err)
	}
	env.eng.background.Wait()
	env.eng.Notify(ctx, reg, tempPath, temperature(22), env.clock.Now())
	if v := value(t, next(t, rc.accepted, "notification after restart")); v["Temperature"] != 22.0 {
		t.Fatalf("value %v", v)
	}
	if n, _ := env.dev.counts(tempKey); n != 1 {
		t.Fatalf("%d Observe, want 1 (restored after the restart)", n)
	}
	if err := env.eng.Delete(ctx, s.ID); err != nil {
		t.Fatal(err)
	}
}

func TestGroupValidation(t *testing.T) {
	env := newEnv(t, Config{})
	ctx := context.Background()
	for _, g := range []storage.Group{
		{OrganisationID: "org1", Name: " "},
		{OrganisationID: "org1", Name: "a\nb"},
		{OrganisationID: "org1", Name: "ok", Endpoints: []string{""}},
	} {
		if _, err := env.eng.CreateGroup(ctx, g); !isValidation(err) {
			t.Errorf("CreateGroup(%+v) = %v, want a ValidationError", g, err)
		}
	}
	g, err := env.eng.CreateGroup(ctx, storage.Group{OrganisationID: "org1", Name: "g", Endpoints: []string{"ep1", " ep1 ", "ep2"}})
	if err != nil || len(g.Endpoints) != 2 {
		t.Fatalf("CreateGroup = %+v, %v; want the duplicate member folded", g, err)
	}
	if err := env.eng.DeleteGroup(ctx, g.ID); err != nil {
		t.Fatal(err)
	}
	if got := env.eng.GroupsOf("org1", "ep1"); len(got) != 0 {
		t.Fatalf("GroupsOf after delete = %v", got)
	}
}
