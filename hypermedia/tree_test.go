package hypermedia

import (
	"encoding/json"
	"strings"
	"testing"
)

func treeOf(t *testing.T, s string) any {
	t.Helper()
	v, err := ParseTree(strings.NewReader(s))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func jsonOf(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestTreeKeepsOrderAndNumbers(t *testing.T) {
	in := `{"b":1,"a":[1.50,{"z":true,"y":null}],"c":"x","n":12345678901234567890}`
	if got := jsonOf(t, treeOf(t, in)); got != `{"b":1,"a":[1.50,{"z":true,"y":null}],"c":"x","n":12345678901234567890}` {
		t.Errorf("round trip = %s", got)
	}
	for _, bad := range []string{`{"a":1} x`, `{"a":`, strings.Repeat("[", 100) + strings.Repeat("]", 100)} {
		if _, err := ParseTree(strings.NewReader(bad)); err == nil {
			t.Errorf("ParseTree(%.20q) accepted", bad)
		}
	}
}

func TestSelect(t *testing.T) {
	client := `{"Name":"a","Lifetime":60,"Links":[{"rel":"self","href":"s"},{"rel":"remove","href":"r"},{"rel":"objecttypes","href":"o"}]}`
	list := `{"PageInfo":{"TotalCount":1,"Links":[{"rel":"first","href":"f"}]},"Items":[` + client + `],"Links":[{"rel":"add","href":"x"}]}`
	tests := []struct {
		name, in, fields, links, want string
	}{
		{"nothing asked", client, "", "", client},
		{"fields of a single", client, "name", "", `{"Name":"a","Links":[{"rel":"self","href":"s"},{"rel":"remove","href":"r"},{"rel":"objecttypes","href":"o"}]}`},
		{"links of a single", client, "", "self, objecttypes", `{"Name":"a","Lifetime":60,"Links":[{"rel":"self","href":"s"},{"rel":"objecttypes","href":"o"}]}`},
		{"both on a list: fields apply to items, links at every level", list, "Lifetime", "self",
			`{"PageInfo":{"TotalCount":1,"Links":[]},"Items":[{"Lifetime":60,"Links":[{"rel":"self","href":"s"}]}],"Links":[]}`},
		{"unknown names keep only the always-kept members", client, "nope", "nope", `{"Links":[]}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := jsonOf(t, Select(treeOf(t, tc.in), tc.fields, tc.links)); got != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}
