package server_test

import (
	"net/http"
	"sync"
	"testing"

	"github.com/deviceserver/deviceserver/lwm2m"
	"github.com/deviceserver/deviceserver/server"
)

const (
	metricType  = "application/vnd.imgtec.metric+json"
	metricsType = "application/vnd.imgtec.metrics+json"
)

// fakeMetrics answers canned traffic and records which organisations
// were asked about.
type fakeMetrics struct {
	mu      sync.Mutex
	clients map[string]lwm2m.Traffic
	orgs    map[string]lwm2m.Traffic
	asked   []string
}

var _ server.Metrics = (*fakeMetrics)(nil)

func (f *fakeMetrics) ClientTraffic(id string) lwm2m.Traffic {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.clients[id]
}

func (f *fakeMetrics) OrganisationTraffic(org string) lwm2m.Traffic {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked = append(f.asked, org)
	return f.orgs[org]
}

// values maps a metrics list's names to values, checking each item's
// shape and self link on the way.
func values(t *testing.T, list map[string]any, selfPrefix string) (names []string, vals map[string]float64) {
	t.Helper()
	vals = map[string]float64{}
	for _, it := range items(list) {
		name, _ := it["Name"].(string)
		v, ok := it["Value"].(float64)
		if name == "" || !ok {
			t.Fatalf("metric item %v", it)
		}
		if self := link(t, it, "self"); self != selfPrefix+name {
			t.Errorf("%s self %s, want %s", name, self, selfPrefix+name)
		}
		names = append(names, name)
		vals[name] = v
	}
	return names, vals
}

func TestMetrics(t *testing.T) {
	fm := &fakeMetrics{
		clients: map[string]lwm2m.Traffic{"c-1": {BytesSent: 10, BytesReceived: 20, TransactionCount: 3}},
		orgs: map[string]lwm2m.Traffic{
			adminOrg: {BytesSent: 100, BytesReceived: 200, TransactionCount: 30},
			otherOrg: {BytesSent: 1, BytesReceived: 2, TransactionCount: 1},
		},
	}
	e := newEnv(t, func(c *server.Config) { c.Metrics = fm })
	e.register(t, adminOrg, "c-1", "dev-1", true)
	e.register(t, adminOrg, "c-2", "dev-2", false) // offline still counts as a client
	e.register(t, otherOrg, "c-other", "dev-other", true)
	other := e.other(t)

	root := e.get(t, e.admin, "/")
	orgHref := link(t, root, "metrics")
	r := e.do(t, e.admin, http.MethodGet, orgHref, "", "")
	if r.Status != http.StatusOK || r.Header.Get("Content-Type") != metricsType {
		t.Fatalf("GET %s: %d %s %s", orgHref, r.Status, r.Header.Get("Content-Type"), r.Raw)
	}
	names, vals := values(t, r.Body, e.URL+"/metrics/")
	want := map[string]float64{"BytesSent": 100, "BytesReceived": 200, "TransactionCount": 30, "NumberClients": 2}
	if len(names) != 4 || names[0] != "BytesSent" || names[3] != "NumberClients" {
		t.Errorf("metric names %v", names)
	}
	for n, v := range want {
		if vals[n] != v {
			t.Errorf("%s = %v, want %v", n, vals[n], v)
		}
	}
	if pageInfo(r.Body)["TotalCount"] != 4.0 {
		t.Errorf("PageInfo %v", pageInfo(r.Body))
	}

	t.Run("one metric, by its link and case-insensitively", func(t *testing.T) {
		for _, path := range []string{"/metrics/NumberClients", "/metrics/numberclients", "/metrics/NUMBERCLIENTS"} {
			r := e.do(t, e.admin, http.MethodGet, path, "", "")
			if r.Status != http.StatusOK || r.Header.Get("Content-Type") != metricType {
				t.Fatalf("GET %s: %d %s", path, r.Status, r.Raw)
			}
			if r.Body["Name"] != "NumberClients" || r.Body["Value"] != 2.0 || link(t, r.Body, "self") != e.URL+"/metrics/NumberClients" {
				t.Errorf("GET %s: %s", path, r.Raw)
			}
		}
		if got := e.get(t, e.admin, "/metrics/bytesreceived"); got["Name"] != "BytesReceived" || got["Value"] != 200.0 {
			t.Errorf("BytesReceived %v", got)
		}
		if r := e.do(t, e.admin, http.MethodGet, "/metrics/Bogus", "", ""); r.Status != http.StatusNotFound {
			t.Errorf("unknown metric: %d %s", r.Status, r.Raw)
		}
	})

	t.Run("paging", func(t *testing.T) {
		list := e.get(t, e.admin, "/metrics?pageSize=3&startIndex=3")
		if n, _ := values(t, list, e.URL+"/metrics/"); len(n) != 1 || n[0] != "NumberClients" {
			t.Errorf("second page %v", n)
		}
		wantBadRequest(t, e.do(t, e.admin, http.MethodGet, "/metrics?pageSize=0", "", ""), "pageSize")
	})

	t.Run("client metrics", func(t *testing.T) {
		href := e.URL + "/clients/c-1/metrics"
		r := e.do(t, e.admin, http.MethodGet, href, "", "")
		if r.Status != http.StatusOK || r.Header.Get("Content-Type") != metricsType {
			t.Fatalf("GET %s: %d %s", href, r.Status, r.Raw)
		}
		names, vals := values(t, r.Body, href+"/")
		if len(names) != 3 || vals["BytesSent"] != 10 || vals["BytesReceived"] != 20 || vals["TransactionCount"] != 3 {
			t.Errorf("client metrics %s", r.Raw)
		}
		if got := e.get(t, e.admin, href+"/transactioncount"); got["Name"] != "TransactionCount" || got["Value"] != 3.0 ||
			link(t, got, "self") != href+"/TransactionCount" {
			t.Errorf("client TransactionCount %v", got)
		}
		// NumberClients is about organisations only.
		if r := e.do(t, e.admin, http.MethodGet, href+"/NumberClients", "", ""); r.Status != http.StatusNotFound {
			t.Errorf("client NumberClients: %d %s", r.Status, r.Raw)
		}
		// A client the device side never saw has zero traffic.
		_, vals = values(t, e.get(t, e.admin, "/clients/c-2/metrics"), e.URL+"/clients/c-2/metrics/")
		if vals["BytesSent"] != 0 || vals["TransactionCount"] != 0 {
			t.Errorf("c-2 metrics %v", vals)
		}
		if r := e.do(t, e.admin, http.MethodGet, "/clients/nosuch/metrics", "", ""); r.Status != http.StatusNotFound {
			t.Errorf("unknown client: %d", r.Status)
		}
	})

	t.Run("tenants", func(t *testing.T) {
		for _, path := range []string{"/clients/c-1/metrics", "/clients/c-1/metrics/BytesSent"} {
			if r := e.do(t, other, http.MethodGet, path, "", ""); r.Status != http.StatusNotFound {
				t.Errorf("other tenant GET %s: %d %s", path, r.Status, r.Raw)
			}
		}
		_, vals := values(t, e.get(t, other, "/metrics"), e.URL+"/metrics/")
		if vals["BytesSent"] != 1 || vals["NumberClients"] != 1 {
			t.Errorf("other tenant's metrics %v", vals)
		}
		fm.mu.Lock()
		asked := fm.asked
		fm.mu.Unlock()
		if asked[len(asked)-1] != otherOrg {
			t.Errorf("traffic asked for %v, want the caller's organisation last", asked)
		}
		if r := e.do(t, "", http.MethodGet, "/metrics", "", ""); r.Status != http.StatusUnauthorized {
			t.Errorf("anonymous GET /metrics: %d", r.Status)
		}
	})
}

func TestMetricsWithoutDeviceSide(t *testing.T) {
	e := newEnv(t) // no Metrics: traffic is zero
	e.register(t, adminOrg, "c-1", "dev-1", true)
	_, vals := values(t, e.get(t, e.admin, "/metrics"), e.URL+"/metrics/")
	if len(vals) != 4 || vals["BytesSent"] != 0 || vals["BytesReceived"] != 0 || vals["TransactionCount"] != 0 || vals["NumberClients"] != 1 {
		t.Errorf("metrics %v", vals)
	}
	_, vals = values(t, e.get(t, e.admin, "/clients/c-1/metrics"), e.URL+"/clients/c-1/metrics/")
	if len(vals) != 3 || vals["BytesSent"] != 0 {
		t.Errorf("client metrics %v", vals)
	}
}

func TestConfiguration(t *testing.T) {
	e := newEnv(t, func(c *server.Config) {
		c.Bootstrap = server.BootstrapInfo{CoAPURI: "coap://192.0.2.7:5683"}
	})
	conf := e.get(t, e.admin, link(t, e.get(t, e.admin, "/"), "configuration"))
	if link(t, conf, "self") != e.URL+"/configuration" {
		t.Errorf("configuration links %v", conf["Links"])
	}
	r := e.do(t, e.admin, http.MethodGet, link(t, conf, "bootstrap"), "", "")
	if r.Status != http.StatusOK || r.Header.Get("Content-Type") != "application/vnd.imgtec.bootstrap+json" {
		t.Fatalf("bootstrap: %d %s %s", r.Status, r.Header.Get("Content-Type"), r.Raw)
	}
	if r.Body["CoAPURI"] != "coap://192.0.2.7:5683" || link(t, r.Body, "self") != e.URL+"/configuration/bootstrap" {
		t.Errorf("bootstrap %s", r.Raw)
	}
	if _, ok := r.Body["CoAPSURI"]; ok {
		t.Errorf("bootstrap shows a CoAPS URI the server does not serve: %s", r.Raw)
	}
	if r := e.do(t, "", http.MethodGet, "/configuration/bootstrap", "", ""); r.Status != http.StatusUnauthorized {
		t.Errorf("anonymous bootstrap: %d", r.Status)
	}
}

// A server listening on every interface is advertised under the host name
// the caller reached the API with.
func TestBootstrapWildcardListener(t *testing.T) {
	e := newEnv(t, func(c *server.Config) {
		c.Bootstrap = server.BootstrapInfo{CoAPURI: "coap://[::]:5683", CoAPSURI: "coaps://0.0.0.0:5684"}
	})
	got := e.get(t, e.admin, "/configuration/bootstrap")
	// httptest serves on 127.0.0.1.
	if got["CoAPURI"] != "coap://127.0.0.1:5683" || got["CoAPSURI"] != "coaps://127.0.0.1:5684" {
		t.Errorf("bootstrap %v", got)
	}
}
