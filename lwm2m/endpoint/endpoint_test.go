package endpoint

import (
	"context"
	"errors"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	"github.com/plgd-dev/go-coap/v3/udp/coder"

	"github.com/deviceserver/deviceserver/lwm2m"
	"github.com/deviceserver/deviceserver/lwm2m/codec"
	"github.com/deviceserver/deviceserver/storage"
)

const payload11 = `</>;rt="oma.lwm2m";ct=110,</1/0>,</3/0>,</3303>;ver=1.1,</3303/0>`

func TestRegister(t *testing.T) {
	h := startServer(t, Config{}, nil)
	tests := []struct {
		name    string
		query   string
		payload string
		code    codes.Code
		diag    string // substring of the 4.00 diagnostic
		check   func(t *testing.T, reg lwm2m.Registration)
	}{
		{
			name: "1.1 wakaama", query: "ep=reg-wakaama&lt=300&lwm2m=1.1&b=U", payload: payload11, code: codes.Created,
			check: func(t *testing.T, reg lwm2m.Registration) {
				want := []lwm2m.LinkedObject{
					{Path: lwm2m.InstancePath(1, 0)}, {Path: lwm2m.InstancePath(3, 0)},
					{Path: lwm2m.ObjectPath(3303), Version: "1.1"}, {Path: lwm2m.InstancePath(3303, 0)},
				}
				if reg.Version != "1.1" || reg.Lifetime != 300 || reg.Binding != "U" || reg.QueueMode ||
					reg.RootPath != "/" || !reflect.DeepEqual(reg.ContentFormats, []lwm2m.ContentFormat{110}) ||
					!reflect.DeepEqual(reg.Objects, want) {
					t.Errorf("registration %+v", reg)
				}
			},
		},
		{
			name: "1.0 defaults", query: "ep=reg-10", payload: "</1/0>,</3/0>", code: codes.Created,
			check: func(t *testing.T, reg lwm2m.Registration) {
				if reg.Version != "1.0" || reg.Lifetime != 86400 || reg.Binding != "U" || len(reg.Objects) != 2 {
					t.Errorf("registration %+v", reg)
				}
				if got := reg.ExpiresAt.Sub(reg.LastUpdate); got != 86400*time.Second {
					t.Errorf("ExpiresAt - LastUpdate = %v", got)
				}
			},
		},
		{
			name: "1.2 anjay", query: "ep=reg-12&lt=86400&lwm2m=1.2", payload: "</1>;ver=1.2,</1/1>,</3/0>", code: codes.Created,
			check: func(t *testing.T, reg lwm2m.Registration) {
				if reg.Version != "1.2" || reg.Binding != "U" {
					t.Errorf("registration %+v", reg)
				}
			},
		},
		{
			name: "queue and alternate path", query: "ep=reg-q&lwm2m=1.1&Q", payload: `</lw>;rt="oma.lwm2m";ct="110 11542",</lw/3/0>`, code: codes.Created,
			check: func(t *testing.T, reg lwm2m.Registration) {
				if !reg.QueueMode || reg.RootPath != "/lw" || len(reg.ContentFormats) != 2 {
					t.Errorf("registration %+v", reg)
				}
			},
		},
		{name: "version 2.0", query: "ep=reg-bad&lwm2m=2.0", payload: "</3/0>", code: codes.BadRequest, diag: "unsupported LwM2M version"},
		{name: "no ep", query: "lt=60", payload: "</3/0>", code: codes.BadRequest, diag: "missing endpoint name"},
		{name: "bad lifetime", query: "ep=x&lt=-1", payload: "</3/0>", code: codes.BadRequest, diag: "invalid lifetime"},
		{name: "bad binding", query: "ep=x&b=Z", payload: "</3/0>", code: codes.BadRequest, diag: "invalid binding"},
		{name: "bad payload", query: "ep=x", payload: "</3/0", code: codes.BadRequest, diag: "malformed link payload"},
		{name: "binary payload", query: "ep=x", payload: "\x00\xff\x01", code: codes.BadRequest, diag: "malformed link payload"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newDevice(t, h.addr)
			code, loc, diag := d.post(t, "/rd", tt.query, tt.payload)
			if code != tt.code {
				t.Fatalf("code %v (%q), want %v", code, diag, tt.code)
			}
			if tt.code != codes.Created {
				if !strings.Contains(diag, tt.diag) {
					t.Fatalf("diagnostic %q, want %q", diag, tt.diag)
				}
				return
			}
			ev := h.waitEvent(t, EventRegistered)
			reg := ev.Registration
			if len(loc) != 2 || loc[1] != reg.ID {
				t.Fatalf("Location-Path %q, registration ID %q", loc, reg.ID)
			}
			if reg.Organisation != "org1" || reg.Transport != "udp" || reg.Address != d.cc.LocalAddr().String() {
				t.Errorf("org %q transport %q address %q (device %s)", reg.Organisation, reg.Transport, reg.Address, d.cc.LocalAddr())
			}
			stored, err := h.store.GetRegistration(context.Background(), reg.ID)
			if err != nil {
				t.Fatalf("stored: %v", err)
			}
			if stored.Endpoint != reg.Endpoint || stored.Lifetime != reg.Lifetime {
				t.Errorf("stored %+v", stored)
			}
			tt.check(t, reg)
		})
	}
	t.Run("not found and method", func(t *testing.T) {
		d := newDevice(t, h.addr)
		if code, _, _ := d.post(t, "/other", "", ""); code != codes.NotFound {
			t.Errorf("POST /other: %v", code)
		}
		if code := d.update(t, "nosuchid", "lt=60", ""); code != codes.NotFound {
			t.Errorf("update unknown: %v", code)
		}
		if code := d.deregister(t, "nosuchid"); code != codes.NotFound {
			t.Errorf("deregister unknown: %v", code)
		}
	})
}

func registerDevice(t *testing.T, h *harness, ep, query, payload string) (*device, lwm2m.Registration) {
	t.Helper()
	d := newDevice(t, h.addr)
	id := d.register(t, "ep="+ep+"&"+query, payload)
	ev := h.waitEvent(t, EventRegistered)
	if ev.Registration.ID != id {
		t.Fatalf("event for %q, registered %q", ev.Registration.ID, id)
	}
	return d, ev.Registration
}

func TestUpdateChangesAddressAndLifetime(t *testing.T) {
	h := startServer(t, Config{}, nil)
	d, reg := registerDevice(t, h, "upd", "lt=100&lwm2m=1.1", payload11)

	// The same device after a NAT rebinding: a new source port.
	d2 := newDevice(t, h.addr)
	if code := d2.update(t, reg.ID, "lt=200", "</3/0>,</5/0>"); code != codes.Changed {
		t.Fatalf("update: %v", code)
	}
	ev := h.waitEvent(t, EventUpdated)
	got := ev.Registration
	if got.ID != reg.ID || got.Lifetime != 200 || got.Address != d2.cc.LocalAddr().String() || len(got.Objects) != 2 {
		t.Fatalf("updated %+v", got)
	}
	if !got.LastUpdate.After(reg.LastUpdate) || got.ExpiresAt.Sub(got.LastUpdate) != 200*time.Second || !got.RegisteredAt.Equal(reg.RegisteredAt) {
		t.Errorf("times: registered %v last %v expires %v", got.RegisteredAt, got.LastUpdate, got.ExpiresAt)
	}
	if got.RootPath != "/" || len(got.ContentFormats) != 1 {
		t.Errorf("update without root link changed root/ct: %+v", got)
	}
	stored, err := h.store.GetRegistration(context.Background(), reg.ID)
	if err != nil || stored.Address != got.Address || stored.Lifetime != 200 {
		t.Fatalf("stored %+v, %v", stored, err)
	}

	// Downlink now goes to the new address.
	d2.setResponder(func(rq devRequest) devResponse {
		return devResponse{Code: codes.Content, CF: 0, Payload: []byte("new"), Observe: -1}
	})
	d.setResponder(func(rq devRequest) devResponse {
		t.Errorf("old address got %v %s", rq.Code, rq.Path)
		return devResponse{Code: codes.Content, CF: 0, Payload: []byte("old"), Observe: -1}
	})
	recs, err := h.srv.Read(context.Background(), reg.ID, lwm2m.ResourcePath(3, 0, 0))
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if len(recs) != 1 || recs[0].Value != "new" {
		t.Fatalf("read %+v", recs)
	}

	// Empty update: only refreshes.
	if code := d2.update(t, reg.ID, "", ""); code != codes.Changed {
		t.Fatalf("empty update: %v", code)
	}
	if ev := h.waitEvent(t, EventUpdated); ev.Registration.Lifetime != 200 || len(ev.Registration.Objects) != 2 {
		t.Fatalf("empty update changed %+v", ev.Registration)
	}
	if code := d2.update(t, reg.ID, "lt=zero", ""); code != codes.BadRequest {
		t.Fatalf("bad update: %v", code)
	}
}

func TestDeregister(t *testing.T) {
	h := startServer(t, Config{}, nil)
	d, reg := registerDevice(t, h, "dereg", "lwm2m=1.1", payload11)
	if code := d.deregister(t, reg.ID); code != codes.Deleted {
		t.Fatalf("deregister: %v", code)
	}
	ev := h.waitEvent(t, EventDeregistered)
	if ev.Registration.ID != reg.ID || ev.Registration.Endpoint != "dereg" {
		t.Fatalf("event %+v", ev.Registration)
	}
	if _, err := h.store.GetRegistration(context.Background(), reg.ID); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("stored after deregister: %v", err)
	}
	if _, err := h.srv.Read(context.Background(), reg.ID, lwm2m.ResourcePath(3, 0, 0)); !errors.Is(err, lwm2m.ErrClientNotFound) {
		t.Fatalf("read after deregister: %v", err)
	}
	if code := d.deregister(t, reg.ID); code != codes.NotFound {
		t.Fatalf("second deregister: %v", code)
	}
	if code := d.update(t, reg.ID, "", ""); code != codes.NotFound {
		t.Fatalf("update after deregister: %v", code)
	}
}

func TestExpiry(t *testing.T) {
	h := startServer(t, Config{ExpiryCheckInterval: 20 * time.Millisecond}, nil)
	_, reg := registerDevice(t, h, "short", "lt=1", "</3/0>")
	_, long := registerDevice(t, h, "long", "lt=3600", "</3/0>")
	ev := h.waitEvent(t, EventExpired)
	if ev.Registration.ID != reg.ID {
		t.Fatalf("expired %q, want %q", ev.Registration.ID, reg.ID)
	}
	if _, err := h.store.GetRegistration(context.Background(), reg.ID); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("stored after expiry: %v", err)
	}
	// Once: another check now finds nothing more to expire. A check
	// delivers its events before it returns.
	h.srv.expire(context.Background(), time.Now())
	h.noEvent(t, EventExpired)
	if _, err := h.store.GetRegistration(context.Background(), long.ID); err != nil {
		t.Fatalf("long-lived registration gone: %v", err)
	}
}

// dialAddr is the address a device on this host dials for a listener
// address (a wildcard listener is reached on 127.0.0.1).
func dialAddr(t *testing.T, listen string) string {
	t.Helper()
	_, port, err := net.SplitHostPort(listen)
	if err != nil {
		t.Fatal(err)
	}
	return net.JoinHostPort("127.0.0.1", port)
}

func TestReregisterKeepsIDAcrossRestart(t *testing.T) {
	for _, listen := range []string{"127.0.0.1:0", ":0"} {
		t.Run(listen, func(t *testing.T) { testReregisterKeepsIDAcrossRestart(t, listen) })
	}
}

func testReregisterKeepsIDAcrossRestart(t *testing.T, listen string) {
	dir := t.TempDir()
	st := openStore(t, dir)
	defer st.Close()
	h := startServer(t, Config{Addr: listen}, st)
	h.addr = dialAddr(t, h.addr)
	d, reg := registerDevice(t, h, "keep", "lt=300&lwm2m=1.1", payload11)

	// Re-register from the same device: same ID, replaced registration.
	id := d.register(t, "ep=keep&lt=600&lwm2m=1.0", "</3/0>")
	if id != reg.ID {
		t.Fatalf("re-register got ID %q, want %q", id, reg.ID)
	}
	ev := h.waitEvent(t, EventRegistered)
	if ev.Registration.Version != "1.0" || ev.Registration.Lifetime != 600 || len(ev.Registration.Objects) != 1 {
		t.Fatalf("replaced registration %+v", ev.Registration)
	}

	// Restart on the same port; the device keeps its socket.
	_, port, _ := net.SplitHostPort(h.srv.Addr().String())
	host, _, _ := net.SplitHostPort(listen)
	if err := h.srv.Close(); err != nil {
		t.Fatal(err)
	}
	h2 := startServer(t, Config{Addr: net.JoinHostPort(host, port)}, st)
	h2.addr = dialAddr(t, h2.addr)
	// A notification-like message from the device before any downlink
	// makes go-coap create its connection for the concrete local address.
	d.notify(t, []byte{9, 9, 9, 9}, 1, message.TextPlain, []byte("x"), true)

	// Downlink to the stored address works before the device says anything.
	d.setResponder(func(rq devRequest) devResponse {
		return devResponse{Code: codes.Content, CF: 0, Payload: []byte("Acme"), Observe: -1}
	})
	recs, err := h2.srv.Read(context.Background(), reg.ID, lwm2m.ResourcePath(3, 0, 0))
	if err != nil || len(recs) != 1 || recs[0].Value != "Acme" {
		t.Fatalf("read after restart: %+v %v", recs, err)
	}
	if code := d.update(t, reg.ID, "lt=900", ""); code != codes.Changed {
		t.Fatalf("update after restart: %v", code)
	}
	if ev := h2.waitEvent(t, EventUpdated); ev.Registration.Lifetime != 900 || ev.Registration.ID != reg.ID {
		t.Fatalf("updated %+v", ev.Registration)
	}
	if id := d.register(t, "ep=keep", "</3/0>"); id != reg.ID {
		t.Fatalf("re-register after restart got ID %q, want %q", id, reg.ID)
	}
}

func TestDownlink11(t *testing.T) {
	h := startServer(t, Config{}, nil)
	d, reg := registerDevice(t, h, "dl11", "lwm2m=1.1", payload11)
	ctx := context.Background()
	res := testModels{}.Resolver("")
	inst30 := []lwm2m.Record{
		{Path: lwm2m.ResourcePath(3, 0, 0), Value: "Acme"},
		{Path: lwm2m.ResourcePath(3, 0, 9), Value: int64(87)},
	}
	senml, err := codec.Encode(lwm2m.FormatSenMLJSON, lwm2m.InstancePath(3, 0), inst30, res)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("read instance", func(t *testing.T) {
		d.setResponder(func(rq devRequest) devResponse {
			return devResponse{Code: codes.Content, CF: 110, Payload: senml, Observe: -1}
		})
		recs, err := h.srv.Read(ctx, reg.ID, lwm2m.InstancePath(3, 0))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(recs, inst30) {
			t.Fatalf("read %+v", recs)
		}
		rq := d.nextRequest(t)
		if rq.Code != codes.GET || rq.Path != "/3/0" || rq.Accept != 110 {
			t.Fatalf("device got %+v", rq)
		}
	})
	t.Run("read resource as text", func(t *testing.T) {
		d.setResponder(func(rq devRequest) devResponse {
			return devResponse{Code: codes.Content, CF: 0, Payload: []byte("87"), Observe: -1}
		})
		recs, err := h.srv.Read(ctx, reg.ID, lwm2m.ResourcePath(3, 0, 9))
		if err != nil || len(recs) != 1 || recs[0].Value != int64(87) {
			t.Fatalf("read %+v %v", recs, err)
		}
		d.nextRequest(t)
	})
	t.Run("device 4.04", func(t *testing.T) {
		d.setResponder(func(rq devRequest) devResponse {
			return devResponse{Code: codes.NotFound, CF: 0, Payload: []byte("no such instance"), Observe: -1}
		})
		_, err := h.srv.Read(ctx, reg.ID, lwm2m.InstancePath(3, 7))
		var de *lwm2m.DeviceError
		if !errors.As(err, &de) {
			t.Fatalf("error %v, want DeviceError", err)
		}
		if de.Code != uint8(codes.NotFound) || de.Class() != 4 || de.Detail() != 4 || de.Op != "read" || de.Msg != "no such instance" {
			t.Fatalf("DeviceError %+v", de)
		}
		if !strings.HasPrefix(err.Error(), "endpoint: read /3/7: ") {
			t.Fatalf("error text %q", err)
		}
		d.nextRequest(t)
	})
	t.Run("write single text", func(t *testing.T) {
		d.setResponder(func(rq devRequest) devResponse { return devResponse{Code: codes.Changed, CF: -1, Observe: -1} })
		err := h.srv.Write(ctx, reg.ID, lwm2m.ResourcePath(3, 0, 9), []lwm2m.Record{{Path: lwm2m.ResourcePath(3, 0, 9), Value: int64(42)}}, false)
		if err != nil {
			t.Fatal(err)
		}
		rq := d.nextRequest(t)
		if rq.Code != codes.PUT || rq.Path != "/3/0/9" || rq.CF != 0 || string(rq.Payload) != "42" {
			t.Fatalf("device got %+v %q", rq, rq.Payload)
		}
	})
	t.Run("write single opaque", func(t *testing.T) {
		err := h.srv.Write(ctx, reg.ID, lwm2m.ResourcePath(5, 0, 0), []lwm2m.Record{{Path: lwm2m.ResourcePath(5, 0, 0), Value: []byte{1, 2, 3}}}, true)
		if err != nil {
			t.Fatal(err)
		}
		rq := d.nextRequest(t)
		if rq.Code != codes.PUT || rq.CF != 42 || string(rq.Payload) != "\x01\x02\x03" {
			t.Fatalf("device got %+v", rq)
		}
	})
	t.Run("partial update senml", func(t *testing.T) {
		if err := h.srv.Write(ctx, reg.ID, lwm2m.InstancePath(3, 0), inst30, false); err != nil {
			t.Fatal(err)
		}
		rq := d.nextRequest(t)
		if rq.Code != codes.POST || rq.Path != "/3/0" || rq.CF != 110 {
			t.Fatalf("device got %+v", rq)
		}
		recs, err := codec.Decode(110, lwm2m.InstancePath(3, 0), rq.Payload, res)
		if err != nil || !reflect.DeepEqual(recs, inst30) {
			t.Fatalf("payload %s decodes to %+v %v", rq.Payload, recs, err)
		}
	})
	t.Run("replace", func(t *testing.T) {
		if err := h.srv.Write(ctx, reg.ID, lwm2m.InstancePath(3, 0), inst30, true); err != nil {
			t.Fatal(err)
		}
		if rq := d.nextRequest(t); rq.Code != codes.PUT || rq.CF != 110 {
			t.Fatalf("device got %+v", rq)
		}
	})
	t.Run("execute", func(t *testing.T) {
		if err := h.srv.Execute(ctx, reg.ID, lwm2m.ResourcePath(3, 0, 4), ""); err != nil {
			t.Fatal(err)
		}
		if rq := d.nextRequest(t); rq.Code != codes.POST || rq.Path != "/3/0/4" || len(rq.Payload) != 0 || rq.CF != -1 {
			t.Fatalf("device got %+v", rq)
		}
		if err := h.srv.Execute(ctx, reg.ID, lwm2m.ResourcePath(3, 0, 4), "0='now'"); err != nil {
			t.Fatal(err)
		}
		if rq := d.nextRequest(t); rq.Code != codes.POST || string(rq.Payload) != "0='now'" || rq.CF != 0 {
			t.Fatalf("device got %+v", rq)
		}
		if err := h.srv.Execute(ctx, reg.ID, lwm2m.InstancePath(3, 0), ""); err == nil {
			t.Fatal("execute on an instance accepted")
		}
	})
	t.Run("create", func(t *testing.T) {
		d.setResponder(func(rq devRequest) devResponse {
			return devResponse{Code: codes.Created, CF: -1, Observe: -1, Opts: []message.Option{
				{ID: message.LocationPath, Value: []byte("3303")}, {ID: message.LocationPath, Value: []byte("4")}}}
		})
		recs := []lwm2m.Record{{Path: lwm2m.ResourcePath(3303, 4, 5701), Value: "Cel"}}
		p, err := h.srv.Create(ctx, reg.ID, lwm2m.ObjectPath(3303), recs)
		if err != nil {
			t.Fatal(err)
		}
		if p != lwm2m.InstancePath(3303, 4) {
			t.Fatalf("created %v", p)
		}
		rq := d.nextRequest(t)
		if rq.Code != codes.POST || rq.Path != "/3303" || rq.CF != 110 {
			t.Fatalf("device got %+v", rq)
		}
		got, err := codec.Decode(110, lwm2m.ObjectPath(3303), rq.Payload, res)
		if err != nil || !reflect.DeepEqual(got, recs) {
			t.Fatalf("payload %s: %+v %v", rq.Payload, got, err)
		}
		// Without Location-Path the records say which instance.
		d.setResponder(func(rq devRequest) devResponse { return devResponse{Code: codes.Created, CF: -1, Observe: -1} })
		recs[0].Path = lwm2m.ResourcePath(3303, 9, 5701)
		if p, err := h.srv.Create(ctx, reg.ID, lwm2m.ObjectPath(3303), recs); err != nil || p != lwm2m.InstancePath(3303, 9) {
			t.Fatalf("create without location: %v %v", p, err)
		}
		d.nextRequest(t)
	})
	t.Run("delete", func(t *testing.T) {
		d.setResponder(func(rq devRequest) devResponse { return devResponse{Code: codes.Deleted, CF: -1, Observe: -1} })
		if err := h.srv.Delete(ctx, reg.ID, lwm2m.InstancePath(3303, 4)); err != nil {
			t.Fatal(err)
		}
		if rq := d.nextRequest(t); rq.Code != codes.DELETE || rq.Path != "/3303/4" {
			t.Fatalf("device got %+v", rq)
		}
	})
	t.Run("discover", func(t *testing.T) {
		d.setResponder(func(rq devRequest) devResponse {
			return devResponse{Code: codes.Content, CF: 40, Payload: []byte("</3/0>,</3/0/1>;pmin=10,</3/0/2>"), Observe: -1}
		})
		links, err := h.srv.Discover(ctx, reg.ID, lwm2m.InstancePath(3, 0))
		if err != nil {
			t.Fatal(err)
		}
		if len(links) != 3 || links[1].Target != "/3/0/1" {
			t.Fatalf("links %+v", links)
		}
		if v, ok := links[1].Param("pmin"); !ok || v != "10" {
			t.Fatalf("pmin %q %v", v, ok)
		}
		if rq := d.nextRequest(t); rq.Code != codes.GET || rq.Accept != 40 {
			t.Fatalf("device got %+v", rq)
		}
	})
	t.Run("write attributes", func(t *testing.T) {
		d.setResponder(func(rq devRequest) devResponse { return devResponse{Code: codes.Changed, CF: -1, Observe: -1} })
		pmin, gt := uint32(5), 20.5
		if err := h.srv.WriteAttributes(ctx, reg.ID, lwm2m.ResourcePath(3303, 0, 5700), lwm2m.Attributes{Pmin: &pmin, Gt: &gt}); err != nil {
			t.Fatal(err)
		}
		rq := d.nextRequest(t)
		if rq.Code != codes.PUT || rq.Path != "/3303/0/5700" || len(rq.Payload) != 0 || !reflect.DeepEqual(rq.Query, []string{"pmin=5", "gt=20.5"}) {
			t.Fatalf("device got %+v", rq)
		}
	})
	t.Run("unknown client", func(t *testing.T) {
		if _, err := h.srv.Read(ctx, "nope", lwm2m.InstancePath(3, 0)); !errors.Is(err, lwm2m.ErrClientNotFound) {
			t.Fatalf("read: %v", err)
		}
		if err := h.srv.Write(ctx, "nope", lwm2m.InstancePath(3, 0), inst30, true); !errors.Is(err, lwm2m.ErrClientNotFound) {
			t.Fatalf("write: %v", err)
		}
		if _, err := h.srv.Observe(ctx, "nope", lwm2m.InstancePath(3, 0)); !errors.Is(err, lwm2m.ErrClientNotFound) {
			t.Fatalf("observe: %v", err)
		}
	})
}

func TestDownlink10TLVAndRootPath(t *testing.T) {
	h := startServer(t, Config{}, nil)
	d, reg := registerDevice(t, h, "dl10", "lwm2m=1.0", `</lw>;rt="oma.lwm2m",</lw/3/0>,</lw/3303/0>`)
	ctx := context.Background()
	res := testModels{}.Resolver("")
	inst30 := []lwm2m.Record{
		{Path: lwm2m.ResourcePath(3, 0, 0), Value: "Acme"},
		{Path: lwm2m.ResourceInstancePath(3, 0, 6, 0), Value: int64(1)},
		{Path: lwm2m.ResourceInstancePath(3, 0, 6, 1), Value: int64(5)},
		{Path: lwm2m.ResourcePath(3, 0, 9), Value: int64(87)},
	}
	tlv, err := codec.Encode(lwm2m.FormatTLV, lwm2m.InstancePath(3, 0), inst30, res)
	if err != nil {
		t.Fatal(err)
	}
	d.setResponder(func(rq devRequest) devResponse {
		switch rq.Code {
		case codes.GET:
			return devResponse{Code: codes.Content, CF: 11542, Payload: tlv, Observe: -1}
		case codes.POST:
			return devResponse{Code: codes.Created, CF: -1, Observe: -1, Opts: []message.Option{
				{ID: message.LocationPath, Value: []byte("lw")}, {ID: message.LocationPath, Value: []byte("3303")}, {ID: message.LocationPath, Value: []byte("2")}}}
		}
		return devResponse{Code: codes.Changed, CF: -1, Observe: -1}
	})
	recs, err := h.srv.Read(ctx, reg.ID, lwm2m.InstancePath(3, 0))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(recs, inst30) {
		t.Fatalf("read %+v", recs)
	}
	if rq := d.nextRequest(t); rq.Path != "/lw/3/0" || rq.Accept != 11542 {
		t.Fatalf("device got %+v", rq)
	}
	if err := h.srv.Write(ctx, reg.ID, lwm2m.InstancePath(3, 0), inst30, true); err != nil {
		t.Fatal(err)
	}
	rq := d.nextRequest(t)
	if rq.Code != codes.PUT || rq.Path != "/lw/3/0" || rq.CF != 11542 {
		t.Fatalf("device got %+v", rq)
	}
	if got, err := codec.Decode(lwm2m.FormatTLV, lwm2m.InstancePath(3, 0), rq.Payload, res); err != nil || !reflect.DeepEqual(got, inst30) {
		t.Fatalf("written TLV decodes to %+v %v", got, err)
	}
	p, err := h.srv.Create(ctx, reg.ID, lwm2m.ObjectPath(3303), []lwm2m.Record{{Path: lwm2m.ResourcePath(3303, 0, 5701), Value: "Cel"}})
	if err != nil || p != lwm2m.InstancePath(3303, 2) {
		t.Fatalf("create: %v %v", p, err)
	}
	if rq := d.nextRequest(t); rq.Path != "/lw/3303" || rq.CF != 11542 {
		t.Fatalf("device got %+v", rq)
	}
	d.setResponder(func(rq devRequest) devResponse {
		return devResponse{Code: codes.Content, CF: 40, Payload: []byte("</lw/3/0>,</lw/3/0/1>"), Observe: -1}
	})
	links, err := h.srv.Discover(ctx, reg.ID, lwm2m.InstancePath(3, 0))
	if err != nil || len(links) != 2 || links[0].Target != "/3/0" || links[1].Target != "/3/0/1" {
		t.Fatalf("discover %+v %v", links, err)
	}
}

func TestObserveNotifyCancel(t *testing.T) {
	h := startServer(t, Config{}, nil)
	d, reg := registerDevice(t, h, "obs", "lwm2m=1.1", payload11)
	ctx := context.Background()
	temp := lwm2m.ResourcePath(3303, 0, 5700)
	d.setResponder(func(rq devRequest) devResponse {
		if rq.Observe == 0 {
			return devResponse{Code: codes.Content, CF: 0, Payload: []byte("21.5"), Observe: 7}
		}
		return devResponse{Code: codes.Content, CF: 0, Payload: []byte("21.75"), Observe: -1}
	})
	recs, err := h.srv.Observe(ctx, reg.ID, temp)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || recs[0].Value != 21.5 {
		t.Fatalf("observe %+v", recs)
	}
	obsReq := d.nextRequest(t)
	if obsReq.Code != codes.GET || obsReq.Observe != 0 || obsReq.Path != "/3303/0/5700" || obsReq.Accept != 110 {
		t.Fatalf("device got %+v", obsReq)
	}
	stored, err := h.store.ListObservations(ctx, reg.ID)
	if err != nil || len(stored) != 1 || stored[0].Path != "/3303/0/5700" || string(stored[0].Token) != string(obsReq.Token) {
		t.Fatalf("stored observations %+v %v", stored, err)
	}

	// Notifications, confirmable and not.
	d.notify(t, obsReq.Token, 8, message.TextPlain, []byte("22.5"), true)
	ev := h.waitEvent(t, EventNotify)
	if ev.Path != temp || ev.Registration.ID != reg.ID || len(ev.Records) != 1 || ev.Records[0].Value != 22.5 {
		t.Fatalf("notify %+v", ev)
	}
	d.notify(t, obsReq.Token, 9, message.TextPlain, []byte("23"), false)
	if ev := h.waitEvent(t, EventNotify); ev.Records[0].Value != 23.0 {
		t.Fatalf("NON notify %+v", ev.Records)
	}
	// A reordered (older) notification is dropped.
	d.notify(t, obsReq.Token, 8, message.TextPlain, []byte("1"), true)
	d.notify(t, obsReq.Token, 10, message.TextPlain, []byte("24"), true)
	if ev := h.waitEvent(t, EventNotify); ev.Records[0].Value != 24.0 {
		t.Fatalf("after reordered notify %+v", ev.Records)
	}

	// Observing again: a plain read, no second device observation.
	recs, err = h.srv.Observe(ctx, reg.ID, temp)
	if err != nil || len(recs) != 1 || recs[0].Value != 21.75 {
		t.Fatalf("second observe %+v %v", recs, err)
	}
	if rq := d.nextRequest(t); rq.Observe != -1 || rq.Code != codes.GET {
		t.Fatalf("second observe sent %+v", rq)
	}

	// Cancel: GET with Observe=1 and the same token.
	if err := h.srv.CancelObserve(ctx, reg.ID, temp); err != nil {
		t.Fatal(err)
	}
	rq := d.nextRequest(t)
	if rq.Observe != 1 || string(rq.Token) != string(obsReq.Token) || rq.Path != "/3303/0/5700" {
		t.Fatalf("cancel sent %+v", rq)
	}
	if stored, _ := h.store.ListObservations(ctx, reg.ID); len(stored) != 0 {
		t.Fatalf("stored after cancel %+v", stored)
	}
	// A confirmable notify returns once the server has answered (with a
	// Reset: the token is no longer known), which is after any event the
	// notification caused.
	d.notify(t, obsReq.Token, 11, message.TextPlain, []byte("99"), true)
	h.noEvent(t, EventNotify)
	if err := h.srv.CancelObserve(ctx, reg.ID, temp); err != nil {
		t.Fatalf("cancel of nothing: %v", err)
	}

	// A device refusing the observation.
	d.setResponder(func(rq devRequest) devResponse {
		return devResponse{Code: codes.MethodNotAllowed, CF: -1, Observe: -1}
	})
	var de *lwm2m.DeviceError
	if _, err := h.srv.Observe(ctx, reg.ID, lwm2m.ResourcePath(3, 0, 4)); !errors.As(err, &de) || de.Code != uint8(codes.MethodNotAllowed) || de.Op != "observe" {
		t.Fatalf("refused observe: %v", err)
	}
}

func TestObservationSurvivesRestartAndReregisterDropsIt(t *testing.T) {
	st := openStore(t, t.TempDir())
	defer st.Close()
	h := startServer(t, Config{}, st)
	d, reg := registerDevice(t, h, "obs-restart", "lwm2m=1.1", payload11)
	ctx := context.Background()
	p := lwm2m.ResourcePath(3303, 0, 5700)
	d.setResponder(func(rq devRequest) devResponse {
		return devResponse{Code: codes.Content, CF: 0, Payload: []byte("20"), Observe: 1}
	})
	if _, err := h.srv.Observe(ctx, reg.ID, p); err != nil {
		t.Fatal(err)
	}
	tok := d.nextRequest(t).Token

	addr := h.addr
	if err := h.srv.Close(); err != nil {
		t.Fatal(err)
	}
	h2 := startServer(t, Config{Addr: addr}, st)
	d.notify(t, tok, 2, message.TextPlain, []byte("30"), true)
	ev := h2.waitEvent(t, EventNotify)
	if ev.Path != p || ev.Registration.ID != reg.ID || ev.Records[0].Value != 30.0 {
		t.Fatalf("notify after restart %+v", ev)
	}
	// Observe is still idempotent after the restart: a read, not a new observation.
	if _, err := h2.srv.Observe(ctx, reg.ID, p); err != nil {
		t.Fatal(err)
	}
	if rq := d.nextRequest(t); rq.Observe != -1 {
		t.Fatalf("observe after restart sent %+v", rq)
	}

	// A re-register forgets the device's observations.
	d.register(t, "ep=obs-restart&lwm2m=1.1", payload11)
	h2.waitEvent(t, EventRegistered)
	if stored, _ := st.ListObservations(ctx, reg.ID); len(stored) != 0 {
		t.Fatalf("observations after re-register %+v", stored)
	}
	d.notify(t, tok, 3, message.TextPlain, []byte("40"), true) // answered after any event
	h2.noEvent(t, EventNotify)
}

// rawDevice registers over a bare UDP socket and then never answers.
func rawDevice(t *testing.T, serverAddr, ep string) (*net.UDPConn, string) {
	t.Helper()
	ra, err := net.ResolveUDPAddr("udp", serverAddr)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.DialUDP("udp", nil, ra)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	m := pool.NewMessage(context.Background())
	m.SetCode(codes.POST)
	m.SetType(message.Confirmable)
	m.SetMessageID(0x1234)
	m.SetToken([]byte{1, 2, 3, 4})
	if err := m.SetPath("/rd"); err != nil {
		t.Fatal(err)
	}
	m.AddQuery("ep=" + ep)
	m.AddQuery("lwm2m=1.1")
	m.SetContentFormat(message.AppLinkFormat)
	m.SetBody(strings.NewReader("</3/0>"))
	b, err := m.MarshalWithEncoder(coder.DefaultCoder)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
	resp := readRaw(t, c)
	if resp.Code() != codes.Created {
		t.Fatalf("raw register: %v", resp.Code())
	}
	loc, err := resp.Options().LocationPath()
	if err != nil {
		t.Fatal(err)
	}
	return c, strings.TrimPrefix(loc, "/rd/")
}

func readRaw(t *testing.T, c *net.UDPConn) *pool.Message {
	t.Helper()
	buf := make([]byte, 2048)
	if err := c.SetReadDeadline(time.Now().Add(waitFor)); err != nil {
		t.Fatal(err)
	}
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("raw read: %v", err)
	}
	m := pool.NewMessage(context.Background())
	if _, err := m.UnmarshalWithDecoder(coder.DefaultCoder, buf[:n]); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestTimeoutDoesNotBlockOthers(t *testing.T) {
	h := startServer(t, Config{RequestTimeout: 2 * time.Second}, nil)
	raw, silentID := rawDevice(t, h.addr, "silent")
	h.waitEvent(t, EventRegistered)
	good, reg := registerDevice(t, h, "good", "lwm2m=1.1", payload11)
	good.setResponder(func(rq devRequest) devResponse {
		return devResponse{Code: codes.Content, CF: 0, Payload: []byte("ok"), Observe: -1}
	})

	type result struct {
		err     error
		elapsed time.Duration
	}
	silent := make(chan result, 1)
	start := time.Now()
	go func() {
		_, err := h.srv.Read(context.Background(), silentID, lwm2m.ResourcePath(3, 0, 0))
		silent <- result{err, time.Since(start)}
	}()
	// The request reached the silent device (which will not answer).
	if rq := readRaw(t, raw); rq.Code() != codes.GET {
		t.Fatalf("silent device got %v", rq.Code())
	}
	// Meanwhile another device is served at once.
	recs, err := h.srv.Read(context.Background(), reg.ID, lwm2m.ResourcePath(3, 0, 0))
	if err != nil || len(recs) != 1 || recs[0].Value != "ok" {
		t.Fatalf("read of good device: %+v %v", recs, err)
	}
	select {
	case r := <-silent:
		t.Fatalf("silent read finished before the good one could be checked: %v", r.err)
	default:
	}
	r := <-silent
	if !errors.Is(r.err, lwm2m.ErrTimeout) {
		t.Fatalf("silent read: %v, want ErrTimeout", r.err)
	}
	if !strings.HasPrefix(r.err.Error(), "endpoint: read /3/0/0: ") {
		t.Fatalf("error text %q", r.err)
	}
	if r.elapsed < 2*time.Second || r.elapsed > 5*time.Second {
		t.Fatalf("timed out after %v, want about 2s", r.elapsed)
	}

	// A shorter ctx deadline wins over RequestTimeout.
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := h.srv.Execute(ctx, silentID, lwm2m.ResourcePath(3, 0, 4), ""); !errors.Is(err, lwm2m.ErrTimeout) {
		t.Fatalf("execute with ctx deadline: %v", err)
	}
}

func TestWildcardListener(t *testing.T) {
	h := startServer(t, Config{Addr: ":0"}, nil)
	h.addr = dialAddr(t, h.addr)
	d, reg := registerDevice(t, h, "wild", "lwm2m=1.1", payload11)
	d.setResponder(func(rq devRequest) devResponse {
		return devResponse{Code: codes.Content, CF: 0, Payload: []byte("w"), Observe: -1}
	})
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	recs, err := h.srv.Read(ctx, reg.ID, lwm2m.ResourcePath(3, 0, 0))
	if err != nil || len(recs) != 1 || recs[0].Value != "w" {
		t.Fatalf("read via wildcard listener: %+v %v", recs, err)
	}
}
