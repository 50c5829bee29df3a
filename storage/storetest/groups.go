package storetest

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/deviceserver/deviceserver/lwm2m"
	"github.com/deviceserver/deviceserver/storage"
)

func group(id, org, name string, created time.Time, endpoints ...string) storage.Group {
	return storage.Group{ID: id, OrganisationID: org, Name: name, Endpoints: endpoints, CreatedAt: created}
}

func testGroups(t *testing.T, s storage.Store) {
	ctx := t.Context()
	_, err := s.GetGroup(ctx, "grp-1")
	wantErr(t, err, storage.ErrNotFound, "GetGroup(missing)")
	wantErr(t, s.UpdateGroup(ctx, group("grp-1", "org-a", "fleet", t0())), storage.ErrNotFound, "UpdateGroup(missing)")
	wantErr(t, s.DeleteGroup(ctx, "grp-1"), storage.ErrNotFound, "DeleteGroup(missing)")
	list, err := s.ListGroups(ctx, "")
	must(t, err, "ListGroups on empty store")
	if len(list) != 0 {
		t.Errorf("ListGroups on empty store = %v", list)
	}

	g1 := group("grp-1", "org-a", "fleet", t0().Add(2*time.Second), "dev-1", "urn:imei:351234567890123", "dev-2")
	g2 := group("grp-2", "org-a", "spares", t0())
	g3 := group("grp-3", "org-b", "fleet", t0().Add(time.Second), "dev-1") // the same name in another organisation
	g0 := group("grp-0", "org-b", "Fleet", t0().Add(3*time.Second))        // names are case-sensitive
	for _, g := range []storage.Group{g1, g2, g3, g0} {
		must(t, s.CreateGroup(ctx, g), "CreateGroup(%s)", g.ID)
	}
	for _, tc := range []struct {
		name string
		g    storage.Group
	}{
		{"name of a group of the organisation", group("grp-4", "org-a", "fleet", t0(), "dev-9")},
		{"other name of a group of the organisation", group("grp-4", "org-a", "spares", t0())},
		{"existing ID", group("grp-1", "org-c", "new", t0())},
		{"existing ID in its organisation", group("grp-2", "org-a", "other", t0())},
	} {
		wantErr(t, s.CreateGroup(ctx, tc.g), storage.ErrConflict, "CreateGroup: %s", tc.name)
	}
	_, err = s.GetGroup(ctx, "grp-4")
	wantErr(t, err, storage.ErrNotFound, "GetGroup of a group whose create conflicted")
	for _, g := range []storage.Group{g1, g2, g3, g0} {
		got, err := s.GetGroup(ctx, g.ID)
		must(t, err, "GetGroup(%s)", g.ID)
		wantEqual(t, got, g, "GetGroup(%s) after the conflicts", g.ID)
	}

	listGroups := func(what string, want map[string][]storage.Group) {
		t.Helper()
		for org, want := range want {
			got, err := s.ListGroups(ctx, org)
			must(t, err, "ListGroups(%q) %s", org, what)
			wantEqual(t, got, want, "ListGroups(%q) %s (ordered by CreatedAt)", org, what)
		}
	}
	listGroups("after creating", map[string][]storage.Group{
		"org-a":    {g2, g1},
		"org-b":    {g3, g0},
		"":         {g2, g3, g1, g0}, // every organisation's, still by CreatedAt
		"org-none": nil,
	})

	// Update replaces the name and the endpoints; a name of another group
	// of the organisation conflicts, one of another organisation does not.
	for _, tc := range []struct {
		name string
		g    storage.Group
		err  error
	}{
		{"rename into a clash", group(g1.ID, g1.OrganisationID, g2.Name, g1.CreatedAt, "dev-3"), storage.ErrConflict},
		{"rename into a clash with other endpoints", group(g2.ID, g2.OrganisationID, g1.Name, g2.CreatedAt, "dev-1"), storage.ErrConflict},
		{"rename to a name used in another organisation", group(g0.ID, g0.OrganisationID, "spares", g0.CreatedAt, "dev-8"), nil},
		{"keep the name, change the endpoints", group(g1.ID, g1.OrganisationID, g1.Name, g1.CreatedAt, "dev-2", "dev-3"), nil},
		{"rename to a free name", group(g3.ID, g3.OrganisationID, "trucks", g3.CreatedAt, "dev-1", "dev-4"), nil},
		{"take the name just freed", group(g0.ID, g0.OrganisationID, "fleet", g0.CreatedAt), nil},
	} {
		before, err := s.GetGroup(ctx, tc.g.ID)
		must(t, err, "GetGroup(%s) before %s", tc.g.ID, tc.name)
		err = s.UpdateGroup(ctx, tc.g)
		want := tc.g
		if tc.err != nil {
			wantErr(t, err, tc.err, "UpdateGroup: %s", tc.name)
			want = before
		} else {
			must(t, err, "UpdateGroup: %s", tc.name)
		}
		got, err := s.GetGroup(ctx, tc.g.ID)
		must(t, err, "GetGroup(%s) after %s", tc.g.ID, tc.name)
		wantEqual(t, got, want, "GetGroup(%s) after %s", tc.g.ID, tc.name)
	}
	g1 = group(g1.ID, g1.OrganisationID, g1.Name, g1.CreatedAt, "dev-2", "dev-3")
	g3 = group(g3.ID, g3.OrganisationID, "trucks", g3.CreatedAt, "dev-1", "dev-4")
	g0 = group(g0.ID, g0.OrganisationID, "fleet", g0.CreatedAt)

	// Only the name and the endpoints change: the organisation and the
	// creation time stay as stored.
	moved := group(g2.ID, "org-b", "spare parts", t0().Add(time.Hour), "dev-7")
	must(t, s.UpdateGroup(ctx, moved), "UpdateGroup with another organisation and CreatedAt")
	g2.Name, g2.Endpoints = moved.Name, moved.Endpoints
	got, err := s.GetGroup(ctx, g2.ID)
	must(t, err, "GetGroup after UpdateGroup with another organisation")
	wantEqual(t, got, g2, "GetGroup after UpdateGroup with another organisation")
	listGroups("after updating", map[string][]storage.Group{
		"org-a": {g2, g1},
		"org-b": {g3, g0},
		"":      {g2, g3, g1, g0},
	})

	must(t, s.DeleteGroup(ctx, g1.ID), "DeleteGroup")
	_, err = s.GetGroup(ctx, g1.ID)
	wantErr(t, err, storage.ErrNotFound, "GetGroup after delete")
	wantErr(t, s.DeleteGroup(ctx, g1.ID), storage.ErrNotFound, "DeleteGroup twice")
	wantErr(t, s.UpdateGroup(ctx, g1), storage.ErrNotFound, "UpdateGroup after delete")
	listGroups("after deleting", map[string][]storage.Group{
		"org-a": {g2},
		"":      {g2, g3, g0},
	})
	// The name and the ID are free again.
	again := group(g1.ID, "org-a", g1.Name, t0().Add(time.Minute), "dev-5")
	must(t, s.CreateGroup(ctx, again), "CreateGroup with the name and ID of a deleted group")
	got, err = s.GetGroup(ctx, again.ID)
	must(t, err, "GetGroup of the recreated group")
	wantEqual(t, got, again, "GetGroup of the recreated group")
}

// testListRegistrationsByGroup checks the Group filter of ListRegistrations
// alone and with the other filters and paging, on registrationSet: org-a
// has dev-00..dev-14, org-b dev-05..dev-14.
func testListRegistrationsByGroup(t *testing.T, s storage.Store) {
	ctx := t.Context()
	now := t0()
	regs := registrationSet(t, s, now)
	groups := []storage.Group{
		// dev-03 twice: an endpoint listed twice is one member. dev-99 has
		// not registered yet.
		group("grp-a", "org-a", "fleet", t0(), "dev-01", "dev-03", "dev-03", "dev-04", "dev-05", "dev-07", "dev-08",
			"dev-10", "dev-11", "dev-12", "dev-13", "dev-14", "dev-99"),
		// The same name in org-b, with other members: dev-02 is org-a's
		// device, not org-b's.
		group("grp-b", "org-b", "fleet", t0(), "dev-02", "dev-06", "dev-09", "dev-12", "dev-13"),
		group("grp-c", "org-a", "spares", t0(), "dev-00", "dev-06"),
		group("grp-d", "org-a", "empty", t0()),
	}
	for _, g := range groups {
		must(t, s.CreateGroup(ctx, g), "CreateGroup(%s)", g.ID)
	}
	members := map[[2]string][]string{} // organisation, group name -> endpoints
	for _, g := range groups {
		members[[2]string{g.OrganisationID, g.Name}] = g.Endpoints
	}
	in := func(name string) func(r lwm2m.Registration) bool {
		return func(r lwm2m.Registration) bool {
			return slices.Contains(members[[2]string{r.Organisation, name}], r.Endpoint)
		}
	}
	and := func(fs ...func(r lwm2m.Registration) bool) func(r lwm2m.Registration) bool {
		return func(r lwm2m.Registration) bool {
			for _, f := range fs {
				if !f(r) {
					return false
				}
			}
			return true
		}
	}
	org := func(o string) func(r lwm2m.Registration) bool {
		return func(r lwm2m.Registration) bool { return r.Organisation == o }
	}
	online := func(at time.Time) func(r lwm2m.Registration) bool {
		return func(r lwm2m.Registration) bool { return r.ExpiresAt.After(at) }
	}
	later := now.Add(90 * time.Second)

	tests := []struct {
		name    string
		filter  storage.RegistrationFilter
		want    func(r lwm2m.Registration) bool
		partial bool // the fixture must give some matches and leave some of the group out
	}{
		{"group", storage.RegistrationFilter{Organisation: "org-a", Group: "fleet"}, and(org("org-a"), in("fleet")), false},
		{"group online", storage.RegistrationFilter{Organisation: "org-a", Group: "fleet", Online: ptr(true), Now: now},
			and(org("org-a"), in("fleet"), online(now)), true},
		{"group offline", storage.RegistrationFilter{Organisation: "org-a", Group: "fleet", Online: ptr(false), Now: now},
			and(org("org-a"), in("fleet"), func(r lwm2m.Registration) bool { return !online(now)(r) }), true},
		{"group online at a later time", storage.RegistrationFilter{Organisation: "org-a", Group: "fleet", Online: ptr(true), Now: later},
			and(org("org-a"), in("fleet"), online(later)), true},
		{"group and member endpoint", storage.RegistrationFilter{Organisation: "org-a", Group: "fleet", Endpoint: "dev-07"},
			and(org("org-a"), in("fleet"), func(r lwm2m.Registration) bool { return r.Endpoint == "dev-07" }), false},
		{"group and other endpoint", storage.RegistrationFilter{Organisation: "org-a", Group: "fleet", Endpoint: "dev-06"},
			func(lwm2m.Registration) bool { return false }, false},
		{"same name in another organisation", storage.RegistrationFilter{Organisation: "org-b", Group: "fleet"},
			and(org("org-b"), in("fleet")), false},
		{"same name in another organisation online", storage.RegistrationFilter{Organisation: "org-b", Group: "fleet", Online: ptr(true), Now: now},
			and(org("org-b"), in("fleet"), online(now)), true},
		{"other group", storage.RegistrationFilter{Organisation: "org-a", Group: "spares"}, and(org("org-a"), in("spares")), false},
		{"group of every organisation", storage.RegistrationFilter{Group: "fleet"}, in("fleet"), false},
		{"group of every organisation online", storage.RegistrationFilter{Group: "fleet", Online: ptr(true), Now: now},
			and(in("fleet"), online(now)), true},
		{"empty group", storage.RegistrationFilter{Organisation: "org-a", Group: "empty"}, func(lwm2m.Registration) bool { return false }, false},
		{"unknown group", storage.RegistrationFilter{Organisation: "org-a", Group: "nonesuch"}, func(lwm2m.Registration) bool { return false }, false},
		{"organisation without groups", storage.RegistrationFilter{Organisation: "org-none", Group: "fleet"},
			func(lwm2m.Registration) bool { return false }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			want := matchRegistrations(regs, tc.want)
			if tc.partial {
				all := matchRegistrations(regs, in(tc.filter.Group))
				if len(want) == 0 || len(want) == len(all) {
					t.Fatalf("fixture does not exercise the filter: %d of %d match", len(want), len(all))
				}
			}
			checkListing(t, s, tc.filter, want)
		})
	}

	// Membership follows the groups as they change.
	fleetA := storage.RegistrationFilter{Organisation: "org-a", Group: "fleet"}
	byEndpoint := func(org string, endpoints ...string) []lwm2m.Registration {
		return matchRegistrations(regs, func(r lwm2m.Registration) bool {
			return r.Organisation == org && slices.Contains(endpoints, r.Endpoint)
		})
	}
	steps := []struct {
		name   string
		change func() error
		filter storage.RegistrationFilter
		want   func() []lwm2m.Registration
	}{
		{"a member registers after the group was made", func() error {
			r := registration("a-99", "org-a", "dev-99", now.Add(time.Hour))
			regs = append(regs, r)
			return s.PutRegistration(ctx, r)
		}, fleetA, func() []lwm2m.Registration {
			return byEndpoint("org-a", "dev-01", "dev-03", "dev-04", "dev-05", "dev-07", "dev-08", "dev-10", "dev-11", "dev-12", "dev-13", "dev-14", "dev-99")
		}},
		{"a member deregisters", func() error {
			regs = slices.DeleteFunc(regs, func(r lwm2m.Registration) bool { return r.ID == "a-01" })
			return s.DeleteRegistration(ctx, "a-01")
		}, fleetA, func() []lwm2m.Registration {
			return byEndpoint("org-a", "dev-03", "dev-04", "dev-05", "dev-07", "dev-08", "dev-10", "dev-11", "dev-12", "dev-13", "dev-14", "dev-99")
		}},
		{"update replaces the members", func() error {
			return s.UpdateGroup(ctx, group("grp-a", "org-a", "fleet", t0(), "dev-00", "dev-99", "dev-nonesuch"))
		}, fleetA, func() []lwm2m.Registration { return byEndpoint("org-a", "dev-00", "dev-99") }},
		{"the old name after a rename", func() error {
			return s.UpdateGroup(ctx, group("grp-a", "org-a", "fleet-2", t0(), "dev-00", "dev-99"))
		}, fleetA, func() []lwm2m.Registration { return nil }},
		{"the new name after a rename", func() error { return nil },
			storage.RegistrationFilter{Organisation: "org-a", Group: "fleet-2"},
			func() []lwm2m.Registration { return byEndpoint("org-a", "dev-00", "dev-99") }},
		{"the old name in every organisation after a rename", func() error { return nil },
			storage.RegistrationFilter{Group: "fleet"},
			func() []lwm2m.Registration { return byEndpoint("org-b", "dev-06", "dev-09", "dev-12", "dev-13") }},
		{"delete removes the membership", func() error { return s.DeleteGroup(ctx, "grp-a") },
			storage.RegistrationFilter{Organisation: "org-a", Group: "fleet-2"}, func() []lwm2m.Registration { return nil }},
		{"a group made again with the ID and the name has only its own members", func() error {
			return s.CreateGroup(ctx, group("grp-a", "org-a", "fleet-2", t0(), "dev-02"))
		}, storage.RegistrationFilter{Organisation: "org-a", Group: "fleet-2"}, func() []lwm2m.Registration { return byEndpoint("org-a", "dev-02") }},
		{"the other organisation's group is untouched", func() error { return nil },
			storage.RegistrationFilter{Organisation: "org-b", Group: "fleet"},
			func() []lwm2m.Registration { return byEndpoint("org-b", "dev-06", "dev-09", "dev-12", "dev-13") }},
	}
	for i, st := range steps {
		t.Run(fmt.Sprintf("%d %s", i, st.name), func(t *testing.T) {
			must(t, st.change(), "change")
			checkListing(t, s, st.filter, st.want())
		})
	}
}
