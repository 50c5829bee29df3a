package endpoint

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message/codes"

	"github.com/deviceserver/deviceserver/lwm2m"
)

func TestSetDeviceInfo(t *testing.T) {
	ctx := context.Background()
	info := lwm2m.DeviceInfo{Manufacturer: "Acme", ModelNumber: "T-1000", SerialNumber: "SN-42", FirmwareVersion: "1.2.3"}
	// stored returns the Device of the stored registration id.
	stored := func(t *testing.T, h *harness, id string) *lwm2m.DeviceInfo {
		t.Helper()
		reg, err := h.store.GetRegistration(ctx, id)
		if err != nil {
			t.Fatalf("stored registration: %v", err)
		}
		return reg.Device
	}
	// inMemory returns the Device of the server's current registration id.
	inMemory := func(t *testing.T, h *harness, id string) *lwm2m.DeviceInfo {
		t.Helper()
		c, st, err := h.srv.current(id)
		if err != nil || c == nil {
			t.Fatalf("current registration: %v", err)
		}
		return st.reg.Device
	}

	tests := []struct {
		name string
		run  func(t *testing.T, h *harness)
	}{
		{"set, kept by an update", func(t *testing.T, h *harness) {
			d, reg := registerDevice(t, h, "info-update", "lwm2m=1.1", payload11)
			if reg.Device != nil || stored(t, h, reg.ID) != nil {
				t.Fatalf("a new registration has device info %+v", reg.Device)
			}
			got, err := h.srv.SetDeviceInfo(ctx, reg.ID, info)
			if err != nil {
				t.Fatal(err)
			}
			if got.Device == nil || *got.Device != info || got.ID != reg.ID || got.Lifetime != reg.Lifetime {
				t.Fatalf("returned %+v", got)
			}
			if dev := stored(t, h, reg.ID); dev == nil || *dev != info {
				t.Fatalf("stored device %+v", dev)
			}
			if dev := inMemory(t, h, reg.ID); dev == nil || *dev != info {
				t.Fatalf("in-memory device %+v", dev)
			}
			if code := d.update(t, reg.ID, "lt=120", ""); code != codes.Changed {
				t.Fatalf("update: %v", code)
			}
			ev := h.waitEvent(t, EventUpdated)
			if ev.Registration.Device == nil || *ev.Registration.Device != info || ev.Registration.Lifetime != 120 {
				t.Fatalf("updated registration %+v", ev.Registration)
			}
			if dev := stored(t, h, reg.ID); dev == nil || *dev != info {
				t.Fatalf("stored device after update %+v", dev)
			}
		}},
		{"dropped by a new register", func(t *testing.T, h *harness) {
			d, reg := registerDevice(t, h, "info-register", "lwm2m=1.1", payload11)
			if _, err := h.srv.SetDeviceInfo(ctx, reg.ID, info); err != nil {
				t.Fatal(err)
			}
			if id := d.register(t, "ep=info-register&lwm2m=1.1", payload11); id != reg.ID {
				t.Fatalf("re-register gave ID %q, want %q", id, reg.ID)
			}
			if ev := h.waitEvent(t, EventRegistered); ev.Registration.Device != nil {
				t.Fatalf("re-registered with device info %+v", ev.Registration.Device)
			}
			if dev := stored(t, h, reg.ID); dev != nil {
				t.Fatalf("stored device after re-register %+v", dev)
			}
			if dev := inMemory(t, h, reg.ID); dev != nil {
				t.Fatalf("in-memory device after re-register %+v", dev)
			}
			// The new registration gets its own.
			again := lwm2m.DeviceInfo{Manufacturer: "Acme", FirmwareVersion: "2.0"}
			got, err := h.srv.SetDeviceInfo(ctx, reg.ID, again)
			if err != nil || !reflect.DeepEqual(got.Device, &again) {
				t.Fatalf("set after re-register: %+v %v", got.Device, err)
			}
		}},
		{"unknown client", func(t *testing.T, h *harness) {
			_, err := h.srv.SetDeviceInfo(ctx, "nosuchid", info)
			if !errors.Is(err, lwm2m.ErrClientNotFound) || !strings.HasPrefix(err.Error(), "endpoint: set device info nosuchid: ") {
				t.Fatalf("error %v", err)
			}
		}},
		{"de-registered client", func(t *testing.T, h *harness) {
			d, reg := registerDevice(t, h, "info-gone", "lwm2m=1.1", payload11)
			if code := d.deregister(t, reg.ID); code != codes.Deleted {
				t.Fatalf("deregister: %v", code)
			}
			h.waitEvent(t, EventDeregistered)
			if _, err := h.srv.SetDeviceInfo(ctx, reg.ID, info); !errors.Is(err, lwm2m.ErrClientNotFound) {
				t.Fatalf("error %v", err)
			}
		}},
		{"from the event handler", func(t *testing.T, h *harness) {
			// The handler runs while the device waits for its 2.01 but
			// with no lock of the server held, so it can call back.
			errs := make(chan error, 1)
			f := func(ev Event) {
				if ev.Type != EventRegistered || ev.Registration.Endpoint != "info-handler" {
					return
				}
				_, err := h.srv.SetDeviceInfo(ctx, ev.Registration.ID, info)
				errs <- err
			}
			h.before.Store(&f)
			defer h.before.Store(nil)
			_, reg := registerDevice(t, h, "info-handler", "lwm2m=1.1", payload11)
			select {
			case err := <-errs:
				if err != nil {
					t.Fatalf("set from the handler: %v", err)
				}
			case <-time.After(waitFor):
				t.Fatal("the handler did not run")
			}
			if dev := stored(t, h, reg.ID); dev == nil || *dev != info {
				t.Fatalf("stored device %+v", dev)
			}
		}},
	}
	h := startServer(t, Config{}, nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.run(t, h) })
	}
}
