package hypermedia

import (
	"crypto/tls"
	"encoding/json"
	"math"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

func TestPageRequest(t *testing.T) {
	tests := []struct {
		query       string
		start, size int
		field       string // "" when valid
	}{
		{"", 0, DefaultPageSize, ""},
		{"startIndex=0", 0, DefaultPageSize, ""},
		{"startIndex=20&pageSize=5", 20, 5, ""},
		{"pageSize=1", 0, 1, ""},
		{"pageSize=1000", 0, 1000, ""},
		{"startIndex=&pageSize=", 0, DefaultPageSize, ""},
		{"name=x&startIndex=3", 3, DefaultPageSize, ""},
		{"pageSize=0", 0, 0, "pageSize"},
		{"pageSize=1001", 0, 0, "pageSize"},
		{"pageSize=100000", 0, 0, "pageSize"},
		{"pageSize=-1", 0, 0, "pageSize"},
		{"pageSize=ten", 0, 0, "pageSize"},
		{"pageSize=1.5", 0, 0, "pageSize"},
		{"pageSize=99999999999999999999999", 0, 0, "pageSize"},
		{"startIndex=-1", 0, 0, "startIndex"},
		{"startIndex=abc", 0, 0, "startIndex"},
		{"startIndex=0x10", 0, 0, "startIndex"},
		{"startIndex=99999999999999999999999", 0, 0, "startIndex"},
		{"startIndex=-1&pageSize=0", 0, 0, "startIndex"},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			q, err := url.ParseQuery(tt.query)
			if err != nil {
				t.Fatal(err)
			}
			start, size, field, err := PageRequest(q)
			if tt.field != "" {
				if err == nil || field != tt.field || !strings.Contains(err.Error(), tt.field) {
					t.Fatalf("PageRequest(%s) = field %q, err %v; want an error naming %s", tt.query, field, err, tt.field)
				}
				return
			}
			if err != nil || field != "" || start != tt.start || size != tt.size {
				t.Fatalf("PageRequest(%s) = %d, %d, %q, %v; want %d, %d", tt.query, start, size, field, err, tt.start, tt.size)
			}
		})
	}
}

// linkQueries returns rel → the link's query, for comparing paging links.
func linkQueries(t *testing.T, ls Links) map[string]url.Values {
	t.Helper()
	out := map[string]url.Values{}
	for _, l := range ls {
		u, err := url.Parse(l.Href)
		if err != nil {
			t.Fatalf("link %s: %v", l.Href, err)
		}
		if u.Scheme != "https" || u.Host != "api.example:8443" || u.Path != "/clients" {
			t.Errorf("link %s does not point at the list", l.Href)
		}
		if _, dup := out[l.Rel]; dup {
			t.Errorf("duplicate link %s", l.Rel)
		}
		out[l.Rel] = u.Query()
	}
	return out
}

func TestNewPageInfo(t *testing.T) {
	type pos struct{ start, size int }
	tests := []struct {
		name                      string
		self                      string
		start, size, items, total int
		want                      map[string]pos // rel → position; absent rels must not appear
	}{
		{"empty list has no links", "/clients", 0, 10, 0, 0, map[string]pos{}},
		{"one page", "/clients", 0, 10, 7, 7, map[string]pos{"first": {0, 10}, "last": {0, 10}}},
		{"exactly one page", "/clients", 0, 10, 10, 10, map[string]pos{"first": {0, 10}, "last": {0, 10}}},
		{"first of three pages", "/clients", 0, 10, 10, 25, map[string]pos{"first": {0, 10}, "next": {10, 10}, "last": {20, 10}}},
		{"middle page", "/clients", 10, 10, 10, 25, map[string]pos{"first": {0, 10}, "previous": {0, 10}, "next": {20, 10}, "last": {20, 10}}},
		{"last page", "/clients", 20, 10, 5, 25, map[string]pos{"first": {0, 10}, "previous": {10, 10}, "last": {20, 10}}},
		{"one past a full page", "/clients", 0, 10, 10, 11, map[string]pos{"first": {0, 10}, "next": {10, 10}, "last": {10, 10}}},
		{"unaligned start", "/clients", 5, 10, 10, 25, map[string]pos{"first": {0, 10}, "previous": {0, 10}, "next": {15, 10}, "last": {20, 10}}},
		{"beyond the end", "/clients", 40, 10, 0, 25, map[string]pos{"first": {0, 10}, "previous": {30, 10}, "last": {20, 10}}},
		{"page size one", "/clients", 1, 1, 1, 3, map[string]pos{"first": {0, 1}, "previous": {0, 1}, "next": {2, 1}, "last": {2, 1}}},
		{"huge start has no next", "/clients", math.MaxInt, 10, 0, 25, map[string]pos{"first": {0, 10}, "previous": {math.MaxInt - 10, 10}, "last": {20, 10}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			self, _ := url.Parse("https://api.example:8443" + tt.self)
			pi := NewPageInfo(self, tt.start, tt.size, tt.items, tt.total)
			if pi.TotalCount != tt.total || pi.ItemsCount != tt.items || pi.StartIndex != tt.start {
				t.Errorf("PageInfo counts = %d/%d/%d, want %d/%d/%d", pi.TotalCount, pi.ItemsCount, pi.StartIndex, tt.total, tt.items, tt.start)
			}
			got := linkQueries(t, pi.Links)
			for rel, p := range tt.want {
				q, ok := got[rel]
				if !ok {
					t.Errorf("no %s link in %v", rel, pi.Links)
					continue
				}
				if q.Get("startIndex") != itoa(p.start) || q.Get("pageSize") != itoa(p.size) {
					t.Errorf("%s link %v, want startIndex=%d pageSize=%d", rel, q, p.start, p.size)
				}
			}
			for rel := range got {
				if _, ok := tt.want[rel]; !ok {
					t.Errorf("unexpected %s link", rel)
				}
			}
		})
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

func TestNewPageInfoKeepsOtherParameters(t *testing.T) {
	self, _ := url.Parse("https://api.example:8443/clients?name=ep-1&online=true&startIndex=10&pageSize=5")
	pi := NewPageInfo(self, 10, 5, 5, 30)
	for rel, q := range linkQueries(t, pi.Links) {
		if q.Get("name") != "ep-1" || q.Get("online") != "true" {
			t.Errorf("%s link lost the filters: %v", rel, q)
		}
		if len(q["startIndex"]) != 1 || len(q["pageSize"]) != 1 {
			t.Errorf("%s link repeats paging parameters: %v", rel, q)
		}
	}
	// The caller's URL is not modified.
	if self.Query().Get("startIndex") != "10" {
		t.Errorf("self modified: %s", self)
	}
}

func TestPageInfoJSON(t *testing.T) {
	self, _ := url.Parse("http://h/clients")
	b, err := json.Marshal(NewPageInfo(self, 0, 10, 0, 0))
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `{"TotalCount":0,"ItemsCount":0,"StartIndex":0}` {
		t.Errorf("empty PageInfo = %s", b)
	}
}

func TestBaseURL(t *testing.T) {
	tests := []struct {
		name    string
		tls     bool
		host    string
		headers map[string]string
		trust   bool
		want    string
	}{
		{"plain", false, "api.example:8080", nil, false, "http://api.example:8080"},
		{"TLS", true, "api.example", nil, false, "https://api.example"},
		{"forwarded headers ignored when not trusted", false, "10.0.0.5:8080",
			map[string]string{"X-Forwarded-Proto": "https", "X-Forwarded-Host": "api.example"}, false, "http://10.0.0.5:8080"},
		{"forwarded headers honoured when trusted", false, "10.0.0.5:8080",
			map[string]string{"X-Forwarded-Proto": "https", "X-Forwarded-Host": "api.example"}, true, "https://api.example"},
		{"only proto forwarded", false, "10.0.0.5:8080", map[string]string{"X-Forwarded-Proto": "https"}, true, "https://10.0.0.5:8080"},
		{"only host forwarded", true, "10.0.0.5:8443", map[string]string{"X-Forwarded-Host": "api.example:443"}, true, "https://api.example:443"},
		{"proxy chain: first values", false, "10.0.0.5:8080",
			map[string]string{"X-Forwarded-Proto": "https, http", "X-Forwarded-Host": " api.example , inner.proxy"}, true, "https://api.example"},
		{"proxy may downgrade TLS to http", true, "10.0.0.5", map[string]string{"X-Forwarded-Proto": "http"}, true, "http://10.0.0.5"},
		{"unknown proto ignored", false, "h", map[string]string{"X-Forwarded-Proto": "gopher"}, true, "http://h"},
		{"empty host ignored", false, "h", map[string]string{"X-Forwarded-Host": " , x"}, true, "http://h"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			r.Host = tt.host
			if tt.tls {
				r.TLS = &tls.ConnectionState{}
			} else {
				r.TLS = nil
			}
			for k, v := range tt.headers {
				r.Header.Set(k, v)
			}
			if got := BaseURL(r, tt.trust); got != tt.want {
				t.Errorf("BaseURL = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestLinksAdd(t *testing.T) {
	l := Links{}.Add("self", "http://h/x", "application/vnd.imgtec.x").Add("remove", "http://h/x", "")
	b, _ := json.Marshal(l)
	want := `[{"rel":"self","href":"http://h/x","type":"application/vnd.imgtec.x"},{"rel":"remove","href":"http://h/x"}]`
	if string(b) != want {
		t.Errorf("links = %s, want %s", b, want)
	}
}

func TestObjectMarshalJSON(t *testing.T) {
	tests := []struct {
		name string
		obj  Object
		want string
	}{
		{"nil", nil, `{}`},
		{"empty", Object{}, `{}`},
		{"keeps order", Object{{"Zeta", 1}, {"Alpha", "a"}, {"Mid", true}}, `{"Zeta":1,"Alpha":"a","Mid":true}`},
		{"nested objects keep order", Object{{"b", Object{{"2", 2}, {"1", 1}}}, {"a", []any{Object{{"y", nil}, {"x", 0}}}}},
			`{"b":{"2":2,"1":1},"a":[{"y":null,"x":0}]}`},
		{"names escaped", Object{{`q"uote`, 1}, {"new\nline", 2}}, `{"q\"uote":1,"new\nline":2}`},
		{"links", Object{{"InstanceID", "0"}, {"Links", Links{}.Add("self", "http://h/?a=1&b=2", "")}},
			`{"InstanceID":"0","Links":[{"rel":"self","href":"http://h/?a=1\u0026b=2"}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := json.Marshal(tt.obj)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tt.want {
				t.Errorf("got %s, want %s", b, tt.want)
			}
			if !json.Valid(b) {
				t.Errorf("invalid JSON %s", b)
			}
		})
	}
	if _, err := json.Marshal(Object{{"ok", 1}, {"Bad", make(chan int)}}); err == nil || !strings.Contains(err.Error(), "Bad") {
		t.Errorf("unencodable value: err %v, want one naming the field", err)
	}
	if v, ok := (Object{{"a", 1}, {"b", 2}}).Get("b"); !ok || v != 2 {
		t.Errorf("Get(b) = %v, %v", v, ok)
	}
	if _, ok := (Object{{"a", 1}}).Get("c"); ok {
		t.Error("Get of a missing member found one")
	}
}
