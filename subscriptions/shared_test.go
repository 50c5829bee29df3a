package subscriptions

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/deviceserver/deviceserver/lwm2m"
	"github.com/deviceserver/deviceserver/storage"
)

// Several subscriptions share one device observation: the device is asked
// for the combination, and each subscription sees only what its own
// attributes select (OMA LwM2M Core 5.1.2 rules, applied per subscription).
func TestSharedObservationFiltersPerSubscription(t *testing.T) {
	type step struct {
		advance time.Duration
		value   float64
	}
	s := time.Second
	cases := []struct {
		name         string
		a, b         lwm2m.Attributes
		steps        []step
		wantA, wantB []float64
	}{
		{"gt for one, lt for the other",
			lwm2m.Attributes{Gt: f64(30)}, lwm2m.Attributes{Lt: f64(10)},
			[]step{{s, 20}, {s, 35}, {s, 15}, {s, 5}, {s, 12}},
			[]float64{35, 15}, []float64{5, 12}},
		{"step for one, every change for the other",
			lwm2m.Attributes{St: f64(5)}, lwm2m.Attributes{},
			[]step{{s, 21}, {s, 23}, {s, 26}, {s, 26}, {s, 20}},
			[]float64{26, 20}, []float64{21, 23, 26, 20}},
		{"pmin for one, pmax for the other",
			lwm2m.Attributes{Pmin: u32(10)}, lwm2m.Attributes{Pmax: u32(5), St: f64(100)},
			[]step{{2 * s, 21}, {2 * s, 22}, {2 * s, 22}, {16 * s, 23}},
			[]float64{22, 23}, []float64{22, 23}},
		{"gt and step with lt",
			lwm2m.Attributes{Gt: f64(25)}, lwm2m.Attributes{Lt: f64(15), St: f64(2)},
			[]step{{s, 21}, {s, 26}, {s, 24}, {s, 14}, {s, 13.5}, {s, 11}},
			[]float64{26, 24}, []float64{26, 24, 14, 11}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := newEnv(t, Config{Render: testRender})
			ctx := context.Background()
			reg := env.register("c1", "org1", "ep1")
			env.dev.values[tempKey] = temperature(20)
			rcA, rcB := newReceiver(t, nil), newReceiver(t, nil)
			for _, sub := range []struct {
				url string
				a   lwm2m.Attributes
			}{{rcA.URL, tc.a}, {rcB.URL, tc.b}} {
				env.create(storage.Subscription{ClientID: "c1", Type: TypeObservation, URL: sub.url, Path: "/3303/0/5700", Attributes: sub.a})
			}
			if n, _ := env.dev.counts(tempKey); n != 1 {
				t.Fatalf("%d device observations, want 1 shared", n)
			}
			for _, st := range tc.steps {
				env.clock.Advance(st.advance)
				env.eng.Notify(ctx, reg, tempPath, temperature(st.value), env.clock.Now())
			}
			for _, rc := range []struct {
				name string
				r    *receiver
				want []float64
			}{{"A", rcA, tc.wantA}, {"B", rcB, tc.wantB}} {
				for i, want := range rc.want {
					if got := value(t, next(t, rc.r.accepted, rc.name+" notification "+strconv.Itoa(i)))["Temperature"]; got != want {
						t.Fatalf("%s notification %d = %v, want %v (all: %v)", rc.name, i, got, want, rc.want)
					}
				}
			}
		})
	}
}
