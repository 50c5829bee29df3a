package server_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/deviceserver/deviceserver/lwm2m"
)

const (
	deviceType = "application/vnd.oma.lwm2m.device+json"
	tempType   = "application/vnd.oma.lwm2m.temperature+json"
	dev0       = "/clients/c-01/objecttypes/3/instances/0"
	temps      = "/clients/c-01/objecttypes/3303/instances"
)

func names(list map[string]any) []string {
	var out []string
	for _, it := range items(list) {
		out = append(out, fmt.Sprint(it["Name"]))
	}
	return out
}

func endpoints(from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, fmt.Sprintf("ep-%02d", i))
	}
	return out
}

// pageLink returns the href of a PageInfo link.
func pageLink(t *testing.T, list map[string]any, rel string) (href string, ok bool) {
	t.Helper()
	return findLink(pageInfo(list), rel)
}

func TestClientsList(t *testing.T) {
	e := newEnv(t)
	for i := 0; i < 25; i++ {
		e.register(t, adminOrg, fmt.Sprintf("c-%02d", i), fmt.Sprintf("ep-%02d", i), i < 20)
	}
	other := e.other(t)
	e.register(t, otherOrg, "c-other", "ep-other", true)

	t.Run("follow the paging links", func(t *testing.T) {
		first := e.get(t, e.admin, "/clients?pageSize=10")
		pi := pageInfo(first)
		if pi["TotalCount"] != 25.0 || pi["ItemsCount"] != 10.0 || pi["StartIndex"] != 0.0 {
			t.Errorf("first page PageInfo %v", pi)
		}
		if got := names(first); !slices.Equal(got, endpoints(0, 10)) {
			t.Errorf("first page %v", got)
		}
		if _, ok := pageLink(t, first, "previous"); ok {
			t.Error("first page has a previous link")
		}
		next, ok := pageLink(t, first, "next")
		if !ok || next != e.URL+"/clients?pageSize=10&startIndex=10" {
			t.Fatalf("next link %q", next)
		}
		last, _ := pageLink(t, first, "last")
		if last != e.URL+"/clients?pageSize=10&startIndex=20" {
			t.Errorf("last link %q", last)
		}
		second := e.get(t, e.admin, next)
		if got := names(second); !slices.Equal(got, endpoints(10, 20)) {
			t.Errorf("second page %v", got)
		}
		if prev, _ := pageLink(t, second, "previous"); prev != e.URL+"/clients?pageSize=10&startIndex=0" {
			t.Errorf("previous link %q", prev)
		}
		end := e.get(t, e.admin, last)
		if got := names(end); !slices.Equal(got, endpoints(20, 25)) || pageInfo(end)["ItemsCount"] != 5.0 {
			t.Errorf("last page %v %v", got, pageInfo(end))
		}
		if _, ok := pageLink(t, end, "next"); ok {
			t.Error("last page has a next link")
		}
	})

	t.Run("filters and paging", func(t *testing.T) {
		tests := []struct {
			query string
			total float64
			names []string
		}{
			{"", 25, endpoints(0, 10)},
			{"?pageSize=1000", 25, endpoints(0, 25)},
			{"?startIndex=23", 25, endpoints(23, 25)},
			{"?startIndex=30", 25, nil},
			{"?name=ep-07", 1, []string{"ep-07"}},
			{"?name=ep-other", 0, nil},
			{"?name=nobody", 0, nil},
			{"?online=true&pageSize=100", 20, endpoints(0, 20)},
			{"?online=false", 5, endpoints(20, 25)},
			{"?online=false&name=ep-03", 0, nil},
			{"?online=true&name=ep-03", 1, []string{"ep-03"}},
		}
		for _, tt := range tests {
			t.Run(tt.query, func(t *testing.T) {
				list := e.get(t, e.admin, "/clients"+tt.query)
				if pageInfo(list)["TotalCount"] != tt.total {
					t.Errorf("TotalCount %v, want %v", pageInfo(list)["TotalCount"], tt.total)
				}
				if got := names(list); !slices.Equal(got, tt.names) {
					t.Errorf("names %v, want %v", got, tt.names)
				}
				if _, isList := list["Items"].([]any); !isList {
					t.Errorf("Items is not a list: %s", mustJSON(list))
				}
			})
		}
	})

	t.Run("paging links keep the filters", func(t *testing.T) {
		list := e.get(t, e.admin, "/clients?online=true&pageSize=5")
		next, _ := pageLink(t, list, "next")
		u, err := url.Parse(next)
		if err != nil || u.Query().Get("online") != "true" || u.Query().Get("startIndex") != "5" {
			t.Errorf("next link %q", next)
		}
	})

	t.Run("invalid query", func(t *testing.T) {
		tests := []struct {
			query string
			field string
		}{
			{"?online=maybe", "online"},
			{"?pageSize=100000", "pageSize"},
			{"?pageSize=1001", "pageSize"},
			{"?pageSize=0", "pageSize"},
			{"?pageSize=ten", "pageSize"},
			{"?startIndex=-1", "startIndex"},
			{"?startIndex=x", "startIndex"},
		}
		for _, tt := range tests {
			t.Run(tt.query, func(t *testing.T) {
				wantBadRequest(t, e.do(t, e.admin, http.MethodGet, "/clients"+tt.query, "", ""), tt.field)
			})
		}
	})

	t.Run("client representation", func(t *testing.T) {
		c := e.get(t, e.admin, "/clients/c-07")
		want := map[string]any{"Name": "ep-07", "ClientID": "c-07", "Lifetime": 60.0, "LwM2MVersion": "1.1", "BindingMode": "U",
			"QueueMode": false, "Online": true, "Address": "192.0.2.1:5683",
			"RegisteredAt": "2026-11-22T03:59:00Z", "ExpiresAt": "2026-11-22T04:01:00Z"}
		for k, v := range want {
			if c[k] != v {
				t.Errorf("%s = %v, want %v", k, c[k], v)
			}
		}
		for rel, href := range map[string]string{"self": "/clients/c-07", "remove": "/clients/c-07",
			"objecttypes": "/clients/c-07/objecttypes", "subscriptions": "/clients/c-07/subscriptions"} {
			if got := link(t, c, rel); got != e.URL+href {
				t.Errorf("%s link %q", rel, got)
			}
		}
		if off := e.get(t, e.admin, "/clients/c-22"); off["Online"] != false {
			t.Errorf("expired client Online = %v", off["Online"])
		}
	})

	t.Run("other tenants' clients are 404", func(t *testing.T) {
		for _, p := range []string{"/clients/c-other", "/clients/c-other/objecttypes", "/clients/c-other/objecttypes/3",
			"/clients/c-other/objecttypes/3/instances", "/clients/c-other/objecttypes/3/instances/0",
			"/clients/c-other/objecttypes/3/instances/0/resources/0", "/clients/c-other/subscriptions",
			"/clients/c-other/objecttypes/3/instances/0/subscriptions", "/clients/nonexistent"} {
			if r := e.do(t, e.admin, http.MethodGet, p, "", ""); r.Status != http.StatusNotFound {
				t.Errorf("GET %s: %d, want 404", p, r.Status)
			}
		}
		if r := e.do(t, other, http.MethodGet, "/clients/c-01", "", ""); r.Status != http.StatusNotFound {
			t.Errorf("other tenant GET /clients/c-01: %d", r.Status)
		}
		if r := e.do(t, other, http.MethodDelete, "/clients/c-01", "", ""); r.Status != http.StatusNotFound {
			t.Errorf("other tenant DELETE /clients/c-01: %d", r.Status)
		}
		if calls := e.dev.take(); len(calls) != 0 {
			t.Errorf("device calls: %v", calls)
		}
		if list := e.get(t, other, "/clients"); !slices.Equal(names(list), []string{"ep-other"}) {
			t.Errorf("other tenant's list %v", names(list))
		}
	})

	t.Run("delete forgets the registration", func(t *testing.T) {
		if r := e.do(t, e.admin, http.MethodDelete, "/clients/c-24", "", ""); r.Status != http.StatusNoContent {
			t.Fatalf("delete: %d %s", r.Status, r.Raw)
		}
		if r := e.do(t, e.admin, http.MethodGet, "/clients/c-24", "", ""); r.Status != http.StatusNotFound {
			t.Errorf("GET after delete: %d", r.Status)
		}
		if r := e.do(t, e.admin, http.MethodDelete, "/clients/c-24", "", ""); r.Status != http.StatusNotFound {
			t.Errorf("second delete: %d", r.Status)
		}
	})
}

// TestClientDeviceInfo: what the server read from a device's object 3
// shows on the client; nothing shows while it is unknown.
func TestClientDeviceInfo(t *testing.T) {
	e := newEnv(t)
	reg := e.register(t, adminOrg, "c-known", "ep-known", true)
	reg.Device = &lwm2m.DeviceInfo{Manufacturer: "Acme", ModelNumber: "X-1", SerialNumber: "SN-42", FirmwareVersion: "2.2"}
	if err := e.store.PutRegistration(context.Background(), reg); err != nil {
		t.Fatal(err)
	}
	partial := e.register(t, adminOrg, "c-partial", "ep-partial", true)
	partial.Device = &lwm2m.DeviceInfo{Manufacturer: "Acme"}
	if err := e.store.PutRegistration(context.Background(), partial); err != nil {
		t.Fatal(err)
	}
	e.register(t, adminOrg, "c-unknown", "ep-unknown", true)
	fields := []string{"Manufacturer", "Model", "FirmwareVersion", "SerialNumber"}
	tests := []struct {
		client string
		want   map[string]any // of fields; absent ones must not be shown
	}{
		{"c-known", map[string]any{"Manufacturer": "Acme", "Model": "X-1", "FirmwareVersion": "2.2", "SerialNumber": "SN-42"}},
		{"c-partial", map[string]any{"Manufacturer": "Acme"}},
		{"c-unknown", map[string]any{}},
	}
	list := items(e.get(t, e.admin, "/clients"))
	for _, tt := range tests {
		t.Run(tt.client, func(t *testing.T) {
			var listed map[string]any
			for _, it := range list {
				if it["ClientID"] == tt.client {
					listed = it
				}
			}
			for _, c := range []map[string]any{e.get(t, e.admin, "/clients/"+tt.client), listed} {
				for _, f := range fields {
					if v, ok := c[f]; ok != (tt.want[f] != nil) || (ok && v != tt.want[f]) {
						t.Errorf("%s = %v (shown %v), want %v", f, v, ok, tt.want[f])
					}
				}
				if g, ok := c["Groups"].([]any); !ok || len(g) != 0 {
					t.Errorf("Groups %v, want []", c["Groups"])
				}
			}
		})
	}
}

func TestObjectTypes(t *testing.T) {
	e := newEnv(t)
	e.register(t, adminOrg, "c-01", "ep-01", true)
	list := e.get(t, e.admin, "/clients/c-01/objecttypes")
	var ids []string
	for _, it := range items(list) {
		ids = append(ids, fmt.Sprint(it["ObjectTypeID"]))
	}
	if !slices.Equal(ids, []string{"1", "3", "3303", "42424"}) {
		t.Fatalf("object types %v", ids)
	}
	byID := map[string]map[string]any{}
	for _, it := range items(list) {
		byID[fmt.Sprint(it["ObjectTypeID"])] = it
	}
	if byID["1"]["Version"] != "1.1" {
		t.Errorf("object 1 version %v", byID["1"]["Version"])
	}
	instances := asList(byID["3303"]["Links"])
	var instType string
	for _, l := range instances {
		if m := l.(map[string]any); m["rel"] == "instances" {
			instType, _ = m["type"].(string)
		}
	}
	if instType != "application/vnd.oma.lwm2m.temperatures" {
		t.Errorf("instances link type %q", instType)
	}
	if link(t, byID["3303"], "definition") != e.URL+"/objecttypes/definitions/3303" {
		t.Errorf("definition link %v", byID["3303"]["Links"])
	}
	if _, ok := findLink(byID["42424"], "definition"); ok {
		t.Errorf("unknown object with a definition link: %v", byID["42424"])
	}
	if got := e.get(t, e.admin, link(t, byID["3"], "self")); got["ObjectTypeID"] != "3" {
		t.Errorf("object type 3: %s", mustJSON(got))
	}
	for _, p := range []string{"/clients/c-01/objecttypes/5", "/clients/c-01/objecttypes/5/instances", "/clients/c-01/objecttypes/99999/instances/0"} {
		if r := e.do(t, e.admin, http.MethodGet, p, "", ""); r.Status != http.StatusNotFound {
			t.Errorf("GET %s (not announced): %d, want 404", p, r.Status)
		}
	}
	if calls := e.dev.take(); len(calls) != 0 {
		t.Errorf("device calls for objects the client does not have: %v", calls)
	}
}

func TestInstances(t *testing.T) {
	e := newEnv(t)
	e.register(t, adminOrg, "c-01", "ep-01", true)
	tests := []struct {
		name         string
		method, path string
		ct, body     string
		accept       string
		status       int
		call         *devCall // the one device call expected; nil for none
		check        func(t *testing.T, r resp)
	}{
		{name: "read an instance", method: "GET", path: dev0, status: 200,
			call: &devCall{Op: "read", Client: "c-01", Path: "/3/0"},
			check: func(t *testing.T, r resp) {
				if ct := r.Header.Get("Content-Type"); ct != deviceType {
					t.Errorf("Content-Type %q", ct)
				}
				want := map[string]any{"InstanceID": "0", "Manufacturer": "Acme", "ModelNumber": "X-1",
					"AvailablePowerSources": []any{1.0, 5.0}, "BatteryLevel": 87.0, "ErrorCode": map[string]any{"3": 2.0},
					"CurrentTime": "2026-11-22T04:05:06Z"}
				for k, v := range want {
					if !reflect.DeepEqual(r.Body[k], v) {
						t.Errorf("%s = %#v, want %#v", k, r.Body[k], v)
					}
				}
				if got := strings.Join(rels(r.Body), ","); got != "self,update,remove,subscriptions,definition,execute,execute,execute" {
					t.Errorf("links %s", got)
				}
				var titles []string
				for _, l := range asList(r.Body["Links"]) {
					if m := l.(map[string]any); m["rel"] == "execute" {
						titles = append(titles, fmt.Sprint(m["title"]))
						if !strings.HasPrefix(m["href"].(string), e.URL+dev0+"/resources/") {
							t.Errorf("execute href %v", m["href"])
						}
					}
				}
				if !slices.Equal(titles, []string{"Reboot", "FactoryReset", "ResetErrorCode"}) {
					t.Errorf("execute titles %v", titles)
				}
				if link(t, r.Body, "self") != e.URL+dev0 || link(t, r.Body, "subscriptions") != e.URL+dev0+"/subscriptions" {
					t.Errorf("links %v", r.Body["Links"])
				}
			}},
		{name: "read an instance with a versioned Accept", method: "GET", path: dev0, accept: "application/vnd.oma.lwm2m.device-v1", status: 200,
			call: &devCall{Op: "read", Client: "c-01", Path: "/3/0"},
			check: func(t *testing.T, r resp) {
				if ct := r.Header.Get("Content-Type"); ct != "application/vnd.oma.lwm2m.device-v1+json" {
					t.Errorf("Content-Type %q", ct)
				}
			}},
		{name: "read the instances", method: "GET", path: temps, status: 200,
			call: &devCall{Op: "read", Client: "c-01", Path: "/3303"},
			check: func(t *testing.T, r resp) {
				if ct := r.Header.Get("Content-Type"); ct != "application/vnd.oma.lwm2m.temperatures+json" {
					t.Errorf("Content-Type %q", ct)
				}
				its := items(r.Body)
				if len(its) != 2 || its[0]["InstanceID"] != "0" || its[0]["SensorValue"] != 21.5 || its[1]["SensorValue"] != -4.0 {
					t.Errorf("items %s", mustJSON(its))
				}
				if link(t, r.Body, "add") != e.URL+temps {
					t.Errorf("add link %v", r.Body["Links"])
				}
			}},
		{name: "read a resource", method: "GET", path: dev0 + "/resources/9", status: 200,
			call: &devCall{Op: "read", Client: "c-01", Path: "/3/0/9"},
			check: func(t *testing.T, r resp) {
				if r.Body["BatteryLevel"] != 87.0 || link(t, r.Body, "self") != e.URL+dev0+"/resources/9" {
					t.Errorf("resource body %s", r.Raw)
				}
			}},
		{name: "read an object without a definition", method: "GET", path: "/clients/c-01/objecttypes/42424/instances/0", status: 200,
			call: &devCall{Op: "read", Client: "c-01", Path: "/42424/0"},
			check: func(t *testing.T, r resp) {
				if ct := r.Header.Get("Content-Type"); ct != "application/vnd.oma.lwm2m.object42424+json" {
					t.Errorf("Content-Type %q", ct)
				}
			}},
		{name: "write", method: "PUT", path: dev0, ct: deviceType, body: `{"UTCOffset":"+02:00","Timezone":"Europe/Paris"}`, status: 204,
			call: &devCall{Op: "write", Client: "c-01", Path: "/3/0", Recs: []lwm2m.Record{
				{Path: lwm2m.ResourcePath(3, 0, 15), Value: "Europe/Paris"}, {Path: lwm2m.ResourcePath(3, 0, 14), Value: "+02:00"}}}},
		{name: "write a GET representation back", method: "PUT", path: dev0, ct: "application/json",
			body: `{"InstanceID":"0","CurrentTime":"2026-11-22T05:00:00+01:00","Links":[{"rel":"self","href":"x"}]}`, status: 204,
			call: &devCall{Op: "write", Client: "c-01", Path: "/3/0", Recs: []lwm2m.Record{
				{Path: lwm2m.ResourcePath(3, 0, 13), Value: time.Date(2026, 11, 22, 4, 0, 0, 0, time.UTC)}}}},
		{name: "replace", method: "PUT", path: dev0 + "?replace=true", ct: deviceType, body: `{"UTCOffset":"Z"}`, status: 204,
			call: &devCall{Op: "write", Client: "c-01", Path: "/3/0", Replace: true, Recs: []lwm2m.Record{{Path: lwm2m.ResourcePath(3, 0, 14), Value: "Z"}}}},
		{name: "write a resource", method: "PUT", path: dev0 + "/resources/14", ct: deviceType, body: `"+03:00"`, status: 204,
			call: &devCall{Op: "write", Client: "c-01", Path: "/3/0/14", Replace: true, Recs: []lwm2m.Record{{Path: lwm2m.ResourcePath(3, 0, 14), Value: "+03:00"}}}},
		{name: "write a resource by name", method: "PUT", path: dev0 + "/resources/14", ct: deviceType, body: `{"UTCOffset":"+04:00"}`, status: 204,
			call: &devCall{Op: "write", Client: "c-01", Path: "/3/0/14", Replace: true, Recs: []lwm2m.Record{{Path: lwm2m.ResourcePath(3, 0, 14), Value: "+04:00"}}}},
		{name: "create without an ID", method: "POST", path: temps, ct: tempType, body: `{"ApplicationType":"probe"}`, status: 201,
			call: &devCall{Op: "create", Client: "c-01", Path: "/3303", Recs: []lwm2m.Record{{Path: lwm2m.ResourcePath(3303, 2, 5750), Value: "probe"}}},
			check: func(t *testing.T, r resp) {
				if ct := r.Header.Get("Content-Type"); ct != "application/vnd.imgtec.resourcecreated+json" {
					t.Errorf("Content-Type %q", ct)
				}
				self := e.URL + temps + "/2"
				if r.Body["ID"] != "2" || link(t, r.Body, "self") != self || r.Header.Get("Location") != self {
					t.Errorf("created %s, Location %q", r.Raw, r.Header.Get("Location"))
				}
			}},
		{name: "create with an ID", method: "POST", path: temps, ct: "application/json", body: `{"InstanceID":"7","ApplicationType":"probe","SensorValue":1}`, status: 201,
			call: &devCall{Op: "create", Client: "c-01", Path: "/3303", Recs: []lwm2m.Record{
				{Path: lwm2m.ResourcePath(3303, 7, 5750), Value: "probe"}, {Path: lwm2m.ResourcePath(3303, 7, 5700), Value: 1.0}}},
			check: func(t *testing.T, r resp) {
				if r.Body["ID"] != "7" {
					t.Errorf("created %s", r.Raw)
				}
			}},
		{name: "delete", method: "DELETE", path: temps + "/1", status: 204, call: &devCall{Op: "delete", Client: "c-01", Path: "/3303/1"}},
		{name: "execute", method: "POST", path: dev0 + "/resources/4", ct: "text/plain", body: "now", status: 204,
			call: &devCall{Op: "execute", Client: "c-01", Path: "/3/0/4", Args: "now"}},
		{name: "execute without arguments", method: "POST", path: dev0 + "/resources/4", status: 204,
			call: &devCall{Op: "execute", Client: "c-01", Path: "/3/0/4"}},
		{name: "execute arguments not text", method: "POST", path: dev0 + "/resources/4", ct: "application/json", body: `"now"`, status: 415},
		{name: "execute a readable resource", method: "POST", path: dev0 + "/resources/0", status: 405},
		{name: "write a read-only resource", method: "PUT", path: dev0 + "/resources/0", ct: deviceType, body: `"x"`, status: 405},
		{name: "instance 65535", method: "GET", path: "/clients/c-01/objecttypes/3/instances/65535", status: 404},
		{name: "instance out of range", method: "GET", path: "/clients/c-01/objecttypes/3/instances/70000", status: 404},
		{name: "resource out of range", method: "GET", path: dev0 + "/resources/65536", status: 404},
		{name: "unknown client", method: "GET", path: "/clients/nobody/objecttypes/3/instances/0", status: 404},
		{name: "unsupported method", method: "PATCH", path: dev0, ct: deviceType, body: `{}`, status: 405},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var extra []string
			if tt.accept != "" {
				extra = []string{"Accept", tt.accept}
			}
			r := e.do(t, e.admin, tt.method, tt.path, tt.ct, tt.body, extra...)
			if r.Status != tt.status {
				t.Fatalf("status %d %s, want %d", r.Status, r.Raw, tt.status)
			}
			calls := e.dev.take()
			var want []devCall
			if tt.call != nil {
				want = []devCall{*tt.call}
			}
			for i := range calls {
				sortRecs(calls[i].Recs)
			}
			for i := range want {
				sortRecs(want[i].Recs)
			}
			if !reflect.DeepEqual(calls, want) {
				t.Errorf("device calls\n got %v\nwant %v", calls, want)
			}
			if tt.check != nil {
				tt.check(t, r)
			}
		})
	}
}

func sortRecs(rs []lwm2m.Record) {
	slices.SortFunc(rs, func(a, b lwm2m.Record) int { return strings.Compare(a.Path.String(), b.Path.String()) })
}

func TestDeviceErrors(t *testing.T) {
	e := newEnv(t)
	e.register(t, adminOrg, "c-01", "ep-01", true)
	deviceErr := func(code uint8) error {
		return fmt.Errorf("endpoint: read /3/0: %w", &lwm2m.DeviceError{Op: "read", Code: code, Msg: "diagnostic"})
	}
	tests := []struct {
		name   string
		err    error
		status int
	}{
		{"timeout", fmt.Errorf("endpoint: read /3/0: %w", lwm2m.ErrTimeout), 504},
		{"4.00 Bad Request", deviceErr(4 << 5), 400},
		{"4.01 Unauthorized", deviceErr(4<<5 | 1), 403},
		{"4.03 Forbidden", deviceErr(4<<5 | 3), 403},
		{"4.04 Not Found", deviceErr(4<<5 | 4), 404},
		{"4.05 Method Not Allowed", deviceErr(4<<5 | 5), 405},
		{"5.00 Internal Server Error", deviceErr(5 << 5), 502},
		{"5.03 Service Unavailable", deviceErr(5<<5 | 3), 502},
		{"client gone", fmt.Errorf("endpoint: %w", lwm2m.ErrClientNotFound), 404},
	}
	ops := []struct {
		method, path, ct, body string
	}{
		{"GET", dev0, "", ""},
		{"GET", temps, "", ""},
		{"PUT", dev0, deviceType, `{"UTCOffset":"Z"}`},
		{"POST", temps, tempType, `{"ApplicationType":"x"}`},
		{"DELETE", temps + "/1", "", ""},
		{"POST", dev0 + "/resources/4", "", ""},
		{"GET", dev0 + "/resources/0", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.dev.setErr(tt.err)
			defer e.dev.setErr(nil)
			for _, op := range ops {
				r := e.do(t, e.admin, op.method, op.path, op.ct, op.body)
				if r.Status != tt.status {
					t.Errorf("%s %s: %d %s, want %d", op.method, op.path, r.Status, r.Raw, tt.status)
					continue
				}
				switch {
				case tt.status == http.StatusBadRequest:
					wantBadRequest(t, r)
					if msg, _ := r.Body["ErrorMessage"].(string); !strings.Contains(msg, "4.00") {
						t.Errorf("message %q does not say what the device answered", msg)
					}
				case r.Header.Get("Content-Type") != "application/vnd.imgtec.error+json":
					t.Errorf("%s %s: Content-Type %q", op.method, op.path, r.Header.Get("Content-Type"))
				}
			}
			e.dev.take()
		})
	}
}

func TestNegotiation(t *testing.T) {
	e := newEnv(t)
	e.register(t, adminOrg, "c-01", "ep-01", true)
	tests := []struct {
		name, method, path, accept, ct, body string
		status                               int
		wantCT                               string
	}{
		{"client list as XML", "GET", "/clients", "application/xml", "", "", 200, "application/vnd.imgtec.clients+xml"},
		{"client list newer version", "GET", "/clients", "application/vnd.imgtec.clients-v2+json", "", "", 406, ""},
		{"client list as HTML", "GET", "/clients", "text/html", "", "", 406, ""},
		{"client list, q=0 JSON", "GET", "/clients", "application/json;q=0", "", "", 406, ""},
		{"client list as JSON", "GET", "/clients", "application/json", "", "", 200, "application/vnd.imgtec.clients+json"},
		{"client list, browser Accept (XML outranks */*)", "GET", "/clients", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", "", "", 200,
			"application/vnd.imgtec.clients+xml"},
		{"client versioned", "GET", "/clients/c-01", "application/vnd.imgtec.client-v1", "", "", 200, "application/vnd.imgtec.client-v1+json"},
		{"client asked as another type", "GET", "/clients/c-01", "application/vnd.imgtec.accesskey", "", "", 406, ""},
		{"instance as XML", "GET", dev0, "application/vnd.oma.lwm2m.device+xml", "", "", 200, "application/vnd.oma.lwm2m.device+xml"},
		{"instance as a newer XML version", "GET", dev0, "application/vnd.oma.lwm2m.device-v2+xml", "", "", 406, "application/vnd.imgtec.error+xml"},
		{"instance as another object's type", "GET", dev0, "application/vnd.oma.lwm2m.temperature", "", "", 406, ""},
		{"instances list as the single type", "GET", temps, "application/vnd.oma.lwm2m.temperature", "", "", 406, ""},
		{"token as XML", "POST", "/oauth/token", "application/xml", "application/x-www-form-urlencoded",
			"grant_type=password&username=" + adminKey + "&password=" + adminSecret, 406, "application/vnd.imgtec.error+xml"},
		{"root as XML", "GET", "/", "application/xml", "", "", 200, "application/vnd.imgtec.api+xml"},
		{"write with another object's type", "PUT", dev0, "", tempType, `{"UTCOffset":"Z"}`, 415, ""},
		{"write as text", "PUT", dev0, "", "text/plain", `{"UTCOffset":"Z"}`, 415, ""},
		{"write as XML with an unknown field", "PUT", dev0, "", "application/xml", `<Device><Nope>1</Nope></Device>`, 400, "application/vnd.imgtec.badrequest+json"},
		{"error in XML when XML is asked", "PUT", dev0, "application/xml", "application/xml", `<Device><Nope>1</Nope></Device>`, 400, "application/vnd.imgtec.badrequest+xml"},
		{"write without Content-Type", "PUT", dev0, "", "", `{"UTCOffset":"Z"}`, 415, ""},
		{"write a newer version", "PUT", dev0, "", "application/vnd.oma.lwm2m.device-v2+json", `{"UTCOffset":"Z"}`, 415, ""},
		{"create with the list type", "POST", temps, "", "application/vnd.oma.lwm2m.temperatures+json", `{}`, 415, ""},
		{"subscription as a form", "POST", "/subscriptions", "", "application/x-www-form-urlencoded", "Url=x", 415, ""},
		{"definition as a subscription", "POST", "/objecttypes/definitions", "", "application/vnd.oma.lwm2m.subscription+json", `{}`, 415, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.do(t, e.admin, tt.method, tt.path, tt.ct, tt.body, "Accept", tt.accept)
			if r.Status != tt.status {
				t.Fatalf("status %d %s, want %d", r.Status, r.Raw, tt.status)
			}
			want := tt.wantCT
			if want == "" {
				want = "application/vnd.imgtec.error+json"
			}
			if ct := r.Header.Get("Content-Type"); ct != want {
				t.Errorf("Content-Type %q, want %q", ct, want)
			}
			if calls := e.dev.take(); tt.status != 200 && len(calls) != 0 {
				t.Errorf("device calls after %d: %v", tt.status, calls)
			}
		})
	}
}

func TestBadRequests(t *testing.T) {
	e := newEnv(t)
	e.register(t, adminOrg, "c-01", "ep-01", true)
	tests := []struct {
		name, method, path, ct, body string
		status                       int
		fields                       []string
	}{
		{"malformed instance", "PUT", dev0, deviceType, `{"UTCOffset":`, 400, nil},
		{"instance not an object", "PUT", dev0, deviceType, `["UTCOffset"]`, 400, nil},
		{"instance trailing data", "PUT", dev0, deviceType, `{"UTCOffset":"Z"}x`, 400, nil},
		{"instance unknown, read-only, executable, wrong type", "PUT", dev0, deviceType,
			`{"Colour":"red","Manufacturer":"x","Reboot":"","UTCOffset":5,"Timezone":"UTC"}`, 400,
			[]string{"Colour", "Manufacturer", "Reboot", "UTCOffset"}},
		{"instance bad time", "PUT", dev0, deviceType, `{"CurrentTime":"tomorrow"}`, 400, []string{"CurrentTime"}},
		{"instance nothing writable", "PUT", dev0, deviceType, `{}`, 400, nil},
		{"instance replace not a boolean", "PUT", dev0 + "?replace=perhaps", deviceType, `{"UTCOffset":"Z"}`, 400, []string{"replace"}},
		{"create with a bad ID", "POST", temps, tempType, `{"InstanceID":"x"}`, 400, []string{"InstanceID"}},
		{"create with ID 65535", "POST", temps, tempType, `{"InstanceID":65535}`, 400, []string{"InstanceID"}},
		{"create with an executable", "POST", temps, tempType, `{"ResetMinAndMaxMeasuredValues":""}`, 400, []string{"ResetMinAndMaxMeasuredValues"}},
		{"resource wrong type", "PUT", dev0 + "/resources/14", deviceType, `14`, 400, []string{"UTCOffset"}},
		{"resource other field", "PUT", dev0 + "/resources/14", deviceType, `{"Timezone":"UTC"}`, 400, []string{"UTCOffset"}},
		{"oversized body", "PUT", dev0, deviceType, `{"UTCOffset":"` + strings.Repeat("x", 1<<20) + `"}`, 413, nil},
		{"oversized execute arguments", "POST", dev0 + "/resources/4", "text/plain", strings.Repeat("x", 1<<20+1), 413, nil},
		{"absurd page size", "GET", "/clients?pageSize=100000", "", "", 400, []string{"pageSize"}},
		{"absurd page size on instances", "GET", temps + "?pageSize=100000", "", "", 400, []string{"pageSize"}},
		{"absurd page size on definitions", "GET", "/objecttypes/definitions?pageSize=100000", "", "", 400, []string{"pageSize"}},
		{"negative start on subscriptions", "GET", "/subscriptions?startIndex=-5", "", "", 400, []string{"startIndex"}},
		{"negative start on keys", "GET", "/accesskeys?startIndex=-5", "", "", 400, []string{"startIndex"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.do(t, e.admin, tt.method, tt.path, tt.ct, tt.body)
			if tt.status == http.StatusBadRequest {
				wantBadRequest(t, r, tt.fields...)
			} else if r.Status != tt.status {
				t.Fatalf("status %d %s, want %d", r.Status, r.Raw, tt.status)
			}
			for _, c := range e.dev.take() {
				if c.Op != "read" {
					t.Errorf("device %s after a bad request", c)
				}
			}
		})
	}
}

func TestRequestIDEcho(t *testing.T) {
	e := newEnv(t)
	e.register(t, adminOrg, "c-01", "ep-01", true)
	tests := []struct {
		name, token, method, path, ct, body string
		status                              int
	}{
		{"ok", e.admin, "GET", "/clients", "", "", 200},
		{"public", "", "GET", "/versions", "", "", 200},
		{"no content", e.admin, "PUT", dev0, deviceType, `{"UTCOffset":"Z"}`, 204},
		{"unauthorised", "", "GET", "/clients", "", "", 401},
		{"not found", e.admin, "GET", "/clients/nobody", "", "", 404},
		{"no route", e.admin, "GET", "/no/such/route", "", "", 404},
		{"bad request", e.admin, "GET", "/clients?pageSize=0", "", "", 400},
		{"not acceptable", e.admin, "GET", "/clients", "", "", 406},
		{"unsupported media type", e.admin, "POST", "/accesskeys", "text/plain", "x", 415},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			extra := []string{"X-Client-RequestId", "rq-" + strings.ReplaceAll(tt.name, " ", "-")}
			if tt.status == http.StatusNotAcceptable {
				extra = append(extra, "Accept", "text/html")
			}
			r := e.do(t, tt.token, tt.method, tt.path, tt.ct, tt.body, extra...)
			if r.Status != tt.status {
				t.Fatalf("status %d %s, want %d", r.Status, r.Raw, tt.status)
			}
			if r.Header.Get("X-Client-RequestId") != extra[1] {
				t.Errorf("X-Client-RequestId %q", r.Header.Get("X-Client-RequestId"))
			}
		})
	}
	if r := e.do(t, e.admin, "GET", "/clients", "", ""); r.Header.Get("X-Client-RequestId") != "" {
		t.Errorf("X-Client-RequestId without one in the request: %q", r.Header.Get("X-Client-RequestId"))
	}
}

func TestErrorsAreTyped(t *testing.T) {
	e := newEnv(t)
	for _, p := range []string{"/nothing", "/clients/x/y/z"} {
		r := e.do(t, e.admin, http.MethodGet, p, "", "")
		if r.Status != http.StatusNotFound || r.Header.Get("Content-Type") != "application/vnd.imgtec.error+json" {
			t.Errorf("GET %s: %d %q", p, r.Status, r.Header.Get("Content-Type"))
		}
		if msg, _ := r.Body["ErrorMessage"].(string); msg == "" {
			t.Errorf("GET %s: no message: %s", p, r.Raw)
		}
	}
}
