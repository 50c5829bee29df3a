package sim

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message/codes"

	"github.com/deviceserver/deviceserver/lwm2m"
	"github.com/deviceserver/deviceserver/lwm2m/codec"
	"github.com/deviceserver/deviceserver/lwm2m/corelink"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	t.Cleanup(cancel)
	return ctx
}

func TestRegisterUpdateDeregister(t *testing.T) {
	ts := newTestServer(t)
	d := New(Config{Endpoint: "dev1", Server: ts.addr, Lifetime: 60})
	t.Cleanup(func() { _ = d.Close() })
	if err := d.Start(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	reg := ts.next(t)
	if reg.code != codes.POST || reg.path != "/rd" {
		t.Fatalf("register %v %s", reg.code, reg.path)
	}
	wantQ := []string{"ep=dev1", "lt=60", "lwm2m=1.1", "b=U"}
	if !slices.Equal(reg.queries, wantQ) {
		t.Errorf("register query %q, want %q", reg.queries, wantQ)
	}
	if reg.format != int(lwm2m.FormatLinkFormat) {
		t.Errorf("register content format %d", reg.format)
	}
	if want := `</>;rt="oma.lwm2m";ct=110,</1/0>,</3/0>,</3303/0>`; reg.payload != want {
		t.Errorf("register payload %s, want %s", reg.payload, want)
	}
	if got := d.RegistrationPath(); got != "/rd/r1" {
		t.Errorf("RegistrationPath %q", got)
	}

	if err := d.Update(ctxT(t), false); err != nil {
		t.Fatal(err)
	}
	up := ts.next(t)
	if up.code != codes.POST || up.path != "/rd/r1" || len(up.queries) != 0 || up.payload != "" {
		t.Errorf("update %+v", up)
	}
	if err := d.Update(ctxT(t), true); err != nil {
		t.Fatal(err)
	}
	up = ts.next(t)
	if up.path != "/rd/r1" || !strings.Contains(up.payload, "</3303/0>") || up.format != int(lwm2m.FormatLinkFormat) {
		t.Errorf("update with objects %+v", up)
	}

	if err := d.Deregister(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	de := ts.next(t)
	if de.code != codes.DELETE || de.path != "/rd/r1" {
		t.Errorf("deregister %+v", de)
	}
	if d.RegistrationPath() != "" {
		t.Error("still has a registration path after Deregister")
	}
	if err := d.Update(ctxT(t), false); err == nil {
		t.Error("Update after Deregister succeeded")
	}
}

func TestRegisterVersion10AndRejection(t *testing.T) {
	ts := newTestServer(t)
	d, _ := startDeviceRaw(t, ts, Config{Endpoint: "old", Version: "1.0", Lifetime: 30})
	reg := ts.next(t)
	if want := []string{"ep=old", "lt=30", "lwm2m=1.0", "b=U"}; !slices.Equal(reg.queries, want) {
		t.Errorf("query %q, want %q", reg.queries, want)
	}
	if want := `</>;rt="oma.lwm2m",</1/0>,</3/0>,</3303/0>`; reg.payload != want {
		t.Errorf("payload %s, want %s", reg.payload, want)
	}
	// A 1.0 device answers multi-value reads in TLV by default.
	res := ts.do(t, codes.GET, "/3/0")
	if res.code != codes.Content || res.format != int(lwm2m.FormatTLV) {
		t.Fatalf("read /3/0: %v format %d", res.code, res.format)
	}
	if v := decodeValue(t, res.format, lwm2m.InstancePath(3, 0), res.payload, lwm2m.ResourcePath(3, 0, 1)); v != "lwm2m-sim" {
		t.Errorf("model %v", v)
	}
	_ = d

	ts.mu.Lock()
	ts.registerCode = codes.Forbidden
	ts.mu.Unlock()
	d2 := New(Config{Endpoint: "denied", Server: ts.addr})
	t.Cleanup(func() { _ = d2.Close() })
	err := d2.Start(ctxT(t))
	if !isServerError(err, codes.Forbidden) || !strings.HasPrefix(err.Error(), "sim: register: ") {
		t.Errorf("Start against 4.03: %v", err)
	}
}

// startDeviceRaw starts a device without consuming its Register request.
func startDeviceRaw(t *testing.T, ts *testServer, cfg Config) (*Device, *fakeClock) {
	t.Helper()
	cfg.Server = ts.addr
	d := New(cfg)
	clk := newFakeClock()
	d.clock = clk
	t.Cleanup(func() { _ = d.Close() })
	if err := d.Start(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	return d, clk
}

func TestRead(t *testing.T) {
	ts := newTestServer(t)
	startDevice(t, ts, Config{Serial: "S-42"})

	// TLV and SenML JSON of an instance.
	for _, f := range []lwm2m.ContentFormat{lwm2m.FormatTLV, lwm2m.FormatTLVLegacy, lwm2m.FormatSenMLJSON} {
		res := ts.do(t, codes.GET, "/3/0", accept(f))
		if res.code != codes.Content || res.format != int(f) {
			t.Fatalf("read /3/0 as %d: %v %d", f, res.code, res.format)
		}
		base := lwm2m.InstancePath(3, 0)
		if v := decodeValue(t, res.format, base, res.payload, lwm2m.ResourcePath(3, 0, 2)); v != "S-42" {
			t.Errorf("%d: serial %v", f, v)
		}
		if v := decodeValue(t, res.format, base, res.payload, lwm2m.ResourceInstancePath(3, 0, 6, 1)); v != int64(5) {
			t.Errorf("%d: power source 1 = %v", f, v)
		}
	}
	// Default for an object on 1.1 is SenML JSON.
	res := ts.do(t, codes.GET, "/3303")
	if res.code != codes.Content || res.format != int(lwm2m.FormatSenMLJSON) {
		t.Fatalf("read /3303: %v %d", res.code, res.format)
	}
	if v := decodeValue(t, res.format, lwm2m.ObjectPath(3303), res.payload, lwm2m.ResourcePath(3303, 0, 5701)); v != "Cel" {
		t.Errorf("units %v", v)
	}
	// Default for a single resource is text; opaque and resource instances.
	res = ts.do(t, codes.GET, "/3303/0/5700")
	if res.code != codes.Content || res.format != int(lwm2m.FormatText) || string(res.payload) != "21.5" {
		t.Errorf("read 5700: %v %d %q", res.code, res.format, res.payload)
	}
	res = ts.do(t, codes.GET, "/3/0/6/1", accept(lwm2m.FormatText))
	if res.code != codes.Content || string(res.payload) != "5" {
		t.Errorf("read /3/0/6/1: %v %q", res.code, res.payload)
	}
	res = ts.do(t, codes.GET, "/3/0/11", accept(lwm2m.FormatTLV))
	if v := decodeValue(t, res.format, lwm2m.ResourcePath(3, 0, 11), res.payload, lwm2m.ResourceInstancePath(3, 0, 11, 0)); v != int64(0) {
		t.Errorf("error code %v", v)
	}
	res = ts.do(t, codes.GET, "/3/0/13")
	if res.code != codes.Content || string(res.payload) != "1735689600" {
		t.Errorf("current time %v %q", res.code, res.payload)
	}

	for _, c := range []struct {
		path string
		opts []reqOpt
		want codes.Code
	}{
		{"/5/0", nil, codes.NotFound},
		{"/3/1", nil, codes.NotFound},
		{"/3/0/8", nil, codes.NotFound},
		{"/3/0/6/7", nil, codes.NotFound},
		{"/3/0/4", nil, codes.MethodNotAllowed},
		{"/3/0", []reqOpt{accept(lwm2m.FormatText)}, codes.NotAcceptable},
		{"/3/0/0", []reqOpt{accept(lwm2m.FormatCBOR)}, codes.NotAcceptable},
	} {
		if res := ts.do(t, codes.GET, c.path, c.opts...); res.code != c.want {
			t.Errorf("GET %s: %v, want %v", c.path, res.code, c.want)
		}
	}
}

func TestWrite(t *testing.T) {
	ts := newTestServer(t)
	d, _ := startDevice(t, ts, Config{})

	res := ts.do(t, codes.PUT, "/3/0/14", body(lwm2m.FormatText, []byte("+05:00")))
	if res.code != codes.Changed {
		t.Fatalf("write text: %v %s", res.code, res.payload)
	}
	if v, _ := d.Get(lwm2m.ResourcePath(3, 0, 14)); v != "+05:00" {
		t.Errorf("UTC offset %v", v)
	}

	// SenML JSON replace of an instance's writable resource.
	p, err := codec.Encode(lwm2m.FormatSenMLJSON, lwm2m.InstancePath(3303, 0),
		[]lwm2m.Record{{Path: lwm2m.ResourcePath(3303, 0, 5750), Value: "Cellar"}}, Resolver())
	if err != nil {
		t.Fatal(err)
	}
	if res := ts.do(t, codes.PUT, "/3303/0", body(lwm2m.FormatSenMLJSON, p)); res.code != codes.Changed {
		t.Fatalf("write SenML: %v %s", res.code, res.payload)
	}
	if v, _ := d.Get(lwm2m.ResourcePath(3303, 0, 5750)); v != "Cellar" {
		t.Errorf("application type %v", v)
	}

	// TLV partial update of the Server object's lifetime makes the device
	// tell the server with an Update carrying lt.
	p, err = codec.Encode(lwm2m.FormatTLV, lwm2m.InstancePath(1, 0),
		[]lwm2m.Record{{Path: lwm2m.ResourcePath(1, 0, 1), Value: int64(120)}}, Resolver())
	if err != nil {
		t.Fatal(err)
	}
	if res := ts.do(t, codes.POST, "/1/0", body(lwm2m.FormatTLV, p)); res.code != codes.Changed {
		t.Fatalf("write TLV: %v %s", res.code, res.payload)
	}
	up := ts.next(t)
	if up.path != "/rd/r1" || !slices.Equal(up.queries, []string{"lt=120"}) {
		t.Errorf("update after lifetime write: %+v", up)
	}

	for _, c := range []struct {
		code codes.Code
		path string
		opts []reqOpt
		want codes.Code
	}{
		{codes.PUT, "/3/0/0", []reqOpt{body(lwm2m.FormatText, []byte("x"))}, codes.MethodNotAllowed},
		{codes.PUT, "/1/0/1", []reqOpt{body(lwm2m.FormatText, []byte("soon"))}, codes.BadRequest},
		{codes.PUT, "/3/0/14", []reqOpt{body(lwm2m.FormatSenMLJSON, []byte("{not json"))}, codes.BadRequest},
		{codes.PUT, "/3/0/14", []reqOpt{body(lwm2m.FormatCBOR, []byte{0x60})}, codes.UnsupportedMediaType},
		{codes.PUT, "/3/7/14", []reqOpt{body(lwm2m.FormatText, []byte("x"))}, codes.NotFound},
		{codes.PUT, "/3/0/99", []reqOpt{body(lwm2m.FormatText, []byte("x"))}, codes.NotFound},
		{codes.PUT, "/3", []reqOpt{body(lwm2m.FormatText, []byte("x"))}, codes.MethodNotAllowed},
	} {
		if res := ts.do(t, c.code, c.path, c.opts...); res.code != c.want {
			t.Errorf("%v %s: %v, want %v", c.code, c.path, res.code, c.want)
		}
	}
	// A SenML write to an instance that includes a read-only resource.
	p, _ = codec.Encode(lwm2m.FormatSenMLJSON, lwm2m.InstancePath(3, 0),
		[]lwm2m.Record{{Path: lwm2m.ResourcePath(3, 0, 0), Value: "Evil"}}, Resolver())
	if res := ts.do(t, codes.POST, "/3/0", body(lwm2m.FormatSenMLJSON, p)); res.code != codes.MethodNotAllowed {
		t.Errorf("partial update of read-only: %v", res.code)
	}
	if v, _ := d.Get(lwm2m.ResourcePath(3, 0, 0)); v != "DeviceServer" {
		t.Errorf("manufacturer changed to %v", v)
	}
}

func TestExecute(t *testing.T) {
	ts := newTestServer(t)
	d, _ := startDevice(t, ts, Config{})

	res := ts.do(t, codes.POST, "/3/0/4", body(lwm2m.FormatText, []byte("0='soon'")))
	if res.code != codes.Changed {
		t.Fatalf("execute reboot: %v", res.code)
	}
	select {
	case ex := <-d.Executed():
		if ex.Path != lwm2m.ResourcePath(3, 0, 4) || ex.Args != "0='soon'" {
			t.Errorf("execution %+v", ex)
		}
	case <-time.After(wait):
		t.Fatal("no execution delivered")
	}
	if res := ts.do(t, codes.POST, "/3/0/0"); res.code != codes.MethodNotAllowed {
		t.Errorf("execute manufacturer: %v", res.code)
	}
	if res := ts.do(t, codes.POST, "/3/0/77"); res.code != codes.NotFound {
		t.Errorf("execute unknown: %v", res.code)
	}

	// Registration Update Trigger makes the device send an Update.
	if res := ts.do(t, codes.POST, "/1/0/8"); res.code != codes.Changed {
		t.Fatalf("execute update trigger: %v", res.code)
	}
	if up := ts.next(t); up.code != codes.POST || up.path != "/rd/r1" {
		t.Errorf("after update trigger: %+v", up)
	}
	<-d.Executed()

	// Reset Min and Max Measured Values.
	d.Set(lwm2m.ResourcePath(3303, 0, 5700), 30.0)
	d.Set(lwm2m.ResourcePath(3303, 0, 5700), 25)
	if v, _ := d.Get(lwm2m.ResourcePath(3303, 0, 5602)); v != 30.0 {
		t.Errorf("max measured %v", v)
	}
	if res := ts.do(t, codes.POST, "/3303/0/5605"); res.code != codes.Changed {
		t.Fatalf("reset min/max: %v", res.code)
	}
	if v, _ := d.Get(lwm2m.ResourcePath(3303, 0, 5602)); v != 25.0 {
		t.Errorf("max measured after reset %v", v)
	}
}

func TestCreateDelete(t *testing.T) {
	ts := newTestServer(t)
	d, _ := startDevice(t, ts, Config{})

	// TLV with an Object Instance TLV naming instance 5.
	recs := []lwm2m.Record{{Path: lwm2m.ResourcePath(3303, 5, 5750), Value: "Attic"}}
	p, err := codec.Encode(lwm2m.FormatTLV, lwm2m.ObjectPath(3303), recs, Resolver())
	if err != nil {
		t.Fatal(err)
	}
	res := ts.do(t, codes.POST, "/3303", body(lwm2m.FormatTLV, p))
	if res.code != codes.Created || res.location != "/3303/5" {
		t.Fatalf("create TLV with instance: %v %q %s", res.code, res.location, res.payload)
	}
	if v, _ := d.Get(lwm2m.ResourcePath(3303, 5, 5750)); v != "Attic" {
		t.Errorf("5750 of new instance: %v", v)
	}
	if v, _ := d.Get(lwm2m.ResourcePath(3303, 5, 5701)); v != "Cel" {
		t.Errorf("new instance lacks defaults: %v", v)
	}

	// TLV with only resources: the device picks the instance.
	p, err = codec.Encode(lwm2m.FormatTLV, lwm2m.InstancePath(3303, 9),
		[]lwm2m.Record{{Path: lwm2m.ResourcePath(3303, 9, 5750), Value: "Garage"}}, Resolver())
	if err != nil {
		t.Fatal(err)
	}
	res = ts.do(t, codes.POST, "/3303", body(lwm2m.FormatTLV, p))
	if res.code != codes.Created || res.location != "/3303/1" {
		t.Fatalf("create TLV without instance: %v %q %s", res.code, res.location, res.payload)
	}
	if v, _ := d.Get(lwm2m.ResourcePath(3303, 1, 5750)); v != "Garage" {
		t.Errorf("5750 of /3303/1: %v", v)
	}

	// SenML JSON naming instance 7.
	p, err = codec.Encode(lwm2m.FormatSenMLJSON, lwm2m.ObjectPath(3303),
		[]lwm2m.Record{{Path: lwm2m.ResourcePath(3303, 7, 5750), Value: "Porch"}}, Resolver())
	if err != nil {
		t.Fatal(err)
	}
	res = ts.do(t, codes.POST, "/3303", body(lwm2m.FormatSenMLJSON, p))
	if res.code != codes.Created || res.location != "/3303/7" {
		t.Fatalf("create SenML: %v %q %s", res.code, res.location, res.payload)
	}
	// No payload at all.
	if res := ts.do(t, codes.POST, "/3303"); res.code != codes.Created || res.location != "/3303/2" {
		t.Fatalf("create empty: %v %q", res.code, res.location)
	}
	// Existing instance, objects that do not allow Create.
	if res := ts.do(t, codes.POST, "/3303", body(lwm2m.FormatSenMLJSON, p)); res.code != codes.BadRequest {
		t.Errorf("create existing: %v", res.code)
	}
	if res := ts.do(t, codes.POST, "/3"); res.code != codes.MethodNotAllowed {
		t.Errorf("create in /3: %v", res.code)
	}

	res = ts.do(t, codes.GET, "/3303", accept(lwm2m.FormatTLV))
	recs, err = codec.Decode(lwm2m.FormatTLV, lwm2m.ObjectPath(3303), res.payload, Resolver())
	if err != nil {
		t.Fatal(err)
	}
	var insts []uint16
	for _, r := range recs {
		if r.Path.Resource == 5701 {
			insts = append(insts, r.Path.Instance)
		}
	}
	if !slices.Equal(insts, []uint16{0, 1, 2, 5, 7}) {
		t.Errorf("instances %v", insts)
	}

	if err := d.Update(ctxT(t), true); err != nil {
		t.Fatal(err)
	}
	if up := ts.next(t); !strings.HasSuffix(up.payload, "</3303/0>,</3303/1>,</3303/2>,</3303/5>,</3303/7>") {
		t.Errorf("update payload %s", up.payload)
	}

	if res := ts.do(t, codes.DELETE, "/3303/5"); res.code != codes.Deleted {
		t.Errorf("delete: %v", res.code)
	}
	if res := ts.do(t, codes.DELETE, "/3303/5"); res.code != codes.NotFound {
		t.Errorf("delete again: %v", res.code)
	}
	if res := ts.do(t, codes.GET, "/3303/5/5700"); res.code != codes.NotFound {
		t.Errorf("read deleted: %v", res.code)
	}
	if res := ts.do(t, codes.DELETE, "/3/0"); res.code != codes.MethodNotAllowed {
		t.Errorf("delete /3/0: %v", res.code)
	}
	if res := ts.do(t, codes.DELETE, "/3303/0/5700"); res.code != codes.MethodNotAllowed {
		t.Errorf("delete resource: %v", res.code)
	}
}

func TestDiscoverAndWriteAttributes(t *testing.T) {
	ts := newTestServer(t)
	d, _ := startDevice(t, ts, Config{})

	if res := ts.do(t, codes.PUT, "/3303/0/5700", query("pmin=1", "st=2")); res.code != codes.Changed {
		t.Fatalf("write attributes: %v %s", res.code, res.payload)
	}
	if res := ts.do(t, codes.PUT, "/3303/0", query("pmax=60")); res.code != codes.Changed {
		t.Fatalf("write attributes on instance: %v", res.code)
	}
	a := d.Attributes(lwm2m.ResourcePath(3303, 0, 5700))
	if a.Pmin == nil || *a.Pmin != 1 || a.St == nil || *a.St != 2 || a.Pmax != nil {
		t.Errorf("attributes %+v", a)
	}
	for _, c := range []struct {
		path string
		q    []string
	}{
		{"/3303/0/5700", []string{"foo=1"}},
		{"/3303/0/5700", []string{"pmin=x"}},
		{"/3303/0", []string{"gt=3"}}, // gt on an instance
		{"/3/0/0", []string{"st=1"}},  // st on a string
		{"/3303/0/5700", []string{"gt=10", "lt=20"}},
		{"/3303/0/5700", []string{"gt=20", "lt=10", "st=6"}}, // lt+2*st >= gt
	} {
		if res := ts.do(t, codes.PUT, c.path, query(c.q...)); res.code != codes.BadRequest {
			t.Errorf("write attributes %s %q: %v, want 4.00", c.path, c.q, res.code)
		}
	}
	if res := ts.do(t, codes.PUT, "/3303/9", query("pmin=1")); res.code != codes.NotFound {
		t.Errorf("write attributes on missing instance: %v", res.code)
	}

	res := ts.do(t, codes.GET, "/3303/0", accept(lwm2m.FormatLinkFormat))
	if res.code != codes.Content || res.format != int(lwm2m.FormatLinkFormat) {
		t.Fatalf("discover: %v %d", res.code, res.format)
	}
	links, err := corelink.Parse(res.payload)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, l := range links {
		var ps []string
		for _, p := range l.Params {
			ps = append(ps, p.Key+"="+p.Value)
		}
		got[l.Target] = strings.Join(ps, ";")
	}
	if got["/3303/0"] != "pmax=60" || got["/3303/0/5700"] != "pmin=1;st=2" {
		t.Errorf("discover %s", res.payload)
	}
	if _, ok := got["/3303/0/5605"]; !ok || len(links) != 9 {
		t.Errorf("discover lists %d links: %s", len(links), res.payload)
	}

	res = ts.do(t, codes.GET, "/3/0/6", accept(lwm2m.FormatLinkFormat))
	if string(res.payload) != "</3/0/6>;dim=2,</3/0/6/0>,</3/0/6/1>" {
		t.Errorf("discover multi resource: %s", res.payload)
	}
	res = ts.do(t, codes.GET, "/1", accept(lwm2m.FormatLinkFormat))
	if !strings.HasPrefix(string(res.payload), "</1>,</1/0>,</1/0/0>,") {
		t.Errorf("discover object: %s", res.payload)
	}
	if res := ts.do(t, codes.GET, "/4", accept(lwm2m.FormatLinkFormat)); res.code != codes.NotFound {
		t.Errorf("discover unknown object: %v", res.code)
	}

	// Removing an attribute with a bare key.
	if res := ts.do(t, codes.PUT, "/3303/0/5700", query("st")); res.code != codes.Changed {
		t.Fatalf("unset st: %v", res.code)
	}
	if a := d.Attributes(lwm2m.ResourcePath(3303, 0, 5700)); a.St != nil || a.Pmin == nil {
		t.Errorf("after unset %+v", a)
	}
}

// notifValue decodes the temperature out of a notification.
func notifValue(t *testing.T, n notif) float64 {
	t.Helper()
	if n.code != codes.Content {
		t.Fatalf("notification code %v", n.code)
	}
	p := lwm2m.ResourcePath(3303, 0, 5700)
	v, ok := decodeValue(t, n.format, p, n.payload, p).(float64)
	if !ok {
		t.Fatalf("value is not a float")
	}
	return v
}

func TestObserveAttributes(t *testing.T) {
	ts := newTestServer(t)
	d, clk := startDevice(t, ts, Config{})
	temp := lwm2m.ResourcePath(3303, 0, 5700)

	if res := ts.do(t, codes.PUT, "/3303/0/5700", query("pmin=1", "st=2")); res.code != codes.Changed {
		t.Fatal(res.code)
	}
	first, ch, cancel := ts.observe(t, "/3303/0/5700", lwm2m.FormatSenMLJSON)
	if first.format != int(lwm2m.FormatSenMLJSON) || notifValue(t, first) != 21.5 {
		t.Fatalf("observe answer %+v", first)
	}
	sent := d.notifyCount()

	// Below the step: nothing, even after pmin.
	d.Set(temp, 22.5)
	clk.Advance(2 * time.Second)
	if d.notifyCount() != sent {
		t.Fatal("change below st was notified")
	}
	// At least the step, pmin elapsed: at once.
	d.Set(temp, 23.5)
	n := nextNotif(t, ch)
	if v := notifValue(t, n); v != 23.5 {
		t.Errorf("notified %v, want 23.5", v)
	}
	if n.observe <= first.observe {
		t.Errorf("observe sequence %d after %d", n.observe, first.observe)
	}
	// Within pmin: held back, then the latest value when pmin elapses.
	d.Set(temp, 26)
	d.Set(temp, 27)
	if d.notifyCount() != sent+1 {
		t.Fatal("notified before pmin elapsed")
	}
	clk.Advance(999 * time.Millisecond)
	if d.notifyCount() != sent+1 {
		t.Fatal("notified before pmin elapsed")
	}
	clk.Advance(time.Millisecond)
	if v := notifValue(t, nextNotif(t, ch)); v != 27 {
		t.Errorf("notified %v after pmin, want the latest 27", v)
	}

	// gt: only crossings count.
	if res := ts.do(t, codes.PUT, "/3303/0/5700", query("st", "gt=30")); res.code != codes.Changed {
		t.Fatal(res.code)
	}
	clk.Advance(5 * time.Second)
	d.Set(temp, 29) // no crossing
	if d.notifyCount() != sent+2 {
		t.Fatal("change without crossing gt was notified")
	}
	d.Set(temp, 31) // crosses upward
	if v := notifValue(t, nextNotif(t, ch)); v != 31 {
		t.Errorf("notified %v on crossing gt, want 31", v)
	}
	clk.Advance(5 * time.Second)
	d.Set(temp, 35) // still above
	if d.notifyCount() != sent+3 {
		t.Fatal("change above gt was notified")
	}
	d.Set(temp, 28) // crosses downward
	if v := notifValue(t, nextNotif(t, ch)); v != 28 {
		t.Errorf("notified %v on crossing gt downward, want 28", v)
	}

	// pmax: a notification even without change.
	if res := ts.do(t, codes.PUT, "/3303/0/5700", query("pmax=10")); res.code != codes.Changed {
		t.Fatal(res.code)
	}
	clk.Advance(10 * time.Second)
	if v := notifValue(t, nextNotif(t, ch)); v != 28 {
		t.Errorf("pmax notification %v", v)
	}
	clk.Advance(10 * time.Second)
	if v := notifValue(t, nextNotif(t, ch)); v != 28 {
		t.Errorf("second pmax notification %v", v)
	}

	// Cancel with Observe=1: no more notifications.
	cancel()
	before := d.notifyCount()
	clk.Advance(time.Minute)
	d.Set(temp, 50)
	if d.notifyCount() != before {
		t.Error("notified after cancel")
	}
}

func TestObserveInstanceTLVAndReset(t *testing.T) {
	ts := newTestServer(t)
	d, clk := startDevice(t, ts, Config{})

	first, ch, _ := ts.observe(t, "/3303/0", lwm2m.FormatTLV)
	if first.code != codes.Content || first.format != int(lwm2m.FormatTLV) {
		t.Fatalf("observe answer %+v", first)
	}
	// Default pmin is 0: each Set notifies, with Min/Max Measured following.
	d.Set(lwm2m.ResourcePath(3303, 0, 5700), -3.25)
	n := nextNotif(t, ch)
	base := lwm2m.InstancePath(3303, 0)
	if v := decodeValue(t, n.format, base, n.payload, lwm2m.ResourcePath(3303, 0, 5601)); v != -3.25 {
		t.Errorf("min measured %v", v)
	}
	// Writes by the server are notified too.
	if res := ts.do(t, codes.PUT, "/3303/0/5750", body(lwm2m.FormatText, []byte("Fridge"))); res.code != codes.Changed {
		t.Fatal(res.code)
	}
	n = nextNotif(t, ch)
	if v := decodeValue(t, n.format, base, n.payload, lwm2m.ResourcePath(3303, 0, 5750)); v != "Fridge" {
		t.Errorf("application type %v", v)
	}
	// Changes elsewhere are not.
	before := d.notifyCount()
	d.Set(lwm2m.ResourcePath(3, 0, 9), 80)
	if d.notifyCount() != before {
		t.Error("change to /3/0/9 notified an observation of /3303/0")
	}
	// Deleting the instance ends the observation with a 4.04 notification.
	if res := ts.do(t, codes.DELETE, "/3303/0"); res.code != codes.Deleted {
		t.Fatal(res.code)
	}
	if n := nextNotif(t, ch); n.code != codes.NotFound {
		t.Errorf("notification after delete: %v", n.code)
	}
	d.mu.Lock()
	left := len(d.obs)
	d.mu.Unlock()
	if left != 0 {
		t.Errorf("%d observations left", left)
	}
	_ = clk
}

func TestObserveCancelledByReset(t *testing.T) {
	ts := newTestServer(t)
	d, _ := startDevice(t, ts, Config{})
	_, ch, _ := ts.observe(t, "/3/0/9", lwm2m.FormatText)
	d.Set(lwm2m.ResourcePath(3, 0, 9), 90)
	n := nextNotif(t, ch)
	if string(n.payload) != "90" {
		t.Errorf("notification %q", n.payload)
	}
	ts.reset(t, n.mid)
	// The device handles its socket in order: once this answer is back,
	// the RST has been processed.
	ts.do(t, codes.GET, "/3/0/9")
	d.mu.Lock()
	left := len(d.obs)
	d.mu.Unlock()
	if left != 0 {
		t.Errorf("RST left %d observations", left)
	}
}

func TestThresholdMet(t *testing.T) {
	f := func(x float64) *float64 { return &x }
	for _, c := range []struct {
		last, cur float64
		e         effective
		want      bool
	}{
		{20, 21, effective{st: f(2)}, false},
		{20, 22, effective{st: f(2)}, true},
		{20, 18, effective{st: f(2)}, true},
		{20, 26, effective{gt: f(25)}, true},
		{26, 24, effective{gt: f(25)}, true},
		{26, 30, effective{gt: f(25)}, false},
		{10, 4, effective{lt: f(5)}, true},
		{4, 3, effective{lt: f(5)}, false},
		{4, 3, effective{lt: f(5), st: f(1)}, true},
	} {
		if got := thresholdMet(c.last, c.cur, c.e); got != c.want {
			t.Errorf("thresholdMet(%v, %v, %+v) = %v", c.last, c.cur, c.e, got)
		}
	}
}

func TestAutoUpdateAndReregister(t *testing.T) {
	ts := newTestServer(t)
	// Lifetime 2s: an Update is due after 1s.
	startDevice(t, ts, Config{Lifetime: 2})
	if up := ts.next(t); up.code != codes.POST || up.path != "/rd/r1" {
		t.Fatalf("auto update %+v", up)
	}
	// The server lost the registration: the device registers again.
	ts.mu.Lock()
	ts.updateCode = codes.NotFound
	ts.mu.Unlock()
	if up := ts.next(t); up.path != "/rd/r1" {
		t.Fatalf("second update %+v", up)
	}
	if reg := ts.next(t); reg.path != "/rd" || !slices.Contains(reg.queries, "ep=dev1") {
		t.Fatalf("re-register %+v", reg)
	}
}

func TestLightDeviceDoesNotUpdate(t *testing.T) {
	ts := newTestServer(t)
	d, _ := startDevice(t, ts, Config{Lifetime: 1, Light: true, VaryEvery: time.Millisecond})
	d.mu.Lock()
	loop := d.stopLoop
	d.mu.Unlock()
	if loop != nil {
		t.Error("light device started its update loop")
	}
	// It still answers the server.
	if res := ts.do(t, codes.GET, "/3/0/9"); res.code != codes.Content || string(res.payload) != "100" {
		t.Errorf("read: %v %q", res.code, res.payload)
	}
	if err := d.Deregister(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if r := ts.next(t); r.code != codes.DELETE {
		t.Errorf("got %+v, want only the de-register", r)
	}
}

func TestManyNotificationsIncludingCON(t *testing.T) {
	ts := newTestServer(t)
	d, _ := startDevice(t, ts, Config{})
	first, ch, _ := ts.observe(t, "/3/0/9", lwm2m.FormatText)
	last := first.observe
	for i := range 2 * conEvery {
		d.Set(lwm2m.ResourcePath(3, 0, 9), 50+i)
		n := nextNotif(t, ch)
		if want := strconv.Itoa(50 + i); string(n.payload) != want || n.observe <= last {
			t.Fatalf("notification %d: %q observe %d after %d", i, n.payload, n.observe, last)
		}
		last = n.observe
	}
	d.mu.Lock()
	left := len(d.obs)
	d.mu.Unlock()
	if left != 1 {
		t.Errorf("observation ended after CON notifications")
	}
}

func TestSetAndGet(t *testing.T) {
	d := New(Config{Endpoint: "x"})
	t.Cleanup(func() { _ = d.Close() })
	d.Set(lwm2m.ResourcePath(3303, 0, 5700), float32(-1.5))
	if v, ok := d.Get(lwm2m.ResourcePath(3303, 0, 5700)); !ok || v != -1.5 {
		t.Errorf("temperature %v %v", v, ok)
	}
	if v, _ := d.Get(lwm2m.ResourcePath(3303, 0, 5601)); v != -1.5 {
		t.Errorf("min measured %v", v)
	}
	d.Set(lwm2m.ResourceInstancePath(3, 0, 7, 1), 4200)
	v, ok := d.Get(lwm2m.ResourcePath(3, 0, 7))
	if m, _ := v.(map[uint16]any); !ok || m[1] != int64(4200) || m[0] != int64(3800) {
		t.Errorf("voltages %v", v)
	}
	// Invalid sets are ignored.
	d.Set(lwm2m.ResourcePath(3303, 0, 5700), "hot")
	d.Set(lwm2m.ResourcePath(3, 0, 7), 1)
	d.Set(lwm2m.ResourcePath(3303, 4, 5700), 1.0)
	if v, _ := d.Get(lwm2m.ResourcePath(3303, 0, 5700)); v != -1.5 {
		t.Errorf("temperature after bad sets %v", v)
	}
	if _, ok := d.Get(lwm2m.ResourcePath(3303, 4, 5700)); ok {
		t.Error("value for a missing instance")
	}
	if err := d.Update(ctxT(t), false); err == nil {
		t.Error("Update before Start succeeded")
	}
}
