package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestScanValuesMatchesJSON(t *testing.T) {
	bodies := []string{
		`{"Items":[{"SubscriptionType":"Observation","TimeTriggered":"2026-11-22T07:01:02.000Z","Links":[{"rel":"subscription","href":"http://x/subscriptions/a"}],"Value":{"SensorValue":21}}]}`,
		`{"Items":[{"SubscriptionType":"Observation","Value":{"SensorValue":1}},{"SubscriptionType":"Observation","Value":{"SensorValue": 2}},{"SubscriptionType":"Observation","Value":{"SensorValue":3e2}}]}`,
		`{"Items":[]}`,
	}
	for _, b := range bodies {
		var doc struct {
			Items []struct{ Value struct{ SensorValue float64 } }
		}
		if err := json.Unmarshal([]byte(b), &doc); err != nil {
			t.Fatal(err)
		}
		var want, got []int64
		for _, it := range doc.Items {
			want = append(want, int64(it.Value.SensorValue))
		}
		if err := scanValues([]byte(b), func(v int64) { got = append(got, v) }); err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: scanned %v, want %v", b, got, want)
		}
	}
	if err := scanValues([]byte(`{"Value":{"SensorValue":1.5}}`), func(int64) {}); err == nil {
		t.Error("a fractional value was accepted")
	}
}

func TestParseFlags(t *testing.T) {
	c, err := parseFlags(nil, &bytes.Buffer{})
	if err != nil || !slices.Equal(c.policies, []int{0, 1}) || c.devices != 100 || c.rate != 5000 {
		t.Errorf("defaults %+v, %v", c, err)
	}
	for _, args := range [][]string{{"-policy", "2"}, {"-devices", "0"}, {"-rate", "1", "-duration", "1s"}, {"extra"}} {
		if _, err := parseFlags(args, &bytes.Buffer{}); err == nil {
			t.Errorf("%q accepted", args)
		}
	}
}

// TestRun runs the whole tool briefly, both policies, NON and CON: every
// notification sent must be delivered exactly once.
func TestRun(t *testing.T) {
	for _, con := range []bool{false, true} {
		t.Run(fmt.Sprintf("con=%v", con), func(t *testing.T) {
			var out, errOut bytes.Buffer
			args := []string{"-devices", "5", "-rate", "200", "-duration", "500ms", "-idle", "10s"}
			if con {
				args = append(args, "-con")
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := run(ctx, args, &out, &errOut); err != nil {
				t.Fatalf("%v\n%s", err, errOut.String())
			}
			lines := strings.Split(strings.TrimSpace(out.String()), "\n")
			if len(lines) != 3 || lines[0] != "notifybench "+strings.Join(args, " ") {
				t.Fatalf("output:\n%s", out.String())
			}
			ok := regexp.MustCompile(`: sent 100 \(.*delivered 100 .*, lost 0, dup 0, latency .*server dropped 0 pending 0`)
			for i, l := range lines[1:] {
				if !strings.HasPrefix(l, fmt.Sprintf("DP%d ", i)) || !ok.MatchString(l) {
					t.Errorf("run %d: %s", i, l)
				}
				if con && !strings.Contains(l, "ACKed 100 ") {
					t.Errorf("run %d: not every CON notification was acknowledged: %s", i, l)
				}
			}
		})
	}
}
