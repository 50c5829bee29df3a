// Package storetest is the conformance suite every storage.Store
// implementation passes. An implementation's tests call Run (behaviour) and
// RunDurable (data survives close and reopen).
//
// Times in the fixtures are UTC with millisecond precision, the finest a
// BSON date keeps, and are compared with time.Equal. Results whose order the
// Store interface does not define are sorted before comparing; slices that
// are nil and empty compare equal.
package storetest

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deviceserver/deviceserver/lwm2m"
	"github.com/deviceserver/deviceserver/lwm2m/model"
	"github.com/deviceserver/deviceserver/storage"
)

// Run runs the conformance suite. Every subtest calls open for an empty
// store of its own and closes it when done; open must not close it itself
// unless Close is idempotent.
func Run(t *testing.T, open func(t *testing.T) storage.Store) {
	tests := []struct {
		name string
		f    func(t *testing.T, s storage.Store)
	}{
		{"Organisations", testOrganisations},
		{"AccessKeys", testAccessKeys},
		{"RefreshTokens", testRefreshTokens},
		{"DeleteAccessKeyDeletesRefreshTokens", testDeleteAccessKeyDeletesRefreshTokens},
		{"TakeRefreshTokenConcurrently", testTakeRefreshTokenConcurrently},
		{"Registrations", testRegistrations},
		{"RegistrationsPerOrganisation", testRegistrationsPerOrganisation},
		{"ListRegistrations", testListRegistrations},
		{"ListRegistrationsByGroup", testListRegistrationsByGroup},
		{"ExpiredRegistrations", testExpiredRegistrations},
		{"ObjectDefinitions", testObjectDefinitions},
		{"Subscriptions", testSubscriptions},
		{"ListSubscriptions", testListSubscriptions},
		{"CompatSubscriptions", testCompatSubscriptions},
		{"DeliveryStats", testDeliveryStats},
		{"Outbox", testOutbox},
		{"OutboxSeqNeverReused", testOutboxSeqNeverReused},
		{"MarkBatch", testMarkBatch},
		{"DeleteSubscriptionDeletesOutboxAndStats", testDeleteSubscriptionDeletesOutboxAndStats},
		{"Observations", testObservations},
		{"PSKIdentities", testPSKIdentities},
		{"Certificates", testCertificates},
		{"Settings", testSettings},
		{"DeleteSetting", testDeleteSetting},
		{"Groups", testGroups},
		{"ConcurrentWrites", testConcurrentWrites},
		{"ConcurrentRegistrationOutcomes", testConcurrentRegistrationOutcomes},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t)
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			tc.f(t, s)
		})
	}
}

// t0 is the fixtures' reference time.
func t0() time.Time { return time.Date(2025, 3, 14, 15, 9, 26, 535_000_000, time.UTC) }

func ptr[T any](v T) *T { return &v }

// Fixtures.

func registration(id, org, endpoint string, expires time.Time) lwm2m.Registration {
	return lwm2m.Registration{
		ID:             id,
		Organisation:   org,
		Endpoint:       endpoint,
		Lifetime:       300,
		Version:        "1.1",
		Binding:        "UQ",
		QueueMode:      true,
		SMS:            "+447700900123",
		RootPath:       "/",
		ContentFormats: []lwm2m.ContentFormat{lwm2m.FormatSenMLCBOR, lwm2m.FormatSenMLJSON, lwm2m.FormatTLV},
		Objects: []lwm2m.LinkedObject{
			{Path: lwm2m.ObjectPath(1), Version: "1.1"},
			{Path: lwm2m.InstancePath(1, 0)},
			{Path: lwm2m.InstancePath(3, 0)},
			{Path: lwm2m.InstancePath(3303, 0), Version: "1.1"},
			{Path: lwm2m.InstancePath(3303, 1), Version: "1.1"},
		},
		Address:      "203.0.113.7:56830",
		Transport:    "dtls",
		RegisteredAt: expires.Add(-10 * time.Minute),
		LastUpdate:   expires.Add(-5 * time.Minute),
		ExpiresAt:    expires,
		Device:       &lwm2m.DeviceInfo{Manufacturer: "Acme", ModelNumber: "T1000", SerialNumber: "SN-" + id, FirmwareVersion: "2.3.1"},
	}
}

func objectDefinition(id uint16, name string) model.Object {
	return model.Object{
		ID:                id,
		Name:              name,
		Description:       "Description of " + name,
		URN:               fmt.Sprintf("urn:oma:lwm2m:ext:%d:1.1", id),
		Version:           "1.1",
		LwM2MVersion:      "1.0",
		MultipleInstances: true,
		Mandatory:         false,
		MIMEType:          "application/vnd.oma.lwm2m." + strings.ToLower(strings.ReplaceAll(name, " ", "")),
		SerialisationName: strings.ReplaceAll(name, " ", ""),
		Resources: []*model.Resource{
			{ID: 5700, Name: "Sensor Value", Operations: "R", Mandatory: true, Type: lwm2m.TypeFloat, Units: "Cel", Description: "Last value", SerialisationName: "SensorValue"},
			{ID: 5601, Name: "Min Measured Value", Operations: "R", Type: lwm2m.TypeFloat, RangeEnumeration: "-40..85", SerialisationName: "MinMeasuredValue"},
			{ID: 5605, Name: "Reset Min and Max Measured Values", Operations: "E", SerialisationName: "ResetMinAndMaxMeasuredValues"},
			{ID: 7, Name: "Tags", Operations: "RW", Multiple: true, Type: lwm2m.TypeString, SerialisationName: "Tags"},
		},
	}
}

func subscription(id, org, client, typ, path string, created time.Time) storage.Subscription {
	s := storage.Subscription{
		ID:                id,
		OrganisationID:    org,
		ClientID:          client,
		Type:              typ,
		URL:               "https://app.example.com/hooks/" + id,
		AcceptContentType: "application/vnd.oma.lwm2m.notification+json",
		Path:              path,
		DeletionPolicy:    1,
		Secret:            "s3cret-" + id,
		BaseURL:           "https://deviceserver.example.com",
		Headers:           map[string]string{"Authorization": "Bearer app-token-" + id, "X-Application": "fleet manager"},
		CreatedAt:         created,
	}
	if path != "" {
		s.Property = "SensorValue"
		s.Attributes = lwm2m.Attributes{Pmin: ptr(uint32(5)), Pmax: ptr(uint32(300)), Gt: ptr(25.5), St: ptr(0.5)}
	}
	if client == "" {
		s.Criteria = &storage.Criteria{Group: "fleet", Endpoints: []string{"dev-1", "dev-2"}, Make: "Acme", Model: "T1000", FirmwareVersion: "2.3.1"}
	}
	return s
}

func notification(sub, delivery string, i int) storage.Notification {
	return storage.Notification{
		SubscriptionID: sub,
		DeliveryID:     delivery,
		Body:           fmt.Appendf(nil, `{"subscriptionId":%q,"n":%d,"value":[1,2,3]}`, sub, i),
		CreatedAt:      t0().Add(time.Duration(i) * time.Millisecond),
	}
}

// Assertions.

func must(t *testing.T, err error, what string, args ...any) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", fmt.Sprintf(what, args...), err)
	}
}

func wantErr(t *testing.T, err, target error, what string, args ...any) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Errorf("%s: got error %v, want one wrapping %v", fmt.Sprintf(what, args...), err, target)
	}
}

func wantEqual(t *testing.T, got, want any, what string, args ...any) {
	t.Helper()
	if !equal(reflect.ValueOf(got), reflect.ValueOf(want)) {
		t.Errorf("%s:\n got  %+v\n want %+v", fmt.Sprintf(what, args...), dump(got), dump(want))
	}
}

// dump dereferences pointers inside slices so failures show values.
func dump(v any) string {
	rv := reflect.ValueOf(v)
	if rv.Kind() == reflect.Slice {
		parts := make([]string, rv.Len())
		for i := range parts {
			parts[i] = dump(rv.Index(i).Interface())
		}
		return "[" + strings.Join(parts, " ") + "]"
	}
	if rv.Kind() == reflect.Pointer && !rv.IsNil() {
		return "&" + dump(rv.Elem().Interface())
	}
	return fmt.Sprintf("%+v", v)
}

// equal is reflect.DeepEqual except that times compare with time.Equal and
// nil and empty slices and maps are equal: stores are free to decode either.
func equal(a, b reflect.Value) bool {
	if !a.IsValid() || !b.IsValid() {
		return a.IsValid() == b.IsValid()
	}
	if a.Type() != b.Type() {
		return false
	}
	if a.Type() == reflect.TypeFor[time.Time]() {
		return a.Interface().(time.Time).Equal(b.Interface().(time.Time))
	}
	switch a.Kind() {
	case reflect.Pointer, reflect.Interface:
		if a.IsNil() || b.IsNil() {
			return a.IsNil() == b.IsNil()
		}
		return equal(a.Elem(), b.Elem())
	case reflect.Slice, reflect.Array:
		if a.Len() != b.Len() {
			return false
		}
		for i := range a.Len() {
			if !equal(a.Index(i), b.Index(i)) {
				return false
			}
		}
		return true
	case reflect.Map:
		if a.Len() != b.Len() {
			return false
		}
		for _, k := range a.MapKeys() {
			if !equal(a.MapIndex(k), b.MapIndex(k)) {
				return false
			}
		}
		return true
	case reflect.Struct:
		for i := range a.NumField() {
			if !equal(a.Field(i), b.Field(i)) {
				return false
			}
		}
		return true
	case reflect.Bool:
		return a.Bool() == b.Bool()
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return a.Int() == b.Int()
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return a.Uint() == b.Uint()
	case reflect.Float32, reflect.Float64:
		return a.Float() == b.Float()
	case reflect.String:
		return a.String() == b.String()
	}
	panic("storetest: cannot compare " + a.Type().String())
}

func ids[T any](xs []T, id func(T) string) []string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = id(x)
	}
	return out
}

func regID(r lwm2m.Registration) string     { return r.ID }
func subID(s storage.Subscription) string   { return s.ID }
func notifID(n storage.Notification) string { return n.DeliveryID }

func sorted(xs []string) []string {
	xs = slices.Clone(xs)
	sort.Strings(xs)
	return xs
}

func seqs(ns []storage.Notification) []int64 {
	return mapSlice(ns, func(n storage.Notification) int64 { return n.Seq })
}

func mapSlice[T, U any](xs []T, f func(T) U) []U {
	out := make([]U, len(xs))
	for i, x := range xs {
		out[i] = f(x)
	}
	return out
}

// Tests.

func testOrganisations(t *testing.T, s storage.Store) {
	ctx := t.Context()
	_, err := s.GetOrganisation(ctx, "missing")
	wantErr(t, err, storage.ErrNotFound, "GetOrganisation(missing)")
	list, err := s.ListOrganisations(ctx)
	must(t, err, "ListOrganisations on empty store")
	if len(list) != 0 {
		t.Errorf("ListOrganisations on empty store = %v, want none", list)
	}

	admin := storage.Organisation{ID: "org-admin", Name: "Administrators", Admin: true, CreatedAt: t0()}
	acme := storage.Organisation{ID: "org-acme", Name: "Acme Ltd", CreatedAt: t0().Add(time.Hour)}
	for _, o := range []storage.Organisation{admin, acme} {
		must(t, s.CreateOrganisation(ctx, o), "CreateOrganisation(%s)", o.ID)
	}
	err = s.CreateOrganisation(ctx, storage.Organisation{ID: acme.ID, Name: "Other", CreatedAt: t0()})
	wantErr(t, err, storage.ErrConflict, "CreateOrganisation of an existing ID")

	for _, o := range []storage.Organisation{admin, acme} {
		got, err := s.GetOrganisation(ctx, o.ID)
		must(t, err, "GetOrganisation(%s)", o.ID)
		wantEqual(t, got, o, "GetOrganisation(%s)", o.ID)
	}
	list, err = s.ListOrganisations(ctx)
	must(t, err, "ListOrganisations")
	sort.Slice(list, func(i, j int) bool { return list[i].ID < list[j].ID })
	wantEqual(t, list, []storage.Organisation{acme, admin}, "ListOrganisations (sorted by ID)")
}

func testAccessKeys(t *testing.T, s storage.Store) {
	ctx := t.Context()
	k1 := storage.AccessKey{Key: "key-1", Name: "first", OrganisationID: "org-a", SecretHash: []byte{0, 1, 2, 0xfe, 0xff}, CreatedAt: t0().Add(2 * time.Second)}
	k2 := storage.AccessKey{Key: "key-2", Name: "second", OrganisationID: "org-a", SecretHash: []byte("hash-2"), CreatedAt: t0()}
	k3 := storage.AccessKey{Key: "key-3", Name: "other org", OrganisationID: "org-b", SecretHash: []byte("hash-3"), CreatedAt: t0().Add(time.Second)}

	_, err := s.GetAccessKey(ctx, "key-1")
	wantErr(t, err, storage.ErrNotFound, "GetAccessKey(missing)")
	for _, k := range []storage.AccessKey{k1, k2, k3} {
		must(t, s.CreateAccessKey(ctx, k), "CreateAccessKey(%s)", k.Key)
	}
	wantErr(t, s.CreateAccessKey(ctx, storage.AccessKey{Key: "key-1", OrganisationID: "org-b", CreatedAt: t0()}),
		storage.ErrConflict, "CreateAccessKey of an existing key")

	for _, k := range []storage.AccessKey{k1, k2, k3} {
		got, err := s.GetAccessKey(ctx, k.Key)
		must(t, err, "GetAccessKey(%s)", k.Key)
		wantEqual(t, got, k, "GetAccessKey(%s)", k.Key)
	}

	for _, tc := range []struct {
		org  string
		want []storage.AccessKey
	}{
		{"org-a", []storage.AccessKey{k2, k1}}, // by CreatedAt, not by key
		{"org-b", []storage.AccessKey{k3}},
		{"org-none", nil},
	} {
		got, err := s.ListAccessKeys(ctx, tc.org)
		must(t, err, "ListAccessKeys(%s)", tc.org)
		wantEqual(t, got, tc.want, "ListAccessKeys(%s)", tc.org)
	}

	k1.Name = "renamed"
	k1.SecretHash = []byte("new-hash")
	must(t, s.UpdateAccessKey(ctx, k1), "UpdateAccessKey")
	got, err := s.GetAccessKey(ctx, k1.Key)
	must(t, err, "GetAccessKey after update")
	wantEqual(t, got, k1, "GetAccessKey after update")
	wantErr(t, s.UpdateAccessKey(ctx, storage.AccessKey{Key: "missing", OrganisationID: "org-a"}),
		storage.ErrNotFound, "UpdateAccessKey(missing)")

	must(t, s.DeleteAccessKey(ctx, k1.Key), "DeleteAccessKey")
	_, err = s.GetAccessKey(ctx, k1.Key)
	wantErr(t, err, storage.ErrNotFound, "GetAccessKey after delete")
	wantErr(t, s.DeleteAccessKey(ctx, k1.Key), storage.ErrNotFound, "DeleteAccessKey twice")
	list, err := s.ListAccessKeys(ctx, "org-a")
	must(t, err, "ListAccessKeys after delete")
	wantEqual(t, list, []storage.AccessKey{k2}, "ListAccessKeys after delete")
}

func testRefreshTokens(t *testing.T, s storage.Store) {
	ctx := t.Context()
	tok := storage.RefreshToken{Hash: "hash-1", Key: "key-1", OrganisationID: "org-a", ExpiresAt: t0().Add(24 * time.Hour)}
	other := storage.RefreshToken{Hash: "hash-2", Key: "key-1", OrganisationID: "org-a", ExpiresAt: t0().Add(48 * time.Hour)}

	_, err := s.TakeRefreshToken(ctx, "missing")
	wantErr(t, err, storage.ErrNotFound, "TakeRefreshToken(missing)")
	must(t, s.PutRefreshToken(ctx, tok), "PutRefreshToken")
	must(t, s.PutRefreshToken(ctx, other), "PutRefreshToken(other)")

	got, err := s.TakeRefreshToken(ctx, tok.Hash)
	must(t, err, "TakeRefreshToken")
	wantEqual(t, got, tok, "TakeRefreshToken")
	_, err = s.TakeRefreshToken(ctx, tok.Hash)
	wantErr(t, err, storage.ErrNotFound, "second TakeRefreshToken of the same token")

	got, err = s.TakeRefreshToken(ctx, other.Hash)
	must(t, err, "TakeRefreshToken(other) after taking the first")
	wantEqual(t, got, other, "TakeRefreshToken(other)")
}

func testDeleteAccessKeyDeletesRefreshTokens(t *testing.T, s storage.Store) {
	ctx := t.Context()
	for _, k := range []string{"key-1", "key-2"} {
		must(t, s.CreateAccessKey(ctx, storage.AccessKey{Key: k, OrganisationID: "org-a", SecretHash: []byte("h"), CreatedAt: t0()}), "CreateAccessKey(%s)", k)
	}
	toks := []storage.RefreshToken{
		{Hash: "a", Key: "key-1", OrganisationID: "org-a", ExpiresAt: t0().Add(time.Hour)},
		{Hash: "b", Key: "key-1", OrganisationID: "org-a", ExpiresAt: t0().Add(time.Hour)},
		{Hash: "c", Key: "key-2", OrganisationID: "org-a", ExpiresAt: t0().Add(time.Hour)},
	}
	for _, tok := range toks {
		must(t, s.PutRefreshToken(ctx, tok), "PutRefreshToken(%s)", tok.Hash)
	}
	must(t, s.DeleteAccessKey(ctx, "key-1"), "DeleteAccessKey")
	for _, h := range []string{"a", "b"} {
		_, err := s.TakeRefreshToken(ctx, h)
		wantErr(t, err, storage.ErrNotFound, "TakeRefreshToken(%s) of a deleted key", h)
	}
	got, err := s.TakeRefreshToken(ctx, "c")
	must(t, err, "TakeRefreshToken of another key's token")
	wantEqual(t, got, toks[2], "TakeRefreshToken(c)")
}

func testTakeRefreshTokenConcurrently(t *testing.T, s storage.Store) {
	ctx := t.Context()
	const takers, rounds = 8, 10
	for round := range rounds {
		hash := fmt.Sprintf("hash-%d", round)
		must(t, s.PutRefreshToken(ctx, storage.RefreshToken{Hash: hash, Key: "key-1", OrganisationID: "org-a", ExpiresAt: t0()}), "PutRefreshToken")
		start := make(chan struct{})
		errs := make([]error, takers)
		var wg sync.WaitGroup
		for i := range takers {
			wg.Go(func() {
				<-start
				_, errs[i] = s.TakeRefreshToken(ctx, hash)
			})
		}
		close(start)
		wg.Wait()
		won := 0
		for _, err := range errs {
			switch {
			case err == nil:
				won++
			case !errors.Is(err, storage.ErrNotFound):
				t.Errorf("round %d: losing TakeRefreshToken: %v, want ErrNotFound", round, err)
			}
		}
		if won != 1 {
			t.Fatalf("round %d: %d of %d concurrent TakeRefreshToken calls got the token, want exactly 1", round, won, takers)
		}
	}
}

func testRegistrations(t *testing.T, s storage.Store) {
	ctx := t.Context()
	_, err := s.GetRegistration(ctx, "missing")
	wantErr(t, err, storage.ErrNotFound, "GetRegistration(missing)")
	_, err = s.GetRegistrationByEndpoint(ctx, "org-a", "dev-1")
	wantErr(t, err, storage.ErrNotFound, "GetRegistrationByEndpoint(missing)")
	wantErr(t, s.DeleteRegistration(ctx, "missing"), storage.ErrNotFound, "DeleteRegistration(missing)")

	r := registration("reg-1", "org-a", "dev-1", t0().Add(5*time.Minute))
	must(t, s.PutRegistration(ctx, r), "PutRegistration")
	got, err := s.GetRegistration(ctx, r.ID)
	must(t, err, "GetRegistration")
	wantEqual(t, got, r, "GetRegistration")

	// A registration update replaces every field, keeping the ID.
	r2 := r
	r2.Lifetime = 86400
	r2.Version = "1.2"
	r2.Binding = "U"
	r2.QueueMode = false
	r2.SMS = ""
	r2.RootPath = "/lwm2m"
	r2.ContentFormats = nil
	r2.Objects = []lwm2m.LinkedObject{{Path: lwm2m.InstancePath(3, 0)}}
	r2.Address = "[2001:db8::1]:5684"
	r2.Transport = "udp"
	r2.LastUpdate = t0().Add(time.Minute)
	r2.ExpiresAt = t0().Add(24 * time.Hour)
	r2.Device = nil // a new Register: not read from the device yet
	must(t, s.PutRegistration(ctx, r2), "PutRegistration (replace)")
	got, err = s.GetRegistration(ctx, r.ID)
	must(t, err, "GetRegistration after replace")
	wantEqual(t, got, r2, "GetRegistration after replace")
	got, err = s.GetRegistrationByEndpoint(ctx, "org-a", "dev-1")
	must(t, err, "GetRegistrationByEndpoint after replace")
	wantEqual(t, got, r2, "GetRegistrationByEndpoint after replace")
	_, total, err := s.ListRegistrations(ctx, storage.RegistrationFilter{}, 0, 10)
	must(t, err, "ListRegistrations")
	if total != 1 {
		t.Errorf("ListRegistrations total after replace = %d, want 1", total)
	}

	// The device information, as read from object 3 later, partly.
	r2.Device = &lwm2m.DeviceInfo{Manufacturer: "Other Corp", FirmwareVersion: "0.9-beta"}
	must(t, s.PutRegistration(ctx, r2), "PutRegistration (device info)")
	got, err = s.GetRegistration(ctx, r.ID)
	must(t, err, "GetRegistration after setting device info")
	wantEqual(t, got, r2, "GetRegistration after setting device info")
	list, _, err := s.ListRegistrations(ctx, storage.RegistrationFilter{Organisation: "org-a"}, 0, 10)
	must(t, err, "ListRegistrations after setting device info")
	wantEqual(t, list, []lwm2m.Registration{r2}, "ListRegistrations after setting device info")

	// The ID is stable for an (organisation, endpoint) pair: a second ID for
	// the same pair is refused.
	wantErr(t, s.PutRegistration(ctx, registration("reg-other", "org-a", "dev-1", t0())),
		storage.ErrConflict, "PutRegistration of another ID for the same organisation and endpoint")
	got, err = s.GetRegistration(ctx, r.ID)
	must(t, err, "GetRegistration after conflict")
	wantEqual(t, got, r2, "GetRegistration after conflict")

	must(t, s.DeleteRegistration(ctx, r.ID), "DeleteRegistration")
	_, err = s.GetRegistration(ctx, r.ID)
	wantErr(t, err, storage.ErrNotFound, "GetRegistration after delete")
	_, err = s.GetRegistrationByEndpoint(ctx, "org-a", "dev-1")
	wantErr(t, err, storage.ErrNotFound, "GetRegistrationByEndpoint after delete")
	wantErr(t, s.DeleteRegistration(ctx, r.ID), storage.ErrNotFound, "DeleteRegistration twice")

	// Once deleted, the pair may get a new ID.
	must(t, s.PutRegistration(ctx, registration("reg-new", "org-a", "dev-1", t0())), "PutRegistration with a new ID after delete")
}

func testRegistrationsPerOrganisation(t *testing.T, s storage.Store) {
	ctx := t.Context()
	a := registration("reg-a", "org-a", "dev-1", t0().Add(time.Minute))
	b := registration("reg-b", "org-b", "dev-1", t0().Add(time.Hour))
	b.Address = "198.51.100.9:5683"
	must(t, s.PutRegistration(ctx, a), "PutRegistration(a)")
	must(t, s.PutRegistration(ctx, b), "PutRegistration(b)")
	for _, tc := range []struct {
		org  string
		want lwm2m.Registration
	}{{"org-a", a}, {"org-b", b}} {
		got, err := s.GetRegistrationByEndpoint(ctx, tc.org, "dev-1")
		must(t, err, "GetRegistrationByEndpoint(%s, dev-1)", tc.org)
		wantEqual(t, got, tc.want, "GetRegistrationByEndpoint(%s, dev-1)", tc.org)
	}
	_, err := s.GetRegistrationByEndpoint(ctx, "org-c", "dev-1")
	wantErr(t, err, storage.ErrNotFound, "GetRegistrationByEndpoint in an organisation without it")
	_, err = s.GetRegistrationByEndpoint(ctx, "org-a", "dev-2")
	wantErr(t, err, storage.ErrNotFound, "GetRegistrationByEndpoint of another endpoint")

	must(t, s.DeleteRegistration(ctx, a.ID), "DeleteRegistration(a)")
	got, err := s.GetRegistrationByEndpoint(ctx, "org-b", "dev-1")
	must(t, err, "GetRegistrationByEndpoint(org-b) after deleting org-a's")
	wantEqual(t, got, b, "GetRegistrationByEndpoint(org-b) after deleting org-a's")
}

// registrationSet is the fixture of the listing tests: 15 devices in org-a
// and 10 in org-b (endpoints dev-05..dev-14 in both), put in scrambled
// order. Device i expires at now + (i%5-2) minutes, so a fifth expire
// exactly at now (offline), two fifths before and two fifths after.
func registrationSet(t *testing.T, s storage.Store, now time.Time) []lwm2m.Registration {
	var regs []lwm2m.Registration
	for i := range 15 {
		regs = append(regs, registration(fmt.Sprintf("a-%02d", i), "org-a", fmt.Sprintf("dev-%02d", i), now.Add(time.Duration(i%5-2)*time.Minute)))
	}
	for i := 5; i < 15; i++ {
		regs = append(regs, registration(fmt.Sprintf("b-%02d", i), "org-b", fmt.Sprintf("dev-%02d", i), now.Add(time.Duration((i+1)%5-2)*time.Minute)))
	}
	for i := range regs {
		// 7 is coprime with 25, so this visits every index once, scrambled.
		must(t, s.PutRegistration(t.Context(), regs[i*7%len(regs)]), "PutRegistration")
	}
	return regs
}

// matchRegistrations returns the registrations f selects in the order
// ListRegistrations returns them: by endpoint, then by ID.
func matchRegistrations(regs []lwm2m.Registration, f func(r lwm2m.Registration) bool) []lwm2m.Registration {
	var out []lwm2m.Registration
	for _, r := range regs {
		if f(r) {
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Endpoint != out[j].Endpoint {
			return out[i].Endpoint < out[j].Endpoint
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// wantRegistrations checks a listing against want (from matchRegistrations).
// Ties in endpoint (the same name in two organisations) may come in either
// order; they are compared per endpoint as sets.
func wantRegistrations(t *testing.T, got, want []lwm2m.Registration, what string) {
	t.Helper()
	endpoint := func(r lwm2m.Registration) string { return r.Endpoint }
	if g, w := ids(got, endpoint), ids(want, endpoint); !slices.Equal(g, w) {
		t.Errorf("%s: endpoints %v, want %v", what, g, w)
		return
	}
	if g, w := sorted(ids(got, regID)), sorted(ids(want, regID)); !slices.Equal(g, w) {
		t.Errorf("%s: IDs %v, want %v", what, g, w)
		return
	}
	byID := map[string]lwm2m.Registration{}
	for _, r := range want {
		byID[r.ID] = r
	}
	for _, r := range got {
		wantEqual(t, r, byID[r.ID], "%s: registration %s", what, r.ID)
	}
}

// checkListing checks that ListRegistrations with f lists want, in one
// page and paged through in sevens: every page ordered, the total constant.
func checkListing(t *testing.T, s storage.Store, f storage.RegistrationFilter, want []lwm2m.Registration) {
	t.Helper()
	ctx := t.Context()
	got, total, err := s.ListRegistrations(ctx, f, 0, 1000)
	must(t, err, "ListRegistrations(%+v)", f)
	if total != len(want) {
		t.Errorf("ListRegistrations(%+v): total = %d, want %d", f, total, len(want))
	}
	wantRegistrations(t, got, want, "one page")

	var all []lwm2m.Registration
	for off := 0; off < len(want)+7; off += 7 {
		page, total, err := s.ListRegistrations(ctx, f, off, 7)
		must(t, err, "ListRegistrations(offset %d)", off)
		if total != len(want) {
			t.Errorf("offset %d: total = %d, want %d", off, total, len(want))
		}
		lo, hi := min(off, len(want)), min(off+7, len(want))
		if len(page) != hi-lo {
			t.Fatalf("offset %d: %d registrations, want %d", off, len(page), hi-lo)
		}
		wantRegistrations(t, page, want[lo:hi], fmt.Sprintf("page at offset %d", off))
		all = append(all, page...)
	}
	wantRegistrations(t, all, want, "all pages")
}

func testListRegistrations(t *testing.T, s storage.Store) {
	ctx := t.Context()
	now := t0()
	regs := registrationSet(t, s, now)

	tests := []struct {
		name   string
		filter storage.RegistrationFilter
		want   func(r lwm2m.Registration) bool
	}{
		{"all", storage.RegistrationFilter{}, func(lwm2m.Registration) bool { return true }},
		{"organisation", storage.RegistrationFilter{Organisation: "org-a"}, func(r lwm2m.Registration) bool { return r.Organisation == "org-a" }},
		{"endpoint", storage.RegistrationFilter{Endpoint: "dev-07"}, func(r lwm2m.Registration) bool { return r.Endpoint == "dev-07" }},
		{"organisation and endpoint", storage.RegistrationFilter{Organisation: "org-b", Endpoint: "dev-07"},
			func(r lwm2m.Registration) bool { return r.Organisation == "org-b" && r.Endpoint == "dev-07" }},
		{"online", storage.RegistrationFilter{Online: ptr(true), Now: now}, func(r lwm2m.Registration) bool { return r.ExpiresAt.After(now) }},
		{"offline", storage.RegistrationFilter{Online: ptr(false), Now: now}, func(r lwm2m.Registration) bool { return !r.ExpiresAt.After(now) }},
		{"online at a later time", storage.RegistrationFilter{Online: ptr(true), Now: now.Add(90 * time.Second)},
			func(r lwm2m.Registration) bool { return r.ExpiresAt.After(now.Add(90 * time.Second)) }},
		{"online in organisation", storage.RegistrationFilter{Organisation: "org-b", Online: ptr(true), Now: now},
			func(r lwm2m.Registration) bool { return r.Organisation == "org-b" && r.ExpiresAt.After(now) }},
		{"no match", storage.RegistrationFilter{Organisation: "org-none"}, func(lwm2m.Registration) bool { return false }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			want := matchRegistrations(regs, tc.want)
			if tc.name == "online" || tc.name == "offline" {
				if len(want) == 0 || len(want) == len(regs) {
					t.Fatalf("fixture does not exercise the filter: %d of %d match", len(want), len(regs))
				}
			}
			checkListing(t, s, tc.filter, want)
		})
	}

	// The Online boundary: expiring exactly at Now is offline.
	got, _, err := s.ListRegistrations(ctx, storage.RegistrationFilter{Endpoint: "dev-02", Organisation: "org-a", Online: ptr(false), Now: now}, 0, 10)
	must(t, err, "ListRegistrations(offline, boundary)")
	if len(got) != 1 || !got[0].ExpiresAt.Equal(now) {
		t.Errorf("registration expiring exactly at Now not listed as offline: %v", ids(got, regID))
	}
}

func testExpiredRegistrations(t *testing.T, s storage.Store) {
	ctx := t.Context()
	now := t0()
	got, err := s.ExpiredRegistrations(ctx, now)
	must(t, err, "ExpiredRegistrations on empty store")
	if len(got) != 0 {
		t.Errorf("ExpiredRegistrations on empty store = %v", ids(got, regID))
	}
	regs := registrationSet(t, s, now)
	for _, at := range []time.Time{now.Add(-time.Hour), now.Add(-time.Minute), now, now.Add(time.Minute), now.Add(time.Hour)} {
		var want []string
		for _, r := range regs {
			if !r.ExpiresAt.After(at) {
				want = append(want, r.ID)
			}
		}
		got, err := s.ExpiredRegistrations(ctx, at)
		must(t, err, "ExpiredRegistrations(%v)", at)
		if g, w := sorted(ids(got, regID)), sorted(want); !slices.Equal(g, w) {
			t.Errorf("ExpiredRegistrations(now%+v) = %v, want %v", at.Sub(now), g, w)
		}
		for _, r := range got {
			for _, x := range regs {
				if x.ID == r.ID {
					wantEqual(t, r, x, "ExpiredRegistrations: %s", r.ID)
				}
			}
		}
	}
}

func testObjectDefinitions(t *testing.T, s storage.Store) {
	ctx := t.Context()
	m, err := s.ListObjectDefinitions(ctx)
	must(t, err, "ListObjectDefinitions on empty store")
	if len(m) != 0 {
		t.Errorf("ListObjectDefinitions on empty store = %v", m)
	}
	wantErr(t, s.DeleteObjectDefinition(ctx, "org-a", 3303), storage.ErrNotFound, "DeleteObjectDefinition(missing)")

	temp := objectDefinition(3303, "Temperature")
	custom := objectDefinition(10241, "Custom Thing")
	custom.MultipleInstances = false
	custom.Mandatory = true
	otherTemp := objectDefinition(3303, "Other Temperature")
	otherTemp.Resources = otherTemp.Resources[:1]
	must(t, s.PutObjectDefinition(ctx, "org-a", custom), "PutObjectDefinition(org-a, 10241)")
	must(t, s.PutObjectDefinition(ctx, "org-a", temp), "PutObjectDefinition(org-a, 3303)")
	must(t, s.PutObjectDefinition(ctx, "org-b", otherTemp), "PutObjectDefinition(org-b, 3303)")

	check := func(what string, want map[string][]model.Object) {
		t.Helper()
		m, err := s.ListObjectDefinitions(ctx)
		must(t, err, "ListObjectDefinitions %s", what)
		for org, objs := range m {
			if len(objs) == 0 {
				delete(m, org)
			}
			sort.Slice(objs, func(i, j int) bool { return objs[i].ID < objs[j].ID })
		}
		wantEqual(t, m, want, "ListObjectDefinitions %s", what)
	}
	check("after puts", map[string][]model.Object{"org-a": {temp, custom}, "org-b": {otherTemp}})

	temp.Name = "Temperature v2"
	temp.Version = "1.2"
	temp.Resources = append(temp.Resources, &model.Resource{ID: 5750, Name: "Application Type", Operations: "RW", Type: lwm2m.TypeString, SerialisationName: "ApplicationType"})
	must(t, s.PutObjectDefinition(ctx, "org-a", temp), "PutObjectDefinition (replace)")
	check("after replace", map[string][]model.Object{"org-a": {temp, custom}, "org-b": {otherTemp}})

	must(t, s.DeleteObjectDefinition(ctx, "org-a", 10241), "DeleteObjectDefinition(org-a, 10241)")
	wantErr(t, s.DeleteObjectDefinition(ctx, "org-a", 10241), storage.ErrNotFound, "DeleteObjectDefinition twice")
	wantErr(t, s.DeleteObjectDefinition(ctx, "org-c", 3303), storage.ErrNotFound, "DeleteObjectDefinition in another organisation")
	check("after delete", map[string][]model.Object{"org-a": {temp}, "org-b": {otherTemp}})
	must(t, s.DeleteObjectDefinition(ctx, "org-b", 3303), "DeleteObjectDefinition(org-b, 3303)")
	check("after deleting org-b's only one", map[string][]model.Object{"org-a": {temp}})
}

func testSubscriptions(t *testing.T, s storage.Store) {
	ctx := t.Context()
	_, err := s.GetSubscription(ctx, "missing")
	wantErr(t, err, storage.ErrNotFound, "GetSubscription(missing)")
	wantErr(t, s.UpdateSubscription(ctx, subscription("missing", "org-a", "", "ClientConnected", "", t0())), storage.ErrNotFound, "UpdateSubscription(missing)")
	wantErr(t, s.DeleteSubscription(ctx, "missing"), storage.ErrNotFound, "DeleteSubscription(missing)")

	org := subscription("sub-org", "org-a", "", "ClientConnected", "", t0())
	obs := subscription("sub-obs", "org-a", "reg-1", "Observation", "/3303/0/5700", t0().Add(time.Second))
	plain := subscription("sub-plain", "org-a", "reg-1", "ClientUpdated", "", t0().Add(2*time.Second))
	plain.AcceptContentType = ""
	plain.Secret = ""
	plain.Headers = nil
	for _, sub := range []storage.Subscription{org, obs, plain} {
		must(t, s.CreateSubscription(ctx, sub), "CreateSubscription(%s)", sub.ID)
		got, err := s.GetSubscription(ctx, sub.ID)
		must(t, err, "GetSubscription(%s)", sub.ID)
		wantEqual(t, got, sub, "GetSubscription(%s)", sub.ID)
	}
	wantErr(t, s.CreateSubscription(ctx, subscription("sub-obs", "org-b", "", "ClientConnected", "", t0())),
		storage.ErrConflict, "CreateSubscription of an existing ID")

	obs.URL = "https://other.example.com/hook"
	obs.Attributes = lwm2m.Attributes{Pmin: ptr(uint32(0)), Epmax: ptr(uint32(60)), Lt: ptr(-10.25)}
	obs.DeletionPolicy = 0
	obs.Headers = map[string]string{"X-Only": "this one"}
	must(t, s.UpdateSubscription(ctx, obs), "UpdateSubscription")
	got, err := s.GetSubscription(ctx, obs.ID)
	must(t, err, "GetSubscription after update")
	wantEqual(t, got, obs, "GetSubscription after update")

	must(t, s.DeleteSubscription(ctx, plain.ID), "DeleteSubscription")
	_, err = s.GetSubscription(ctx, plain.ID)
	wantErr(t, err, storage.ErrNotFound, "GetSubscription after delete")
	wantErr(t, s.DeleteSubscription(ctx, plain.ID), storage.ErrNotFound, "DeleteSubscription twice")
	list, err := s.ListSubscriptions(ctx, storage.SubscriptionFilter{})
	must(t, err, "ListSubscriptions after delete")
	wantEqual(t, list, []storage.Subscription{org, obs}, "ListSubscriptions after delete")
}

func testListSubscriptions(t *testing.T, s storage.Store) {
	ctx := t.Context()
	subs := []storage.Subscription{
		subscription("s1", "org-a", "", "ClientConnected", "", t0()),
		subscription("s2", "org-a", "reg-1", "Observation", "/3303/0/5700", t0().Add(1*time.Second)),
		subscription("s3", "org-a", "reg-1", "ClientUpdated", "", t0().Add(2*time.Second)),
		subscription("s4", "org-b", "reg-2", "Observation", "/3303/0/5700", t0().Add(3*time.Second)),
		subscription("s5", "org-a", "", "Observation", "/3303/0/5700", t0().Add(4*time.Second)),
		subscription("s6", "org-b", "", "ClientExpired", "", t0().Add(5*time.Second)),
		subscription("s0", "org-a", "reg-3", "Observation", "/3/0/0", t0().Add(6*time.Second)),
	}
	// Create in reverse so that insertion order and ID order differ from CreatedAt order.
	for i := len(subs) - 1; i >= 0; i-- {
		must(t, s.CreateSubscription(ctx, subs[i]), "CreateSubscription(%s)", subs[i].ID)
	}
	tests := []struct {
		name   string
		filter storage.SubscriptionFilter
		want   []string
	}{
		{"all", storage.SubscriptionFilter{}, []string{"s1", "s2", "s3", "s4", "s5", "s6", "s0"}},
		{"organisation", storage.SubscriptionFilter{OrganisationID: "org-a"}, []string{"s1", "s2", "s3", "s5", "s0"}},
		{"client", storage.SubscriptionFilter{ClientID: "reg-1"}, []string{"s2", "s3"}},
		{"organisation level", storage.SubscriptionFilter{ClientID: "-"}, []string{"s1", "s5", "s6"}},
		{"organisation level in organisation", storage.SubscriptionFilter{OrganisationID: "org-b", ClientID: "-"}, []string{"s6"}},
		{"path", storage.SubscriptionFilter{Path: "/3303/0/5700"}, []string{"s2", "s4", "s5"}},
		{"type", storage.SubscriptionFilter{Type: "Observation"}, []string{"s2", "s4", "s5", "s0"}},
		{"all fields", storage.SubscriptionFilter{OrganisationID: "org-a", ClientID: "reg-1", Path: "/3303/0/5700", Type: "Observation"}, []string{"s2"}},
		{"organisation level observations", storage.SubscriptionFilter{OrganisationID: "org-a", ClientID: "-", Type: "Observation"}, []string{"s5"}},
		{"no match", storage.SubscriptionFilter{OrganisationID: "org-a", ClientID: "reg-2"}, nil},
	}
	byID := map[string]storage.Subscription{}
	for _, sub := range subs {
		byID[sub.ID] = sub
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.ListSubscriptions(ctx, tc.filter)
			must(t, err, "ListSubscriptions")
			want := mapSlice(tc.want, func(id string) storage.Subscription { return byID[id] })
			if g := ids(got, subID); !slices.Equal(g, tc.want) {
				t.Fatalf("ListSubscriptions(%+v) = %v, want %v (ordered by CreatedAt)", tc.filter, g, tc.want)
			}
			wantEqual(t, got, want, "ListSubscriptions(%+v)", tc.filter)
		})
	}
}

func testDeliveryStats(t *testing.T, s storage.Store) {
	ctx := t.Context()
	_, err := s.GetDeliveryStats(ctx, "missing")
	wantErr(t, err, storage.ErrNotFound, "GetDeliveryStats of a missing subscription")
	wantErr(t, s.AddDeliveryStats(ctx, "missing", storage.DeliveryStats{Delivered: 1}), storage.ErrNotFound, "AddDeliveryStats to a missing subscription")

	sub := subscription("sub-1", "org-a", "reg-1", "ClientUpdated", "", t0())
	must(t, s.CreateSubscription(ctx, sub), "CreateSubscription")
	got, err := s.GetDeliveryStats(ctx, sub.ID)
	must(t, err, "GetDeliveryStats of a new subscription")
	wantEqual(t, got, storage.DeliveryStats{}, "GetDeliveryStats of a new subscription")

	steps := []struct {
		add  storage.DeliveryStats
		want storage.DeliveryStats
	}{
		{storage.DeliveryStats{Delivered: 3, Dropped: 1, LastError: "connection refused"},
			storage.DeliveryStats{Delivered: 3, Dropped: 1, LastError: "connection refused"}},
		{storage.DeliveryStats{Delivered: 2, LastSuccess: t0().Add(time.Minute)},
			storage.DeliveryStats{Delivered: 5, Dropped: 1, LastError: "connection refused", LastSuccess: t0().Add(time.Minute)}},
		{storage.DeliveryStats{Dropped: 4, LastError: "HTTP 502"},
			storage.DeliveryStats{Delivered: 5, Dropped: 5, LastError: "HTTP 502", LastSuccess: t0().Add(time.Minute)}},
		{storage.DeliveryStats{},
			storage.DeliveryStats{Delivered: 5, Dropped: 5, LastError: "HTTP 502", LastSuccess: t0().Add(time.Minute)}},
		{storage.DeliveryStats{Delivered: 1, LastSuccess: t0().Add(2 * time.Minute)},
			storage.DeliveryStats{Delivered: 6, Dropped: 5, LastError: "HTTP 502", LastSuccess: t0().Add(2 * time.Minute)}},
	}
	for i, st := range steps {
		must(t, s.AddDeliveryStats(ctx, sub.ID, st.add), "AddDeliveryStats step %d", i)
		got, err := s.GetDeliveryStats(ctx, sub.ID)
		must(t, err, "GetDeliveryStats step %d", i)
		wantEqual(t, got, st.want, "GetDeliveryStats after step %d", i)
	}

	// Concurrent additions all count.
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 5 {
				if err := s.AddDeliveryStats(ctx, sub.ID, storage.DeliveryStats{Delivered: 1, Dropped: 2}); err != nil {
					t.Errorf("concurrent AddDeliveryStats: %v", err)
				}
			}
		})
	}
	wg.Wait()
	got, err = s.GetDeliveryStats(ctx, sub.ID)
	must(t, err, "GetDeliveryStats after concurrent additions")
	if got.Delivered != 6+40 || got.Dropped != 5+80 {
		t.Errorf("after 40 concurrent additions: delivered %d dropped %d, want 46 and 85", got.Delivered, got.Dropped)
	}

	// Updating the subscription keeps its stats.
	sub.URL = "https://app.example.com/moved"
	must(t, s.UpdateSubscription(ctx, sub), "UpdateSubscription")
	after, err := s.GetDeliveryStats(ctx, sub.ID)
	must(t, err, "GetDeliveryStats after UpdateSubscription")
	wantEqual(t, after, got, "GetDeliveryStats after UpdateSubscription")
}

func testOutbox(t *testing.T, s storage.Store) {
	ctx := t.Context()
	for _, id := range []string{"sub-a", "sub-b"} {
		must(t, s.CreateSubscription(ctx, subscription(id, "org-a", "reg-1", "ClientUpdated", "", t0())), "CreateSubscription(%s)", id)
	}
	pending := func(sub string, limit int) []storage.Notification {
		t.Helper()
		ns, err := s.Pending(ctx, sub, limit)
		must(t, err, "Pending(%s, %d)", sub, limit)
		return ns
	}
	count := func(sub string) int {
		t.Helper()
		n, err := s.PendingCount(ctx, sub)
		must(t, err, "PendingCount(%s)", sub)
		return n
	}
	withPending := func() []string {
		t.Helper()
		ids, err := s.SubscriptionsWithPending(ctx)
		must(t, err, "SubscriptionsWithPending")
		return sorted(ids)
	}

	if ns := pending("sub-a", 10); len(ns) != 0 {
		t.Errorf("Pending on empty outbox = %v", ns)
	}
	if n := count("sub-a"); n != 0 {
		t.Errorf("PendingCount on empty outbox = %d", n)
	}
	if ids := withPending(); len(ids) != 0 {
		t.Errorf("SubscriptionsWithPending on empty outbox = %v", ids)
	}
	must(t, s.Enqueue(ctx, nil), "Enqueue(nil)")

	batch1 := []storage.Notification{notification("sub-a", "d1", 1), notification("sub-b", "d2", 2), notification("sub-a", "d3", 3)}
	batch2 := []storage.Notification{notification("sub-a", "d4", 4)}
	batch2[0].Body = []byte{}
	must(t, s.Enqueue(ctx, batch1), "Enqueue(batch 1)")
	must(t, s.Enqueue(ctx, batch2), "Enqueue(batch 2)")
	all := append(slices.Clone(batch1), batch2...)
	for i, n := range all {
		if n.Seq <= 0 || (i > 0 && n.Seq <= all[i-1].Seq) {
			t.Fatalf("Enqueue assigned Seqs %v, want positive and increasing", seqs(all))
		}
	}
	a1, b2, a3, a4 := all[0], all[1], all[2], all[3]

	wantEqual(t, pending("sub-a", 10), []storage.Notification{a1, a3, a4}, "Pending(sub-a, 10)")
	wantEqual(t, pending("sub-a", 2), []storage.Notification{a1, a3}, "Pending(sub-a, 2)")
	wantEqual(t, pending("sub-b", 10), []storage.Notification{b2}, "Pending(sub-b, 10)")
	if n := count("sub-a"); n != 3 {
		t.Errorf("PendingCount(sub-a) = %d, want 3", n)
	}
	if n := count("sub-b"); n != 1 {
		t.Errorf("PendingCount(sub-b) = %d, want 1", n)
	}
	wantEqual(t, withPending(), []string{"sub-a", "sub-b"}, "SubscriptionsWithPending")

	// Ack removes up to and including the seq, of that subscription only.
	must(t, s.Ack(ctx, "sub-a", a3.Seq), "Ack(sub-a, a3)")
	wantEqual(t, pending("sub-a", 10), []storage.Notification{a4}, "Pending(sub-a) after Ack")
	wantEqual(t, pending("sub-b", 10), []storage.Notification{b2}, "Pending(sub-b) after acking sub-a past it")
	must(t, s.Ack(ctx, "sub-a", a3.Seq), "repeated Ack")
	must(t, s.Ack(ctx, "sub-a", a4.Seq-1), "Ack of nothing")
	if n := count("sub-a"); n != 1 {
		t.Errorf("PendingCount(sub-a) after Ack = %d, want 1", n)
	}
	must(t, s.Ack(ctx, "sub-a", a4.Seq), "Ack(sub-a, a4)")
	if ns := pending("sub-a", 10); len(ns) != 0 {
		t.Errorf("Pending(sub-a) after acking all = %v", ids(ns, notifID))
	}
	wantEqual(t, withPending(), []string{"sub-b"}, "SubscriptionsWithPending after acking sub-a")

	// A large batch keeps its order and the limit applies.
	big := make([]storage.Notification, 120)
	for i := range big {
		big[i] = notification("sub-a", fmt.Sprintf("big-%03d", i), i)
	}
	must(t, s.Enqueue(ctx, big), "Enqueue(120)")
	if big[0].Seq <= a4.Seq {
		t.Errorf("Seq after acking everything = %d, want more than %d", big[0].Seq, a4.Seq)
	}
	wantEqual(t, pending("sub-a", 50), big[:50], "Pending(sub-a, 50) of a large batch")
	if n := count("sub-a"); n != 120 {
		t.Errorf("PendingCount(sub-a) = %d, want 120", n)
	}
	must(t, s.Ack(ctx, "sub-a", big[99].Seq), "Ack(sub-a, big[99])")
	wantEqual(t, pending("sub-a", 0x7fffffff), big[100:], "Pending(sub-a) after acking 100")
}

func testOutboxSeqNeverReused(t *testing.T, s storage.Store) {
	ctx := t.Context()
	must(t, s.CreateSubscription(ctx, subscription("sub-a", "org-a", "reg-1", "ClientUpdated", "", t0())), "CreateSubscription")
	var last int64
	for i := range 5 {
		n := []storage.Notification{notification("sub-a", fmt.Sprint("d", i), i)}
		must(t, s.Enqueue(ctx, n), "Enqueue")
		if n[0].Seq <= last {
			t.Fatalf("Enqueue %d assigned Seq %d after %d", i, n[0].Seq, last)
		}
		last = n[0].Seq
		// Emptying the outbox must not let the next Seq restart.
		must(t, s.Ack(ctx, "sub-a", last), "Ack")
	}
}

func testDeleteSubscriptionDeletesOutboxAndStats(t *testing.T, s storage.Store) {
	ctx := t.Context()
	for _, id := range []string{"sub-a", "sub-b"} {
		must(t, s.CreateSubscription(ctx, subscription(id, "org-a", "reg-1", "ClientUpdated", "", t0())), "CreateSubscription(%s)", id)
		must(t, s.AddDeliveryStats(ctx, id, storage.DeliveryStats{Delivered: 7, Dropped: 1, LastError: "x", LastSuccess: t0()}), "AddDeliveryStats(%s)", id)
	}
	ns := []storage.Notification{notification("sub-a", "d1", 1), notification("sub-b", "d2", 2), notification("sub-a", "d3", 3)}
	must(t, s.Enqueue(ctx, ns), "Enqueue")

	must(t, s.DeleteSubscription(ctx, "sub-a"), "DeleteSubscription")
	if n, err := s.PendingCount(ctx, "sub-a"); err != nil || n != 0 {
		t.Errorf("PendingCount of a deleted subscription = %d, %v; want 0", n, err)
	}
	if p, err := s.Pending(ctx, "sub-a", 10); err != nil || len(p) != 0 {
		t.Errorf("Pending of a deleted subscription = %v, %v; want none", p, err)
	}
	ids, err := s.SubscriptionsWithPending(ctx)
	must(t, err, "SubscriptionsWithPending")
	wantEqual(t, ids, []string{"sub-b"}, "SubscriptionsWithPending after delete")
	_, err = s.GetDeliveryStats(ctx, "sub-a")
	wantErr(t, err, storage.ErrNotFound, "GetDeliveryStats of a deleted subscription")

	// The other subscription is untouched.
	p, err := s.Pending(ctx, "sub-b", 10)
	must(t, err, "Pending(sub-b)")
	wantEqual(t, p, ns[1:2], "Pending(sub-b)")
	st, err := s.GetDeliveryStats(ctx, "sub-b")
	must(t, err, "GetDeliveryStats(sub-b)")
	wantEqual(t, st, storage.DeliveryStats{Delivered: 7, Dropped: 1, LastError: "x", LastSuccess: t0()}, "GetDeliveryStats(sub-b)")

	// A new subscription with the old ID starts afresh.
	must(t, s.CreateSubscription(ctx, subscription("sub-a", "org-a", "reg-1", "ClientUpdated", "", t0())), "CreateSubscription again")
	st, err = s.GetDeliveryStats(ctx, "sub-a")
	must(t, err, "GetDeliveryStats of the recreated subscription")
	wantEqual(t, st, storage.DeliveryStats{}, "GetDeliveryStats of the recreated subscription")
	if n, err := s.PendingCount(ctx, "sub-a"); err != nil || n != 0 {
		t.Errorf("PendingCount of the recreated subscription = %d, %v; want 0", n, err)
	}
}

func testObservations(t *testing.T, s storage.Store) {
	ctx := t.Context()
	list := func(client string) []storage.Observation {
		t.Helper()
		obs, err := s.ListObservations(ctx, client)
		must(t, err, "ListObservations(%s)", client)
		sort.Slice(obs, func(i, j int) bool { return obs[i].Path < obs[j].Path })
		return obs
	}
	if got := list("reg-1"); len(got) != 0 {
		t.Errorf("ListObservations on empty store = %v", got)
	}
	wantErr(t, s.DeleteObservation(ctx, "reg-1", "/3/0"), storage.ErrNotFound, "DeleteObservation(missing)")

	o1 := storage.Observation{ClientID: "reg-1", Path: "/3303/0/5700", Token: []byte{0xde, 0xad, 0xbe, 0xef}}
	o2 := storage.Observation{ClientID: "reg-1", Path: "/3/0", Token: []byte{0, 1, 2, 3, 4, 5, 6, 7}}
	o3 := storage.Observation{ClientID: "reg-2", Path: "/3/0", Token: []byte{9}}
	for _, o := range []storage.Observation{o1, o2, o3} {
		must(t, s.PutObservation(ctx, o), "PutObservation(%s %s)", o.ClientID, o.Path)
	}
	wantEqual(t, list("reg-1"), []storage.Observation{o2, o1}, "ListObservations(reg-1)")
	wantEqual(t, list("reg-2"), []storage.Observation{o3}, "ListObservations(reg-2)")

	// Observing the same path again replaces the token.
	o2.Token = []byte{0xff, 0xee}
	must(t, s.PutObservation(ctx, o2), "PutObservation (replace)")
	wantEqual(t, list("reg-1"), []storage.Observation{o2, o1}, "ListObservations(reg-1) after replace")

	must(t, s.DeleteObservation(ctx, "reg-1", "/3/0"), "DeleteObservation")
	wantErr(t, s.DeleteObservation(ctx, "reg-1", "/3/0"), storage.ErrNotFound, "DeleteObservation twice")
	wantEqual(t, list("reg-1"), []storage.Observation{o1}, "ListObservations(reg-1) after delete")
	wantEqual(t, list("reg-2"), []storage.Observation{o3}, "ListObservations(reg-2) after deleting reg-1's")
}

// testConcurrentWrites checks that concurrent writers of different kinds
// neither fail nor lose writes.
func testConcurrentWrites(t *testing.T, s storage.Store) {
	ctx := t.Context()
	const workers, each = 8, 20
	for w := range workers {
		must(t, s.CreateSubscription(ctx, subscription(fmt.Sprint("sub-", w), "org-a", "", "ClientConnected", "", t0())), "CreateSubscription")
	}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			sub := fmt.Sprint("sub-", w)
			for i := range each {
				id := fmt.Sprintf("w%d-%02d", w, i)
				if err := s.PutRegistration(ctx, registration(id, "org-a", id, t0())); err != nil {
					t.Errorf("PutRegistration: %v", err)
					return
				}
				if err := s.Enqueue(ctx, []storage.Notification{notification(sub, id, i)}); err != nil {
					t.Errorf("Enqueue: %v", err)
					return
				}
				if _, _, err := s.ListRegistrations(ctx, storage.RegistrationFilter{Organisation: "org-a"}, 0, 5); err != nil {
					t.Errorf("ListRegistrations: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	_, total, err := s.ListRegistrations(ctx, storage.RegistrationFilter{}, 0, 1)
	must(t, err, "ListRegistrations")
	if total != workers*each {
		t.Errorf("%d registrations after concurrent puts, want %d", total, workers*each)
	}
	for w := range workers {
		sub := fmt.Sprint("sub-", w)
		ns, err := s.Pending(ctx, sub, 0x7fffffff)
		must(t, err, "Pending(%s)", sub)
		if len(ns) != each {
			t.Errorf("Pending(%s) = %d entries, want %d", sub, len(ns), each)
			continue
		}
		for i, n := range ns {
			if want := fmt.Sprintf("w%d-%02d", w, i); n.DeliveryID != want || (i > 0 && n.Seq <= ns[i-1].Seq) {
				t.Errorf("Pending(%s)[%d] = %s seq %d, want %s in Seq order", sub, i, n.DeliveryID, n.Seq, want)
			}
		}
	}
}

// testConcurrentRegistrationOutcomes checks that concurrent registration
// writes each get their own outcome, however an implementation groups
// them. Two IDs for the same endpoint race: exactly one is stored, and
// the other gets ErrConflict. Deletes of existing registrations succeed,
// and deletes of missing ones get ErrNotFound. No failure affects the
// calls made at the same time.
func testConcurrentRegistrationOutcomes(t *testing.T, s storage.Store) {
	ctx := t.Context()
	const n = 40
	for i := range n {
		must(t, s.PutRegistration(ctx, registration(fmt.Sprintf("old-%02d", i), "org-b", fmt.Sprintf("dev-%02d", i), t0())), "PutRegistration(old-%02d)", i)
	}
	var (
		mu      sync.Mutex
		results = map[string]error{}
		wg      sync.WaitGroup
	)
	start := make(chan struct{}) // released at once, so that the calls overlap
	call := func(key string, f func() error) {
		wg.Go(func() {
			<-start
			err := f()
			mu.Lock()
			results[key] = err
			mu.Unlock()
		})
	}
	for i := range n {
		endpoint := fmt.Sprintf("dev-%02d", i)
		for _, id := range []string{fmt.Sprintf("a-%02d", i), fmt.Sprintf("b-%02d", i)} {
			call("put "+id, func() error { return s.PutRegistration(ctx, registration(id, "org-a", endpoint, t0())) })
		}
		old, missing := fmt.Sprintf("old-%02d", i), fmt.Sprintf("missing-%02d", i)
		call("delete "+old, func() error { return s.DeleteRegistration(ctx, old) })
		call("delete "+missing, func() error { return s.DeleteRegistration(ctx, missing) })
	}
	close(start)
	wg.Wait()

	for i := range n {
		a, b := fmt.Sprintf("a-%02d", i), fmt.Sprintf("b-%02d", i)
		errA, errB := results["put "+a], results["put "+b]
		stored := a
		switch {
		case errA == nil && errors.Is(errB, storage.ErrConflict):
		case errB == nil && errors.Is(errA, storage.ErrConflict):
			stored = b
		default:
			t.Errorf("racing puts of dev-%02d: %s got %v, %s got %v; want one nil and one ErrConflict", i, a, errA, b, errB)
			continue
		}
		got, err := s.GetRegistrationByEndpoint(ctx, "org-a", fmt.Sprintf("dev-%02d", i))
		must(t, err, "GetRegistrationByEndpoint(dev-%02d)", i)
		if got.ID != stored {
			t.Errorf("dev-%02d is stored as %s, but the put that succeeded was %s", i, got.ID, stored)
		}
		old := fmt.Sprintf("old-%02d", i)
		if err := results["delete "+old]; err != nil {
			t.Errorf("DeleteRegistration(%s): %v", old, err)
		}
		_, err = s.GetRegistration(ctx, old)
		wantErr(t, err, storage.ErrNotFound, "GetRegistration(%s) after its delete", old)
		wantErr(t, results[fmt.Sprintf("delete missing-%02d", i)], storage.ErrNotFound, "DeleteRegistration(missing-%02d)", i)
	}
	_, total, err := s.ListRegistrations(ctx, storage.RegistrationFilter{}, 0, 1)
	must(t, err, "ListRegistrations")
	if total != n {
		t.Errorf("%d registrations stored, want %d", total, n)
	}
}
