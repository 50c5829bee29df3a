package subscriptions

import (
	"context"
	"errors"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/deviceserver/deviceserver/lwm2m"
	"github.com/deviceserver/deviceserver/storage"
)

var (
	tempPath = lwm2m.ResourcePath(3303, 0, 5700)
	tempKey  = "c1 /3303/0/5700"
)

// testRender names resource 5700 "Temperature" and 5701 "Units", and tells
// the path it was given.
func testRender(org string, p lwm2m.Path, recs []lwm2m.Record) any {
	m := map[string]any{"_path": p.String(), "_org": org}
	for _, r := range recs {
		switch r.Path.Resource {
		case 5700:
			m["Temperature"] = r.Value
		case 5701:
			m["Units"] = r.Value
		default:
			m[strconv.Itoa(int(r.Path.Resource))] = r.Value
		}
	}
	return m
}

func value(t *testing.T, r request) map[string]any {
	t.Helper()
	items := r.items(t)
	if len(items) != 1 {
		t.Fatalf("%d items, want 1", len(items))
	}
	v, _ := items[0]["Value"].(map[string]any)
	return v
}

func TestObservationSharedByTwoSubscriptions(t *testing.T) {
	env := newEnv(t, Config{Render: testRender})
	ctx := context.Background()
	reg := env.register("c1", "org1", "ep1")
	env.dev.values[tempKey] = temperature(20)
	rcA, rcB := newReceiver(t, nil), newReceiver(t, nil)
	obs := func(url string, a lwm2m.Attributes) storage.Subscription {
		return env.create(storage.Subscription{ClientID: "c1", Type: TypeObservation, URL: url, Path: "/3303/0/5700", Property: "Temperature", Attributes: a})
	}

	a := obs(rcA.URL, lwm2m.Attributes{Pmin: u32(10), Pmax: u32(60), St: f64(1)})
	if n, _ := env.dev.counts(tempKey); n != 1 {
		t.Fatalf("%d Observe after the first subscription, want 1", n)
	}
	if w, _ := env.dev.lastWrite(); !sameAttributes(w.attrs, lwm2m.Attributes{Pmin: u32(10), Pmax: u32(60), St: f64(1)}) || w.path != "/3303/0/5700" {
		t.Fatalf("first Write-Attributes %+v", w)
	}
	b := obs(rcB.URL, lwm2m.Attributes{Pmin: u32(5), Pmax: u32(120), St: f64(0.5)})
	if n, _ := env.dev.counts(tempKey); n != 1 {
		t.Fatalf("%d Observe after the second subscription, want still 1", n)
	}
	w, writes := env.dev.lastWrite()
	if want := (lwm2m.Attributes{Pmin: u32(5), Pmax: u32(60), St: f64(0.5)}); !sameAttributes(w.attrs, want) {
		t.Fatalf("combined attributes %v, want %v", w.attrs.Query(), want.Query())
	}

	// One device notification reaches both, each through its own filter.
	env.clock.Advance(10 * time.Second)
	env.eng.Notify(ctx, reg, tempPath, temperature(25), env.clock.Now())
	for _, rc := range []*receiver{rcA, rcB} {
		if v := value(t, next(t, rc.accepted, "observation")); v["Temperature"] != 25.0 || v["_path"] != "/3303/0/5700" || v["_org"] != "org1" {
			t.Fatalf("value %v", v)
		}
	}

	if err := env.eng.Delete(ctx, b.ID); err != nil {
		t.Fatal(err)
	}
	if _, c := env.dev.counts(tempKey); c != 0 {
		t.Fatalf("observation cancelled although subscription %s still needs it", a.ID)
	}
	if w, n := env.dev.lastWrite(); n != writes+1 || !sameAttributes(w.attrs, lwm2m.Attributes{Pmin: u32(10), Pmax: u32(60), St: f64(1)}) {
		t.Fatalf("after deleting one: write %d %v, want the remaining subscription's attributes", n, w.attrs.Query())
	}
	if err := env.eng.Delete(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	if _, c := env.dev.counts(tempKey); c != 1 {
		t.Fatalf("%d CancelObserve after deleting the last subscription, want 1", c)
	}
	if subs, _ := env.store.ListSubscriptions(ctx, storage.SubscriptionFilter{}); len(subs) != 0 {
		t.Fatalf("%d subscriptions left in the store", len(subs))
	}

	// A new subscription observes again, with no attributes left behind.
	obs(rcA.URL, lwm2m.Attributes{})
	if n, _ := env.dev.counts(tempKey); n != 2 {
		t.Fatalf("%d Observe after re-subscribing, want 2", n)
	}
	if w, _ := env.dev.lastWrite(); !sameAttributes(w.attrs, lwm2m.Attributes{Pmin: u32(0), St: f64(0)}) {
		t.Fatalf("re-subscribing wrote %v, want pmin and st neutralised", w.attrs.Query())
	}
}

func TestCreateObservationDeviceError(t *testing.T) {
	env := newEnv(t, Config{})
	env.register("c1", "org1", "ep1")
	env.dev.err = &lwm2m.DeviceError{Op: "observe", Code: 4<<5 | 5}
	_, err := env.eng.Create(context.Background(), storage.Subscription{OrganisationID: "org1", ClientID: "c1",
		Type: TypeObservation, URL: "http://receiver.example/", Path: "/3303/0/5700"})
	var de *lwm2m.DeviceError
	if !errors.As(err, &de) || de.Detail() != 5 {
		t.Fatalf("Create = %v, want the device error", err)
	}
	if subs, _ := env.store.ListSubscriptions(context.Background(), storage.SubscriptionFilter{}); len(subs) != 0 {
		t.Fatalf("stored %d subscriptions after a device error", len(subs))
	}
}

func TestInstanceObservation(t *testing.T) {
	env := newEnv(t, Config{Render: testRender})
	ctx := context.Background()
	reg := env.register("c1", "org1", "ep1")
	env.dev.values["c1 /3303/0"] = []lwm2m.Record{
		{Path: lwm2m.ResourcePath(3303, 0, 5700), Value: 20.0},
		{Path: lwm2m.ResourcePath(3303, 0, 5701), Value: "Cel"},
	}
	env.dev.values[tempKey] = temperature(20)
	inst, res := newReceiver(t, nil), newReceiver(t, nil)
	is := env.create(storage.Subscription{ClientID: "c1", Type: TypeObservation, URL: inst.URL, Path: "/3303/0", BaseURL: "https://ds.example"})
	env.create(storage.Subscription{ClientID: "c1", Type: TypeObservation, URL: res.URL, Path: "/3303/0/5700"})

	// Another instance matches neither.
	env.eng.Notify(ctx, reg, lwm2m.ResourcePath(3303, 1, 5700), []lwm2m.Record{{Path: lwm2m.ResourcePath(3303, 1, 5700), Value: 99.0}}, env.clock.Now())
	// A resource notification matches the instance subscription too.
	env.eng.Notify(ctx, reg, tempPath, temperature(21), env.clock.Now())
	r := next(t, inst.accepted, "instance notification")
	items := r.items(t)
	wantLinks := []any{
		map[string]any{"rel": "subscription", "href": "https://ds.example/subscriptions/" + is.ID},
		map[string]any{"rel": "client", "href": "https://ds.example/clients/c1"},
		map[string]any{"rel": "object", "href": "https://ds.example/clients/c1/objecttypes/3303/instances/0"},
		map[string]any{"rel": "definition", "href": "https://ds.example/objecttypes/definitions/3303"},
	}
	if items[0]["SubscriptionType"] != TypeObservation || !reflect.DeepEqual(items[0]["Links"], wantLinks) {
		t.Fatalf("item %v", items[0])
	}
	if v := value(t, r); !reflect.DeepEqual(v, map[string]any{"_path": "/3303/0", "_org": "org1", "Temperature": 21.0}) {
		t.Fatalf("instance value %v", v)
	}
	if v := value(t, next(t, res.accepted, "resource notification")); v["Temperature"] != 21.0 || v["_path"] != "/3303/0/5700" {
		t.Fatalf("resource value %v", v)
	}

	// A whole-instance notification: the instance subscription gets every
	// resource, the resource subscription its own.
	env.eng.Notify(ctx, reg, lwm2m.InstancePath(3303, 0), []lwm2m.Record{
		{Path: lwm2m.ResourcePath(3303, 0, 5700), Value: 22.0},
		{Path: lwm2m.ResourcePath(3303, 0, 5701), Value: "K"},
	}, env.clock.Now())
	if v := value(t, next(t, inst.accepted, "instance notification")); v["Temperature"] != 22.0 || v["Units"] != "K" {
		t.Fatalf("instance value %v", v)
	}
	if v := value(t, next(t, res.accepted, "resource notification")); v["Temperature"] != 22.0 || v["Units"] != nil {
		t.Fatalf("resource value %v", v)
	}
}

// Observations of an offline client are established when it registers, and
// again after every new registration.
func TestObservationEstablishedOnRegistration(t *testing.T) {
	env := newEnv(t, Config{Render: testRender})
	ctx := context.Background()
	rc := newReceiver(t, nil)
	env.dev.values[tempKey] = temperature(20)
	s := env.create(storage.Subscription{ClientID: "c1", Type: TypeObservation, URL: rc.URL, Path: "/3303/0/5700",
		Attributes: lwm2m.Attributes{Pmax: u32(300)}})
	if n, _ := env.dev.counts(tempKey); n != 0 {
		t.Fatalf("observed an offline client")
	}
	reg := env.register("c1", "org1", "ep1")
	env.eng.ClientRegistered(ctx, reg)
	next(t, env.dev.observed, "Observe after registration")
	env.eng.background.Wait()
	env.eng.ClientUpdated(ctx, reg) // already observed: nothing to do
	env.eng.background.Wait()
	if w, _ := env.dev.lastWrite(); !sameAttributes(w.attrs, lwm2m.Attributes{Pmax: u32(300)}) {
		t.Fatalf("attributes written %v", w.attrs.Query())
	}
	// The Observe response was the baseline; a change is delivered.
	env.eng.Notify(ctx, reg, tempPath, temperature(21), env.clock.Now())
	if v := value(t, next(t, rc.accepted, "notification")); v["Temperature"] != 21.0 {
		t.Fatalf("value %v", v)
	}

	env.eng.ClientDeregistered(ctx, reg)
	env.dev.values[tempKey] = temperature(30)
	env.eng.ClientRegistered(ctx, reg)
	next(t, env.dev.observed, "Observe after re-registration")
	env.eng.background.Wait()
	// The new Observe response differs from what was delivered: delivered.
	if v := value(t, next(t, rc.accepted, "re-observed value")); v["Temperature"] != 30.0 {
		t.Fatalf("value %v", v)
	}
	if n, _ := env.dev.counts(tempKey); n != 2 {
		t.Fatalf("%d Observe, want 2", n)
	}
	if err := env.eng.Delete(ctx, s.ID); err != nil {
		t.Fatal(err)
	}
}

func TestUpdateObservationAttributes(t *testing.T) {
	env := newEnv(t, Config{})
	ctx := context.Background()
	env.register("c1", "org1", "ep1")
	s := env.create(storage.Subscription{ClientID: "c1", Type: TypeObservation, URL: "http://receiver.example/", Path: "/3303/0/5700",
		Attributes: lwm2m.Attributes{Pmin: u32(1)}})
	na := lwm2m.Attributes{Pmin: u32(2), Gt: f64(30)}
	url := "http://other.example/"
	got, err := env.eng.Update(ctx, s.ID, Patch{Attributes: &na, URL: &url})
	if err != nil {
		t.Fatal(err)
	}
	if got.URL != url || !sameAttributes(got.Attributes, na) {
		t.Fatalf("updated %+v", got)
	}
	if w, _ := env.dev.lastWrite(); !sameAttributes(w.attrs, na) {
		t.Fatalf("wrote %v, want %v", w.attrs.Query(), na.Query())
	}
	stored, _ := env.store.GetSubscription(ctx, s.ID)
	if stored.URL != url || !sameAttributes(stored.Attributes, na) {
		t.Fatalf("stored %+v", stored)
	}
	bad := lwm2m.Attributes{Pmin: u32(10), Pmax: u32(1)}
	var ve *ValidationError
	if _, err := env.eng.Update(ctx, s.ID, Patch{Attributes: &bad}); !errors.As(err, &ve) {
		t.Fatalf("Update with Pmax < Pmin = %v", err)
	}
}

// TestFiltering drives each server-side rule with an injected clock. The
// last step of every case qualifies, so that any notification delivered
// wrongly shows up before it (delivery keeps order).
func TestFiltering(t *testing.T) {
	type step struct {
		advance time.Duration
		value   *float64 // nil: only let time pass
	}
	v := func(d time.Duration, x float64) step { return step{d, &x} }
	wait := func(d time.Duration) step { return step{advance: d} }
	s := time.Second
	type want struct {
		value float64
		at    time.Duration // TimeTriggered, from the start
	}
	w := func(x float64, at int) want { return want{x, time.Duration(at) * time.Second} }
	cases := []struct {
		name  string
		attrs lwm2m.Attributes
		steps []step
		want  []want
	}{
		{"any change without attributes", lwm2m.Attributes{},
			[]step{v(s, 20), v(s, 21), v(s, 21), v(s, 19)}, []want{w(21, 2), w(19, 4)}},
		{"step from the last delivered value", lwm2m.Attributes{St: f64(2)},
			[]step{v(s, 21), v(s, 22), v(s, 23), v(s, 20), v(s, 21.9), v(s, 17.5)}, []want{w(22, 2), w(20, 4), w(17.5, 6)}},
		{"greater than crossed both ways", lwm2m.Attributes{Gt: f64(25)},
			[]step{v(s, 24), v(s, 26), v(s, 30), v(s, 25), v(s, 24), v(s, 27)}, []want{w(26, 2), w(25, 4), w(27, 6)}},
		{"less than crossed both ways", lwm2m.Attributes{Lt: f64(10)},
			[]step{v(s, 15), v(s, 9), v(s, 5), v(s, 10), v(s, 12), v(s, 8)}, []want{w(9, 2), w(10, 4), w(8, 6)}},
		{"greater and less than", lwm2m.Attributes{Gt: f64(30), Lt: f64(10)},
			[]step{v(s, 35), v(s, 32), v(s, 20), v(s, 15), v(s, 5), v(s, 7), v(s, 50)}, []want{w(35, 1), w(20, 3), w(5, 5), w(50, 7)}},
		{"pmax delivers an unchanged value", lwm2m.Attributes{Pmax: u32(10), St: f64(100)},
			[]step{v(5*s, 21), v(5*s, 22), v(3*s, 23), v(7*s, 23), v(s, 500)}, []want{w(22, 10), w(23, 20), w(500, 21)}},
		{"pmin holds and delivers the latest at its end", lwm2m.Attributes{Pmin: u32(10)},
			[]step{v(2*s, 21), v(2*s, 22), wait(6 * s), v(s, 23), wait(9 * s), v(20*s, 30)}, []want{w(22, 4), w(23, 11), w(30, 40)}},
		{"after pmin a change goes at once", lwm2m.Attributes{Pmin: u32(5)},
			[]step{v(6*s, 21), v(s, 22), wait(4 * s)}, []want{w(21, 6), w(22, 7)}},
		{"pmin delivers the current state", lwm2m.Attributes{Pmin: u32(10), St: f64(5)},
			[]step{v(2*s, 30), v(2*s, 21), wait(6 * s), v(20*s, 100)}, []want{w(21, 4), w(100, 30)}},
		{"pmin and pmax together", lwm2m.Attributes{Pmin: u32(5), Pmax: u32(20), St: f64(10)},
			[]step{v(s, 21), v(19*s, 21), v(2*s, 40), wait(3 * s)}, []want{w(21, 20), w(40, 22)}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := newEnv(t, Config{Render: testRender})
			ctx := context.Background()
			reg := env.register("c1", "org1", "ep1")
			env.dev.values[tempKey] = temperature(20)
			rc := newReceiver(t, nil)
			env.create(storage.Subscription{ClientID: "c1", Type: TypeObservation, URL: rc.URL, Path: "/3303/0/5700", Attributes: tc.attrs})
			for _, st := range tc.steps {
				env.clock.Advance(st.advance)
				if st.value != nil {
					env.eng.Notify(ctx, reg, tempPath, temperature(*st.value), env.clock.Now())
				}
			}
			for i, want := range tc.want {
				r := next(t, rc.accepted, "notification "+strconv.Itoa(i))
				item := r.items(t)[0]
				got := item["Value"].(map[string]any)["Temperature"]
				if got != want.value {
					t.Fatalf("notification %d is %v, want %v (all wanted: %v)", i, got, want.value, tc.want)
				}
				if at := t0.Add(want.at).Format(timeLayout); item["TimeTriggered"] != at {
					t.Errorf("notification %d TimeTriggered %v, want %s", i, item["TimeTriggered"], at)
				}
			}
		})
	}
}

func TestCombine(t *testing.T) {
	cases := []struct {
		name string
		in   []lwm2m.Attributes
		want lwm2m.Attributes
	}{
		{"none", nil, lwm2m.Attributes{}},
		{"one", []lwm2m.Attributes{{Pmin: u32(5), Pmax: u32(60), St: f64(1), Lt: f64(10), Gt: f64(40)}},
			lwm2m.Attributes{Pmin: u32(5), Pmax: u32(60), St: f64(1), Lt: f64(10), Gt: f64(40)}},
		{"smallest pmin, pmax and st", []lwm2m.Attributes{{Pmin: u32(5), Pmax: u32(60), St: f64(1)}, {Pmin: u32(2), Pmax: u32(90), St: f64(0.5)}},
			lwm2m.Attributes{Pmin: u32(2), Pmax: u32(60), St: f64(0.5)}},
		{"pmin only when every subscription has one", []lwm2m.Attributes{{Pmin: u32(5)}, {Pmax: u32(30)}},
			lwm2m.Attributes{Pmax: u32(30)}},
		{"agreeing thresholds", []lwm2m.Attributes{{Gt: f64(40), St: f64(2)}, {Gt: f64(40), St: f64(1)}},
			lwm2m.Attributes{Gt: f64(40), St: f64(1)}},
		{"threshold of one, step of another", []lwm2m.Attributes{{Gt: f64(40)}, {St: f64(3)}},
			lwm2m.Attributes{Gt: f64(40), St: f64(3)}},
		{"disagreeing gt: every change", []lwm2m.Attributes{{Gt: f64(40), St: f64(1)}, {Gt: f64(30), St: f64(1)}},
			lwm2m.Attributes{}},
		{"disagreeing lt: every change", []lwm2m.Attributes{{Lt: f64(4)}, {Lt: f64(3)}}, lwm2m.Attributes{}},
		{"one wants every change", []lwm2m.Attributes{{Pmax: u32(10), St: f64(5)}, {Pmax: u32(20)}}, lwm2m.Attributes{Pmax: u32(10)}},
		{"combination the device would reject", []lwm2m.Attributes{{Gt: f64(20)}, {Lt: f64(10), St: f64(6)}}, lwm2m.Attributes{}},
		{"pmax 0 is no pmax", []lwm2m.Attributes{{Pmax: u32(0)}, {Pmax: u32(30)}}, lwm2m.Attributes{Pmax: u32(30)}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := combine(tc.in); !sameAttributes(got, tc.want) {
				t.Fatalf("combine = %v, want %v", got.Query(), tc.want.Query())
			}
		})
	}
}

func TestToDevice(t *testing.T) {
	cases := []struct {
		name          string
		want, written lwm2m.Attributes
		write         lwm2m.Attributes
		need          bool
	}{
		{"nothing", lwm2m.Attributes{}, lwm2m.Attributes{}, lwm2m.Attributes{}, false},
		{"fresh", lwm2m.Attributes{Pmin: u32(5)}, lwm2m.Attributes{}, lwm2m.Attributes{Pmin: u32(5)}, true},
		{"unchanged", lwm2m.Attributes{Pmin: u32(5)}, lwm2m.Attributes{Pmin: u32(5)}, lwm2m.Attributes{Pmin: u32(5)}, false},
		{"lost pmin and st are neutralised", lwm2m.Attributes{Pmax: u32(60)}, lwm2m.Attributes{Pmin: u32(5), St: f64(1)},
			lwm2m.Attributes{Pmin: u32(0), Pmax: u32(60), St: f64(0)}, true},
		{"lost gt opens the gate with st=0", lwm2m.Attributes{}, lwm2m.Attributes{Gt: f64(40)}, lwm2m.Attributes{St: f64(0)}, true},
		{"once neutralised, no more writes", lwm2m.Attributes{}, lwm2m.Attributes{Gt: f64(40), St: f64(0)}, lwm2m.Attributes{St: f64(0)}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w, need := toDevice(tc.want, tc.written)
			if need != tc.need || !sameAttributes(w, tc.write) {
				t.Fatalf("toDevice = %v, %v; want %v, %v", w.Query(), need, tc.write.Query(), tc.need)
			}
		})
	}
}

// After a restart, Start rebuilds the observations from the store and does
// not observe an online client again (the endpoint kept its observation).
func TestStartLoadsObservations(t *testing.T) {
	env := newEnv(t, Config{Render: testRender})
	ctx := context.Background()
	reg := env.register("c1", "org1", "ep1")
	env.dev.values[tempKey] = temperature(20)
	rc := newReceiver(t, nil)
	s := env.create(storage.Subscription{ClientID: "c1", Type: TypeObservation, URL: rc.URL, Path: "/3303/0/5700",
		Attributes: lwm2m.Attributes{St: f64(1)}})
	if err := env.eng.Close(); err != nil {
		t.Fatal(err)
	}
	env.start(Config{Render: testRender})
	if err := env.eng.Start(ctx); err != nil {
		t.Fatal(err)
	}
	// Without a baseline the first notification goes through, then st applies.
	for _, v := range []float64{20, 20.5, 21} {
		env.clock.Advance(time.Second)
		env.eng.Notify(ctx, reg, tempPath, temperature(v), env.clock.Now())
	}
	for _, want := range []float64{20, 21} {
		if got := value(t, next(t, rc.accepted, "notification"))["Temperature"]; got != want {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
	if n, _ := env.dev.counts(tempKey); n != 1 {
		t.Fatalf("%d Observe, want 1", n)
	}
	// Deleting through the new engine cancels the device observation.
	if err := env.eng.Delete(ctx, s.ID); err != nil {
		t.Fatal(err)
	}
	if _, c := env.dev.counts(tempKey); c != 1 {
		t.Fatalf("%d CancelObserve, want 1", c)
	}
	if err := env.eng.Start(ctx); err == nil {
		t.Fatal("second Start succeeded")
	}
}
