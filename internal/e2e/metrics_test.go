package e2e

import (
	"runtime"
	"testing"
	"time"

	"github.com/deviceserver/deviceserver/internal/testserver"
	"github.com/deviceserver/deviceserver/lwm2m/sim"
)

// metricValues reads a metrics list into name → value.
func metricValues(t *testing.T, api testserver.Client, href string) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	for _, it := range testserver.Items(api.Get(href).Body) {
		name, _ := it["Name"].(string)
		v, ok := it["Value"].(float64)
		if name == "" || !ok {
			t.Fatalf("metric item %v in %s", it, href)
		}
		out[name] = int64(v)
	}
	return out
}

func TestTrafficMetrics(t *testing.T) {
	srv := testserver.Start(t)
	api := testserver.Client{T: t, Token: srv.Token(t)}
	root := api.Get(srv.URL + "/").Body

	// Light: no automatic Update, so all traffic is what the test causes.
	cfg := sim.Config{Endpoint: "e2e-metrics", Lifetime: 300, Light: true,
		Manufacturer: "Metrics Manufacturing", Model: "Counter-9000", Serial: "SN-0123456789", Firmware: "fw-4.2.0"}
	startDevice(t, srv, cfg)

	client := find(t, api.Get(testserver.Link(t, root, "clients")+"?name=e2e-metrics").Body, "Name", "e2e-metrics")
	clientMetrics := testserver.Link(t, client, "metrics")
	orgMetrics := testserver.Link(t, root, "metrics")

	// The device's answer to a read of /3/0 holds at least these strings
	// verbatim (in any LwM2M content format) after the 4-byte CoAP header.
	minAnswer := int64(4 + len(cfg.Manufacturer) + len(cfg.Model) + len(cfg.Serial) + len(cfg.Firmware))

	// After registering, the server reads the device's identity (/3/0)
	// in the background: two exchanges in all.
	var registered map[string]int64
	for deadline := time.Now().Add(10 * time.Second); ; {
		registered = metricValues(t, api, clientMetrics)
		if registered["TransactionCount"] >= 2 || time.Now().After(deadline) {
			break
		}
		runtime.Gosched()
	}
	if registered["BytesReceived"] <= minAnswer || registered["BytesSent"] <= 0 || registered["TransactionCount"] != 2 {
		t.Fatalf("after registration: %v, want the Register and the identity read", registered)
	}

	instances := api.Get(testserver.Link(t, find(t, api.Get(testserver.Link(t, client, "objecttypes")).Body, "ObjectTypeID", "3"), "instances")).Body
	dev0 := testserver.Link(t, find(t, instances, "InstanceID", "0"), "self")
	before := metricValues(t, api, clientMetrics)
	if got := api.Get(dev0).Body["Manufacturer"]; got != cfg.Manufacturer {
		t.Fatalf("read /3/0: Manufacturer %v", got)
	}
	after := metricValues(t, api, clientMetrics)
	if got := after["BytesReceived"] - before["BytesReceived"]; got < minAnswer {
		t.Errorf("the read of /3/0 added %d received bytes, less than its answer's %d", got, minAnswer)
	}
	if after["BytesReceived"] <= minAnswer || after["BytesSent"] <= before["BytesSent"] || after["TransactionCount"] != before["TransactionCount"]+1 {
		t.Errorf("after the read: %v (before %v)", after, before)
	}

	org := metricValues(t, api, orgMetrics)
	if org["NumberClients"] != 1 {
		t.Errorf("organisation NumberClients = %d, want 1", org["NumberClients"])
	}
	// The only device of the organisation: its totals are the client's.
	for _, name := range []string{"BytesSent", "BytesReceived", "TransactionCount"} {
		if org[name] != after[name] {
			t.Errorf("organisation %s = %d, client %d", name, org[name], after[name])
		}
	}

	// One metric by its own link.
	if one := api.Get(clientMetrics + "/TransactionCount").Body; one["Value"] != float64(after["TransactionCount"]) {
		t.Errorf("TransactionCount item %v, list says %d", one, after["TransactionCount"])
	}

	api.Get(dev0)
	again := metricValues(t, api, clientMetrics)
	if again["TransactionCount"] != after["TransactionCount"]+1 || again["BytesSent"] <= after["BytesSent"] || again["BytesReceived"]-after["BytesReceived"] < minAnswer {
		t.Errorf("after a second read: %v, before it %v", again, after)
	}
}
