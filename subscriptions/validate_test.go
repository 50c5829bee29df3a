package subscriptions

import (
	"context"
	"errors"
	"math"
	"slices"
	"testing"

	"github.com/deviceserver/deviceserver/lwm2m"
	"github.com/deviceserver/deviceserver/storage"
)

func TestValidate(t *testing.T) {
	obs := func(mod func(*storage.Subscription)) storage.Subscription {
		s := storage.Subscription{OrganisationID: "org1", ClientID: "c1", Type: TypeObservation,
			URL: "https://receiver.example/hook", Path: "/3303/0/5700"}
		if mod != nil {
			mod(&s)
		}
		return s
	}
	life := func(mod func(*storage.Subscription)) storage.Subscription {
		s := storage.Subscription{OrganisationID: "org1", Type: TypeClientConnected, URL: "http://receiver.example:8000/"}
		if mod != nil {
			mod(&s)
		}
		return s
	}
	attrs := func(a lwm2m.Attributes) storage.Subscription {
		return obs(func(s *storage.Subscription) { s.Attributes = a })
	}
	cases := []struct {
		name        string
		sub         storage.Subscription
		fields      []string // nil: valid
		unsupported bool
	}{
		{"observation of a resource", obs(nil), nil, false},
		{"observation of an instance", obs(func(s *storage.Subscription) { s.Path = "/3303/0" }), nil, false},
		{"organisation lifecycle", life(nil), nil, false},
		{"client lifecycle", life(func(s *storage.Subscription) { s.ClientID = "c1"; s.Type = TypeClientConnectionExpired }), nil, false},
		{"every lifecycle type", life(func(s *storage.Subscription) { s.Type = TypeClientUpdated; s.DeletionPolicy = 1 }), nil, false},
		{"xml notifications", life(func(s *storage.Subscription) { s.AcceptContentType = "application/xml" }), nil, false},
		{"vendor json notifications", life(func(s *storage.Subscription) { s.AcceptContentType = "application/vnd.imgtec.notifications+json" }), nil, false},
		{"full valid attributes", attrs(lwm2m.Attributes{Pmin: u32(5), Pmax: u32(60), St: f64(0.5), Lt: f64(10), Gt: f64(40)}), nil, false},
		{"pmin equals pmax", attrs(lwm2m.Attributes{Pmin: u32(5), Pmax: u32(5)}), nil, false},

		{"unknown type", life(func(s *storage.Subscription) { s.Type = "ClientDeleted" }), []string{"SubscriptionType"}, false},
		{"missing type", life(func(s *storage.Subscription) { s.Type = "" }), []string{"SubscriptionType"}, false},
		{"observation without a path", obs(func(s *storage.Subscription) { s.Path = "" }), []string{"Property"}, false},
		{"observation of an object", obs(func(s *storage.Subscription) { s.Path = "/3303" }), []string{"Property"}, false},
		{"observation of a resource instance", obs(func(s *storage.Subscription) { s.Path = "/3303/0/5700/1" }), []string{"Property"}, false},
		{"observation with a bad path", obs(func(s *storage.Subscription) { s.Path = "/3303/x/5700" }), []string{"Property"}, false},
		{"lifecycle on an instance", life(func(s *storage.Subscription) { s.ClientID = "c1"; s.Path = "/3/0" }), []string{"SubscriptionType"}, false},
		{"lifecycle with attributes", life(func(s *storage.Subscription) { s.Attributes.Pmin = u32(1) }), []string{"Attributes"}, false},
		{"missing url", life(func(s *storage.Subscription) { s.URL = "" }), []string{"Url"}, false},
		{"relative url", life(func(s *storage.Subscription) { s.URL = "/hook" }), []string{"Url"}, false},
		{"ftp url", life(func(s *storage.Subscription) { s.URL = "ftp://receiver.example/hook" }), []string{"Url"}, false},
		{"url without host", life(func(s *storage.Subscription) { s.URL = "http:///hook" }), []string{"Url"}, false},
		{"unparsable url", life(func(s *storage.Subscription) { s.URL = "http://a b/%zz" }), []string{"Url"}, false},
		{"deletion policy 2", life(func(s *storage.Subscription) { s.DeletionPolicy = 2 }), []string{"DeletionPolicy"}, false},
		{"deletion policy -1", life(func(s *storage.Subscription) { s.DeletionPolicy = -1 }), []string{"DeletionPolicy"}, false},
		{"unknown content type", life(func(s *storage.Subscription) { s.AcceptContentType = "text/csv" }), []string{"AcceptContentType"}, false},
		{"pmax below pmin", attrs(lwm2m.Attributes{Pmin: u32(60), Pmax: u32(5)}), []string{"Attributes"}, false},
		{"NaN step", attrs(lwm2m.Attributes{St: f64(math.NaN())}), []string{"Attributes"}, false},
		{"infinite gt", attrs(lwm2m.Attributes{Gt: f64(math.Inf(1))}), []string{"Attributes"}, false},
		{"infinite lt", attrs(lwm2m.Attributes{Lt: f64(math.Inf(-1))}), []string{"Attributes"}, false},
		{"negative step", attrs(lwm2m.Attributes{St: f64(-1)}), []string{"Attributes"}, false},
		{"lt equals gt", attrs(lwm2m.Attributes{Lt: f64(10), Gt: f64(10)}), []string{"Attributes"}, false},
		{"lt above gt", attrs(lwm2m.Attributes{Lt: f64(40), Gt: f64(10)}), []string{"Attributes"}, false},
		{"lt + 2*st reaches gt", attrs(lwm2m.Attributes{Lt: f64(10), Gt: f64(20), St: f64(5)}), []string{"Attributes"}, false},
		{"lt + 2*st below gt", attrs(lwm2m.Attributes{Lt: f64(10), Gt: f64(20), St: f64(4.9)}), nil, false},
		{"epmin", attrs(lwm2m.Attributes{Epmin: u32(1)}), []string{"Attributes"}, false},
		{"several fields", life(func(s *storage.Subscription) { s.Type = "x"; s.URL = ""; s.DeletionPolicy = 3 }),
			[]string{"SubscriptionType", "Url", "DeletionPolicy"}, false},

		{"organisation-level observation (pre-subscription)", obs(func(s *storage.Subscription) { s.ClientID = "" }), nil, false},
		{"pre-subscription of an instance", obs(func(s *storage.Subscription) { s.ClientID = ""; s.Path = "/3303/0" }), nil, false},
		{"pre-subscription without a path", obs(func(s *storage.Subscription) { s.ClientID = ""; s.Path = "" }), []string{"ResourcePath"}, false},
		{"pre-subscription of an object", obs(func(s *storage.Subscription) { s.ClientID = ""; s.Path = "/3303" }), []string{"ResourcePath"}, false},
		{"pre-subscription with a malformed path", obs(func(s *storage.Subscription) { s.ClientID = ""; s.Path = "3303/0/x" }), []string{"ResourcePath"}, false},
		{"criteria by group", life(func(s *storage.Subscription) { s.Criteria = &storage.Criteria{Group: "g"} }), nil, false},
		{"criteria by endpoints", life(func(s *storage.Subscription) { s.Criteria = &storage.Criteria{Endpoints: []string{"ep1", "sn-2"}} }), nil, false},
		{"criteria by make, model and firmware", obs(func(s *storage.Subscription) {
			s.ClientID = ""
			s.Criteria = &storage.Criteria{Group: "g", Make: "Nokia", Model: "LwM2M Client", FirmwareVersion: "2.2"}
		}), nil, false},
		{"criteria model without make", life(func(s *storage.Subscription) { s.Criteria = &storage.Criteria{Model: "m"} }), []string{"Criteria"}, false},
		{"criteria firmware without model", life(func(s *storage.Subscription) { s.Criteria = &storage.Criteria{Make: "a", FirmwareVersion: "1"} }), []string{"Criteria"}, false},
		{"criteria endpoints with make", life(func(s *storage.Subscription) { s.Criteria = &storage.Criteria{Endpoints: []string{"ep"}, Make: "a"} }), []string{"Criteria"}, false},
		{"criteria with an empty endpoint", life(func(s *storage.Subscription) { s.Criteria = &storage.Criteria{Endpoints: []string{" "}} }), []string{"Criteria"}, false},
		{"criteria on a client-level subscription", life(func(s *storage.Subscription) { s.ClientID = "c1"; s.Criteria = &storage.Criteria{Group: "g"} }), []string{"Criteria"}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := New(Config{}).validate(context.Background(), tc.sub)
			var ve *ValidationError
			switch {
			case tc.unsupported:
				if !errors.Is(err, errors.ErrUnsupported) {
					t.Fatalf("validate = %v, want errors.ErrUnsupported", err)
				}
			case tc.fields == nil:
				if err != nil {
					t.Fatalf("validate = %v, want nil", err)
				}
			case !errors.As(err, &ve):
				t.Fatalf("validate = %v, want *ValidationError", err)
			case !slices.Equal(ve.Fields, tc.fields):
				t.Fatalf("invalid fields = %q, want %q (%v)", ve.Fields, tc.fields, err)
			}
		})
	}
}

// Create and Update report validation failures as *ValidationError and
// store nothing.
func TestCreateUpdateValidation(t *testing.T) {
	ev := newEnv(t, Config{})
	ctx := context.Background()
	_, err := ev.eng.Create(ctx, storage.Subscription{OrganisationID: "org1", Type: TypeClientConnected, URL: "nope"})
	var ve *ValidationError
	if !errors.As(err, &ve) || !slices.Equal(ve.Fields, []string{"Url"}) {
		t.Fatalf("Create = %v, want ValidationError on Url", err)
	}
	if subs, _ := ev.store.ListSubscriptions(ctx, storage.SubscriptionFilter{}); len(subs) != 0 {
		t.Fatalf("stored %d subscriptions after a validation failure", len(subs))
	}

	s := ev.create(storage.Subscription{Type: TypeClientConnected, URL: "http://receiver.example/hook"})
	policy := 5
	if _, err := ev.eng.Update(ctx, s.ID, Patch{DeletionPolicy: &policy}); !errors.As(err, &ve) || !slices.Equal(ve.Fields, []string{"DeletionPolicy"}) {
		t.Fatalf("Update = %v, want ValidationError on DeletionPolicy", err)
	}
	got, err := ev.store.GetSubscription(ctx, s.ID)
	if err != nil || got.DeletionPolicy != 0 {
		t.Fatalf("after a failed update: %+v, %v", got, err)
	}
	if _, err := ev.eng.Update(ctx, "missing", Patch{}); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Update of a missing subscription = %v, want ErrNotFound", err)
	}
	if err := ev.eng.Delete(ctx, "missing"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Delete of a missing subscription = %v, want ErrNotFound", err)
	}
}
