package storetest

import (
	"slices"
	"testing"
	"time"

	"github.com/deviceserver/deviceserver/storage"
)

// testCompatSubscriptions checks that Headers and CompatID are kept and
// that the CompatID filter selects by value, or any value for "*", alone
// and with the other filters, also after updates.
func testCompatSubscriptions(t *testing.T, s storage.Store) {
	ctx := t.Context()
	compat := func(sub storage.Subscription, id string, headers map[string]string) storage.Subscription {
		sub.CompatID, sub.Headers = id, headers
		return sub
	}
	subs := []storage.Subscription{
		compat(subscription("p1", "org-a", "", "ClientConnected", "", t0()), "", nil),
		compat(subscription("c1", "org-a", "", "ClientConnected", "", t0().Add(time.Second)), "m2m-1",
			map[string]string{"Authorization": "Basic YXBwOnNlY3JldA==", "X-Correlation-ID": "42"}),
		compat(subscription("c2", "org-a", "reg-1", "Observation", "/3303/0/5700", t0().Add(2*time.Second)), "m2m-1", nil),
		compat(subscription("c3", "org-b", "", "ClientConnected", "", t0().Add(3*time.Second)), "m2m-2",
			map[string]string{"x-lower-case": "", "X-Empty-Value": ""}),
		compat(subscription("p2", "org-b", "reg-2", "Observation", "/3303/0/5700", t0().Add(4*time.Second)), "", nil),
	}
	byID := map[string]storage.Subscription{}
	for i := len(subs) - 1; i >= 0; i-- {
		must(t, s.CreateSubscription(ctx, subs[i]), "CreateSubscription(%s)", subs[i].ID)
		byID[subs[i].ID] = subs[i]
	}
	for _, sub := range subs {
		got, err := s.GetSubscription(ctx, sub.ID)
		must(t, err, "GetSubscription(%s)", sub.ID)
		wantEqual(t, got, sub, "GetSubscription(%s)", sub.ID)
	}

	type listCase struct {
		name   string
		filter storage.SubscriptionFilter
		want   []string
	}
	check := func(what string, tests []listCase) {
		t.Helper()
		for _, tc := range tests {
			got, err := s.ListSubscriptions(ctx, tc.filter)
			must(t, err, "ListSubscriptions(%+v) %s", tc.filter, what)
			if g := ids(got, subID); !slices.Equal(g, tc.want) {
				t.Errorf("%s: %s: ListSubscriptions(%+v) = %v, want %v (ordered by CreatedAt)", what, tc.name, tc.filter, g, tc.want)
				continue
			}
			wantEqual(t, got, mapSlice(tc.want, func(id string) storage.Subscription { return byID[id] }),
				"%s: %s: ListSubscriptions(%+v)", what, tc.name, tc.filter)
		}
	}
	check("after creating", []listCase{
		{"compat ID", storage.SubscriptionFilter{CompatID: "m2m-1"}, []string{"c1", "c2"}},
		{"other compat ID", storage.SubscriptionFilter{CompatID: "m2m-2"}, []string{"c3"}},
		{"any compat ID", storage.SubscriptionFilter{CompatID: "*"}, []string{"c1", "c2", "c3"}},
		{"any compat ID in organisation", storage.SubscriptionFilter{OrganisationID: "org-b", CompatID: "*"}, []string{"c3"}},
		{"compat ID and client", storage.SubscriptionFilter{ClientID: "reg-1", CompatID: "m2m-1"}, []string{"c2"}},
		{"compat ID at organisation level", storage.SubscriptionFilter{ClientID: "-", CompatID: "m2m-1"}, []string{"c1"}},
		{"any compat ID and type", storage.SubscriptionFilter{Type: "Observation", CompatID: "*"}, []string{"c2"}},
		{"any compat ID and path", storage.SubscriptionFilter{Path: "/3303/0/5700", CompatID: "*"}, []string{"c2"}},
		{"unknown compat ID", storage.SubscriptionFilter{CompatID: "m2m-9"}, nil},
		{"compat ID of another organisation", storage.SubscriptionFilter{OrganisationID: "org-a", CompatID: "m2m-2"}, nil},
		{"compat IDs are case-sensitive", storage.SubscriptionFilter{CompatID: "M2M-1"}, nil},
		{"no compat filter", storage.SubscriptionFilter{}, []string{"p1", "c1", "c2", "c3", "p2"}},
	})

	// Updates move subscriptions in and out of the filter.
	c2, p2 := byID["c2"], byID["p2"]
	c2.CompatID = ""
	c2.Headers = map[string]string{"Authorization": "Bearer t"}
	p2.CompatID = "m2m-2"
	for _, sub := range []storage.Subscription{c2, p2} {
		must(t, s.UpdateSubscription(ctx, sub), "UpdateSubscription(%s)", sub.ID)
		byID[sub.ID] = sub
		got, err := s.GetSubscription(ctx, sub.ID)
		must(t, err, "GetSubscription(%s) after update", sub.ID)
		wantEqual(t, got, sub, "GetSubscription(%s) after update", sub.ID)
	}
	check("after updating", []listCase{
		{"compat ID", storage.SubscriptionFilter{CompatID: "m2m-1"}, []string{"c1"}},
		{"other compat ID", storage.SubscriptionFilter{CompatID: "m2m-2"}, []string{"c3", "p2"}},
		{"any compat ID", storage.SubscriptionFilter{CompatID: "*"}, []string{"c1", "c3", "p2"}},
	})

	must(t, s.DeleteSubscription(ctx, "c1"), "DeleteSubscription(c1)")
	check("after deleting", []listCase{
		{"compat ID", storage.SubscriptionFilter{CompatID: "m2m-1"}, nil},
		{"any compat ID", storage.SubscriptionFilter{CompatID: "*"}, []string{"c3", "p2"}},
	})
}
